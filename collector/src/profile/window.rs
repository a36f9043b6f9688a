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

use crate::trace::{Event, Record};

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
    /// Required value of the first argument.
    pub arg0: u64,
    pub describe: &'static str,
}

/// One row per runtime. runc 1.1: `prctl(PR_GET_PDEATHSIG)` comes right
/// before `prctl(PR_SET_SECCOMP)` in `runc init` (verified: an unconfined
/// run cut there gives the same set as a confined run cut at the install).
pub const RUNTIME_MARKERS: &[RuntimeMarker] = &[RuntimeMarker {
    runtime: "runc",
    syscall: Sysno::prctl,
    arg0: PR_GET_PDEATHSIG,
    describe: "prctl(PR_GET_PDEATHSIG)",
}];

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
    /// Index of the first record inside the window.
    pub start: usize,
    /// The task that opened it (installed the filter, or made the marker
    /// call); `None` when the window is the whole trace.
    pub opener: Option<i32>,
}

/// Finds the window in time-ordered `records` of a container whose init
/// task has host pid `init_pid`. Only the init task's calls before its
/// first exec can open the window, so a workload that installs its own
/// filter later does not move it.
pub fn find_window(records: &[Record], init_pid: i32) -> Window {
    let mut marker: Option<(usize, &RuntimeMarker, &Record)> = None;
    for (i, r) in records.iter().enumerate() {
        if r.pid != init_pid {
            continue;
        }
        match &r.event {
            Event::Exec { .. } => break,
            Event::SysEnter { nr, args } => {
                if let Some(call) = filter_install(*nr, args) {
                    let rule = Rule::FilterInstall { call: call.to_string(), pid: r.pid, ts_ns: r.ts_ns };
                    return Window { rule, start: i + 1, opener: Some(r.pid) };
                }
                if marker.is_none() {
                    if let Some(m) = RUNTIME_MARKERS
                        .iter()
                        .find(|m| i64::from(m.syscall.id()) == *nr && args[0] == m.arg0)
                    {
                        marker = Some((i, m, r));
                    }
                }
            }
            _ => {}
        }
    }
    match marker {
        Some((i, m, r)) => Window {
            rule: Rule::RuntimeMarker {
                runtime: m.runtime.to_string(),
                call: m.describe.to_string(),
                pid: r.pid,
                ts_ns: r.ts_ns,
            },
            start: i + 1,
            opener: Some(r.pid),
        },
        None => Window { rule: Rule::FirstEvent, start: 0, opener: None },
    }
}

fn filter_install(nr: i64, args: &[u64; 6]) -> Option<&'static str> {
    if nr == i64::from(Sysno::prctl.id()) && args[0] == PR_SET_SECCOMP && args[1] == SECCOMP_MODE_FILTER {
        return Some("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)");
    }
    if nr == i64::from(Sysno::seccomp.id()) && args[0] == SECCOMP_SET_MODE_FILTER {
        return Some("seccomp(SECCOMP_SET_MODE_FILTER)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(pid: i32, ts: u64, sysno: Sysno, args: [u64; 6]) -> Record {
        Record { pid, tgid: Some(pid), comm: "t".into(), cpu: 0, ts_ns: ts, event: Event::SysEnter { nr: sysno.id().into(), args } }
    }

    fn exec(pid: i32, ts: u64) -> Record {
        Record { pid, tgid: Some(pid), comm: "t".into(), cpu: 0, ts_ns: ts,
                 event: Event::Exec { filename: "/bin/sh".into(), pid, old_pid: pid } }
    }

    #[test]
    fn opens_after_prctl_install() {
        let recs = vec![
            call(10, 1, Sysno::mount, [0; 6]),
            call(10, 2, Sysno::prctl, [PR_GET_PDEATHSIG, 0, 0, 0, 0, 0]),
            call(10, 3, Sysno::prctl, [PR_SET_SECCOMP, SECCOMP_MODE_FILTER, 0, 0, 0, 0]),
            call(10, 4, Sysno::capset, [0; 6]),
        ];
        let w = find_window(&recs, 10);
        assert_eq!(w.start, 3);
        assert!(matches!(w.rule, Rule::FilterInstall { ref call, pid: 10, ts_ns: 3 } if call.starts_with("prctl")));
    }

    #[test]
    fn opens_after_seccomp_install() {
        let recs = vec![
            call(10, 1, Sysno::prctl, [PR_GET_PDEATHSIG, 0, 0, 0, 0, 0]),
            call(10, 2, Sysno::seccomp, [SECCOMP_SET_MODE_FILTER, 0, 0, 0, 0, 0]),
            call(10, 3, Sysno::execve, [0; 6]),
        ];
        let w = find_window(&recs, 10);
        assert_eq!(w.start, 2);
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
        let w = find_window(&recs, 10);
        assert_eq!(w.start, 2);
        assert!(matches!(w.rule, Rule::RuntimeMarker { ref runtime, .. } if runtime == "runc"));
    }

    #[test]
    fn other_tasks_and_missing_markers_fall_back_to_first_event() {
        let recs = vec![
            call(11, 1, Sysno::prctl, [PR_SET_SECCOMP, SECCOMP_MODE_FILTER, 0, 0, 0, 0]),
            call(10, 2, Sysno::prctl, [PR_SET_SECCOMP, 1, 0, 0, 0, 0]), // strict mode, not a filter
            call(10, 3, Sysno::read, [0; 6]),
        ];
        assert_eq!(find_window(&recs, 10), Window { rule: Rule::FirstEvent, start: 0, opener: None });
    }
}
