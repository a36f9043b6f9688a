//! The in-kernel quench of profile mode: the event of each syscall switches
//! itself off in the kernel the first time the container's own code makes
//! that call, so the records per container are bounded (about one per
//! distinct call and task in it at that moment, plus process and signal
//! events), however busy the container and however late the recorder reads.
//!
//! How: on `sys_exit_X`, the trigger
//! `disable_event:syscalls:sys_enter_X if comm != "<runtime>" && …`.
//! - A trigger with a condition runs after the record is committed, so only
//!   for tasks that pass the instance's `set_event_pid` (a trigger without
//!   one would run for every task on the machine).
//! - The enter record of the call that fired it is already in the buffer;
//!   the exit record is dropped by the subsystem filter on `ret`
//!   (`record::EXIT_FILTER`), which the kernel applies after the triggers.
//! - A task in the call when the trigger fires may add one more enter
//!   record: the bound is one per call per task in it at that moment.
//!
//! The window: calls made before the recording window opens (the runtime's
//! setup before it installs the seccomp filter) must not switch off an event
//! that the workload needs later. Every such call is made by the runtime's
//! own tasks, which keep their comm (`runc:[2:INIT]`, `crun`, …) until they
//! exec the workload, and the condition skips them. The workload's calls
//! all come after that exec, so after the window opened. A runtime's own
//! calls after the filter install (runc's `capset`, `setgroups`, …) are in
//! the window: they are recorded, they just do not quench, and there are
//! few of them.
//!
//! Checkpoint episodes: CRIU's parasite runs in the container's tasks under
//! their comm, so a call it makes first switches that call's event off. The
//! recorder switches such events back on once it sees the episode
//! (`profile::episode`, "restored"); the trigger stays, so the event
//! quenches itself again at the workload's next call, recorded.
//!
//! Every syscall with both events gets a trigger. On kernels before 7.0
//! each trigger costs ~100 ms of the kernel's `event_mutex` when freed, so
//! the triggers live in slots reused from container to container
//! (`record::pool`) instead of an instance per container.

use super::Result;
use crate::tracefs::Instance;

/// Calls a busy loop makes at a million or more a second: while a busy
/// container records, their triggers go first when the recorder takes
/// seen calls' triggers off (a trigger costs each later call of its
/// syscall ~0.15 µs, see `record::recorder`).
pub const HOT: &[&str] = &[
    // I/O loops: dd, cat, copy loops, log writers, pipes.
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    // Spin-waits, locks and sleeps: runtimes' schedulers, retry loops.
    "futex",
    "sched_yield",
    "nanosleep",
    "clock_nanosleep",
    // Event loops: servers, proxies, probes.
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "ppoll",
];

/// The trigger condition that leaves out the runtime's own tasks, those
/// with one of `comms`. The kernel compares `!=` exactly (globs need `~`),
/// and a quoted string ends at its quote, with no escapes: `None` if any
/// comm holds a quote, a backslash or a control character, or is empty.
pub fn condition_for(comms: &[String]) -> Option<String> {
    let parts: Option<Vec<String>> = comms.iter().map(|c| plain(c).map(|c| format!("comm != \"{c}\""))).collect();
    let parts = parts?;
    (!parts.is_empty()).then(|| parts.join(" && "))
}

/// `comm` without its newline, if the kernel's filter can hold it as is.
pub fn plain(comm: &str) -> Option<&str> {
    let comm = comm.strip_suffix('\n').unwrap_or(comm);
    let ok = |c: char| c.is_ascii_graphic() && !"\"'\\".contains(c) || c == ' ';
    (!comm.is_empty() && comm.len() < 16 && comm.chars().all(ok)).then_some(comm)
}

/// The trigger for one syscall under `condition`.
pub fn trigger(syscall: &str, condition: &str) -> String {
    format!("disable_event:syscalls:sys_enter_{syscall} if {condition}")
}

/// The command that takes the trigger of exit event `exit` off: the kernel
/// matches on the command and its target, not on the filter.
pub fn removal(exit: &str) -> String {
    let call = exit.strip_prefix("sys_exit_").unwrap_or(exit);
    format!("!disable_event:syscalls:sys_enter_{call}")
}

/// True if `syscall` is one of [`HOT`].
pub fn is_hot(syscall: &str) -> bool {
    HOT.contains(&syscall)
}

/// The exit event that quenches the enter event `enter`.
pub fn exit_event(enter: &str) -> Option<String> {
    enter.strip_prefix("sys_enter_").map(|s| format!("sys_exit_{s}"))
}

/// The exit events of `inst` that carry (or would carry) a quench trigger:
/// those whose syscall also has an enter event.
pub fn trigger_exits(inst: &Instance) -> Vec<String> {
    let Ok(events) = inst.event_names("syscalls") else { return Vec::new() };
    let have: std::collections::BTreeSet<&str> = events.iter().map(String::as_str).collect();
    events
        .iter()
        .filter(|e| e.strip_prefix("sys_exit_").is_some_and(|call| have.contains(format!("sys_enter_{call}").as_str())))
        .cloned()
        .collect()
}

/// Sets a quench trigger on every syscall of `inst` that has both events,
/// under `condition` ([`condition_for`]), and returns how many were set.
pub fn arm_all(inst: &Instance, condition: &str) -> Result<usize> {
    let exits = trigger_exits(inst);
    for exit in &exits {
        let call = exit.strip_prefix("sys_exit_").unwrap_or(exit);
        inst.add_trigger("syscalls", exit, &trigger(call, condition))?;
    }
    Ok(exits.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_leaves_the_runtimes_out_and_cannot_be_steered() {
        let c = |v: &[&str]| condition_for(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(c(&["runc:[2:INIT]"]).as_deref(), Some("comm != \"runc:[2:INIT]\""));
        assert_eq!(c(&["runc:[2:INIT]", "crun\n"]).as_deref(), Some("comm != \"runc:[2:INIT]\" && comm != \"crun\""));
        // A quote or backslash could end the string or be read another way.
        assert_eq!(c(&["crun", "a\" || 1"]), None);
        assert_eq!(c(&["a\\b"]), None);
        assert_eq!(c(&["tab\there"]), None);
        assert_eq!(c(&[""]), None);
        assert_eq!(c(&[]), None);
        assert_eq!(plain("0123456789abcdefg"), None, "a comm is at most 15 bytes");
    }

    #[test]
    fn triggers_disable_the_enter_event_of_their_own_call_and_come_off_by_name() {
        assert_eq!(trigger("read", "comm != \"crun\""), "disable_event:syscalls:sys_enter_read if comm != \"crun\"");
        assert_eq!(removal("sys_exit_read"), "!disable_event:syscalls:sys_enter_read");
        assert!(is_hot("write") && !is_hot("mkdir"));
        assert_eq!(exit_event("sys_enter_mkdir").as_deref(), Some("sys_exit_mkdir"));
        let unique: std::collections::BTreeSet<_> = HOT.iter().collect();
        assert_eq!(unique.len(), HOT.len(), "duplicates in HOT");
    }

    #[test]
    fn arm_all_sets_one_trigger_per_call_that_has_both_events() {
        let dir = tempfile::tempdir().unwrap();
        let tfs = crate::tracefs::TraceFs::at(dir.path());
        let inst_dir = dir.path().join("instances/oci_ftrace_t");
        for e in ["sys_enter_read", "sys_exit_read", "sys_enter_mkdir", "sys_exit_mkdir", "sys_exit_futex"] {
            std::fs::create_dir_all(inst_dir.join("events/syscalls").join(e)).unwrap();
            std::fs::write(inst_dir.join("events/syscalls").join(e).join("format"), "").unwrap();
            std::fs::write(inst_dir.join("events/syscalls").join(e).join("trigger"), "").unwrap();
        }
        let inst = tfs.open_instance("oci_ftrace_t").unwrap().unwrap();
        assert_eq!(arm_all(&inst, "comm != \"crun\"").unwrap(), 2);
        let read = std::fs::read_to_string(inst_dir.join("events/syscalls/sys_exit_read/trigger")).unwrap();
        assert_eq!(read, "disable_event:syscalls:sys_enter_read if comm != \"crun\"");
        // futex has no enter event in this tree: skipped.
        assert_eq!(std::fs::read_to_string(inst_dir.join("events/syscalls/sys_exit_futex/trigger")).unwrap(), "");
    }
}
