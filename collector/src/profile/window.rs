//! The recording window: which part of a trace the profile must allow.
//!
//! A seccomp profile governs everything after the runtime installs it, so
//! the profile is built from exactly that: the container's calls after the
//! init task's `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)` or
//! `seccomp(SECCOMP_SET_MODE_FILTER)`. An unconfined recording has no such
//! call, so the window opens where the runtime *would* have installed the
//! filter: right after its last distinctive call before that point, taken
//! from a confined run of the same runtime ([`RUNTIME_MARKERS`]). Only when
//! neither is found does the window open at the first event.

use serde::{Deserialize, Serialize};
use syscalls::Sysno;

const PR_GET_PDEATHSIG: u64 = 2;
const PR_SET_SECCOMP: u64 = 22;
const SECCOMP_MODE_FILTER: u64 = 2;
const SECCOMP_SET_MODE_FILTER: u64 = 1;

/// A runtime's last distinctive call on the init task before it installs
/// the seccomp filter, seen in a confined run of that runtime.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeMarker {
    pub runtime: &'static str,
    pub syscall: Sysno,
    /// Required value of the first argument, if any.
    pub arg0: Option<u64>,
    pub describe: &'static str,
}

/// One row per runtime; `runtime` is also the prefix of the init task's
/// comm at prestart (`runc:[2:INIT]`, `crun`), which picks the row.
///
/// - runc 1.1: `prctl(PR_GET_PDEATHSIG)` comes right before
///   `prctl(PR_SET_SECCOMP)` in `runc init` (verified: an unconfined run cut
///   there gives the same set as a confined run cut at the install).
/// - crun 1.21: `umask` is its last call before it reads the compiled
///   filter from its fd (`lseek`, `fstat`, `read`) and installs it with
///   `seccomp(SECCOMP_SET_MODE_FILTER)`; unconfined, it goes from `umask`
///   straight on to `prctl(PR_CAPBSET_READ)`. Same check: both cuts give
///   the same set (`crun-*.trace`). runc calls `umask` too, earlier, so
///   without the runtime's name the last marker before the exec wins.
pub const RUNTIME_MARKERS: &[RuntimeMarker] = &[
    RuntimeMarker { runtime: "runc", syscall: Sysno::prctl, arg0: Some(PR_GET_PDEATHSIG), describe: "prctl(PR_GET_PDEATHSIG)" },
    RuntimeMarker { runtime: "crun", syscall: Sysno::umask, arg0: None, describe: "umask" },
];

/// Calls a runtime's own code may or may not make between installing the
/// filter and exec'ing the workload, from run to run. runc is Go: its
/// scheduler can park or wake the init thread (`futex`), back off
/// (`nanosleep`, `sched_yield`) or preempt it with a signal (`rt_sigreturn`)
/// at any point, and a run that happened not to do so must not give a
/// profile that makes the next start fail. Its allocator can also grow the
/// heap there (`mmap`, through libc since runc links with cgo). They are
/// allowed whether seen or not, and the summary says which were added
/// unseen. (Seen here: a confined runc run without `futex` and an
/// unconfined one with it; `mmap` by `runc:[2:INIT]` after the install in
/// 1 of 33 re-runs of a busybox workload under a logging profile, with the
/// guest's CPUs busy, 0 of 40 idle: under the generated profile that run
/// failed to start, "cannot start a container that has stopped". A
/// static busybox workload never calls `mmap` itself, so only this
/// allowance lets it in.)
pub const RUNTIME_ALLOWANCE: &[(&str, &[&str])] =
    &[("runc", &["futex", "nanosleep", "sched_yield", "rt_sigreturn", "mmap"])];

/// The calls [`RUNTIME_ALLOWANCE`] adds for the runtime whose name starts
/// the init task's comm (none for an unknown runtime).
pub fn runtime_allowance(comm: Option<&str>) -> &'static [&'static str] {
    known_runtime(comm)
        .and_then(|r| RUNTIME_ALLOWANCE.iter().find(|(name, _)| *name == r))
        .map(|(_, calls)| *calls)
        .unwrap_or(&[])
}

/// Which rule opened the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Rule {
    /// The runtime installed a filter; the window opens right after it.
    FilterInstall { call: String, pid: i32, ts_ns: u64 },
    /// No filter was installed; the window opens after the runtime's marker.
    RuntimeMarker { runtime: String, call: String, pid: i32, ts_ns: u64 },
    /// Neither was found (e.g. the ring buffer lost the start).
    FirstEvent,
}

impl Rule {
    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            Rule::FilterInstall { call, pid, .. } => format!("after the filter install {call} by pid {pid}"),
            Rule::RuntimeMarker { runtime, call, pid, .. } => {
                format!("unconfined run: after {runtime}'s marker {call} by pid {pid}")
            }
            Rule::FirstEvent => "from the first event (no filter install and no runtime marker found)".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub rule: Rule,
    /// The task that opened it (installed the filter, or made the marker
    /// call); `None` when the window is the whole trace.
    pub opener: Option<i32>,
}

/// The filter install, if this call is one.
pub fn filter_install(nr: i64, args: &[u64; 6]) -> Option<&'static str> {
    if nr == i64::from(Sysno::prctl.id()) && args[0] == PR_SET_SECCOMP && args[1] == SECCOMP_MODE_FILTER {
        return Some("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)");
    }
    if nr == i64::from(Sysno::seccomp.id()) && args[0] == SECCOMP_SET_MODE_FILTER {
        return Some("seccomp(SECCOMP_SET_MODE_FILTER)");
    }
    None
}

/// The runtime of a known marker row whose name starts the init task's
/// comm (`runc:[2:INIT]` → runc), if any.
pub fn known_runtime(comm: Option<&str>) -> Option<&'static str> {
    let comm = comm?;
    RUNTIME_MARKERS.iter().map(|m| m.runtime).find(|r| comm.starts_with(r))
}

/// The runtime marker this call is, if any: only `runtime`'s row when the
/// runtime is known, every row otherwise.
pub fn runtime_marker(nr: i64, args: &[u64; 6], runtime: Option<&str>) -> Option<&'static RuntimeMarker> {
    RUNTIME_MARKERS
        .iter()
        .filter(|m| !matches!(runtime, Some(r) if r != m.runtime))
        .find(|m| i64::from(m.syscall.id()) == nr && !matches!(m.arg0, Some(a) if a != args[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runc_gets_an_allowance() {
        assert!(runtime_allowance(Some("runc:[2:INIT]")).contains(&"futex"));
        assert!(runtime_allowance(Some("runc:[2:INIT]")).contains(&"mmap"), "the flake of the 6.12 VM");
        // Every name must be one the seccomp writer knows.
        for name in runtime_allowance(Some("runc")) {
            assert!(name.parse::<Sysno>().is_ok(), "{name}");
        }
        assert!(runtime_allowance(Some("crun")).is_empty());
        assert!(runtime_allowance(None).is_empty());
    }
    use crate::profile::analyze;
    use crate::trace::{Event, Record};

    fn call(pid: i32, ts: u64, sysno: Sysno, args: [u64; 6]) -> Record {
        Record { pid, tgid: Some(pid), comm: "t".into(), cpu: 0, ts_ns: ts, event: Event::SysEnter { nr: sysno.id().into(), args } }
    }

    fn exec(pid: i32, ts: u64) -> Record {
        Record { pid, tgid: Some(pid), comm: "t".into(), cpu: 0, ts_ns: ts,
                 event: Event::Exec { filename: "/bin/sh".into(), pid, old_pid: pid } }
    }

    fn names(recs: &[Record]) -> (Window, Vec<String>) {
        let (w, a) = analyze(recs, 10);
        (w, a.syscalls.keys().cloned().collect())
    }

    #[test]
    fn opens_after_prctl_install() {
        let recs = vec![
            call(10, 1, Sysno::mount, [0; 6]),
            call(10, 2, Sysno::prctl, [PR_GET_PDEATHSIG, 0, 0, 0, 0, 0]),
            call(10, 3, Sysno::prctl, [PR_SET_SECCOMP, SECCOMP_MODE_FILTER, 0, 0, 0, 0]),
            call(10, 4, Sysno::capset, [0; 6]),
        ];
        let (w, n) = names(&recs);
        assert_eq!(n, ["capset"]);
        assert!(matches!(w.rule, Rule::FilterInstall { ref call, pid: 10, ts_ns: 3 } if call.starts_with("prctl")));
    }

    #[test]
    fn opens_after_seccomp_install() {
        let recs = vec![
            call(10, 1, Sysno::prctl, [PR_GET_PDEATHSIG, 0, 0, 0, 0, 0]),
            call(10, 2, Sysno::seccomp, [SECCOMP_SET_MODE_FILTER, 0, 0, 0, 0, 0]),
            call(10, 3, Sysno::execve, [0; 6]),
        ];
        let (w, n) = names(&recs);
        assert_eq!(n, ["execve"]);
        assert!(matches!(w.rule, Rule::FilterInstall { ref call, .. } if call.starts_with("seccomp")));
    }

    #[test]
    fn unconfined_uses_runtime_marker() {
        let recs = vec![
            call(10, 1, Sysno::mount, [0; 6]),
            call(10, 2, Sysno::prctl, [PR_GET_PDEATHSIG, 0, 0, 0, 0, 0]),
            call(10, 3, Sysno::capset, [0; 6]),
            exec(10, 4),
            // The workload's own filter must not move the window.
            call(10, 5, Sysno::prctl, [PR_SET_SECCOMP, SECCOMP_MODE_FILTER, 0, 0, 0, 0]),
        ];
        let (w, n) = names(&recs);
        assert_eq!(n, ["capset", "prctl"]);
        assert!(matches!(w.rule, Rule::RuntimeMarker { ref runtime, .. } if runtime == "runc"));
    }

    #[test]
    fn runtime_comm_picks_the_marker_row() {
        assert_eq!(known_runtime(Some("runc:[2:INIT]")), Some("runc"));
        assert_eq!(known_runtime(Some("crun")), Some("crun"));
        assert_eq!(known_runtime(Some("youki")), None);
        assert_eq!(known_runtime(None), None);
        let umask = [0o22, 0, 0, 0, 0, 0];
        let pdeathsig = [PR_GET_PDEATHSIG, 0, 0, 0, 0, 0];
        let (nr_umask, nr_prctl) = (i64::from(Sysno::umask.id()), i64::from(Sysno::prctl.id()));
        assert!(runtime_marker(nr_umask, &umask, Some("runc")).is_none());
        assert_eq!(runtime_marker(nr_umask, &umask, Some("crun")).map(|m| m.runtime), Some("crun"));
        assert_eq!(runtime_marker(nr_umask, &umask, None).map(|m| m.runtime), Some("crun"));
        assert!(runtime_marker(nr_prctl, &pdeathsig, Some("crun")).is_none());
        assert_eq!(runtime_marker(nr_prctl, &pdeathsig, None).map(|m| m.runtime), Some("runc"));
    }

    #[test]
    fn last_marker_before_the_exec_wins() {
        // runc's setup: umask (crun's marker) first, then its own.
        let recs = vec![
            call(10, 1, Sysno::umask, [0o22, 0, 0, 0, 0, 0]),
            call(10, 2, Sysno::mount, [0; 6]),
            call(10, 3, Sysno::prctl, [PR_GET_PDEATHSIG, 0, 0, 0, 0, 0]),
            call(10, 4, Sysno::capset, [0; 6]),
            exec(10, 5),
        ];
        let (w, n) = names(&recs);
        assert_eq!(n, ["capset"]);
        assert!(matches!(w.rule, Rule::RuntimeMarker { ref runtime, ts_ns: 3, .. } if runtime == "runc"));
    }

    #[test]
    fn other_tasks_and_missing_markers_fall_back_to_first_event() {
        let recs = vec![
            call(11, 1, Sysno::prctl, [PR_SET_SECCOMP, SECCOMP_MODE_FILTER, 0, 0, 0, 0]),
            call(10, 2, Sysno::prctl, [PR_SET_SECCOMP, 1, 0, 0, 0, 0]), // strict mode, not a filter
            call(10, 3, Sysno::read, [0; 6]),
        ];
        let (w, n) = names(&recs);
        assert_eq!(w, Window { rule: Rule::FirstEvent, opener: None });
        assert_eq!(n, ["prctl", "read"]);
    }
}
