//! Putting a container's init into a reused slot's pid filter without
//! waiting for the kernel to free the old filter.
//!
//! Writing `set_event_pid` when a list is already set builds a new list,
//! makes it live at once, and then waits out grace periods (30-40 ms,
//! with the kernel's `event_mutex` held) before the write returns and the
//! old list is freed. A container start needs only the first part. So the
//! write goes to a forked child ([`Instance::add_event_pids_detached`]),
//! and a *canary* thread, whose tid is written with the init's pid, shows
//! when the list is live: once it is, the canary's own next call is
//! recorded, and the entry count of its CPU's buffer goes up. The canary
//! runs under [`CANARY_COMM`], which the slot's quench triggers leave
//! out, so its calls switch nothing off; its records are dropped when the
//! buffer is read (`record::stream`, up to its exit record).
//!
//! If the canary sees nothing, the child's finished write is the answer.
//! The init task cannot run before the list is live: it waits for its
//! runtime, which waits for this hook.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::tracefs::{self, Instance};

/// The canary thread's comm; every slot's quench condition leaves it out.
pub const CANARY_COMM: &str = "ftrace-canary";

/// How long to wait for a live list before giving up on the claim.
const LIMIT: Duration = Duration::from_secs(10);

/// The canary's pause between two looks. Sleeping also makes the kernel
/// re-evaluate, at the next switch, whether this CPU's current task is
/// filtered (it does that per task switch, and for running tasks only
/// after the grace periods).
const PAUSE: Duration = Duration::from_micros(100);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    TraceFs(#[from] tracefs::Error),
    #[error("the pid filter of {instance} did not take pid {pid}: {why}")]
    NotLive { instance: String, pid: i32, why: String },
}

/// Adds `pid` to `inst`'s pid filter, which holds a list already, and
/// returns once the new list is live, with the canary's tid (its records
/// in the buffer are not the container's). Tracing must be on.
pub fn add_pid(inst: &Instance, pid: i32) -> Result<i32, Error> {
    let stats = inst.open_cpu_stats()?;
    let baseline: Vec<(u32, u64)> = stats.cpus().map(|c| (c, stats.entries(c).unwrap_or(u64::MAX))).collect();
    let not_live = |why: String| Error::NotLive { instance: inst.name().to_string(), pid, why };
    let (tid_tx, tid_rx) = mpsc::channel::<i32>();
    let (write_tx, write_rx) = mpsc::channel::<tracefs::DetachedWrite>();
    let canary = std::thread::Builder::new()
        .name(CANARY_COMM.into())
        .spawn(move || -> Result<Seen, String> {
            let _ = tid_tx.send(nix::unistd::gettid().as_raw());
            let mut write = write_rx.recv().map_err(|_| "no write was started".to_string())?;
            let deadline = Instant::now() + LIMIT;
            loop {
                std::thread::sleep(PAUSE);
                // SAFETY: no arguments; returns the CPU or -1.
                let cpu = unsafe { nix::libc::sched_getcpu() };
                if let Ok(cpu) = u32::try_from(cpu) {
                    let before = baseline.iter().find(|(c, _)| *c == cpu).map(|(_, n)| *n);
                    if let (Some(before), Some(now)) = (before, stats.entries(cpu)) {
                        if now > before {
                            return Ok(Seen::Recorded);
                        }
                    }
                }
                if let Some(ok) = write.finished() {
                    return Ok(Seen::WriteDone { ok });
                }
                if Instant::now() > deadline {
                    return Err(format!("not live after {} s (write by pid {} still blocked)", LIMIT.as_secs(), write.pid()));
                }
            }
        })
        .map_err(|e| not_live(format!("no canary thread: {e}")))?;
    let tid = tid_rx.recv().map_err(|_| not_live("the canary thread ended at once".into()))?;
    match inst.add_event_pids_detached(&[pid, tid]) {
        Ok(write) => {
            let _ = write_tx.send(write);
        }
        Err(e) => {
            drop(write_tx);
            let _ = canary.join();
            return Err(e.into());
        }
    }
    let seen = canary.join().map_err(|_| not_live("the canary thread panicked".into()))?.map_err(not_live)?;
    match seen {
        Seen::Recorded | Seen::WriteDone { ok: true } => {}
        // Failed, or reaped by someone else: the list says.
        Seen::WriteDone { ok: false } => {
            if !inst.event_pids()?.contains(&pid) {
                return Err(not_live("the write failed".into()));
            }
        }
    }
    tracing::debug!(instance = %inst.name(), pid, canary = tid, ?seen, "pid filter live");
    Ok(tid)
}

/// How the canary knew the list was live.
#[derive(Debug, Clone, Copy)]
enum Seen {
    /// Its own call was recorded.
    Recorded,
    /// The write returned first.
    WriteDone { ok: bool },
}
