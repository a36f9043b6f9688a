//! Checkpoint episodes: the stretches of a trace in which CRIU's parasite
//! code, not the workload, ran inside the container's tasks.
//!
//! `podman container checkpoint --leave-running` (and the kubelet's
//! checkpoint API) freeze the container, seize every task with ptrace and
//! make each one run CRIU's code: injected calls (`memfd_create`, `mmap`,
//! `munmap`, …) and a parasite that talks to CRIU over a socket and dumps
//! memory (`vmsplice`), descriptors (`fcntl`), signal actions
//! (`rt_sigaction`) and credentials. The trace attributes every one of those
//! calls to the task. CRIU suspends the container's seccomp filter for them
//! (`PTRACE_O_SUSPEND_SECCOMP`), so a profile must not allow them.
//!
//! At every ptrace stop the stopping task sends its tracer a SIGCHLD
//! (`CLD_TRAPPED` or `CLD_STOPPED`), recorded in the container's own trace
//! with the tracer's pid and comm (`record::STOP_EVENT`). The rule
//! (measured in docs/checkpoint-episodes.md):
//!
//! - a task's calls between two of its stops by the same outside tracer
//!   named `criu` ran under CRIU's control: they are excluded;
//! - calls after its last stop are the workload's again (the first is
//!   usually the call the checkpoint interrupted, restarted).
//!
//! Which stop is the last is known only later, so a task's calls after a
//! stop are held until its next stop (excluded), a stop by another CRIU,
//! the end of the trace, or [`SETTLE_NS`] of trace time without a stop in
//! the episode (all three: released, counted as the workload's). Nothing
//! here reads a clock: the same records give the same result live and
//! offline. Stops reported to anyone else (a debugger, strace, a parent
//! outside the container) are counted and otherwise ignored: there, the
//! calls between stops are the workload's own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::names::name_of;
use crate::trace::{Event, Record};

const SIGCHLD: i32 = 17;
const CLD_TRAPPED: i32 = 4;
const CLD_STOPPED: i32 = 5;

/// Comms of the tracers whose stops make a checkpoint episode: CRIU's
/// binary, whoever runs it (runc, crun's `criu swrk`, CRI-O through runc).
pub const CHECKPOINTERS: &[&str] = &["criu"];

/// An episode is taken as over once this much trace time passes without a
/// stop of any of its tasks. Measured on small containers: a task's
/// consecutive stops come within 50 ms, 165 ms while its parasite dumps
/// 200 MB; CRIU detaches 100–170 ms after the last stop. The margin is wide
/// because held calls cost nothing (their events are switched off while
/// held, see `Aggregator`), whereas settling too early would count CRIU's
/// calls as the workload's ([`Episode::late_stops`] says when it happened).
pub const SETTLE_NS: u64 = 30_000_000_000;

/// One checkpoint episode, as summary.json and the report show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// The tracer: CRIU's host pid and comm.
    pub tracer_pid: i32,
    pub tracer_comm: String,
    /// Trace-clock times of the first and the last ptrace stop.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Ptrace stops recorded.
    pub stops: u64,
    /// The container's tasks CRIU stopped.
    pub tasks: Vec<EpisodeTask>,
    /// Calls kept out of the profile, by syscall name (`#nr` without one).
    /// In profile mode a call already switched off is not recorded, so
    /// these are the calls that would otherwise have entered the profile.
    pub excluded: BTreeMap<String, u64>,
    pub excluded_calls: u64,
    /// Each task's first recorded call after its last stop: usually the
    /// call the checkpoint interrupted, restarted (`restart_syscall`, or the
    /// call itself). It stays in the profile: a restored container makes it
    /// too.
    pub resumed: Vec<Resumed>,
    /// Stops by this tracer that came after the episode had been taken as
    /// over ([`SETTLE_NS`]): calls counted in between may be CRIU's.
    #[serde(default)]
    pub late_stops: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeTask {
    pub pid: i32,
    pub tgid: i32,
    pub comm: String,
    pub stops: u64,
    /// Its calls kept out of the profile.
    pub excluded: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    pub pid: i32,
    pub comm: String,
    pub syscall: String,
    pub ts_ns: u64,
    /// The profile did not have this call before.
    pub new: bool,
}

/// A ptrace stop of a task, from the SIGCHLD it sent its tracer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub task: i32,
    pub tracer_pid: i32,
    pub tracer_comm: String,
    pub ts_ns: u64,
}

/// The ptrace stop this record reports, if it is one. (A job-control stop
/// of an untraced task is reported the same way, to its parent.)
pub fn stop_of(r: &Record) -> Option<Stop> {
    match &r.event {
        Event::Signal { sig: SIGCHLD, code, pid, comm } if matches!(*code, CLD_TRAPPED | CLD_STOPPED) => {
            Some(Stop { task: r.pid, tracer_pid: *pid, tracer_comm: comm.clone(), ts_ns: r.ts_ns })
        }
        _ => None,
    }
}

/// Whether a stop belongs to a checkpoint: reported to CRIU, which runs
/// outside the container (a CRIU inside it is part of the workload, and
/// its tracees run under the container's filter).
pub fn is_checkpoint(stop: &Stop, tracer_in_container: bool) -> bool {
    !tracer_in_container && CHECKPOINTERS.contains(&stop.tracer_comm.as_str())
}

/// What a held record was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Call {
    /// A syscall entry, by number.
    Enter(i64),
    /// A failed syscall exit (full mode), by number and return value.
    Failure { nr: i64, ret: i64 },
}

/// Records of one kind held for one task, folded: memory stays bounded by
/// tasks and syscalls however long a hold lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub pid: i32,
    pub tgid: i32,
    pub call: Call,
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// What a stop changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Held records that turned out to be the workload's: count them.
    pub released: Vec<Held>,
    /// Syscall entries excluded as CRIU's, by number (with their counts).
    pub excluded: Vec<(i64, u64)>,
}

#[derive(Clone, Debug, Default)]
struct Member {
    tgid: i32,
    stops: u64,
    excluded: u64,
    held: BTreeMap<Call, Held>,
}

#[derive(Clone, Debug)]
struct Tracked {
    tracer_pid: i32,
    tracer_comm: String,
    start_ns: u64,
    last_stop_ns: u64,
    stops: u64,
    members: BTreeMap<i32, Member>,
    excluded: BTreeMap<i64, u64>,
    /// pid, tgid, number, time, new.
    resumed: Vec<(i32, i32, i64, u64, bool)>,
    late_stops: u64,
    /// When it was taken as over; `None` while open.
    settled_ns: Option<u64>,
}

/// Follows episodes through a time-ordered stream of records.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    episodes: Vec<Tracked>,
    /// Task → index of the open episode whose stop it had last.
    member_of: HashMap<i32, usize>,
    /// Stops reported to other outside processes, by their comm.
    other: BTreeMap<String, u64>,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while some episode is open (its calls may be held).
    pub fn is_open(&self) -> bool {
        !self.member_of.is_empty() || self.episodes.iter().any(|e| e.settled_ns.is_none())
    }

    /// A stop reported to an outside process that is not a checkpointer.
    pub fn other_stop(&mut self, stop: &Stop) {
        *self.other.entry(stop.tracer_comm.clone()).or_default() += 1;
    }

    /// Stops reported to outside processes other than CRIU, by comm.
    pub fn other_stops(&self) -> &BTreeMap<String, u64> {
        &self.other
    }

    /// A checkpoint stop of task `stop.task` (thread group `tgid`).
    /// `counted`: the numbers the profile has so far.
    pub fn stop(&mut self, stop: &Stop, tgid: i32, counted: &BTreeSet<i64>) -> Change {
        let mut change = Change::default();
        // Two CRIUs never work on one container at once: another one's
        // stop means the open episode is over.
        let others: Vec<usize> = self.open().filter(|i| self.episodes[*i].tracer_pid != stop.tracer_pid).collect();
        for i in others {
            self.settle(i, stop.ts_ns, counted, &mut change.released);
        }
        let found = self.episodes.iter().rposition(|e| {
            e.tracer_pid == stop.tracer_pid && e.settled_ns.is_none_or(|at| stop.ts_ns <= at.saturating_add(SETTLE_NS))
        });
        let i = match found {
            Some(i) => {
                let e = &mut self.episodes[i];
                if let Some(at) = e.settled_ns.take() {
                    e.late_stops += 1;
                    tracing::warn!(
                        tracer = e.tracer_pid,
                        late_by_ms = stop.ts_ns.saturating_sub(at) / 1_000_000,
                        "checkpoint episode went on after it was taken as over"
                    );
                }
                i
            }
            None => {
                self.episodes.push(Tracked {
                    tracer_pid: stop.tracer_pid,
                    tracer_comm: stop.tracer_comm.clone(),
                    start_ns: stop.ts_ns,
                    last_stop_ns: stop.ts_ns,
                    stops: 0,
                    members: BTreeMap::new(),
                    excluded: BTreeMap::new(),
                    resumed: Vec::new(),
                    late_stops: 0,
                    settled_ns: None,
                });
                self.episodes.len() - 1
            }
        };
        let e = &mut self.episodes[i];
        e.stops += 1;
        e.last_stop_ns = e.last_stop_ns.max(stop.ts_ns);
        let m = e.members.entry(stop.task).or_insert_with(|| Member { tgid, ..Member::default() });
        m.stops += 1;
        // Everything since its previous stop ran under CRIU's control.
        for (call, h) in std::mem::take(&mut m.held) {
            if let Call::Enter(nr) = call {
                m.excluded += h.count;
                *e.excluded.entry(nr).or_default() += h.count;
                change.excluded.push((nr, h.count));
            }
        }
        self.member_of.insert(stop.task, i);
        change
    }

    /// Holds `call` of the record's task if the task is in an open episode
    /// (returns true); otherwise the caller counts it.
    pub fn hold(&mut self, r: &Record, tgid: i32, call: Call) -> bool {
        // The common case, on every record: no checkpoint going on.
        if self.member_of.is_empty() {
            return false;
        }
        let Some(&i) = self.member_of.get(&r.pid) else { return false };
        let Some(m) = self.episodes.get_mut(i).and_then(|e| e.members.get_mut(&r.pid)) else { return false };
        m.held
            .entry(call)
            .and_modify(|h| {
                h.count += 1;
                h.last_ns = h.last_ns.max(r.ts_ns);
            })
            .or_insert(Held { pid: r.pid, tgid, call, count: 1, first_ns: r.ts_ns, last_ns: r.ts_ns });
        true
    }

    /// Whether task `pid` is in an open episode (its calls are held).
    pub fn in_episode(&self, pid: i32) -> bool {
        self.member_of.contains_key(&pid)
    }

    /// Whether some task still holds a call of `nr`.
    pub fn holds(&self, nr: i64) -> bool {
        self.member_of
            .iter()
            .filter_map(|(pid, i)| self.episodes.get(*i)?.members.get(pid))
            .any(|m| m.held.contains_key(&Call::Enter(nr)))
    }

    /// Settles the episodes quiet for [`SETTLE_NS`] at trace time `now`.
    pub fn tick(&mut self, now: u64, counted: &BTreeSet<i64>) -> Vec<Held> {
        let mut released = Vec::new();
        let due: Vec<usize> =
            self.open().filter(|i| now > self.episodes[*i].last_stop_ns.saturating_add(SETTLE_NS)).collect();
        for i in due {
            self.settle(i, now, counted, &mut released);
        }
        released
    }

    /// The end of the trace: what is still held is the workload's.
    pub fn finish(&mut self, counted: &BTreeSet<i64>) -> Vec<Held> {
        let mut released = Vec::new();
        let open: Vec<usize> = self.open().collect();
        for i in open {
            let at = self.episodes[i].last_stop_ns;
            self.settle(i, at, counted, &mut released);
        }
        released
    }

    /// The episodes so far, open or not, in order. `comm_of` names a
    /// thread group.
    pub fn episodes(&self, comm_of: impl Fn(i32) -> String) -> Vec<Episode> {
        let name = |nr: i64| name_of(nr).map(String::from).unwrap_or_else(|| format!("#{nr}"));
        self.episodes
            .iter()
            .map(|e| {
                let mut excluded = BTreeMap::new();
                for (nr, n) in &e.excluded {
                    *excluded.entry(name(*nr)).or_default() += n;
                }
                Episode {
                    tracer_pid: e.tracer_pid,
                    tracer_comm: e.tracer_comm.clone(),
                    start_ns: e.start_ns,
                    end_ns: e.last_stop_ns,
                    stops: e.stops,
                    tasks: e
                        .members
                        .iter()
                        .map(|(pid, m)| EpisodeTask {
                            pid: *pid,
                            tgid: m.tgid,
                            comm: comm_of(m.tgid),
                            stops: m.stops,
                            excluded: m.excluded,
                        })
                        .collect(),
                    excluded_calls: e.excluded.values().sum(),
                    excluded,
                    resumed: e
                        .resumed
                        .iter()
                        .map(|(pid, tgid, nr, ts, new)| Resumed {
                            pid: *pid,
                            comm: comm_of(*tgid),
                            syscall: name(*nr),
                            ts_ns: *ts,
                            new: *new,
                        })
                        .collect(),
                    late_stops: e.late_stops,
                }
            })
            .collect()
    }

    fn open(&self) -> impl Iterator<Item = usize> + '_ {
        self.episodes.iter().enumerate().filter(|(_, e)| e.settled_ns.is_none()).map(|(i, _)| i)
    }

    /// Takes episode `i` as over at `now`: its held records are released.
    fn settle(&mut self, i: usize, now: u64, counted: &BTreeSet<i64>, out: &mut Vec<Held>) {
        let Tracker { episodes, member_of, .. } = self;
        let Some(e) = episodes.get_mut(i) else { return };
        e.settled_ns = Some(now);
        for (pid, m) in e.members.iter_mut() {
            if member_of.get(pid) == Some(&i) {
                member_of.remove(pid);
            }
            let held = std::mem::take(&mut m.held);
            let first = held
                .values()
                .filter_map(|h| match h.call {
                    Call::Enter(nr) => Some((h.first_ns, nr)),
                    Call::Failure { .. } => None,
                })
                .min();
            if let Some((ts, nr)) = first {
                e.resumed.push((*pid, m.tgid, nr, ts, !counted.contains(&nr)));
            }
            out.extend(held.into_values());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscalls::Sysno;

    const CRIU: i32 = 900;

    fn sigchld(task: i32, ts: u64, code: i32, tracer: i32, comm: &str) -> Record {
        let event = Event::Signal { sig: SIGCHLD, code, pid: tracer, comm: comm.into() };
        Record { pid: task, tgid: Some(task), comm: String::new(), cpu: 0, ts_ns: ts, event }
    }

    fn call(task: i32, ts: u64, sysno: Sysno) -> Record {
        let event = Event::SysEnter { nr: sysno.id().into(), args: [0; 6] };
        Record { pid: task, tgid: Some(task), comm: String::new(), cpu: 0, ts_ns: ts, event }
    }

    fn nr(s: Sysno) -> i64 {
        s.id().into()
    }

    /// Feeds records: stops go to the tracker, calls are held or returned
    /// as counted.
    fn run(t: &mut Tracker, recs: &[Record]) -> Vec<(i32, i64)> {
        let mut counted = Vec::new();
        let none = BTreeSet::new();
        for r in recs {
            for h in t.tick(r.ts_ns, &none) {
                if let Call::Enter(n) = h.call {
                    counted.push((h.pid, n));
                }
            }
            if let Some(s) = stop_of(r) {
                for h in t.stop(&s, r.pid, &none).released {
                    if let Call::Enter(n) = h.call {
                        counted.push((h.pid, n));
                    }
                }
            } else if let Event::SysEnter { nr, .. } = r.event {
                if !t.hold(r, r.pid, Call::Enter(nr)) {
                    counted.push((r.pid, nr));
                }
            }
        }
        for h in t.finish(&none) {
            if let Call::Enter(n) = h.call {
                counted.push((h.pid, n));
            }
        }
        counted
    }

    #[test]
    fn only_ptrace_sigchlds_are_stops() {
        assert!(stop_of(&sigchld(5, 1, CLD_TRAPPED, CRIU, "criu")).is_some());
        assert!(stop_of(&sigchld(5, 1, CLD_STOPPED, CRIU, "criu")).is_some());
        assert!(stop_of(&sigchld(5, 1, 1, CRIU, "criu")).is_none(), "CLD_EXITED is no stop");
        let mut r = sigchld(5, 1, CLD_TRAPPED, CRIU, "criu");
        r.event = Event::Signal { sig: 5, code: CLD_TRAPPED, pid: 5, comm: "sh".into() };
        assert!(stop_of(&r).is_none(), "the SIGTRAP of an int3 is not the stop itself");
        let s = stop_of(&sigchld(5, 1, CLD_TRAPPED, CRIU, "criu")).unwrap();
        assert!(is_checkpoint(&s, false));
        assert!(!is_checkpoint(&s, true), "a CRIU inside the container is workload");
        let strace = stop_of(&sigchld(5, 1, CLD_TRAPPED, 77, "strace")).unwrap();
        assert!(!is_checkpoint(&strace, false));
    }

    #[test]
    fn calls_between_stops_are_excluded_and_calls_after_the_last_are_counted() {
        let mut t = Tracker::new();
        let recs = vec![
            call(10, 1, Sysno::wait4),
            sigchld(10, 2, CLD_STOPPED, CRIU, "criu"), // seized
            call(10, 3, Sysno::memfd_create),          // injected
            sigchld(10, 4, CLD_TRAPPED, CRIU, "criu"),
            call(10, 5, Sysno::vmsplice), // parasite
            call(10, 6, Sysno::sendto),
            sigchld(10, 7, CLD_TRAPPED, CRIU, "criu"), // cured
            call(10, 8, Sysno::restart_syscall),       // detached: the workload again
            call(10, 9, Sysno::wait4),
        ];
        let mut counted = run(&mut t, &recs);
        counted.sort();
        assert_eq!(counted, [(10, nr(Sysno::wait4)), (10, nr(Sysno::wait4)), (10, nr(Sysno::restart_syscall))]);
        let eps = t.episodes(|_| "sh".into());
        assert_eq!(eps.len(), 1);
        let e = &eps[0];
        assert_eq!((e.tracer_pid, e.tracer_comm.as_str(), e.start_ns, e.end_ns, e.stops), (CRIU, "criu", 2, 7, 3));
        assert_eq!(e.excluded.keys().map(String::as_str).collect::<Vec<_>>(), ["memfd_create", "sendto", "vmsplice"]);
        assert_eq!(e.excluded_calls, 3);
        assert_eq!(e.tasks, [EpisodeTask { pid: 10, tgid: 10, comm: "sh".into(), stops: 3, excluded: 3 }]);
        assert_eq!(
            e.resumed,
            [Resumed { pid: 10, comm: "sh".into(), syscall: "restart_syscall".into(), ts_ns: 8, new: true }]
        );
        assert_eq!(e.late_stops, 0);
    }

    #[test]
    fn quiet_episodes_settle_and_release_what_they_held() {
        let mut t = Tracker::new();
        let counted = run(
            &mut t,
            &[
                sigchld(10, 1, CLD_STOPPED, CRIU, "criu"),
                call(10, 2, Sysno::getpid), // after the last stop
                call(11, SETTLE_NS, Sysno::read), // another task: never held
                call(10, SETTLE_NS + 3, Sysno::getppid), // past the quiet period
            ],
        );
        assert_eq!(counted, [(11, nr(Sysno::read)), (10, nr(Sysno::getpid)), (10, nr(Sysno::getppid))]);
        assert!(!t.is_open());
        assert_eq!(t.episodes(|_| String::new())[0].resumed[0].syscall, "getpid");
    }

    #[test]
    fn a_new_checkpoint_releases_the_previous_ones_held_calls() {
        let mut t = Tracker::new();
        let counted = run(
            &mut t,
            &[
                sigchld(10, 1, CLD_STOPPED, CRIU, "criu"),
                sigchld(10, 2, CLD_TRAPPED, CRIU, "criu"),
                call(10, 3, Sysno::nanosleep), // detached
                sigchld(10, 4, CLD_STOPPED, CRIU + 1, "criu"), // the next checkpoint
                call(10, 5, Sysno::vmsplice),
                sigchld(10, 6, CLD_TRAPPED, CRIU + 1, "criu"),
            ],
        );
        assert_eq!(counted, [(10, nr(Sysno::nanosleep))]);
        let eps = t.episodes(|_| String::new());
        assert_eq!(eps.iter().map(|e| (e.tracer_pid, e.excluded_calls)).collect::<Vec<_>>(), [(CRIU, 0), (CRIU + 1, 1)]);
    }

    #[test]
    fn a_stop_after_settling_reopens_the_episode_and_says_so() {
        let mut t = Tracker::new();
        let late = 1 + SETTLE_NS + 10;
        let counted = run(
            &mut t,
            &[
                sigchld(10, 1, CLD_STOPPED, CRIU, "criu"),
                call(10, 2, Sysno::vmsplice),    // a very long dump…
                call(10, late, Sysno::vmsplice), // …taken as over before its end
                sigchld(10, late + 1, CLD_TRAPPED, CRIU, "criu"),
                call(10, late + 2, Sysno::sendto), // held again
                sigchld(10, late + 3, CLD_TRAPPED, CRIU, "criu"),
            ],
        );
        assert_eq!(counted, [(10, nr(Sysno::vmsplice)), (10, nr(Sysno::vmsplice))]);
        let eps = t.episodes(|_| String::new());
        assert_eq!(eps.len(), 1);
        assert_eq!((eps[0].late_stops, eps[0].excluded_calls, eps[0].stops), (1, 1, 3));
    }

    #[test]
    fn held_numbers_are_known_until_settled() {
        let mut t = Tracker::new();
        let none = BTreeSet::new();
        let s = stop_of(&sigchld(10, 1, CLD_STOPPED, CRIU, "criu")).unwrap();
        assert!(t.stop(&s, 10, &none).released.is_empty());
        assert!(t.hold(&call(10, 2, Sysno::sendto), 10, Call::Enter(nr(Sysno::sendto))));
        assert!(t.holds(nr(Sysno::sendto)));
        assert!(!t.holds(nr(Sysno::read)));
        let s = stop_of(&sigchld(10, 3, CLD_TRAPPED, CRIU, "criu")).unwrap();
        assert_eq!(t.stop(&s, 10, &none).excluded, [(nr(Sysno::sendto), 1)]);
        assert!(!t.holds(nr(Sysno::sendto)));
        // A task with no stop is never held.
        assert!(!t.hold(&call(11, 4, Sysno::read), 11, Call::Enter(nr(Sysno::read))));
    }
}
