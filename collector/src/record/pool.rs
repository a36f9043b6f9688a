//! Warm instances ("slots") that profile mode hands from one container to
//! the next, so the in-kernel quench can cover every syscall.
//!
//! Why: the quench ([`super::quench`]) is a trigger on each syscall's exit
//! event, 360 of them. On kernels before 7.0 the kernel frees each trigger
//! after RCU grace periods with its `event_mutex` held, ~100 ms each
//! (measured here on 6.18), and every other instance write waits for that
//! mutex: an instance per container would cost 36 s of teardown per
//! container and stall the starts behind it. A slot is armed once and then
//! reused:
//! - claim (a container's prestart): every syscall event back on (the
//!   quench left them soft-off), tracing on, then the pid added to the
//!   filter, which the last container's tasks emptied as they exited: the
//!   kernel frees the old list only after grace periods (30-40 ms), so
//!   [`canary`] returns as soon as the new one is live;
//! - release (after the recorder is done, in a detached process): tracing
//!   off, triggers the recorder took off put back, the buffer emptied; the
//!   pid filter empties itself as the container's tasks exit;
//! - a slot that nobody claims for its linger time is torn down, one
//!   trigger at a time, each under [`WriterLock`]; a claim meanwhile takes
//!   it back and puts the removed triggers back.
//!
//! An armed slot costs every syscall on the machine a tracepoint probe
//! even while free (tracing off, no pid), like any armed instance; the
//! linger bounds how long that lasts after the last traced container.
//!
//! State: one JSON file per slot in [`POOL_DIR`], read and written only
//! under [`WriterLock`], which also orders claims, so the cap holds under
//! concurrent prestarts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{canary, quench, Result};
use crate::tracefs::{Instance, TraceFs, WriterLock, INSTANCE_PREFIX};

/// Where the slots' state files live (tmpfs: gone with the instances at
/// reboot).
pub const POOL_DIR: &str = "/run/oci-ftrace-syscall-analyzer/pool";

/// Slot instances are named `oci_ftrace_@slot<N>`: `@` is not allowed in
/// a container id, so a slot is never taken for a container's instance.
pub const SLOT_MARK: &str = "@slot";

/// How long a released slot waits for the next container by default.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(10);

/// Comms every slot's quench leaves out, whatever runtime armed it, so
/// runc and crun containers share slots: runc's init before it execs the
/// workload, crun, and a claim's [`canary::CANARY_COMM`].
pub const RUNTIME_COMMS: &[&str] = &["runc:[2:INIT]", "crun", canary::CANARY_COMM];

/// What a slot armed by this build looks like (bumped when arming
/// changes): a claim reuses only slots of its own version, and gc tears
/// the others down once they are free. 2: the canary's comm is left out.
pub const SLOT_VERSION: u32 = 2;

/// The pause after each trigger removal of a teardown, without the lock.
const REAP_PAUSE: Duration = Duration::from_millis(20);

/// True if `name` is a slot's instance name.
pub fn is_slot(name: &str) -> bool {
    name.strip_prefix(INSTANCE_PREFIX).is_some_and(|rest| rest.starts_with(SLOT_MARK))
}

/// The instance name of slot `index`.
pub fn slot_name(index: u32) -> String {
    format!("{INSTANCE_PREFIX}{SLOT_MARK}{index}")
}

/// Where a slot is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "phase")]
pub enum Phase {
    /// Recording container `id`, whose files are in `state_dir`.
    InUse { id: String, state_dir: PathBuf },
    /// Being made ready for the next container.
    Releasing,
    /// Ready to be claimed.
    Free,
    /// Being torn down; a claim takes it back.
    Reaping,
}

/// A slot's state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotState {
    /// [`SLOT_VERSION`] of the build that armed it (0: before versions).
    #[serde(default)]
    pub version: u32,
    pub index: u32,
    pub instance: String,
    /// Comms the quench triggers leave out (the runtimes' own tasks).
    pub comms: Vec<String>,
    /// Bumped at each claim: a releaser or reaper of an older claim stops.
    pub generation: u64,
    #[serde(flatten)]
    pub phase: Phase,
    /// Exit events whose quench trigger is off (taken off while recording,
    /// or by a teardown): a claim or release puts them back.
    #[serde(default)]
    pub missing: BTreeSet<String>,
    /// Unix time of the last phase change.
    pub since_unix: u64,
    /// The process releasing, lingering on or reaping this slot.
    #[serde(default)]
    pub worker: Option<Worker>,
    /// Seconds a free slot waits for a claim before its teardown.
    pub linger_secs: u64,
    /// The per-CPU buffer size set at arming; `None`: the kernel's.
    #[serde(default)]
    pub buffer_size_kb: Option<u64>,
}

/// A process, told apart from a later one with the same pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub pid: i32,
    pub start_ticks: Option<u64>,
}

impl Worker {
    pub fn me() -> Self {
        let pid = std::process::id() as i32;
        Worker { pid, start_ticks: start_ticks(pid) }
    }

    pub fn alive(&self) -> bool {
        match procfs::process::Process::new(self.pid).and_then(|p| p.stat()) {
            Ok(stat) => stat.state != 'Z' && self.start_ticks.is_none_or(|t| t == stat.starttime),
            Err(_) => false,
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn start_ticks(pid: i32) -> Option<u64> {
    procfs::process::Process::new(pid).and_then(|p| p.stat()).ok().map(|s| s.starttime)
}

/// What a container's recording holds of its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub index: u32,
    pub generation: u64,
}

/// What [`Pool::claim`] gives a container.
#[derive(Debug)]
pub struct Claimed {
    pub inst: Instance,
    pub claim: Claim,
    /// The [`canary`] thread whose records open the slot's buffer, if the
    /// claim needed one.
    pub canary: Option<i32>,
}

/// The slots' state files.
#[derive(Debug, Clone)]
pub struct Pool {
    dir: PathBuf,
}

/// What [`Pool::claim`] asks for.
pub struct ClaimRequest<'a> {
    pub id: &'a str,
    pub state_dir: &'a Path,
    pub pid: i32,
    /// The init task's comm at prestart; must be one the slot leaves out.
    pub comm: &'a str,
    /// Armed instances allowed on the machine (slots in use and others).
    pub cap: usize,
    /// Our armed instances that are not slots (full mode).
    pub other_armed: usize,
    pub linger: Duration,
    /// The per-CPU buffer size wanted (`None`: the kernel's).
    pub buffer_size_kb: Option<u64>,
}

/// Why no slot was claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSlot {
    /// `armed` containers are traced already.
    Cap { armed: usize },
    /// Every slot is taken or arms another runtime's comm, and no new one
    /// may be made.
    Full { slots: usize },
}

impl Pool {
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        Pool { dir: dir.into() }
    }

    pub fn at_default() -> Self {
        Pool::open(POOL_DIR)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, index: u32) -> PathBuf {
        self.dir.join(format!("slot{index}.json"))
    }

    /// Every slot's state, by index. A file that cannot be read is skipped
    /// (logged): its instance is then an orphan for gc.
    pub fn slots(&self) -> Vec<SlotState> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out: Vec<SlotState> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("slot") && n.ends_with(".json")))
            .filter_map(|e| match read_state(&e.path()) {
                Ok(s) => Some(s),
                Err(why) => {
                    tracing::warn!(path = %e.path().display(), "unreadable slot state: {why}");
                    None
                }
            })
            .collect();
        out.sort_by_key(|s| s.index);
        out
    }

    pub fn get(&self, index: u32) -> Option<SlotState> {
        read_state(&self.file(index)).ok()
    }

    /// Writes a slot's state (atomically). Callers hold [`WriterLock`].
    pub fn put(&self, state: &SlotState) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        crate::container::store::write_atomic(&self.file(state.index), &bytes).map_err(std::io::Error::other)
    }

    fn forget(&self, index: u32) {
        let _ = std::fs::remove_file(self.file(index));
    }

    /// The slot recording container `id` from `state_dir`, if any.
    pub fn slot_of(&self, id: &str, state_dir: &Path) -> Option<SlotState> {
        self.slots().into_iter().find(|s| matches!(&s.phase, Phase::InUse { id: i, state_dir: d } if i == id && d == state_dir))
    }

    /// Claims a slot for a container: a free one whose quench leaves out
    /// `req.comm`, else one being torn down, else a new one if the cap
    /// allows. The pid filter is live and tracing is on when this returns.
    pub fn claim(&self, tfs: &TraceFs, req: &ClaimRequest) -> Result<std::result::Result<Claimed, NoSlot>> {
        let asked = Instant::now();
        let _lock = WriterLock::acquire();
        tracing::debug!(lock_wait_us = asked.elapsed().as_micros() as u64, "claiming a slot");
        let slots = self.slots();
        let in_use = slots.iter().filter(|s| matches!(s.phase, Phase::InUse { .. })).count();
        let armed = in_use + req.other_armed;
        if armed >= req.cap {
            return Ok(Err(NoSlot::Cap { armed }));
        }
        let fits = |s: &&SlotState| {
            s.version == SLOT_VERSION && s.comms.iter().any(|c| c == req.comm) && tfs.open_instance(&s.instance).ok().flatten().is_some()
        };
        let reuse = slots
            .iter()
            .filter(fits)
            .find(|s| s.phase == Phase::Free)
            .or_else(|| slots.iter().filter(fits).find(|s| s.phase == Phase::Reaping))
            .cloned();
        let (inst, mut state, fresh) = match reuse {
            Some(state) => {
                let inst = tfs
                    .open_instance(&state.instance)?
                    .ok_or_else(|| super::Error::SlotGone { name: state.instance.clone(), pool: self.dir.clone() })?;
                (inst, state, false)
            }
            None => {
                // Free slots that fit no one here (another runtime's comm)
                // wait out their linger; two of those at most beyond the cap.
                if slots.len() >= req.cap + 2 {
                    return Ok(Err(NoSlot::Full { slots: slots.len() }));
                }
                let index = (0u32..).find(|i| !slots.iter().any(|s| s.index == *i) && self.get(*i).is_none()).unwrap_or(0);
                let name = slot_name(index);
                // An orphan of a lost state file: not ours to reuse blind.
                if tfs.open_instance(&name)?.is_some() {
                    return Ok(Err(NoSlot::Full { slots: slots.len() }));
                }
                let mut comms: Vec<String> = RUNTIME_COMMS.iter().map(|c| c.to_string()).collect();
                if !comms.iter().any(|c| c == req.comm) {
                    comms.push(req.comm.to_string());
                }
                let inst = super::arm_slot(tfs, &name, &comms, req.buffer_size_kb)?;
                let state = SlotState {
                    version: SLOT_VERSION,
                    index,
                    instance: name,
                    comms,
                    generation: 0,
                    phase: Phase::Free,
                    missing: BTreeSet::new(),
                    since_unix: unix_now(),
                    worker: None,
                    linger_secs: req.linger.as_secs(),
                    buffer_size_kb: req.buffer_size_kb,
                };
                (inst, state, true)
            }
        };
        let t0 = Instant::now();
        // Triggers a teardown or the last recorder took off come back
        // before anything is recorded.
        let restored = state.missing.len();
        restore_triggers(&inst, &state.comms, &mut state.missing);
        let t_restore = t0.elapsed();
        if state.buffer_size_kb != req.buffer_size_kb {
            // Rare (a hook configured otherwise): 15-25 ms of this start.
            let kb = match req.buffer_size_kb {
                Some(kb) => kb,
                None => super::DEFAULT_BUFFER_SIZE_KB,
            };
            inst.set_buffer_size_kb(kb)?;
            state.buffer_size_kb = req.buffer_size_kb;
        }
        // The old list is empty, its tasks gone, or pid 0 (the idle task)
        // after a release that found tasks: none of it records or quenches,
        // so the events and tracing come on first, and the pid last. A
        // fresh slot has no list yet, and a write to none waits for
        // nothing. Anything else live in the old list (a release that
        // failed) would be recorded with the container: that list is
        // replaced, waiting out the grace period, before anything is on.
        let stale = !fresh && inst.event_pids().map(|p| p.into_iter().any(|p| p != 0 && pid_alive(p))).unwrap_or(true);
        let canary = if fresh || stale {
            if stale {
                inst.replace_event_pids(&[req.pid])?;
            } else {
                inst.set_event_pids(&[req.pid])?;
            }
            inst.set_system("syscalls", true)?;
            inst.set_tracing_on(true)?;
            None
        } else {
            inst.set_system("syscalls", true)?;
            inst.set_tracing_on(true)?;
            match canary::add_pid(&inst, req.pid) {
                Ok(tid) => Some(tid),
                Err(e) => {
                    let _ = inst.set_tracing_on(false);
                    return Err(e.into());
                }
            }
        };
        let t_pid = t0.elapsed();
        tracing::debug!(
            slot = state.index,
            restored,
            restore_us = t_restore.as_micros() as u64,
            pid_us = (t_pid - t_restore).as_micros() as u64,
            total_us = t0.elapsed().as_micros() as u64,
            "slot claimed"
        );
        state.generation += 1;
        state.phase = Phase::InUse { id: req.id.to_string(), state_dir: req.state_dir.to_path_buf() };
        state.since_unix = unix_now();
        state.worker = None;
        state.linger_secs = req.linger.as_secs();
        let claim = Claim { index: state.index, generation: state.generation };
        if let Err(e) = self.put(&state) {
            // Without its state file the slot would be lost to reuse:
            // give it back as it was.
            let _ = inst.set_tracing_on(false);
            return Err(crate::tracefs::Error::Write { path: self.file(state.index), value: "slot state".into(), cause: e }.into());
        }
        Ok(Ok(Claimed { inst, claim, canary }))
    }

    /// Takes the quench trigger of `exit` off a slot in use by `claim`,
    /// and notes it so the release puts it back. Holds [`WriterLock`] for
    /// the grace periods the kernel waits out.
    pub fn take_trigger_off(&self, inst: &Instance, claim: &Claim, exit: &str) -> bool {
        let _lock = WriterLock::acquire_yielding(REAP_PAUSE);
        let Some(mut state) = self.get(claim.index).filter(|s| s.generation == claim.generation) else { return false };
        if state.instance != inst.name() {
            return false;
        }
        if inst.add_trigger("syscalls", exit, &quench::removal(exit)).is_err() {
            return false;
        }
        state.missing.insert(exit.to_string());
        if let Err(e) = self.put(&state) {
            tracing::warn!(error = %e, "could not note a removed trigger; the slot's next claim may lack it");
        }
        true
    }

    /// Makes the slot of `claim` ready for the next container (see the
    /// module doc). Call once its recording is read. Returns false if the
    /// slot was not in that claim's hands (released already, or reclaimed).
    pub fn release(&self, tfs: &TraceFs, claim: &Claim) -> Result<bool> {
        let inst = {
            let _lock = WriterLock::acquire();
            let Some(mut state) = self.get(claim.index).filter(|s| s.generation == claim.generation) else { return Ok(false) };
            let other_worker = state.worker.as_ref().is_some_and(|w| *w != Worker::me() && w.alive());
            // In use, or left half released by a worker that died.
            let ours = match state.phase {
                Phase::InUse { .. } => true,
                Phase::Releasing => !other_worker,
                Phase::Free | Phase::Reaping => false,
            };
            if !ours {
                return Ok(false);
            }
            state.phase = Phase::Releasing;
            state.worker = Some(Worker::me());
            state.since_unix = unix_now();
            let _ = self.put(&state);
            let Some(inst) = tfs.open_instance(&state.instance)? else {
                self.forget(claim.index);
                return Ok(false);
            };
            inst.set_tracing_on(false)?;
            inst
        };
        // The pid filter stays: with event-fork on, the kernel drops each
        // task from it as the task exits, so once the container is gone the
        // filter holds no one and the slot records nothing. (No filter at
        // all would let every task on the machine through to the triggers:
        // 2.5x the cost of each syscall, measured with dd.) Only if tasks
        // are left in it (a container given up on while it runs) is it set
        // to pid 0, the idle task, which makes no syscalls: a grace
        // period, here and not at the next claim.
        if inst.event_pids().is_ok_and(|p| p.iter().any(|p| *p != 0)) {
            let _lock = WriterLock::acquire();
            inst.replace_event_pids(&[0])?;
        }
        // Empty, and its loss counters back at zero for the next claim.
        inst.write("trace", "")?;
        let _lock = WriterLock::acquire();
        let Some(mut state) = self.get(claim.index).filter(|s| s.generation == claim.generation) else { return Ok(false) };
        inst.set_system("syscalls", true)?;
        restore_triggers(&inst, &state.comms, &mut state.missing);
        state.phase = Phase::Free;
        state.since_unix = unix_now();
        let _ = self.put(&state);
        Ok(true)
    }

    /// Waits out the slot's linger time (returning early, false, if it is
    /// claimed meanwhile), then tears it down ([`Pool::reap`]).
    pub fn linger_then_reap(&self, tfs: &TraceFs, claim: &Claim, linger: Duration) -> Result<bool> {
        let deadline = Instant::now() + linger;
        loop {
            let still_free = self.get(claim.index).is_some_and(|s| s.generation == claim.generation && s.phase == Phase::Free);
            if !still_free {
                return Ok(false);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(250)));
        }
        self.reap(tfs, claim.index, Some(claim.generation))
    }

    /// Tears a free slot down: its triggers one at a time, each under
    /// [`WriterLock`], then the rmdir. Stops (false) as soon as the slot
    /// is claimed; `generation`, when given, must still be the slot's.
    pub fn reap(&self, tfs: &TraceFs, index: u32, generation: Option<u64>) -> Result<bool> {
        let mut pending: Option<Vec<String>> = None;
        loop {
            let lock = WriterLock::acquire_yielding(REAP_PAUSE);
            let Some(mut state) = self.get(index) else { return Ok(false) };
            let ours = generation.is_none_or(|g| g == state.generation);
            if !ours || !matches!(state.phase, Phase::Free | Phase::Reaping) {
                return Ok(false);
            }
            let Some(inst) = tfs.open_instance(&state.instance)? else {
                self.forget(index);
                return Ok(true);
            };
            if state.phase == Phase::Free {
                state.phase = Phase::Reaping;
                state.since_unix = unix_now();
            }
            state.worker = Some(Worker::me());
            let left = pending.get_or_insert_with(|| quench::trigger_exits(&inst));
            left.retain(|e| !state.missing.contains(e));
            let Some(exit) = left.pop() else {
                // No trigger left: the rmdir waits out no trigger's grace
                // period.
                inst.remove()?;
                self.forget(index);
                drop(lock);
                tracing::info!(slot = index, "slot torn down");
                return Ok(true);
            };
            if let Err(e) = inst.add_trigger("syscalls", &exit, &quench::removal(&exit)) {
                tracing::debug!(event = %exit, error = %e, "could not remove a trigger");
            }
            state.missing.insert(exit);
            let _ = self.put(&state);
            drop(lock);
            std::thread::sleep(REAP_PAUSE);
        }
    }

    /// Drops the state file of a slot whose instance is gone.
    pub fn forget_if_gone(&self, tfs: &TraceFs, index: u32) {
        let _lock = WriterLock::acquire();
        if let Some(state) = self.get(index) {
            if tfs.open_instance(&state.instance).ok().flatten().is_none() {
                self.forget(index);
            }
        }
    }
}

/// Puts back the quench triggers of `missing` and empties it (a trigger
/// that cannot be set is logged: that call then waits for the user-space
/// quench).
fn restore_triggers(inst: &Instance, comms: &[String], missing: &mut BTreeSet<String>) {
    let Some(condition) = quench::condition_for(comms) else { return };
    for exit in std::mem::take(missing) {
        let Some(call) = exit.strip_prefix("sys_exit_") else { continue };
        let enter = format!("sys_enter_{call}");
        let _ = inst.set_event("syscalls", &enter, true);
        if let Err(e) = inst.add_trigger("syscalls", &exit, &quench::trigger(call, &condition)) {
            tracing::warn!(event = %exit, error = %e, "could not put a quench trigger back");
        }
        let _ = inst.set_event("syscalls", &exit, true);
    }
}

fn read_state(path: &Path) -> std::result::Result<SlotState, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err("not a regular file of at most 1 MiB".into());
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_never_meet_a_container_id() {
        let name = slot_name(3);
        assert_eq!(name, "oci_ftrace_@slot3");
        assert!(is_slot(&name));
        assert!(!is_slot("oci_ftrace_slot3"));
        assert!(crate::container::input::validate_id(name.trim_start_matches(INSTANCE_PREFIX)).is_err());
    }

    #[test]
    fn a_state_file_round_trips_and_a_bad_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::open(dir.path());
        let state = SlotState {
            version: SLOT_VERSION,
            index: 1,
            instance: slot_name(1),
            comms: vec!["crun".into()],
            generation: 4,
            phase: Phase::InUse { id: "abc".into(), state_dir: "/var/lib/x".into() },
            missing: ["sys_exit_read".to_string()].into(),
            since_unix: 5,
            worker: None,
            linger_secs: 10,
            buffer_size_kb: None,
        };
        pool.put(&state).unwrap();
        std::fs::write(dir.path().join("slot2.json"), b"{not json").unwrap();
        let slots = pool.slots();
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].phase, state.phase);
        assert_eq!(slots[0].missing, state.missing);
        assert_eq!(pool.slot_of("abc", Path::new("/var/lib/x")).map(|s| s.index), Some(1));
        assert!(pool.slot_of("abc", Path::new("/elsewhere")).is_none());
    }
}
