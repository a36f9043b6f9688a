//! Aggregation of the recording window, one record at a time.
//!
//! The [`Aggregator`] is fed records in time order, whether they come from a
//! finished text trace or from a live stream of binary pages. It finds the
//! window (see [`super::window`]), keeps per-syscall and per-process counts
//! for the tasks under the filter, and tells the caller when a syscall is
//! seen in the window for the first time, so a live recorder can switch
//! that syscall's event off. Memory stays bounded by the number of
//! processes and syscalls, not by the length of the trace.
//!
//! Calls CRIU's parasite made inside the container's tasks during a
//! checkpoint are kept out ([`super::episode`]). A task's calls after a
//! checkpoint stop are held until it is known whose they were; a held
//! number's event is switched off meanwhile like a counted one, and
//! switched back on if the call turns out to be CRIU's, so the workload's
//! first real use of it is still recorded.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::episode::{self, Call, Episode, Held, Tracker};
use super::names::name_of;
use super::window::{filter_install, known_runtime, runtime_marker, Rule, Window};
use crate::trace::{Event, Record};

const CLONE_THREAD: u64 = 0x0001_0000;
/// Records held while the window is still undecided. Real runtimes decide
/// within a few hundred; past this the decision is forced.
const MAX_PENDING: usize = 200_000;

/// What the container did inside the recording window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// Calls per seccomp name.
    pub syscalls: BTreeMap<String, u64>,
    /// Calls whose number has no name in the native table. They cannot be
    /// put in a profile by name, so they are reported, never dropped.
    pub unnamed: BTreeMap<i64, u64>,
    /// Failed calls per syscall and errno name (from exit events, when they
    /// were recorded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per process (thread group), keyed by host tgid.
    pub processes: BTreeMap<i32, Process>,
    pub events: EventCounts,
    /// Checkpoint episodes: CRIU's calls, kept out of the counts above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub episodes: Vec<Episode>,
    /// Stops of the container's tasks reported to outside processes other
    /// than CRIU (a debugger, strace), by comm. Their calls are counted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other_tracers: BTreeMap<String, u64>,
}

impl Analysis {
    /// Fills in each process's container pid from `map` (host → container).
    pub fn set_ns_pids(&mut self, map: &BTreeMap<i32, i32>) {
        for (tgid, p) in self.processes.iter_mut() {
            if let Some(ns) = map.get(tgid) {
                p.ns_pid = Some(*ns);
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Records seen in the whole trace.
    pub total: u64,
    /// Records inside the window.
    pub in_window: u64,
    /// Syscall entries inside the window, by tasks under the filter.
    pub syscalls_in_window: u64,
    /// Syscall entries in the window kept out as CRIU's (not in the two
    /// counts above).
    #[serde(default)]
    pub excluded: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub tgid: i32,
    pub comm: String,
    /// The last path this process exec'd, if it exec'd inside the trace.
    pub exe: Option<String>,
    /// Host pid of the process that forked it, if the fork was traced.
    pub parent: Option<i32>,
    /// Its pid inside the container's PID namespace (what a checkpoint
    /// calls it), when the recorder could ask while it lived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<i32>,
    pub syscalls: BTreeMap<String, u64>,
    pub unnamed: BTreeMap<i64, u64>,
    pub total: u64,
    /// Trace-clock time of its first and last counted call.
    #[serde(default)]
    pub first_ns: Option<u64>,
    #[serde(default)]
    pub last_ns: Option<u64>,
}

/// Finds the window for a container with host init pid `init_pid` in
/// time-ordered `records`, and aggregates what lies inside it.
pub fn analyze(records: &[Record], init_pid: i32) -> (Window, Analysis) {
    analyze_runtime(records, init_pid, None)
}

/// [`analyze`] for a container whose init task had comm `runtime_comm` at
/// prestart: only that runtime's marker is looked for.
pub fn analyze_runtime(records: &[Record], init_pid: i32, runtime_comm: Option<&str>) -> (Window, Analysis) {
    let mut agg = Aggregator::new(init_pid).with_runtime(runtime_comm);
    for r in records {
        agg.push(r);
    }
    agg.finish()
}

/// Names and ancestry learnt from the whole trace, window or not.
#[derive(Debug, Default, Clone)]
struct Identity {
    tgids: HashMap<i32, i32>,
    parents: HashMap<i32, i32>,
    fork_comms: HashMap<i32, String>,
    exes: HashMap<i32, String>,
    exit_comms: HashMap<i32, String>,
}

impl Identity {
    fn process_of(&self, r: &Record) -> i32 {
        self.process_of_task(r.pid, r.tgid)
    }

    fn process_of_task(&self, pid: i32, tgid: Option<i32>) -> i32 {
        tgid.or_else(|| self.tgids.get(&pid).copied()).unwrap_or(pid)
    }

    /// Learns from `r`; returns the tgid whose identity changed, if any.
    fn learn(&mut self, r: &Record) -> Option<i32> {
        match &r.event {
            Event::NewTask { pid, clone_flags, .. } => {
                let tgid = if clone_flags & CLONE_THREAD != 0 { self.process_of(r) } else { *pid };
                self.tgids.insert(*pid, tgid);
                None
            }
            Event::Fork { parent_pid, child_pid, child_comm } => {
                self.parents.entry(*child_pid).or_insert(*parent_pid);
                self.fork_comms.entry(*child_pid).or_insert_with(|| child_comm.clone());
                None
            }
            Event::Exec { filename, .. } => {
                let tgid = self.process_of(r);
                self.exes.insert(tgid, filename.clone());
                Some(tgid)
            }
            // The exit event carries the comm as it was then.
            Event::Exit { pid, comm, .. } if !comm.is_empty() => {
                self.exit_comms.insert(*pid, comm.clone());
                Some(*pid)
            }
            _ => None,
        }
    }

    fn comm(&self, tgid: i32, printed: &str) -> String {
        if let Some(c) = self.exit_comms.get(&tgid) {
            return c.clone();
        }
        // Busybox applets exec /proc/self/exe, so the exec path is a poor
        // name; tracefs's printed comm is better when there is one.
        if !printed.is_empty() && printed != "<...>" {
            return printed.to_string();
        }
        self.exes
            .get(&tgid)
            .map(|e| e.rsplit('/').next().unwrap_or(e).to_string())
            .or_else(|| self.fork_comms.get(&tgid).cloned())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
enum Phase {
    /// Records kept until the window's start is known, and the index of the
    /// first runtime marker among them.
    Seeking { pending: Vec<Record>, marker: Option<(usize, Rule)> },
    Open,
}

/// Streaming window detection and aggregation.
#[derive(Clone)]
pub struct Aggregator {
    init_pid: i32,
    phase: Phase,
    window: Option<Window>,
    /// Tasks under the filter: the opener and what it forks from then on.
    /// `None` when the window is the whole trace.
    filtered: Option<BTreeSet<i32>>,
    ident: Identity,
    analysis: Analysis,
    /// Numbers seen in the window since the last [`Aggregator::take_new`].
    new_numbers: Vec<i64>,
    /// Numbers whose events are off: counted, or held (provisionally).
    seen_numbers: BTreeSet<i64>,
    /// Numbers counted in the window: the profile.
    counted: BTreeSet<i64>,
    /// Numbers switched off only because a held call made them.
    provisional: BTreeSet<i64>,
    /// Numbers to switch back on since the last [`Aggregator::take_restored`].
    restored: Vec<i64>,
    episodes: Tracker,
    max_pending: usize,
    /// The runtime whose marker is looked for; `None`: any runtime's.
    runtime: Option<&'static str>,
}

impl Aggregator {
    pub fn new(init_pid: i32) -> Self {
        Aggregator {
            init_pid,
            phase: Phase::Seeking { pending: Vec::new(), marker: None },
            window: None,
            filtered: None,
            ident: Identity::default(),
            analysis: Analysis::default(),
            new_numbers: Vec::new(),
            seen_numbers: BTreeSet::new(),
            counted: BTreeSet::new(),
            provisional: BTreeSet::new(),
            restored: Vec::new(),
            episodes: Tracker::new(),
            max_pending: MAX_PENDING,
            runtime: None,
        }
    }

    /// Looks only for the marker of the runtime whose name starts
    /// `runtime_comm` (the init task's comm at prestart); an unknown or
    /// missing comm keeps every runtime's marker.
    pub fn with_runtime(mut self, runtime_comm: Option<&str>) -> Self {
        self.runtime = known_runtime(runtime_comm);
        self
    }

    /// The window, once decided.
    pub fn window(&self) -> Option<&Window> {
        self.window.as_ref()
    }

    /// Syscall numbers seen in the window for the first time since the last
    /// call (a live recorder switches their events off).
    pub fn take_new(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.new_numbers)
    }

    /// Numbers switched off for a held call that turned out to be CRIU's,
    /// since the last call: switch their events back on. (Call after
    /// [`Aggregator::take_new`]: a number may be in both.)
    pub fn take_restored(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.restored)
    }

    /// Whether a record not pushed yet will be counted in the window when
    /// it is: the window is open, its task is under the filter already (a
    /// task forked in the meantime is not known yet: false, not wrong), and
    /// not in a checkpoint episode. Records come in time order, so a later
    /// one is inside the window.
    pub fn will_count(&self, r: &Record) -> bool {
        matches!(self.phase, Phase::Open)
            && self.filtered.as_ref().is_none_or(|set| set.contains(&r.pid))
            && !self.episodes.in_episode(r.pid)
    }

    /// The aggregate so far (for periodic saves).
    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }

    pub fn push(&mut self, r: &Record) {
        self.analysis.events.total += 1;
        if let Some(tgid) = self.ident.learn(r) {
            self.refresh(tgid, &r.comm);
        }
        let Phase::Seeking { pending, marker } = &mut self.phase else {
            self.account(r);
            return;
        };
        pending.push(r.clone());
        let index = pending.len() - 1;
        if r.pid == self.init_pid {
            match &r.event {
                Event::SysEnter { nr, args } => {
                    if let Some(call) = filter_install(*nr, args) {
                        let rule = Rule::FilterInstall { call: call.to_string(), pid: r.pid, ts_ns: r.ts_ns };
                        self.open(rule, Some(r.pid), index + 1);
                        return;
                    }
                    // The last marker before the workload's exec wins: a
                    // runtime may make another runtime's marker call
                    // earlier in its setup (runc calls umask too).
                    if let Some(m) = runtime_marker(*nr, args, self.runtime) {
                        let rule = Rule::RuntimeMarker {
                            runtime: m.runtime.to_string(),
                            call: m.describe.to_string(),
                            pid: r.pid,
                            ts_ns: r.ts_ns,
                        };
                        *marker = Some((index, rule));
                    }
                }
                // The workload runs from the first exec on: no install can
                // come any more.
                Event::Exec { .. } => self.decide(),
                _ => {}
            }
        } else if pending.len() > self.max_pending {
            self.decide();
        }
    }

    /// Closes the stream and returns the window and the aggregate.
    pub fn finish(mut self) -> (Window, Analysis) {
        if matches!(self.phase, Phase::Seeking { .. }) {
            self.decide();
        }
        let released = self.episodes.finish(&self.counted);
        self.release(released);
        self.publish_episodes();
        let window = self.window.unwrap_or(Window { rule: Rule::FirstEvent, opener: None });
        (window, self.analysis)
    }

    /// No install was seen: open after the marker, or at the first event.
    fn decide(&mut self) {
        let Phase::Seeking { marker, .. } = &mut self.phase else { return };
        match marker.take() {
            Some((index, rule)) => {
                let opener = match &rule {
                    Rule::RuntimeMarker { pid, .. } => Some(*pid),
                    _ => None,
                };
                self.open(rule, opener, index + 1);
            }
            None => self.open(Rule::FirstEvent, None, 0),
        }
    }

    /// Opens the window at `pending[start]` and replays what follows.
    fn open(&mut self, rule: Rule, opener: Option<i32>, start: usize) {
        let pending = match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Seeking { pending, .. } => pending,
            Phase::Open => Vec::new(),
        };
        self.filtered = opener.map(|pid| BTreeSet::from([pid]));
        self.window = Some(Window { rule, opener });
        for r in pending.iter().skip(start) {
            self.account(r);
        }
    }

    fn account(&mut self, r: &Record) {
        self.analysis.events.in_window += 1;
        if let (Some(set), Event::Fork { parent_pid, child_pid, .. }) = (self.filtered.as_mut(), &r.event) {
            if set.contains(parent_pid) || set.contains(&r.pid) {
                set.insert(*child_pid);
            }
        }
        if self.episodes.is_open() {
            let released = self.episodes.tick(r.ts_ns, &self.counted);
            if !released.is_empty() {
                self.release(released);
                self.publish_episodes();
            }
        }
        // A thread that existed before the install is not under the filter
        // (no TSYNC), so its calls stay out.
        if self.filtered.as_ref().is_some_and(|set| !set.contains(&r.pid)) {
            return;
        }
        match r.event {
            Event::SysEnter { nr, .. } => {
                let tgid = self.ident.process_of(r);
                if self.episodes.hold(r, tgid, Call::Enter(nr)) {
                    // Off while held, like a counted call; back on if it
                    // was CRIU's.
                    if self.seen_numbers.insert(nr) {
                        self.provisional.insert(nr);
                        self.new_numbers.push(nr);
                    }
                } else {
                    self.count(r.pid, r.tgid, &r.comm, nr, 1, r.ts_ns, r.ts_ns);
                }
            }
            Event::SysExit { nr, ret } if (-4095..0).contains(&ret) => {
                let tgid = self.ident.process_of(r);
                if !self.episodes.hold(r, tgid, Call::Failure { nr, ret }) {
                    self.fail(nr, ret, 1);
                }
            }
            Event::Signal { .. } => {
                if let Some(stop) = episode::stop_of(r) {
                    self.stop(r, &stop);
                }
            }
            _ => {}
        }
    }

    /// A task's ptrace stop: a checkpoint's, or someone else's.
    fn stop(&mut self, r: &Record, stop: &episode::Stop) {
        let inside = self.is_container_task(stop.tracer_pid);
        if !episode::is_checkpoint(stop, inside) {
            if !inside {
                self.episodes.other_stop(stop);
                self.analysis.other_tracers = self.episodes.other_stops().clone();
            }
            return;
        }
        let tgid = self.ident.process_of(r);
        let change = self.episodes.stop(stop, tgid, &self.counted);
        self.release(change.released);
        for (nr, n) in change.excluded {
            self.analysis.events.excluded += n;
            // Switched off for this call only: on again, so the workload's
            // own first use is recorded.
            if self.provisional.contains(&nr) && !self.episodes.holds(nr) {
                self.provisional.remove(&nr);
                self.seen_numbers.remove(&nr);
                self.restored.push(nr);
            }
        }
        self.publish_episodes();
    }

    /// Counts held records that turned out to be the workload's.
    fn release(&mut self, held: Vec<Held>) {
        for h in held {
            match h.call {
                Call::Enter(nr) => self.count(h.pid, Some(h.tgid), "", nr, h.count, h.first_ns, h.last_ns),
                Call::Failure { nr, ret } => self.fail(nr, ret, h.count),
            }
        }
    }

    /// Episodes into the analysis, their tasks named like its processes.
    fn publish_episodes(&mut self) {
        let (ident, processes) = (&self.ident, &self.analysis.processes);
        let comm_of = |tgid| processes.get(&tgid).map(|p| p.comm.clone()).unwrap_or_else(|| ident.comm(tgid, ""));
        let episodes = self.episodes.episodes(comm_of);
        self.analysis.episodes = episodes;
    }

    /// The init task, or a task the trace saw being created.
    fn is_container_task(&self, pid: i32) -> bool {
        pid == self.init_pid || self.ident.tgids.contains_key(&pid) || self.ident.parents.contains_key(&pid)
    }

    fn fail(&mut self, nr: i64, ret: i64, n: u64) {
        let name = name_of(nr).map(String::from).unwrap_or_else(|| format!("#{nr}"));
        let errno = i32::try_from(-ret).unwrap_or(0);
        let errno_name = syscalls::Errno::new(errno).name().map(String::from).unwrap_or_else(|| format!("errno {errno}"));
        *self.analysis.errors.entry(name).or_default().entry(errno_name).or_default() += n;
    }

    /// Counts `n` calls of `nr` by task `pid` made from `first` to `last`.
    #[allow(clippy::too_many_arguments)]
    fn count(&mut self, pid: i32, tgid: Option<i32>, printed: &str, nr: i64, n: u64, first: u64, last: u64) {
        let a = &mut self.analysis;
        a.events.syscalls_in_window += n;
        let tgid = self.ident.process_of_task(pid, tgid);
        let ident = &self.ident;
        let p = a.processes.entry(tgid).or_insert_with(|| Process {
            tgid,
            comm: ident.comm(tgid, printed),
            exe: ident.exes.get(&tgid).cloned(),
            parent: ident.parents.get(&tgid).copied(),
            ..Default::default()
        });
        p.total += n;
        p.first_ns = Some(p.first_ns.map_or(first, |f| f.min(first)));
        p.last_ns = Some(p.last_ns.map_or(last, |l| l.max(last)));
        match name_of(nr) {
            Some(name) => {
                *a.syscalls.entry(name.to_string()).or_default() += n;
                *p.syscalls.entry(name.to_string()).or_default() += n;
            }
            None => {
                *a.unnamed.entry(nr).or_default() += n;
                *p.unnamed.entry(nr).or_default() += n;
            }
        }
        self.counted.insert(nr);
        self.provisional.remove(&nr);
        if self.seen_numbers.insert(nr) {
            self.new_numbers.push(nr);
        }
    }

    /// A process's exe or exit comm became known after it was first counted.
    fn refresh(&mut self, tgid: i32, printed: &str) {
        if let Some(p) = self.analysis.processes.get_mut(&tgid) {
            p.comm = self.ident.comm(tgid, printed);
            p.exe = self.ident.exes.get(&tgid).cloned();
        }
    }
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
            sys(10, 10, Sysno::prctl.id().into()), // arg0 = 0: not a marker
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
        // The exit comm arrived after the process was counted.
        assert_eq!(a.processes[&10].comm, "cat");
        assert_eq!(a.events, EventCounts { total: 9, in_window: 9, syscalls_in_window: 6, excluded: 0 });
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

    #[test]
    fn binary_records_find_their_process_through_newtask() {
        let bin = |pid: i32, event: Event| Record { pid, tgid: None, comm: String::new(), cpu: 0, ts_ns: 5, event };
        let recs = vec![
            bin(10, Event::SysEnter { nr: Sysno::prctl.id().into(), args: [22, 2, 0, 0, 0, 0] }),
            bin(10, Event::NewTask { pid: 40, comm: "w".into(), clone_flags: CLONE_THREAD | 0x100 }),
            bin(10, Event::Fork { parent_pid: 10, child_pid: 40, child_comm: "w".into() }),
            bin(40, Event::SysEnter { nr: Sysno::futex.id().into(), args: [0; 6] }),
            bin(40, Event::SysExit { nr: Sysno::futex.id().into(), ret: -11 }),
            bin(40, Event::SysExit { nr: Sysno::futex.id().into(), ret: 0 }),
        ];
        let (_, a) = analyze(&recs, 10);
        assert_eq!(a.processes.keys().copied().collect::<Vec<_>>(), [10]);
        assert_eq!(a.processes[&10].syscalls["futex"], 1);
        assert_eq!(a.errors["futex"]["EAGAIN"], 1);
    }

    #[test]
    fn will_count_only_in_an_open_window_and_under_the_filter() {
        let install = Event::SysEnter { nr: Sysno::prctl.id().into(), args: [22, 2, 0, 0, 0, 0] };
        let mut agg = Aggregator::new(10);
        agg.push(&rec(10, 10, Event::Fork { parent_pid: 10, child_pid: 20, child_comm: "old".into() }));
        let read = |pid| sys(pid, pid, Sysno::read.id().into());
        assert!(!agg.will_count(&read(10)), "before the install");
        agg.push(&rec(10, 10, install));
        assert!(agg.will_count(&read(10)));
        assert!(!agg.will_count(&read(20)), "forked before the install");
        assert!(!agg.will_count(&read(30)), "not forked yet");
        agg.push(&rec(10, 10, Event::Fork { parent_pid: 10, child_pid: 30, child_comm: "new".into() }));
        assert!(agg.will_count(&read(30)));
    }

    #[test]
    fn reports_each_number_once_for_quenching() {
        let mut agg = Aggregator::new(10);
        agg.push(&sys(10, 10, Sysno::prctl.id().into()));
        assert!(agg.take_new().is_empty(), "window not open yet");
        agg.push(&rec(10, 10, Event::Exec { filename: "/bin/sh".into(), pid: 10, old_pid: 10 }));
        assert_eq!(agg.take_new(), vec![i64::from(Sysno::prctl.id())]);
        agg.push(&sys(10, 10, Sysno::read.id().into()));
        agg.push(&sys(10, 10, Sysno::read.id().into()));
        assert_eq!(agg.take_new(), vec![i64::from(Sysno::read.id())]);
        assert!(agg.take_new().is_empty());
    }

    fn stop(task: i32, code: i32, tracer: i32, comm: &str) -> Record {
        rec(task, task, Event::Signal { sig: 17, code, pid: tracer, comm: comm.into() })
    }

    #[test]
    fn checkpoint_calls_stay_out_and_their_events_come_back_on() {
        let n = |s: Sysno| i64::from(s.id());
        let mut agg = Aggregator::new(10);
        agg.push(&rec(10, 10, Event::Exec { filename: "/bin/sh".into(), pid: 10, old_pid: 10 }));
        agg.push(&sys(10, 10, n(Sysno::read)));
        assert_eq!(agg.take_new(), [n(Sysno::read)]);
        agg.push(&stop(10, 5, 900, "criu")); // seized
        agg.push(&sys(10, 10, n(Sysno::vmsplice))); // the parasite
        assert_eq!(agg.take_new(), [n(Sysno::vmsplice)], "off while held");
        agg.push(&stop(10, 4, 900, "criu"));
        assert_eq!(agg.take_restored(), [n(Sysno::vmsplice)], "on again: only CRIU made it");
        agg.push(&sys(10, 10, n(Sysno::getpid))); // after the last stop
        assert_eq!(agg.take_new(), [n(Sysno::getpid)]);
        agg.push(&sys(10, 10, n(Sysno::vmsplice))); // the workload's own, later: recorded again
        let (_, a) = agg.finish();
        let names: Vec<&str> = a.syscalls.keys().map(String::as_str).collect();
        assert_eq!(names, ["getpid", "read", "vmsplice"]);
        assert_eq!(a.syscalls["vmsplice"], 1, "only the workload's");
        assert_eq!(a.events.excluded, 1);
        assert_eq!(a.episodes.len(), 1);
        let e = &a.episodes[0];
        assert_eq!((e.tracer_comm.as_str(), e.stops, e.excluded_calls), ("criu", 2, 1));
        assert_eq!(e.tasks[0].comm, "latest", "named like the process");
        assert_eq!(e.resumed.iter().map(|r| (r.syscall.as_str(), r.new)).collect::<Vec<_>>(), [("getpid", true)]);
    }

    #[test]
    fn a_later_workload_call_of_a_criu_number_is_still_counted() {
        let n = |s: Sysno| i64::from(s.id());
        let mut agg = Aggregator::new(10);
        agg.push(&rec(10, 10, Event::Exec { filename: "/bin/sh".into(), pid: 10, old_pid: 10 }));
        agg.push(&stop(10, 5, 900, "criu"));
        agg.push(&sys(10, 10, n(Sysno::sendto)));
        agg.push(&stop(10, 4, 900, "criu"));
        agg.push(&rec(10, 10, Event::Fork { parent_pid: 10, child_pid: 11, child_comm: "sh".into() }));
        agg.push(&sys(11, 11, n(Sysno::sendto))); // a new task: never held
        let (_, a) = agg.finish();
        assert_eq!(a.syscalls.get("sendto"), Some(&1));
        assert_eq!(a.events.excluded, 1);
    }

    #[test]
    fn stops_by_other_tracers_change_nothing() {
        let n = |s: Sysno| i64::from(s.id());
        let mut agg = Aggregator::new(10);
        agg.push(&rec(10, 10, Event::Exec { filename: "/bin/sh".into(), pid: 10, old_pid: 10 }));
        agg.push(&rec(10, 10, Event::Fork { parent_pid: 10, child_pid: 20, child_comm: "criu".into() }));
        // strace from the host: every call sits between two stops.
        agg.push(&stop(10, 4, 77, "strace"));
        agg.push(&sys(10, 10, n(Sysno::openat)));
        agg.push(&stop(10, 4, 77, "strace"));
        // A CRIU inside the container is the workload's.
        agg.push(&stop(10, 5, 20, "criu"));
        agg.push(&sys(10, 10, n(Sysno::vmsplice)));
        agg.push(&stop(10, 4, 20, "criu"));
        let (_, a) = agg.finish();
        assert_eq!(a.syscalls.keys().map(String::as_str).collect::<Vec<_>>(), ["openat", "vmsplice"]);
        assert!(a.episodes.is_empty());
        assert_eq!(a.other_tracers.get("strace"), Some(&2));
        assert_eq!(a.events.excluded, 0);
    }
}
