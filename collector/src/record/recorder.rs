//! The live recorder's loop: stream one container's trace while it runs,
//! aggregate in memory, switch each syscall's event off once it has been
//! seen (profile mode), and stop on its own when the container's init task
//! exits (a pidfd, so no poststop is needed: CRI-O runs poststop only when
//! a container is removed).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde::{Deserialize, Serialize};

use super::layouts;
use super::nspid::NsPids;
use super::stream::{Stream, StreamStats};
use super::pool::{Claim, Pool};
use super::{enable_syscalls, quench, syscalls_without_event, tune, Mode, Result};
use crate::trace::Event;
use crate::profile::{Aggregator, Analysis, Window};
use crate::tracefs::{CpuStats, Instance};

/// Pages read per CPU before records are handed on (256 KiB per CPU).
const PAGES_PER_ROUND: usize = 64;

/// How long after "ready" profile mode switches the exit events off.
const TUNE_DELAY: Duration = Duration::from_millis(200);

/// CPU time after which a container counts as busy, and the recorder
/// takes the quench triggers of its seen calls off a slot. A trigger costs
/// each later call of its syscall ~0.15 µs (dd with `bs=1` ran 2.3× as
/// long with every trigger kept, 1.2× without), and each removal holds
/// the kernel's `event_mutex` for ~100 ms, which a starting container
/// waits for: a container that stays under this never causes a removal.
pub const BUSY: Duration = Duration::from_millis(50);


#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// The init task's comm at prestart: picks the runtime's window marker.
    pub runtime_comm: Option<String>,
    /// How long to sleep between read rounds when nothing happens.
    pub poll: Duration,
    /// How often the aggregate is saved for crash recovery.
    pub save_every: Duration,
    /// The slot (`record::pool`) being read, if the instance is one: its
    /// syscall events are on and carry the quench triggers already.
    pub slot: Option<(Pool, Claim)>,
    /// The container's cgroup `cpu.stat`: how busy it is (see [`BUSY`]).
    pub cpu_stat: Option<std::path::PathBuf>,
    /// Full mode: a slot recording the same tasks with the in-kernel
    /// quench, read beside the full record; its calls complete the
    /// allowlist when the full record loses events.
    pub companion: Option<Instance>,
    /// Tasks whose records open the buffers but are not the container's
    /// (claims' canaries, `record::canary`).
    pub foreign: Vec<i32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Profile,
            runtime_comm: None,
            poll: Duration::from_millis(20),
            save_every: Duration::from_secs(3),
            slot: None,
            cpu_stat: None,
            companion: None,
            foreign: Vec::new(),
        }
    }
}

/// Why the recorder stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ended {
    /// The container's init task exited.
    InitExited,
    /// SIGTERM, SIGINT or SIGHUP.
    Signal,
    /// Someone else removed the instance.
    InstanceGone,
}

/// What the recorder saves on each new call and every few seconds, so a
/// crash loses nothing it cannot name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub rule: Option<crate::profile::Rule>,
    pub analysis: Analysis,
    pub stream: StreamStats,
    pub quenched: usize,
    /// By CPU, the kernel's `read events` count this aggregate accounts
    /// for. More read by the time poststop looks means the recorder took
    /// records out of the buffer that no save holds.
    #[serde(default)]
    pub read_through: Option<BTreeMap<u32, u64>>,
}

/// What a finished recording holds.
#[derive(Debug)]
pub struct Recorded {
    pub window: Window,
    pub analysis: Analysis,
    pub stream: StreamStats,
    pub per_cpu: Vec<CpuStats>,
    /// Events switched off after being seen.
    pub quenched: usize,
    /// Events switched back on after a checkpoint episode.
    pub restored: usize,
    pub ended: Ended,
    /// Syscalls of the native table with no enter event on this kernel.
    pub no_event_syscalls: Vec<String>,
    /// Whether the event layouts came from the per-boot cache.
    pub layouts_cached: bool,
    /// Events the companion slot lost (`None`: no companion).
    pub companion_lost: Option<u64>,
    /// Calls only the companion saw (added to the analysis).
    pub from_companion: Vec<String>,
}

/// Runs until the init task `init_pid` exits (or a signal, or the instance
/// vanishes). `ready` is called once the stream is open and the syscall
/// events are on. What need not delay the container (`after_ready`, and in
/// profile mode switching the exit events off, [`TUNE_DELAY`] later) then
/// runs on a second thread while the first one already reads. `save` gets
/// a snapshot every `save_every`.
pub fn run(
    inst: &Instance,
    layouts: layouts::Layouts,
    init_pid: i32,
    opts: &Options,
    ready: impl FnOnce(),
    after_ready: impl FnOnce() + Send,
    save: impl FnMut(&Snapshot),
) -> Result<Recorded> {
    let t0 = Instant::now();
    let signals = signal_fd();
    let pidfd = pidfd_open(init_pid);
    let pipes = inst.open_raw_pipes()?;
    let t_pipes = t0.elapsed();
    let stream = Stream::with_layouts(pipes, &layouts).without(&opts.foreign);
    let companion = match &opts.companion {
        Some(c) => Some((c, Stream::with_layouts(c.open_raw_pipes()?, &layouts).without(&opts.foreign))),
        None => None,
    };
    let syscall_events: Vec<String> =
        layouts.formats.iter().filter(|f| f.system == "syscalls").map(|f| f.name.clone()).collect();
    // Ready to keep up: only now do the syscall events come on, and only
    // then is the container let go. A slot's are on already.
    if opts.slot.is_none() {
        enable_syscalls(inst)?;
    }
    let t_enable = t0.elapsed();
    ready();
    tracing::debug!(pipes_us = t_pipes.as_micros() as u64, enabled_us = t_enable.as_micros() as u64, "recorder start-up");
    // The exit events of seen calls, whose quench triggers the helper
    // takes off a slot once the container is busy; dropped when reading
    // ends (the slot's release takes care of the rest).
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<String>();
    let events = &syscall_events;
    let mut recorded = std::thread::scope(|scope| {
        let helper = scope.spawn(move || {
            after_ready();
            match &opts.slot {
                Some((pool, claim)) => take_triggers_off(inst, pool, claim, opts.cpu_stat.as_deref(), seen_rx),
                None => {
                    // Switching 360 exit events off is ~10 ms of tracefs
                    // writes that competed for the CPU with a short
                    // container's start and stop. Until then the subsystem
                    // filter keeps their records out; a container that
                    // ends within TUNE_DELAY never pays it (reading ended:
                    // the channel is closed).
                    if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = seen_rx.recv_timeout(TUNE_DELAY) {
                        return;
                    }
                    if let Err(e) = tune(inst, opts.mode, events) {
                        tracing::warn!(error = %e, "could not switch the exit events off");
                    }
                }
            }
        });
        let recorded = read_until_done(inst, init_pid, opts, stream, companion, pidfd, signals, &seen_tx, save);
        drop(seen_tx);
        let _ = helper.join();
        recorded
    })?;
    recorded.no_event_syscalls = syscalls_without_event(&syscall_events);
    recorded.layouts_cached = layouts.cached;
    Ok(recorded)
}

/// The slot helper of [`run`]: once the container has used [`BUSY`] CPU
/// time, takes the quench trigger of each call seen so far (and from then
/// on) off the slot, the hot calls first, one at a time. Until then, or
/// without `cpu_stat`'s help (then at once, as there is no telling), the
/// triggers stay: they only cost the calls made after the first.
fn take_triggers_off(
    inst: &Instance,
    pool: &Pool,
    claim: &Claim,
    cpu_stat: Option<&std::path::Path>,
    seen: std::sync::mpsc::Receiver<String>,
) {
    let usage = || cpu_stat.and_then(super::cgroup::cpu_usage);
    let base = usage();
    let mut busy = base.is_none();
    let mut pending: Vec<String> = Vec::new();
    loop {
        let wait = if pending.is_empty() || !busy { Duration::from_millis(100) } else { Duration::ZERO };
        match seen.recv_timeout(wait) {
            Ok(exit) => {
                pending.push(exit);
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if !busy {
            busy = match (usage(), base) {
                (Some(now), Some(base)) => now.saturating_sub(base) >= BUSY,
                _ => true,
            };
            if busy {
                tracing::debug!(pending = pending.len(), "the container is busy: its seen calls' triggers come off");
            }
        }
        if busy && !pending.is_empty() {
            let hot = pending.iter().position(|e| e.strip_prefix("sys_exit_").is_some_and(quench::is_hot));
            let exit = pending.swap_remove(hot.unwrap_or(0));
            pool.take_trigger_off(inst, claim, &exit);
            std::thread::sleep(crate::tracefs::TRIGGER_REMOVAL_PAUSE);
        }
    }
}

/// The read loop of [`run`]. (Its arguments are what [`run`] set up for
/// it, each used once; a struct would only rename them.)
#[allow(clippy::too_many_arguments)]
fn read_until_done(
    inst: &Instance,
    init_pid: i32,
    opts: &Options,
    mut stream: Stream,
    mut companion: Option<(&Instance, Stream)>,
    pidfd: Option<OwnedFd>,
    signals: Option<SignalFd>,
    seen: &std::sync::mpsc::Sender<String>,
    mut save: impl FnMut(&Snapshot),
) -> Result<Recorded> {
    let mut agg = Aggregator::new(init_pid).with_runtime(opts.runtime_comm.as_deref());
    // The companion's records go through the profile-mode rules of their
    // own aggregator: enter events only, its own window.
    let mut cagg = Aggregator::new(init_pid).with_runtime(opts.runtime_comm.as_deref());
    let cpush = |cagg: &mut Aggregator, r: &crate::trace::Record| {
        if !matches!(r.event, Event::SysExit { .. }) {
            cagg.push(r);
        }
    };
    let mut ns_pids = NsPids::new(init_pid);
    ns_pids.learn([init_pid]);
    // Profile mode keeps no exit events (the few recorded before tune()
    // switched them off would give a partial error count).
    let profile = opts.mode == Mode::Profile;
    let push = |agg: &mut Aggregator, r: &crate::trace::Record| {
        if !(profile && matches!(r.event, Event::SysExit { .. })) {
            agg.push(r);
        }
    };

    let mut quenched = 0usize;
    let mut restored = 0usize;
    let mut off = BTreeSet::new();
    // What was read before this recorder (a reused slot's earlier
    // container), saved at once: poststop tells from it whether a dead
    // recorder took records out of the buffer that no save holds.
    let baseline = read_events(inst);
    save(&snapshot(&agg, &stream, 0, &ns_pids, profile, baseline.as_ref()));
    let mut last_save = Instant::now();
    // Numbers in a saved aggregate already.
    let mut saved = BTreeSet::new();
    let timeout = PollTimeout::try_from(opts.poll.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::ZERO);
    let mut more = false;
    let ended = loop {
        // While the buffers still hold data, only peek at the pidfd.
        let (exited, signalled) = wait(pidfd.as_ref(), signals.as_ref(), if more { PollTimeout::ZERO } else { timeout });
        if exited {
            break Ended::InitExited;
        }
        if signalled {
            break Ended::Signal;
        }
        if !inst.path().exists() {
            break Ended::InstanceGone;
        }
        // Bounded rounds: quench and save between them even when the
        // workload writes as fast as we read.
        more = stream.round(false, PAGES_PER_ROUND, |r| push(&mut agg, r))?;
        if let Some((_, cs)) = companion.as_mut() {
            more |= cs.round(false, PAGES_PER_ROUND, |r| cpush(&mut cagg, r))?;
            // Only what it adds at the end matters; nothing is switched off
            // from here (the kernel does it).
            cagg.take_new();
        }
        // A call goes into the saved aggregate before its event goes off:
        // the kernel records it no more, so a recorder killed after the
        // switch would lose it (issue 14: killed 1.5 s in, mkdir was read,
        // switched off and waited for a throttled save).
        let plan = plan_quench(&stream, &mut agg, opts.mode, &off);
        learn_pids(&mut ns_pids, &stream, &agg);
        let unsaved: Vec<i64> = plan.new.iter().chain(&plan.off).copied().filter(|nr| !saved.contains(nr)).collect();
        if !unsaved.is_empty() || last_save.elapsed() >= opts.save_every {
            save(&snapshot(&agg, &stream, quenched, &ns_pids, profile, baseline.as_ref()));
            last_save = Instant::now();
            saved.extend(unsaved);
        }
        let to_helper = opts.slot.as_ref().map(|_| seen);
        let (went_off, went_on) = apply_quench(inst, &stream, plan, &mut off, to_helper);
        quenched += went_off;
        restored += went_on;
    };

    // Stop, then take everything that is left, in order.
    if ended != Ended::InstanceGone {
        if let Err(e) = inst.set_tracing_on(false) {
            tracing::warn!(error = %e, "could not stop tracing before the final read");
        }
        while stream.round(true, PAGES_PER_ROUND, |r| push(&mut agg, r))? {}
    }
    let companion_lost = companion.as_mut().map(|(c, cs)| {
        let _ = c.set_tracing_on(false);
        while let Ok(true) = cs.round(true, PAGES_PER_ROUND, |r| cpush(&mut cagg, r)) {}
        let lost: u64 = c.cpu_stats().unwrap_or_default().iter().map(CpuStats::lost).sum();
        lost.max(cs.stats().missed_events)
    });
    let per_cpu = inst.cpu_stats().unwrap_or_default();
    let stats = stream.stats().clone();
    // The account poststop relies on after a crash, checked where it can
    // be: every record the kernel says was read went through the stream.
    if let Some(base) = &baseline {
        let kernel: BTreeMap<u32, u64> = per_cpu.iter().map(|s| (s.cpu, s.read_events)).collect();
        let unaccounted = unaccounted_reads(&kernel, &read_through(base, &stats.consumed));
        let ours: u64 = stats.consumed.values().sum();
        let theirs = kernel.values().sum::<u64>().saturating_sub(base.values().sum());
        if unaccounted > 0 || ours != theirs {
            tracing::warn!(unaccounted, ours, theirs, "the buffer's count of records read differs from this recorder's");
        } else {
            tracing::debug!(records = ours, "every record read is accounted for");
        }
    }
    let (window, mut analysis) = agg.finish();
    let mut from_companion = Vec::new();
    if companion_lost.is_some() {
        let (_, seen) = cagg.finish();
        for (name, n) in seen.syscalls {
            if let std::collections::btree_map::Entry::Vacant(e) = analysis.syscalls.entry(name) {
                from_companion.push(e.key().clone());
                e.insert(n);
            }
        }
    }
    analysis.set_ns_pids(ns_pids.all());
    if restored > 0 {
        tracing::info!(restored, "events switched back on after checkpoint episodes");
    }
    Ok(Recorded {
        window,
        analysis,
        stream: stats,
        per_cpu,
        quenched,
        restored,
        ended,
        no_event_syscalls: Vec::new(),
        layouts_cached: false,
        companion_lost,
        from_companion,
    })
}

/// Asks the tasks in the stream's records about their namespace pids
/// while they live: held records may wait long in a quiet container, so
/// the newest ones are asked about too.
fn learn_pids(ns_pids: &mut NsPids, stream: &Stream, agg: &Aggregator) {
    ns_pids.learn(stream.unsettled().iter().flat_map(|r| match r.event {
        Event::Fork { child_pid, .. } => [Some(r.pid), Some(child_pid)],
        _ => [Some(r.pid), None],
    }).flatten());
    ns_pids.learn(agg.analysis().processes.keys().copied());
}

/// What one round changes: numbers first seen, and the enter events to
/// switch off and back on.
struct QuenchPlan {
    /// Numbers the aggregate counted for the first time.
    new: Vec<i64>,
    /// Enter events to switch off (profile mode).
    off: BTreeSet<i64>,
    /// Enter events to switch back on: the call was CRIU's.
    on: Vec<i64>,
}

/// Plans the switching off of the enter event of every number newly seen
/// in the window, and back on of those switched off for a call that
/// turned out to be CRIU's (a checkpoint episode). Numbers in records
/// still held for time ordering (up to 10 ms of the newest data) that will
/// certainly count go off at once too: waiting for them to settle lets a
/// busy workload fill the buffer meanwhile. `off` holds the numbers that
/// are off.
fn plan_quench(stream: &Stream, agg: &mut Aggregator, mode: Mode, off: &BTreeSet<i64>) -> QuenchPlan {
    let new = agg.take_new();
    let on = agg.take_restored();
    if mode != Mode::Profile {
        return QuenchPlan { new, off: BTreeSet::new(), on: Vec::new() };
    }
    // A task stopped in the held records may be in a checkpoint: its
    // calls wait for the aggregator.
    let mut stopped = BTreeSet::new();
    let mut early = Vec::new();
    for r in stream.unsettled() {
        match r.event {
            Event::Signal { .. } => {
                stopped.insert(r.pid);
            }
            Event::SysEnter { nr, .. } if !stopped.contains(&r.pid) && agg.will_count(r) => early.push(nr),
            _ => {}
        }
    }
    let switch_off = new.iter().copied().chain(early).filter(|nr| !off.contains(nr)).collect();
    QuenchPlan { new, off: switch_off, on }
}

/// Carries out a [`QuenchPlan`] (saved first). Returns how many events
/// went off and on.
fn apply_quench(
    inst: &Instance,
    stream: &Stream,
    plan: QuenchPlan,
    off: &mut BTreeSet<i64>,
    seen: Option<&std::sync::mpsc::Sender<String>>,
) -> (usize, usize) {
    let mut went_off = 0;
    for nr in plan.off {
        let Some(ev) = stream.enter_event_for(nr) else { continue };
        match inst.set_event(&ev.system, &ev.name, false) {
            Ok(()) => {
                off.insert(nr);
                went_off += 1;
                // Its call seen, a slot's quench trigger has done its job:
                // the exit goes soft-off now, and fully off with the
                // trigger, which the helper takes off if the container is
                // busy.
                if let (Some(seen), Some(exit)) = (seen, quench::exit_event(&ev.name)) {
                    let _ = inst.set_event(&ev.system, &exit, false);
                    let _ = seen.send(exit);
                }
            }
            // Off is an optimisation.
            Err(e) => tracing::debug!(event = %ev.name, error = %e, "could not switch event off"),
        }
    }
    let mut went_on = 0;
    for nr in plan.on {
        let Some(ev) = stream.enter_event_for(nr) else { continue };
        // The exit first, so the in-kernel quench is back before the call
        // can be recorded again.
        if let (Some(_), Some(exit)) = (seen, quench::exit_event(&ev.name)) {
            if let Err(e) = inst.set_event(&ev.system, &exit, true) {
                tracing::warn!(event = %exit, error = %e, "could not switch the quench back on");
            }
        }
        match inst.set_event(&ev.system, &ev.name, true) {
            Ok(()) => {
                off.remove(&nr);
                went_on += 1;
            }
            // On again is needed not to miss calls.
            Err(e) => tracing::warn!(event = %ev.name, error = %e, "could not switch event back on"),
        }
    }
    (went_off, went_on)
}

/// What is saved: the aggregate, with the records the stream still holds
/// for time ordering pushed into a copy of it (a quiet container's last
/// calls wait there, within 10 ms of the newest record, and the kernel
/// recorded them once only), so the save accounts for every record read:
/// `baseline` plus what the stream consumed is its `read_through`.
fn snapshot(
    agg: &Aggregator,
    stream: &Stream,
    quenched: usize,
    ns_pids: &NsPids,
    profile: bool,
    baseline: Option<&BTreeMap<u32, u64>>,
) -> Snapshot {
    let copy = (!stream.unsettled().is_empty()).then(|| {
        let mut a = agg.clone();
        for r in stream.unsettled().iter().filter(|r| !(profile && matches!(r.event, Event::SysExit { .. }))) {
            a.push(r);
        }
        a
    });
    let agg = copy.as_ref().unwrap_or(agg);
    let mut analysis = agg.analysis().clone();
    analysis.set_ns_pids(ns_pids.all());
    let read_through = baseline.map(|base| read_through(base, &stream.stats().consumed));
    Snapshot { rule: agg.window().map(|w| w.rule.clone()), analysis, stream: stream.stats().clone(), quenched, read_through }
}

/// By CPU, the kernel's `read events` count a reader accounts for: what
/// was read before it started (`base`) plus what it decoded (`consumed`).
fn read_through(base: &BTreeMap<u32, u64>, consumed: &BTreeMap<u32, u64>) -> BTreeMap<u32, u64> {
    let mut through = base.clone();
    for (cpu, n) in consumed {
        *through.entry(*cpu).or_default() += n;
    }
    through
}

/// Records the kernel counts as read (`kernel`) beyond what `through`
/// accounts for, over all CPUs (a CPU absent from it counts from zero).
pub fn unaccounted_reads(kernel: &BTreeMap<u32, u64>, through: &BTreeMap<u32, u64>) -> u64 {
    kernel.iter().map(|(cpu, &k)| k.saturating_sub(through.get(cpu).copied().unwrap_or(0))).sum()
}

/// The kernel's `read events` count of each CPU of `inst`.
pub fn read_events(inst: &Instance) -> Option<BTreeMap<u32, u64>> {
    match inst.cpu_stats() {
        Ok(stats) => Some(stats.iter().map(|s| (s.cpu, s.read_events)).collect()),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the buffer's read counts; a crash would leave the profile incomplete");
            None
        }
    }
}

/// Waits up to `timeout` for the init task to exit or a signal to come.
fn wait(pidfd: Option<&OwnedFd>, signals: Option<&SignalFd>, timeout: PollTimeout) -> (bool, bool) {
    let Some(pidfd) = pidfd else {
        // No pidfd: the task was already gone when we started.
        return (true, false);
    };
    let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    if let Some(s) = signals {
        fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
    }
    if poll(&mut fds, timeout).is_err() {
        return (false, false);
    }
    let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    let exited = ready(&fds[0]);
    let signalled = fds.get(1).is_some_and(ready);
    (exited, signalled)
}

/// How the instance was handed over by [`hand_off`].
#[derive(Debug)]
pub enum Removal {
    /// A child of the recorder lets it go, and outlives the recorder.
    Child(i32),
    /// Done here, before returning.
    Done,
}

/// Runs `let_go` (removing the instance, or releasing a slot and lingering
/// on it) in a child process that outlives the recorder.
///
/// Why: letting go waits out RCU grace periods (about 0.1 s here), and the
/// recorder is a direct child of conmon (it was reparented to conmon, a
/// child subreaper, when prestart's hook exited). On the container's exit
/// conmon turns its subreaper flag off and then waits for *all* its
/// children before it exits, and `podman run` waits for conmon. A
/// grandchild that is still running when the recorder exits is reparented
/// past conmon, so the container's teardown does not wait for it.
/// (If conmon is still a subreaper at that moment, it waits as before:
/// slower, never wrong.)
///
/// Only forks when this process has a single thread, so the child may
/// allocate and log. Threads just joined still count until the kernel has
/// reaped them (a while under an emulator), so this waits up to
/// [`SINGLE_THREAD_WAIT`] for that. Otherwise, or if fork fails, runs here
/// (a slot is then released without lingering; the caller leaves its
/// teardown to a delayed gc).
pub fn hand_off(
    let_go: impl FnOnce(bool) -> crate::tracefs::Result<()>,
) -> crate::tracefs::Result<Removal> {
    let deadline = Instant::now() + SINGLE_THREAD_WAIT;
    while thread_count() != Some(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    if thread_count() == Some(1) {
        // SAFETY: single-threaded (checked above), so no lock or allocator
        // state is held by another thread at the fork; the child only lets
        // the instance go, logs, and _exits.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let code = match let_go(true) {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not let the trace instance go");
                        1
                    }
                };
                // SAFETY: ends the child without running the parent's
                // exit handlers or destructors twice.
                unsafe { nix::libc::_exit(code) }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => return Ok(Removal::Child(child.as_raw())),
            Err(e) => tracing::debug!(error = %e, "fork failed; letting the instance go here"),
        }
    }
    let_go(false)?;
    Ok(Removal::Done)
}

/// Waits (up to `limit`) until conmon, if it is our parent, has forked its
/// exit command. conmon turns its child-subreaper flag off just before that
/// fork, so once the exit command exists, a `remover` outliving us is
/// reparented past conmon. If we exited earlier, the remover would become
/// conmon's child, and conmon, which waits for all its children, would wait
/// out the rmdir after all (seen in about a quarter of the runs).
pub fn wait_for_conmon_exit_command(remover: i32, limit: Duration) {
    let me = std::process::id() as i32;
    let parent = nix::unistd::getppid().as_raw();
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    if comm.trim() != "conmon" {
        return;
    }
    let deadline = Instant::now() + limit;
    loop {
        let others = children_of(parent).into_iter().any(|c| c != me && c != remover);
        if others || Instant::now() >= deadline {
            if !others {
                tracing::debug!(conmon = parent, "conmon forked no exit command in time; it may wait for the instance's removal");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The children of every thread of `pid` (`/proc/PID/task/TID/children`).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
        .collect()
}

/// The number of threads of this process, from /proc/self/status.
/// How long [`hand_off`] waits for joined threads to be gone.
const SINGLE_THREAD_WAIT: Duration = Duration::from_secs(2);

fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// A pidfd for `pid`, or `None` if it no longer exists.
pub(crate) fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // no memory is passed.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Blocks SIGTERM/SIGINT/SIGHUP and returns a signalfd for them, so a
/// stop request ends the loop cleanly instead of killing the process.
fn signal_fd() -> Option<SignalFd> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().ok()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
}

/// CPU seconds and peak RSS of this process so far.
pub fn self_usage() -> (f64, u64) {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            (secs(u.user_time()) + secs(u.system_time()), u64::try_from(u.max_rss()).unwrap_or(0))
        }
        Err(_) => (0.0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beyond_the_save_are_counted_per_cpu() {
        let m = |v: &[(u32, u64)]| v.iter().copied().collect::<BTreeMap<u32, u64>>();
        let through = read_through(&m(&[(0, 100), (1, 5)]), &m(&[(0, 20)]));
        assert_eq!(through, m(&[(0, 120), (1, 5)]));
        assert_eq!(unaccounted_reads(&m(&[(0, 120), (1, 5)]), &through), 0);
        // CPU 1 read 3 the save does not hold; CPU 0's surplus in the save
        // (it cannot be) does not hide them.
        assert_eq!(unaccounted_reads(&m(&[(0, 110), (1, 8)]), &through), 3);
        // A CPU the save never saw counts from zero.
        assert_eq!(unaccounted_reads(&m(&[(0, 120), (1, 5), (2, 4)]), &through), 4);
    }

    #[test]
    fn children_of_lists_the_children_of_every_thread() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        // Forked from another thread (which has ended: the child is then
        // listed under a thread that lives).
        let mut from_thread =
            std::thread::spawn(|| std::process::Command::new("sleep").arg("5").spawn().unwrap()).join().unwrap();
        let kids = children_of(std::process::id() as i32);
        assert!(kids.contains(&(child.id() as i32)), "{kids:?}");
        assert!(kids.contains(&(from_thread.id() as i32)), "{kids:?}");
        for c in [&mut child, &mut from_thread] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        assert!(children_of(i32::MAX).is_empty());
    }
}
