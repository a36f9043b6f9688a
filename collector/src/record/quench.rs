//! The in-kernel quench of profile mode: the event of each hot syscall
//! switches itself off in the kernel the first time the container's own
//! code makes that call, so a container that is busy from its first instant
//! cannot fill the ring buffer, however late the recorder reads.
//!
//! How: on `sys_exit_X`, the trigger
//! `disable_event:syscalls:sys_enter_X if comm != "<runtime comm>"`.
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
//! own tasks, which keep the comm they had at prestart (`runc:[2:INIT]`,
//! `crun`, …) until they exec the workload, and the condition skips them.
//! The workload's calls all come after that exec, so after the window
//! opened. A runtime's own calls after the filter install (runc's `capset`,
//! `setgroups`, …) are in the window: they are recorded, they just do not
//! quench, and there are few of them.
//!
//! Checkpoint episodes: CRIU's parasite runs in the container's tasks under
//! their comm, so a call it makes first switches that call's event off. The
//! recorder switches such events back on once it sees the episode
//! (`profile::episode`, "restored"); in the kernel the trigger stays, so
//! the event quenches itself again at the workload's next call.
//!
//! Why only the hot set ([`HOT`]) and not every syscall: on kernels before
//! 7.0 each trigger is freed after an RCU grace period with `event_mutex`
//! held, 60-150 ms each on 6.x (measured here on 6.18: 1,080 triggers made
//! the rmdir take 77 s, and every other instance's mkdir waited for it). A
//! trigger per syscall (360) would stall every container start on the node
//! for tens of seconds at each container's end. The hot set holds the calls
//! a loop can make millions of times a second; the rest are switched off
//! from user space as before, and the buffer keeps its oldest records when
//! full (`overwrite` off), so a flood of an unlisted call can only drop
//! later records, counted, and the summary then says `complete: false`.

use super::Result;
use crate::tracefs::Instance;

/// Syscalls whose events switch themselves off in the kernel: the calls a
/// busy loop makes at a million or more a second from a container's first
/// instant. Each costs one trigger write at arming (~35 µs) and two grace
/// periods at removal (~75 ms of the kernel's `event_mutex`, which every
/// container start needs too), so the list is kept to the loops seen in
/// practice: with 37 entries, back-to-back container starts waited 100 ms
/// each and removals fell behind at one start a second.
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

/// The trigger condition that leaves out the runtime's own tasks: their
/// comm at prestart. The kernel compares `!=` exactly (globs need `~`), and
/// a quoted string ends at its quote, with no escapes: a comm with a quote,
/// a backslash or a control character gets no condition (`None`), nor does
/// a missing one, and the quench then stays in user space.
pub fn condition(runtime_comm: Option<&str>) -> Option<String> {
    let comm = runtime_comm?;
    let comm = comm.strip_suffix('\n').unwrap_or(comm);
    let plain = |c: char| c.is_ascii_graphic() && !"\"'\\".contains(c) || c == ' ';
    if comm.is_empty() || !comm.chars().all(plain) {
        return None;
    }
    Some(format!("comm != \"{comm}\""))
}

/// The trigger for one hot syscall under `condition`.
pub fn trigger(syscall: &str, condition: &str) -> String {
    format!("disable_event:syscalls:sys_enter_{syscall} if {condition}")
}

/// True if `syscall`'s exit event drives its quench: it must stay on until
/// the call has been seen.
pub fn is_hot(syscall: &str) -> bool {
    HOT.contains(&syscall)
}

/// The exit event that quenches the enter event `enter` in the kernel, if
/// its call is one of [`HOT`].
pub fn exit_event(enter: &str) -> Option<String> {
    enter.strip_prefix("sys_enter_").filter(|s| is_hot(s)).map(|s| format!("sys_exit_{s}"))
}

/// Sets the quench triggers of [`HOT`] on `inst` and returns how many were
/// set. Without a usable runtime comm ([`condition`]), nothing is set: the
/// runtime's setup could not be told from the workload. A call with no event on this kernel is
/// skipped.
pub fn arm(inst: &Instance, runtime_comm: Option<&str>) -> Result<usize> {
    let Some(condition) = condition(runtime_comm) else {
        tracing::warn!("no runtime comm: the quench stays in user space");
        return Ok(0);
    };
    let mut armed = 0;
    for syscall in HOT {
        let exit = format!("sys_exit_{syscall}");
        let has = |e: &str| inst.path().join("events/syscalls").join(e).is_dir();
        if !has(&exit) || !has(&format!("sys_enter_{syscall}")) {
            continue;
        }
        inst.add_trigger("syscalls", &exit, &trigger(syscall, &condition))?;
        armed += 1;
    }
    Ok(armed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_leaves_the_runtime_out_and_cannot_be_steered() {
        assert_eq!(condition(Some("runc:[2:INIT]")).as_deref(), Some("comm != \"runc:[2:INIT]\""));
        assert_eq!(condition(Some("crun\n")).as_deref(), Some("comm != \"crun\""));
        // A quote or backslash could end the string or be read another way.
        assert_eq!(condition(Some("a\" || 1")), None);
        assert_eq!(condition(Some("a\\b")), None);
        assert_eq!(condition(Some("tab\there")), None);
        assert_eq!(condition(Some("")), None);
        assert_eq!(condition(None), None);
    }

    #[test]
    fn triggers_disable_the_enter_event_of_their_own_call() {
        assert_eq!(
            trigger("read", "comm != \"crun\""),
            "disable_event:syscalls:sys_enter_read if comm != \"crun\""
        );
        assert!(is_hot("write") && !is_hot("mkdir"));
        assert_eq!(exit_event("sys_enter_read").as_deref(), Some("sys_exit_read"));
        assert_eq!(exit_event("sys_enter_mkdir"), None);
        let unique: std::collections::BTreeSet<_> = HOT.iter().collect();
        assert_eq!(unique.len(), HOT.len(), "duplicates in HOT");
    }

    #[test]
    fn arm_sets_one_trigger_per_hot_call_that_has_events() {
        let dir = tempfile::tempdir().unwrap();
        let tfs = crate::tracefs::TraceFs::at(dir.path());
        let inst_dir = dir.path().join("instances/oci_ftrace_t");
        for e in ["sys_enter_read", "sys_exit_read", "sys_enter_write", "sys_exit_write", "sys_exit_futex"] {
            std::fs::create_dir_all(inst_dir.join("events/syscalls").join(e)).unwrap();
            std::fs::write(inst_dir.join("events/syscalls").join(e).join("trigger"), "").unwrap();
        }
        let inst = tfs.open_instance("oci_ftrace_t").unwrap().unwrap();
        assert_eq!(arm(&inst, Some("runc:[2:INIT]")).unwrap(), 2);
        let read = std::fs::read_to_string(inst_dir.join("events/syscalls/sys_exit_read/trigger")).unwrap();
        assert_eq!(read, "disable_event:syscalls:sys_enter_read if comm != \"runc:[2:INIT]\"");
        // futex has no enter event in this tree: skipped.
        assert_eq!(std::fs::read_to_string(inst_dir.join("events/syscalls/sys_exit_futex/trigger")).unwrap(), "");
        assert_eq!(arm(&inst, None).unwrap(), 0);
    }
}
