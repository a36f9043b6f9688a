//! Recording policy on top of [`crate::tracefs`]: arm an instance for a
//! container, stop it, and drain what it holds.
//!
//! Arming is quiet first (tracing off), then options, pids and events, and
//! only then tracing on, so the first recorded event already has the
//! container's pid filter in force.

use std::io::BufReader;

use crate::trace::{parse_text, Parsed};
use crate::tracefs::{CpuStats, Instance, InstanceGuard, TraceFs, INSTANCE_PREFIX};

/// Per-CPU ring buffer size used when none is configured.
pub const DEFAULT_BUFFER_SIZE_KB: u64 = 8192;

/// The syscall event: one tracepoint for every call, carrying the number
/// and the raw arguments the window rule needs.
pub const SYSCALL_EVENTS: &[(&str, &str)] = &[("raw_syscalls", "sys_enter")];

/// The process-tree events.
pub const PROCESS_EVENTS: &[(&str, &str)] =
    &[("sched", "sched_process_fork"), ("sched", "sched_process_exec"), ("sched", "sched_process_exit")];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    TraceFs(#[from] crate::tracefs::Error),
    #[error("reading the trace of instance {name}: {cause}")]
    ReadTrace { name: String, cause: std::io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy)]
pub struct ArmConfig {
    pub buffer_size_kb: u64,
}

impl Default for ArmConfig {
    fn default() -> Self {
        ArmConfig { buffer_size_kb: DEFAULT_BUFFER_SIZE_KB }
    }
}

/// The instance name for a container id (ids are validated elsewhere).
pub fn instance_name(id: &str) -> String {
    format!("{INSTANCE_PREFIX}{id}")
}

/// Creates and arms `name` for `pids` (the init task and its threads).
/// On any failure the half-armed instance is removed.
pub fn arm(tfs: &TraceFs, name: &str, pids: &[i32], config: &ArmConfig) -> Result<Instance> {
    let guard = InstanceGuard::new(tfs.create_instance(name)?);
    let inst = guard.instance();
    inst.set_tracing_on(false)?;
    inst.set_buffer_size_kb(config.buffer_size_kb)?;
    // event-fork first, so children forked right after the pid write are
    // followed.
    inst.set_option("event-fork", true)?;
    inst.set_option("record-tgid", true)?;
    inst.set_event_pids(pids)?;
    for (system, event) in SYSCALL_EVENTS.iter().chain(PROCESS_EVENTS) {
        inst.set_event(system, event, true)?;
    }
    inst.set_tracing_on(true)?;
    Ok(guard.keep())
}

/// What an instance held when it was stopped.
#[derive(Debug)]
pub struct Drained {
    pub parsed: Parsed,
    pub stats: Vec<CpuStats>,
}

impl Drained {
    pub fn lost(&self) -> u64 {
        self.stats.iter().map(CpuStats::lost).sum()
    }
}

/// Stops recording and reads everything the ring buffer holds.
pub fn drain(inst: &Instance) -> Result<Drained> {
    inst.set_tracing_on(false)?;
    inst.disable_all_events()?;
    let stats = inst.cpu_stats()?;
    let file = inst.open_trace()?;
    let parsed = parse_text(BufReader::with_capacity(1 << 20, file))
        .map_err(|cause| Error::ReadTrace { name: inst.name().to_string(), cause })?;
    Ok(Drained { parsed, stats })
}
