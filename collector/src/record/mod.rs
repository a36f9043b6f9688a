//! Recording policy on top of [`crate::tracefs`]: give a container an
//! instance (in profile mode a slot of [`pool`], armed once with the
//! in-kernel [`quench`] on every syscall and reused from container to
//! container; otherwise one of its own), stream its pages while it runs
//! ([`stream`]), switch each syscall's event off once it has been seen
//! ([`recorder`]), and finish.
//!
//! Arming is quiet first (tracing off), then options, pids and events, and
//! only then tracing on, so the first recorded event already has the
//! container's pid filter in force.
//!
//! How the window rule, checkpoint episodes and the quench fit together:
//! - The kernel records every call of the container's tasks until that
//!   call's event is switched off; the *window* (`profile::window`) and the
//!   *episodes* (`profile::episode`) are applied afterwards, in user space,
//!   to decide which records count.
//! - So switching an event off is only safe once a record of that call
//!   that *counts* is in the buffer. The recorder switches off what counted
//!   ([`recorder`]); in a slot the kernel switches off every call at its
//!   first call by a non-runtime task ([`quench`]), which is always inside
//!   the window: the runtime's pre-window setup runs under its own comm.
//!   So the records per container are bounded by construction, whenever
//!   the recorder reads.
//! - A call first made by CRIU's parasite in a checkpoint episode does not
//!   count; if it switched the call's event off, the recorder switches it
//!   back on once it sees the episode ("restored"), and the kernel's
//!   trigger then switches it off again at the workload's next call,
//!   recorded.
//! - The buffer keeps its oldest records when full: a drop can only hide
//!   later calls, and is counted, so the profile is then marked incomplete.

pub mod canary;
pub mod cgroup;
pub mod layouts;
pub mod nspid;
pub mod pool;
pub mod quench;
pub mod recorder;
pub mod stream;

use serde::{Deserialize, Serialize};

use crate::tracefs::{Instance, InstanceGuard, TraceFs, INSTANCE_PREFIX};

/// Per-CPU ring buffer size of full mode when none is configured: every
/// event stays on, so bursts need room. Profile mode keeps the kernel's
/// default size (1.4 MiB): events stop once each syscall has been seen,
/// and any resize costs the container start 15-25 ms.
pub const FULL_MODE_BUFFER_SIZE_KB: u64 = 4096;

/// The kernel's own per-CPU buffer size (1.4 MiB), what a slot goes back
/// to when a hook that sets none claims it after one that did.
pub const DEFAULT_BUFFER_SIZE_KB: u64 = 1408;

/// The per-CPU buffer size to set for `mode`; `None` keeps the kernel's.
pub fn buffer_size_kb(mode: Mode, configured: Option<u64>) -> Option<u64> {
    configured.or(match mode {
        Mode::Full => Some(FULL_MODE_BUFFER_SIZE_KB),
        Mode::Profile => None,
    })
}

/// The process-tree events, on in every mode. `task_newtask` tells
/// threads from processes (binary records carry only the thread id).
pub const PROCESS_EVENTS: &[(&str, &str)] = &[
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exec"),
    ("sched", "sched_process_exit"),
    ("task", "task_newtask"),
];

/// Ptrace stops of the container's tasks, as the SIGCHLD each stopping
/// task sends its tracer (`CLD_TRAPPED` 4, `CLD_STOPPED` 5). They bound
/// CRIU's checkpoint episodes, whose calls stay out of the profile
/// (`profile::episode`, docs/checkpoint-episodes.md). The filter keeps
/// every other signal out of the buffer, so the event costs nothing while
/// no one ptraces the container.
pub const STOP_EVENT: (&str, &str) = ("signal", "signal_generate");
pub const STOP_FILTER: &str = "sig == 17 && code >= 4 && code <= 5";

/// Event systems whose layouts the stream decodes.
pub const DECODED_SYSTEMS: &[&str] = &["syscalls", "sched", "task", "signal"];

/// A filter no exit event passes (`ret` never takes this value). Enter
/// events have no `ret` field, so the subsystem filter skips them.
pub(crate) const EXIT_FILTER: &str = "ret == 0x7ffffffffffffff";

/// The annotation that selects the mode.
pub const MODE_ANNOTATION: &str = "oci-ftrace-syscall-analyzer/mode";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Per-syscall enter events, each switched off once seen in the window:
    /// after warm-up the workload pays only for the tracepoint check.
    #[default]
    Profile,
    /// Every enter and exit event stays on: counts, first/last times and
    /// failures by errno. The forensic mode; it costs more.
    Full,
}

impl Mode {
    /// The mode an annotation value asks for (unknown values: profile).
    pub fn from_annotation(value: Option<&str>) -> Self {
        match value {
            Some("full") => Mode::Full,
            _ => Mode::Profile,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    TraceFs(#[from] crate::tracefs::Error),
    #[error(transparent)]
    Stream(#[from] stream::Error),
    #[error(transparent)]
    Layouts(#[from] layouts::Error),
    #[error(transparent)]
    Canary(#[from] canary::Error),
    #[error("trace instance {name} of a slot in {pool} is gone")]
    SlotGone { name: String, pool: std::path::PathBuf },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The instance name for a container id (ids are validated elsewhere).
pub fn instance_name(id: &str) -> String {
    format!("{INSTANCE_PREFIX}{id}")
}

/// Creates and arms `name` for `pids` (the init task): an instance of one
/// container's own, for full mode, or for profile mode when the runtime's
/// comm cannot be put in a quench condition. This is on the container's
/// start path, so it does only what must happen before the runtime goes
/// on: the buffer size if one is set (a resize while recording drops the
/// events written meanwhile, so it cannot wait), pids, process events and
/// the ptrace-stop event ([`STOP_EVENT`]). The syscall events come on with
/// one write in [`enable_syscalls`] (360 enter-only writes would take
/// 12 ms); in profile mode a subsystem filter on `ret`, a field only the
/// exit events have, keeps exits out of the buffer until the recorder
/// switches them off ([`tune`]). On any failure the instance is removed.
pub fn arm(tfs: &TraceFs, name: &str, pids: &[i32], buffer_size_kb: Option<u64>, mode: Mode) -> Result<Instance> {
    // One burst, between other instances' trigger removals.
    let _lock = crate::tracefs::WriterLock::acquire();
    let guard = InstanceGuard::new(tfs.create_instance(name)?);
    let inst = guard.instance();
    inst.set_tracing_on(false)?;
    if let Some(kb) = buffer_size_kb {
        inst.set_buffer_size_kb(kb)?;
    }
    set_up(inst)?;
    inst.set_event_pids(pids)?;
    if mode == Mode::Profile {
        inst.write("events/syscalls/filter", EXIT_FILTER)?;
    }
    inst.set_tracing_on(true)?;
    Ok(guard.keep())
}

/// Arms a slot (`record::pool`) for profile mode, tracing off and no pid
/// yet: every syscall event on, each with its quench trigger, the exits
/// kept out of the buffer by [`EXIT_FILTER`]. `comms` are the runtime
/// comms the quench leaves out. On any failure the instance is removed.
pub fn arm_slot(tfs: &TraceFs, name: &str, comms: &[String], buffer_size_kb: Option<u64>) -> Result<Instance> {
    let Some(condition) = quench::condition_for(comms) else {
        return Err(Error::TraceFs(crate::tracefs::Error::BadName { name: format!("{name} (runtime comms {comms:?})") }));
    };
    let guard = InstanceGuard::new(tfs.create_instance(name)?);
    let inst = guard.instance();
    inst.set_tracing_on(false)?;
    if let Some(kb) = buffer_size_kb {
        inst.set_buffer_size_kb(kb)?;
    }
    let t0 = std::time::Instant::now();
    set_up(inst)?;
    inst.write("events/syscalls/filter", EXIT_FILTER)?;
    let t_setup = t0.elapsed();
    enable_syscalls(inst)?;
    let t_enable = t0.elapsed();
    let n = quench::arm_all(inst, &condition)?;
    tracing::debug!(
        instance = %inst.name(),
        triggers = n,
        setup_us = t_setup.as_micros() as u64,
        enable_us = (t_enable - t_setup).as_micros() as u64,
        triggers_us = (t0.elapsed() - t_enable).as_micros() as u64,
        "slot armed"
    );
    Ok(guard.keep())
}

/// What every instance gets before its pids: the overflow mode, pid
/// following, the process events and the ptrace-stop event.
fn set_up(inst: &Instance) -> Result<()> {
    // A full buffer drops the newest records, counted, and keeps the
    // oldest: the window's start and the first sight of each call.
    inst.set_option("overwrite", false)?;
    // event-fork first, so children forked right after the pid write are
    // followed.
    inst.set_option("event-fork", true)?;
    for (system, event) in PROCESS_EVENTS {
        inst.set_event(system, event, true)?;
    }
    // Without it, checkpoints cannot be told from the workload; tracing
    // still works, so a kernel that lacks the event only loses that.
    if let Err(e) = arm_stop_event(inst) {
        tracing::warn!(instance = %inst.name(), error = %e, "ptrace stops not recorded: checkpoint episodes will not be recognised");
    }
    Ok(())
}

/// The filter first, so no unfiltered signal is ever recorded.
fn arm_stop_event(inst: &Instance) -> Result<()> {
    let (system, event) = STOP_EVENT;
    inst.write(&format!("events/{system}/{event}/filter"), STOP_FILTER)?;
    inst.set_event(system, event, true)?;
    Ok(())
}

/// Switches every syscall event on with one write. The recorder does this
/// once it can keep up (pipes open, formats read), just before it says
/// ready: the init task waits for the hook meanwhile, so nothing is missed,
/// and a busy workload never meets a recorder that is still starting. The
/// hook does it itself if no recorder came.
pub fn enable_syscalls(inst: &Instance) -> Result<()> {
    inst.set_system("syscalls", true)?;
    Ok(())
}

/// What is too slow for the start path: in profile mode, on an instance
/// of its own (no quench triggers), the exit events off (360 writes; what
/// they recorded meanwhile is simply ignored). `events` are the names under
/// `events/syscalls`.
pub fn tune(inst: &Instance, mode: Mode, events: &[String]) -> Result<()> {
    if mode == Mode::Profile {
        for event in events.iter().filter(|e| e.starts_with("sys_exit_")) {
            inst.set_event("syscalls", event, false)?;
        }
    }
    Ok(())
}

/// Syscalls of the native table that have no `sys_enter_*` event on this
/// kernel: profile mode cannot see them. Event names mostly equal the
/// syscall names; the few that differ are mapped here (for this report
/// only: recorded events are mapped by `__syscall_nr`).
/// `events` are the names under `events/syscalls`.
pub fn syscalls_without_event(events: &[String]) -> Vec<String> {
    const ALIASES: &[(&str, &str)] = &[
        ("newstat", "stat"),
        ("newfstat", "fstat"),
        ("newlstat", "lstat"),
        ("newuname", "uname"),
        ("sendfile64", "sendfile"),
        ("umount", "umount2"),
    ];
    if events.is_empty() {
        return Vec::new();
    }
    let have: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.strip_prefix("sys_enter_"))
        .map(|e| ALIASES.iter().find(|(ev, _)| *ev == e).map(|(_, n)| n.to_string()).unwrap_or_else(|| e.to_string()))
        .collect();
    syscalls::Sysno::iter().map(|s| s.name().to_string()).filter(|n| !have.contains(n)).collect()
}
