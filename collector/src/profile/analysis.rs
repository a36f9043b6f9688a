//! Aggregation of a trace window: per-syscall and per-process counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names::name_of;
use super::window::{find_window, Window};
use crate::trace::{Event, Record};

/// What the container did inside the recording window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// Calls per seccomp name.
    pub syscalls: BTreeMap<String, u64>,
    /// Calls whose number has no name in the native table. They cannot be
    /// put in a profile by name, so they are reported, never dropped.
    pub unnamed: BTreeMap<i64, u64>,
    /// Per process (thread group), keyed by host tgid.
    pub processes: BTreeMap<i32, Process>,
    pub events: EventCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Records in the whole trace.
    pub total: u64,
    /// Records inside the window.
    pub in_window: u64,
    /// Syscall entries inside the window.
    pub syscalls_in_window: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub tgid: i32,
    pub comm: String,
    /// The last path this process exec'd, if it exec'd inside the trace.
    pub exe: Option<String>,
    /// Host pid of the process that forked it, if the fork was traced.
    pub parent: Option<i32>,
    pub syscalls: BTreeMap<String, u64>,
    pub unnamed: BTreeMap<i64, u64>,
    pub total: u64,
}

/// Finds the window for a container with host init pid `init_pid`, then
/// aggregates what lies inside it.
pub fn analyze(records: &[Record], init_pid: i32) -> (Window, Analysis) {
    let window = find_window(records, init_pid);
    let analysis = aggregate(records, &window);
    (window, analysis)
}

fn aggregate(records: &[Record], window: &Window) -> Analysis {
    let mut a = Analysis::default();
    a.events.total = records.len() as u64;
    // Process identity is learnt from the whole trace (a fork before the
    // window still names a process that acts inside it).
    let mut parents: BTreeMap<i32, i32> = BTreeMap::new();
    let mut fork_comms: BTreeMap<i32, String> = BTreeMap::new();
    let mut exes: BTreeMap<i32, String> = BTreeMap::new();
    // The exit event carries the comm as it was then; the printed comm is
    // only tracefs's cached guess.
    let mut exit_comms: BTreeMap<i32, String> = BTreeMap::new();
    for r in records {
        match &r.event {
            Event::Fork { parent_pid, child_pid, child_comm } => {
                parents.entry(*child_pid).or_insert(*parent_pid);
                fork_comms.entry(*child_pid).or_insert_with(|| child_comm.clone());
            }
            Event::Exec { filename, .. } => {
                exes.insert(r.process(), filename.clone());
            }
            Event::Exit { pid, comm, .. } if !comm.is_empty() => {
                exit_comms.insert(*pid, comm.clone());
            }
            _ => {}
        }
    }
    let in_window = records.get(window.start..).unwrap_or(&[]);
    a.events.in_window = in_window.len() as u64;
    // Only tasks under the filter count: the task that installed it (or
    // would have) and whatever it forks from then on. A thread that existed
    // before the install is not filtered (no TSYNC), so its calls stay out.
    let mut filtered: Option<std::collections::BTreeSet<i32>> = window.opener.map(|pid| [pid].into());
    for r in in_window {
        if let (Some(set), Event::Fork { parent_pid, child_pid, .. }) = (filtered.as_mut(), &r.event) {
            if set.contains(parent_pid) || set.contains(&r.pid) {
                set.insert(*child_pid);
            }
        }
        if filtered.as_ref().is_some_and(|set| !set.contains(&r.pid)) {
            continue;
        }
        let Event::SysEnter { nr, .. } = r.event else { continue };
        a.events.syscalls_in_window += 1;
        let tgid = r.process();
        let p = a.processes.entry(tgid).or_insert_with(|| Process {
            tgid,
            // Busybox applets exec /proc/self/exe, so the exec path is a
            // poor name; the exit comm is the best one.
            comm: if let Some(c) = exit_comms.get(&tgid) {
                c.clone()
            } else if r.comm.is_empty() || r.comm == "<...>" {
                exes.get(&tgid)
                    .map(|e| basename(e).to_string())
                    .or_else(|| fork_comms.get(&tgid).cloned())
                    .unwrap_or_default()
            } else {
                r.comm.clone()
            },
            exe: exes.get(&tgid).cloned(),
            parent: parents.get(&tgid).copied(),
            ..Default::default()
        });
        p.total += 1;
        match name_of(nr) {
            Some(name) => {
                *a.syscalls.entry(name.to_string()).or_default() += 1;
                *p.syscalls.entry(name.to_string()).or_default() += 1;
            }
            None => {
                *a.unnamed.entry(nr).or_default() += 1;
                *p.unnamed.entry(nr).or_default() += 1;
            }
        }
    }
    a
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscalls::Sysno;

    fn rec(pid: i32, tgid: i32, event: Event) -> Record {
        let comm = if pid == 11 { "<...>" } else { "latest" };
        Record { pid, tgid: Some(tgid), comm: comm.into(), cpu: 0, ts_ns: 0, event }
    }
    fn sys(pid: i32, tgid: i32, nr: i64) -> Record {
        rec(pid, tgid, Event::SysEnter { nr, args: [0; 6] })
    }

    #[test]
    fn counts_by_name_process_and_keeps_unnamed() {
        let recs = vec![
            sys(10, 10, Sysno::mount.id().into()),
            sys(10, 10, Sysno::prctl.id().into()), // PR_GET_PDEATHSIG is arg0 = 0 here: not a marker
            rec(10, 10, Event::Exec { filename: "/bin/sh".into(), pid: 10, old_pid: 10 }),
            sys(10, 10, Sysno::read.id().into()),
            rec(10, 10, Event::Fork { parent_pid: 10, child_pid: 11, child_comm: "sh".into() }),
            sys(11, 11, Sysno::read.id().into()),
            sys(12, 11, Sysno::write.id().into()), // a thread of 11
            sys(11, 11, 99_999),
            rec(10, 10, Event::Exit { pid: 10, comm: "cat".into(), group_dead: Some(true) }),
        ];
        let (window, a) = analyze(&recs, 10);
        assert_eq!(window.rule, crate::profile::Rule::FirstEvent);
        assert_eq!(a.syscalls.get("read"), Some(&2));
        assert_eq!(a.syscalls.get("mount"), Some(&1));
        assert_eq!(a.unnamed.get(&99_999), Some(&1));
        let p11 = &a.processes[&11];
        assert_eq!((p11.comm.as_str(), p11.parent, p11.total), ("sh", Some(10), 3));
        assert_eq!(a.processes[&10].exe.as_deref(), Some("/bin/sh"));
        assert_eq!(a.processes[&10].comm, "cat");
        assert_eq!(a.events, EventCounts { total: 9, in_window: 9, syscalls_in_window: 6 });
    }

    #[test]
    fn only_tasks_under_the_filter_count() {
        let install = Event::SysEnter { nr: Sysno::prctl.id().into(), args: [22, 2, 0, 0, 0, 0] };
        let recs = vec![
            rec(10, 10, Event::Fork { parent_pid: 10, child_pid: 20, child_comm: "old".into() }),
            rec(10, 10, install),
            sys(20, 10, Sysno::epoll_pwait.id().into()), // thread from before the install
            sys(10, 10, Sysno::capset.id().into()),
            rec(10, 10, Event::Fork { parent_pid: 10, child_pid: 30, child_comm: "new".into() }),
            sys(30, 30, Sysno::wait4.id().into()),
            rec(30, 30, Event::Fork { parent_pid: 30, child_pid: 31, child_comm: "grandchild".into() }),
            sys(31, 31, Sysno::getpid.id().into()),
        ];
        let (window, a) = analyze(&recs, 10);
        assert_eq!(window.opener, Some(10));
        let names: Vec<&str> = a.syscalls.keys().map(String::as_str).collect();
        assert_eq!(names, ["capset", "getpid", "wait4"]);
    }
}
