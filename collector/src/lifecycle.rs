//! One traced container from start to stop.
//!
//! - `prestart` (the hook): validate, collect stale instances, respect the
//!   cap, start the detached recorder, claim a slot (profile mode,
//!   `record::pool`) or arm an instance of its own, tell the recorder "go"
//!   and wait until it says it is ready.
//! - `record` (the recorder, `collector record <id>`): leave the cgroups
//!   that go away with the container, stream until the init task exits,
//!   hand the instance to a child that lets it go (a slot back to the
//!   pool, where it lingers for the next container; an own instance
//!   removed), write the profile and the summary.
//! - `poststop` (the hook): wait for the recorder's summary; if the recorder
//!   died, fall back to what is left in the ring buffer and mark the result
//!   incomplete. The instance is let go on every path: by the recorder's
//!   child (nobody waits for that), else by poststop.
//! - `gc`: finish and let go instances whose container and recorder are
//!   gone; tear down slots left free past their linger time.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oci_spec::runtime::State;
use serde::{Deserialize, Serialize};

use crate::container::store::{self, sorted_annotations, PROFILE_FILE, STATE_FILE, SUMMARY_FILE};
use crate::container::store::{FinishedBy, RecorderStats};
use crate::container::store::Companion;
use crate::container::{live_pid, Recording, StateDir, Summary};
use crate::profile::{seccomp, Aggregator, Analysis, Rule, Window};
use crate::record::recorder::{self, Ended, Options, Snapshot};
use crate::record::stream::{Stream, StreamStats};
use crate::record::pool::{Claim, ClaimRequest, NoSlot, Phase as SlotPhase, Pool, SlotState};
use crate::record::{self, instance_name, Mode, DECODED_SYSTEMS, MODE_ANNOTATION};
use crate::tracefs::{CpuStats, Instance, TraceFs, INSTANCE_PREFIX};

/// The annotation that opts a container in.
pub const TRACE_ANNOTATION: &str = "oci-ftrace-syscall-analyzer/trace";
/// Pod sandbox ("pause") containers inherit the pod's annotations, but
/// their profile is of no use: CRI-O and containerd mark them.
const SANDBOX_MARKERS: &[(&str, &str)] =
    &[("io.kubernetes.cri-o.ContainerType", "sandbox"), ("io.kubernetes.cri.container-type", "sandbox")];

/// Whether a container with these annotations is to be traced; `Err` says
/// why not.
pub fn wants_tracing(annotations: Option<&std::collections::HashMap<String, String>>) -> std::result::Result<(), &'static str> {
    let get = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    if get(TRACE_ANNOTATION) != Some("true") {
        return Err("not annotated oci-ftrace-syscall-analyzer/trace=true");
    }
    if SANDBOX_MARKERS.iter().any(|(k, v)| get(k) == Some(v)) {
        return Err("a pod sandbox (pause) container");
    }
    Ok(())
}

/// Armed instances allowed at once by default: each one costs every
/// syscall on the machine about 25 ns.
pub const DEFAULT_MAX_INSTANCES: usize = 4;
pub const RECORDER_FILE: &str = "recorder.json";
pub const SNAPSHOT_FILE: &str = "aggregate.json";
/// A checkpoint joined with the trace, written by poststop when one exists.
pub const CORRELATION_FILE: &str = "correlation.json";

/// Instances younger than this are never collected: their prestart may
/// still be writing `state.json` in another state dir.
const GC_GRACE: Duration = Duration::from_secs(10);

/// Held by a gc while it finishes and releases (see [`gc`]).
const GC_LOCK: &str = "/run/oci-ftrace-syscall-analyzer/gc.lock";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Input(#[from] crate::container::input::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    TraceFs(#[from] crate::tracefs::Error),
    #[error(transparent)]
    Record(#[from] record::Error),
    #[error(transparent)]
    Stream(#[from] crate::record::stream::Error),
    #[error(transparent)]
    Profile(#[from] seccomp::Error),
    #[error("no recording for container {id}: {path} is missing (prestart did not arm it; see the hook log)")]
    NotArmed { id: String, path: PathBuf },
    #[error("trace instance {name} of container {id} is gone; nothing was recorded")]
    NoInstance { id: String, name: String },
    #[error("container {id} is already being traced (recorder pid {pid}); a second prestart leaves it alone")]
    AlreadyTraced { id: String, pid: u32 },
    #[error("starting the recorder {path}: {cause}")]
    Spawn { path: PathBuf, cause: std::io::Error },
    #[error("recorder for container {id}: prestart did not arm the instance (its go pipe closed)")]
    NoGo { id: String },
    #[error("{cause}; the profile of container {id} is held in {} until there is room (poststop or gc moves it)", held.display())]
    Held { id: String, held: PathBuf, cause: store::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: StateDir,
    /// Per-CPU ring buffer size; `None`: see [`record::buffer_size_kb`].
    pub buffer_size_kb: Option<u64>,
    pub max_instances: usize,
    /// The `collector` binary that runs the recorder; `None` records
    /// nothing live (poststop then reads the ring buffer once).
    pub collector: Option<PathBuf>,
    /// How long prestart waits for the recorder to be ready.
    pub ready_timeout: Duration,
    /// When set, prestart waits for the recorder until this instant instead
    /// of `ready_timeout`: the hook sets it just inside its own time limit,
    /// so a slow machine (measured: a debug recorder under an emulator
    /// needs 1-3 s) gets all of it instead of a fixed second.
    pub ready_deadline: Option<Instant>,
    /// How long poststop waits for the recorder to finish.
    pub finish_timeout: Duration,
    /// How long a released slot waits for the next container before it is
    /// torn down (`record::pool`).
    pub slot_linger: Duration,
    /// The only directories poststop looks for checkpoints in (see
    /// [`crate::checkpoint::discover`]).
    pub checkpoint_roots: Vec<PathBuf>,
}

impl Settings {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Settings {
            state_dir: StateDir::new(state_dir),
            buffer_size_kb: None,
            max_instances: DEFAULT_MAX_INSTANCES,
            collector: None,
            // Under the hook's own 2 s watchdog, so a slow recorder start
            // ends in "untraced, logged", not in a killed hook.
            ready_timeout: Duration::from_secs(1),
            ready_deadline: None,
            finish_timeout: Duration::from_secs(30),
            slot_linger: record::pool::DEFAULT_LINGER,
            checkpoint_roots: Vec::new(),
        }
    }
}

/// `recorder.json`: which process records this container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecorderInfo {
    pub pid: u32,
    pub start_ticks: Option<u64>,
    pub started_unix: u64,
    /// The recorder's child that removes the instance after the recorder
    /// has exited (see [`recorder::remove_detached`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remover: Option<Task>,
}

/// A process, told apart from a later one with the same pid by its start
/// time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub pid: i32,
    pub start_ticks: Option<u64>,
}

impl RecorderInfo {
    /// True while the recorder, or its child removing the instance, runs:
    /// the instance is theirs to remove, and touching it meanwhile only
    /// waits on the kernel's `event_mutex` that the rmdir holds.
    fn owns_instance(&self) -> bool {
        same_task_alive(self.pid as i32, self.start_ticks)
            || self.remover.as_ref().is_some_and(|t| same_task_alive(t.pid, t.start_ticks))
    }
}

/// True if `recorder.json` names a recorder or remover of this container
/// that still runs (see [`RecorderInfo::owns_instance`]).
fn instance_owned(state_dir: &StateDir, id: &str) -> bool {
    state_dir.read_json::<RecorderInfo>(id, RECORDER_FILE).is_ok_and(|r| r.owns_instance())
}

/// Prestart: validate, collect stale instances, write `state.json`, claim
/// a slot or arm an instance of its own, start the recorder.
pub fn prestart(settings: &Settings, state: &State) -> Result<Recording> {
    let id = state.id().to_string();
    let pid = live_pid(state)?;
    let tfs = TraceFs::locate_or_mount()?;
    let t0 = Instant::now();
    collect_stale(&tfs, settings);
    tracing::debug!(us = t0.elapsed().as_micros() as u64, "looked for stale instances and slots");

    let annotations = sorted_annotations(state.annotations().as_ref());
    let mode = Mode::from_annotation(annotations.get(MODE_ANNOTATION).map(String::as_str));
    let (start_ticks, comm) = task_facts(pid);
    let mut recording = Recording {
        id: id.clone(),
        oci_state: state.clone(),
        annotations,
        host_pid: pid,
        pid_start_ticks: start_ticks,
        runtime_comm: comm,
        instance: instance_name(&id),
        slot: None,
        companion: None,
        canaries: Vec::new(),
        tracefs: tfs.root().to_path_buf(),
        buffer_size_kb: record::buffer_size_kb(mode, settings.buffer_size_kb),
        mode,
        kernel_release: nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        started_unix: unix_now(),
        not_traced: None,
    };
    // A second prestart for a container whose recorder still runs (a
    // runtime bug, or someone feeding the hook by hand) must not touch its
    // instance or its state: that recording goes on.
    if let Ok(r) = settings.state_dir.read_json::<RecorderInfo>(&id, RECORDER_FILE) {
        if same_task_alive(r.pid as i32, r.start_ticks) {
            return Err(Error::AlreadyTraced { id, pid: r.pid });
        }
    }
    settings.state_dir.create_container_dir(&id)?;
    let untraced = |mut recording: Recording, why: String| -> Result<Recording> {
        tracing::warn!(id = %recording.id, "{why}");
        recording.not_traced = Some(why);
        settings.state_dir.write_json(&recording.id, STATE_FILE, &recording)?;
        Ok(recording)
    };

    // Profile mode records in a slot, whose quench leaves out the
    // runtime's comm; full mode, or a comm no kernel filter can hold, gets
    // an instance of its own.
    let slot_comm = match mode {
        Mode::Profile => recording.runtime_comm.as_deref().and_then(record::quench::plain).map(str::to_string),
        Mode::Full => None,
    };
    let own_name = instance_name(&id);
    // A restarted container keeps its id; its old instance is ours to drop,
    // unless the last run's remover is still at it.
    if let Some(old) = tfs.open_instance(&own_name)? {
        if instance_owned(&settings.state_dir, &id) {
            return untraced(recording, "not traced: the last run's instance of this container is still being removed".into());
        }
        tracing::warn!(instance = %own_name, "removing a leftover instance of this container");
        old.remove()?;
    }
    // Counting and arming under one machine-wide lock: concurrent
    // prestarts see each other's instances, so the cap holds (twelve at
    // once against a cap of 4 armed up to 12 when the count came first).
    let cap_lock = crate::tracefs::WriterLock::acquire();
    // Instances on their way out record nothing and do not count.
    let own_armed = tfs
        .our_instances()?
        .iter()
        .filter(|n| !record::pool::is_slot(n))
        .filter(|n| tfs.open_instance(n).ok().flatten().is_some_and(|i| i.is_recording()))
        .count();
    let cap_reason = |armed: usize| {
        format!(
            "not traced: {armed} containers are traced already (cap {}); every armed instance slows every syscall on the machine",
            settings.max_instances
        )
    };
    if slot_comm.is_none() {
        let in_slots = Pool::at_default().slots().iter().filter(|s| matches!(s.phase, SlotPhase::InUse { .. })).count();
        if own_armed + in_slots >= settings.max_instances {
            return untraced(recording, cap_reason(own_armed + in_slots));
        }
    }
    // state.json goes first: a concurrent gc then knows whose container
    // this is; the recorder reads it again after "go".
    settings.state_dir.write_json_unsynced(&id, STATE_FILE, &recording)?;
    // The recorder starts (exec, layouts) while the instance is armed: it
    // waits for "go" before it touches the instance. Dropping `spawned`
    // without `go` (arming failed) makes it exit.
    let spawned = settings.collector.as_deref().map(|c| spawn_recorder(c, &settings.state_dir, &id));
    // What arming costs this start (a slot's claim: its writes, the wait
    // for its lock; an own instance: creating it), for the log and bench.
    let arming = Instant::now();
    let inst = match &slot_comm {
        Some(comm) => {
            let pool = Pool::at_default();
            let req = ClaimRequest {
                id: &id,
                state_dir: settings.state_dir.root(),
                pid,
                comm,
                cap: settings.max_instances,
                other_armed: own_armed,
                linger: settings.slot_linger,
                buffer_size_kb: recording.buffer_size_kb,
            };
            match pool.claim(&tfs, &req)? {
                Ok(claimed) => {
                    recording.instance = claimed.inst.name().to_string();
                    recording.slot = Some(claimed.claim);
                    recording.canaries.extend(claimed.canary);
                    claimed.inst
                }
                Err(NoSlot::Cap { armed }) => return untraced(recording, cap_reason(armed)),
                Err(NoSlot::Full { slots }) => {
                    return untraced(recording, format!("not traced: all {slots} trace slots are taken (cap {})", settings.max_instances))
                }
            }
        }
        None => record::arm(&tfs, &own_name, &[pid], record::buffer_size_kb(mode, settings.buffer_size_kb), mode)?,
    };
    let arm_us = arming.elapsed().as_micros() as u64;
    if mode == Mode::Full {
        if let Some((companion, canary)) = claim_companion(&tfs, settings, &recording, own_armed + 1) {
            recording.companion = Some(companion);
            recording.canaries.extend(canary);
        }
    }
    if let Err(e) = settings.state_dir.write_json_unsynced(&id, STATE_FILE, &recording) {
        // Nobody would know whose records these are: give the instance up.
        let _ = let_go(&tfs, &recording);
        return Err(e.into());
    }
    // Only now: a give-up (abandon_prestart) waits for this lock, so it
    // finds the claim and the state.json that names it, or neither.
    drop(cap_lock);
    tracing::info!(id = %id, pid, instance = %recording.instance, ?mode, arm_us = arm_us, "armed");

    let wait = settings.ready_deadline.map_or(settings.ready_timeout, |d| d.saturating_duration_since(Instant::now()));
    // Without a ready recorder the hook switches the syscall events on
    // itself: the container's calls reach the ring buffer either way.
    let late = match spawned {
        Some(spawned) => match spawned.and_then(|s| s.go_and_wait(wait)) {
            Ok(Started::Ready(rpid)) => {
                tracing::info!(id = %id, recorder = rpid, "recorder ready");
                return Ok(recording);
            }
            Ok(Started::Late(rpid)) => {
                tracing::warn!(
                    id = %id,
                    recorder = rpid,
                    "recorder not ready within {} ms; syscall events switched on without it (it reads them once it is up)",
                    wait.as_millis()
                );
                true
            }
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "recorder did not start; poststop will read the ring buffer");
                false
            }
        },
        None => false,
    };
    // A slot's syscall events are on already.
    if recording.slot.is_none() {
        record::enable_syscalls(&inst)?;
        // A late recorder switches the exit events off itself once it is
        // up; 360 writes (plus listing the events) would make a late start
        // later.
        if !late {
            record::tune(&inst, mode, &inst.event_names("syscalls")?)?;
        }
    }
    Ok(recording)
}

/// A pool error as the tracefs error it (nearly always) is.
fn record_to_tracefs(e: record::Error) -> crate::tracefs::Error {
    match e {
        record::Error::TraceFs(e) => e,
        other => crate::tracefs::Error::Read { path: PathBuf::from(record::pool::POOL_DIR), cause: std::io::Error::other(other.to_string()) },
    }
}

/// Full mode's companion: a slot beside the container's own instance,
/// quenched in the kernel, so that a full record that loses events does
/// not lose a call from the allowlist. `None` (logged) if no slot can be
/// had: the recording then goes on without one.
fn claim_companion(tfs: &TraceFs, settings: &Settings, recording: &Recording, armed: usize) -> Option<(Companion, Option<i32>)> {
    let comm = recording.runtime_comm.as_deref().and_then(record::quench::plain)?;
    let req = ClaimRequest {
        id: &recording.id,
        state_dir: settings.state_dir.root(),
        pid: recording.host_pid,
        comm,
        cap: settings.max_instances,
        other_armed: armed,
        linger: settings.slot_linger,
        buffer_size_kb: None,
    };
    match Pool::at_default().claim(tfs, &req) {
        Ok(Ok(c)) => Some((Companion { instance: c.inst.name().to_string(), claim: c.claim }, c.canary)),
        Ok(Err(why)) => {
            tracing::warn!(id = %recording.id, ?why, "full mode without a companion slot: events the full record loses may lose calls");
            None
        }
        Err(e) => {
            tracing::warn!(id = %recording.id, error = %e, "full mode without a companion slot: events the full record loses may lose calls");
            None
        }
    }
}

/// Lets go of a recording's instances: a slot is made ready for the next
/// container (see `record::pool`), an instance of its own is removed.
fn let_go(tfs: &TraceFs, recording: &Recording) -> Result<()> {
    let pool = Pool::at_default();
    if let Some(c) = &recording.companion {
        pool.release(tfs, &c.claim)?;
    }
    match &recording.slot {
        Some(claim) => {
            pool.release(tfs, claim)?;
        }
        None => {
            if let Some(inst) = tfs.open_instance(&recording.instance)? {
                inst.remove()?;
            }
        }
    }
    Ok(())
}

/// How the recorder's start went.
enum Started {
    /// It said "ready": its pid.
    Ready(u32),
    /// Still starting when the wait ended: its pid.
    Late(u32),
}

/// Removes stale instances before this container is armed. Removing one
/// waits out a grace period per in-kernel quench trigger (about 1 s, see
/// `tracefs::Instance::clear_triggers`), too long for a container's start:
/// with a collector binary, a detached `collector gc` does it.
fn collect_stale(tfs: &TraceFs, settings: &Settings) {
    let stale = match stale_instances(tfs, &settings.state_dir) {
        Ok((stale, _)) => stale.len(),
        Err(e) => return tracing::warn!(error = %e, "could not look for stale instances"),
    };
    let pool = Pool::at_default();
    let slots = slot_chores(tfs, &pool, false).len() + orphan_slots(tfs, &pool).map(|o| o.len()).unwrap_or(0);
    if stale + slots == 0 {
        return;
    }
    if let Some(collector) = settings.collector.as_deref() {
        match spawn_gc(collector, &settings.state_dir, None) {
            Ok(()) => return tracing::info!(stale, slots, "stale instances and slots left to a detached gc"),
            Err(e) => tracing::warn!(error = %e, "could not start a detached gc; collecting here"),
        }
    }
    match gc(tfs, &settings.state_dir, false) {
        Ok(report) => tracing::info!(removed = ?report.removed, released = ?report.released, "collected stale instances"),
        Err(e) => tracing::warn!(error = %e, "could not collect stale instances"),
    }
}

/// Starts `collector gc` detached: new session, no stdio, cwd `/`;
/// `after` some time (its `--after`).
fn spawn_gc(collector: &Path, state_dir: &StateDir, after: Option<Duration>) -> Result<()> {
    let mut cmd = Command::new(collector);
    cmd.arg("gc").arg("--state-dir").arg(state_dir.root()).current_dir("/");
    if let Some(after) = after {
        cmd.arg("--after").arg(after.as_secs().to_string());
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid, sigprocmask and close_range are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::setsid();
            unblock_signals();
            nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|cause| Error::Spawn { path: collector.to_path_buf(), cause })?;
    // Detached: never waited for here.
    drop(child);
    Ok(())
}

/// Prestart ran out of time (the hook's watchdog or a signal): stop the
/// recorder it may have started, remove the instance and mark the
/// container untraced, so nothing is left half-armed. A live recorder holds
/// the instance's pipes open, so removing the instance alone fails (EBUSY)
/// and leaves a recorder streaming a torn-down instance into a wrong
/// profile (seen under an emulator).
/// The caller's other threads may still be arming: the removal is
/// repeated once the state is written, and the caller exits right after.
/// With a `collector` binary, the removal (seconds: one grace period per
/// quench trigger) goes to a detached `collector gc`, which removes the
/// instance of a container marked untraced; the hook's own limit is near.
pub fn abandon_prestart(tfs: &TraceFs, state_dir: &StateDir, id: &str, why: &str, collector: Option<&Path>) -> Result<()> {
    // Prestart claims and names its slot under this lock. Held until the
    // process exits (its caller exits right after this returns; the fd
    // closes then), the give-up sees both or neither, and no claim can
    // follow it; the gc started below waits for it.
    std::mem::forget(crate::tracefs::WriterLock::acquire());
    let deadline = Instant::now() + Duration::from_secs(1);
    let mark = || -> Result<()> {
        if let Ok(mut recording) = state_dir.read_json::<Recording>(id, STATE_FILE) {
            recording.not_traced = Some(format!("not traced: {why}"));
            state_dir.write_json(id, STATE_FILE, &recording)?;
        }
        Ok(())
    };
    if let Some(collector) = collector {
        stop_recorder(state_dir, id, deadline);
        mark()?;
        stop_recorder(state_dir, id, deadline);
        if spawn_gc(collector, state_dir, None).is_ok() {
            return Ok(());
        }
    }
    stop_recorder_and_remove(tfs, state_dir, id, deadline)?;
    mark()?;
    stop_recorder_and_remove(tfs, state_dir, id, deadline)
}

/// Kills the container's recorder, if one runs, and waits (until
/// `deadline`) for it to be gone.
fn stop_recorder(state_dir: &StateDir, id: &str, deadline: Instant) {
    while kill_recorder(state_dir, id) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends SIGKILL to the container's recorder if `recorder.json` names one
/// that still runs; true if it did.
fn kill_recorder(state_dir: &StateDir, id: &str) -> bool {
    let Ok(r) = state_dir.read_json::<RecorderInfo>(id, RECORDER_FILE) else { return false };
    if !same_task_alive(r.pid as i32, r.start_ticks) {
        return false;
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(r.pid as i32), nix::sys::signal::Signal::SIGKILL);
    true
}

fn stop_recorder_and_remove(tfs: &TraceFs, state_dir: &StateDir, id: &str, deadline: Instant) -> Result<()> {
    loop {
        // Read each time: a recorder still starting writes it a bit later,
        // and prestart names the slot once it has one.
        kill_recorder(state_dir, id);
        let recording = state_dir.read_json::<Recording>(id, STATE_FILE).ok();
        let result = match recording.as_ref().filter(|r| r.slot.is_some() || r.companion.is_some()) {
            Some(r) => let_go(tfs, r),
            None => {
                let Some(inst) = tfs.open_instance(&instance_name(id))? else { return Ok(()) };
                inst.remove().map_err(Error::from)
            }
        };
        match result {
            Ok(()) => return Ok(()),
            // The killed recorder's files close as it exits.
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e),
        }
    }
}

/// Unblocks every signal in a forked child before its exec: the hook
/// blocks its stop signals from its first instruction, and a child would
/// inherit that. Async-signal-safe (sigprocmask only).
fn unblock_signals() {
    // SAFETY: an empty set built on the stack, then one sigprocmask call.
    unsafe {
        let mut set: nix::libc::sigset_t = std::mem::zeroed();
        nix::libc::sigemptyset(&mut set);
        nix::libc::sigprocmask(nix::libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// A recorder started by [`spawn_recorder`], waiting for "go".
struct Spawned {
    pid: u32,
    collector: PathBuf,
    /// Its fd 3: "ready" comes back here.
    ready: OwnedFd,
    /// Its fd 4: "go" goes there once the instance is armed.
    go: OwnedFd,
}

/// Starts `collector record <id>` detached: new session, no stdio, only
/// the ready pipe as fd 3 and the go pipe as fd 4.
fn spawn_recorder(collector: &Path, state_dir: &StateDir, id: &str) -> Result<Spawned> {
    let spawn_err = |cause| Error::Spawn { path: collector.to_path_buf(), cause };
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| spawn_err(std::io::Error::from(e)));
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    let (ready_fd, go_fd) = (ready_write.as_raw_fd(), go_read.as_raw_fd());
    let mut cmd = Command::new(collector);
    cmd.arg("record")
        .arg("--state-dir")
        .arg(state_dir.root())
        .arg("--ready-fd")
        .arg("3")
        .arg("--go-fd")
        .arg("4")
        // An id may start with '-': never an option.
        .arg("--")
        .arg(id)
        // Not the bundle (the runtime's cwd): the container's directories
        // are removed while the recorder still runs.
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls are made:
    // setsid, sigprocmask, dup2 and close_range.
    unsafe {
        cmd.pre_exec(move || {
            nix::libc::setsid();
            unblock_signals();
            // Both out of the way first (either may be fd 3 or 4 now),
            // then into place; dup2 clears close-on-exec on the copies.
            let high = [ready_fd, go_fd].map(|fd| nix::libc::fcntl(fd, nix::libc::F_DUPFD, 10));
            for (from, to) in high.into_iter().zip([3, 4]) {
                if from < 0 || nix::libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Nothing the runtime handed the hook may stay open: a runtime
            // waiting for EOF on a pipe would wait for the recorder.
            nix::libc::syscall(nix::libc::SYS_close_range, 5u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    let pid = child.id();
    // The child is detached; it is never waited for here.
    drop(child);
    drop((ready_write, go_read));
    Ok(Spawned { pid, collector: collector.to_path_buf(), ready: ready_read, go: go_write })
}

impl Spawned {
    /// Tells the recorder the instance is armed, then waits up to
    /// `timeout` for "ready". An error if it exited first.
    fn go_and_wait(self, timeout: Duration) -> Result<Started> {
        let (pid, collector) = (self.pid, self.collector);
        let spawn_err = |cause| Error::Spawn { path: collector.clone(), cause };
        let mut go = std::fs::File::from(self.go);
        // EPIPE here means it has exited already; the read below says so.
        let _ = go.write_all(b"go\n");
        drop(go);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            let mut fds = [nix::poll::PollFd::new(self.ready.as_fd(), nix::poll::PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX)) {
                Ok(0) => return Ok(Started::Late(pid)),
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return Ok(Started::Late(pid)),
            }
        }
        // Readable: "ready", or end of file if the recorder exited first.
        let mut buf = [0u8; 16];
        match nix::unistd::read(self.ready.as_raw_fd(), &mut buf) {
            Ok(n) if buf[..n].starts_with(b"ready") => Ok(Started::Ready(pid)),
            _ => Err(spawn_err(std::io::Error::other(format!("recorder pid {pid} exited before it was ready")))),
        }
    }
}

/// Blocks until prestart writes "go" (the instance is armed). End of file
/// means prestart gave up arming (or died): nothing is ours to record.
fn wait_for_go(mut go: std::fs::File, id: &str) -> Result<()> {
    let mut buf = [0u8; 8];
    loop {
        match std::io::Read::read(&mut go, &mut buf) {
            Ok(n) if buf[..n].starts_with(b"go") => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => return Err(Error::NoGo { id: id.to_string() }),
        }
    }
}

/// The recorder process: `collector record <id>`. `ready_fd` is the pipe to
/// prestart, written once the stream is open; `go_fd` the pipe from it,
/// written once the instance is armed (end of file: it was not).
pub fn record(state_dir: &StateDir, id: &str, ready_fd: Option<i32>, go_fd: Option<i32>) -> Result<Summary> {
    let me = std::process::id();
    let recording: Recording = state_dir.read_json(id, STATE_FILE)?;
    let mut info = RecorderInfo { pid: me, start_ticks: task_facts(me as i32).0, started_unix: unix_now(), remover: None };
    state_dir.write_json_unsynced(id, RECORDER_FILE, &info)?;
    // This boot's layouts need no instance: read while prestart arms it.
    let cache = PathBuf::from(record::layouts::CACHE_DIR);
    let cached = record::layouts::load_cached(record::DECODED_SYSTEMS, &cache);
    if let Some(fd) = go_fd {
        // SAFETY: fd 4 was set up by prestart for us alone; taking
        // ownership closes it after the read.
        let go = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        wait_for_go(go, id)?;
    }
    // Again: prestart names the slot it claimed after it started us.
    let recording: Recording = if go_fd.is_some() { state_dir.read_json(id, STATE_FILE)? } else { recording };
    let tfs = TraceFs::at(&recording.tracefs);
    let Some(inst) = tfs.open_instance(&recording.instance)? else {
        return Err(Error::NoInstance { id: id.to_string(), name: recording.instance.clone() });
    };
    let layouts = match cached {
        Some(l) => l,
        None => record::layouts::load_from_tracefs(&inst, record::DECODED_SYSTEMS, Some(&cache)).map_err(record::Error::from)?,
    };
    // No guard here: if the recorder fails, the instance stays for
    // poststop (or gc) to read what it holds.
    let ready = || {
        if let Some(fd) = ready_fd {
            // SAFETY: fd 3 was set up by prestart for us alone; taking
            // ownership closes it after the write.
            let mut pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            let _ = pipe.write_all(b"ready\n");
        }
    };
    // Out of the container's cgroups, once the hook is released (moving
    // costs milliseconds a container start need not wait for; teardown
    // comes much later). Asked now, while the init task surely lives.
    let tied = record::cgroup::tied_to_container(
        &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
        &std::fs::read_to_string(format!("/proc/{}/cgroup", recording.host_pid)).unwrap_or_default(),
        id,
    );
    let leave_cgroups = || {
        let Some(why) = tied else {
            tracing::debug!("no cgroup of the recorder goes away with the container; staying");
            return;
        };
        let (_moved, failed) = record::cgroup::leave_to_root(me);
        tracing::debug!(why = %why, "left the cgroups");
        for e in failed {
            tracing::debug!(error = %e, "cgroup move failed");
        }
    };
    let save = |snap: &Snapshot| {
        if let Err(e) = state_dir.write_json(id, SNAPSHOT_FILE, snap) {
            tracing::warn!(error = %e, "could not save the aggregate");
        }
    };
    let opts = Options {
        mode: recording.mode,
        runtime_comm: recording.runtime_comm.clone(),
        slot: recording.slot.clone().map(|c| (Pool::at_default(), c)),
        companion: recording.companion.as_ref().and_then(|c| tfs.open_instance(&c.instance).ok().flatten()),
        cpu_stat: record::cgroup::cpu_stat_file(recording.host_pid),
        foreign: recording.canaries.clone(),
        ..Options::default()
    };
    // On an error the instance stays: poststop reads what is left once it
    // sees this process gone.
    let recorded = recorder::run(&inst, layouts, recording.host_pid, &opts, ready, leave_cgroups, save)?;
    let drained = Instant::now();
    if !recorded.no_event_syscalls.is_empty() {
        tracing::info!(count = recorded.no_event_syscalls.len(), syscalls = ?recorded.no_event_syscalls, "syscalls with no event on this kernel (invisible in profile mode)");
    }
    let (cpu_seconds, max_rss_kib) = recorder::self_usage();
    let stats = RecorderStats {
        pid: me,
        cpu_seconds,
        max_rss_kib,
        pages: recorded.stream.pages,
        bytes: recorded.stream.bytes,
        records: recorded.stream.records,
        quenched: recorded.quenched,
        restored: recorded.restored,
        ended: Some(recorded.ended),
        layouts_cached: recorded.layouts_cached,
    };
    let mut notes = Vec::new();
    if recorded.ended == Ended::InstanceGone {
        notes.push("the trace instance was removed by someone else while recording".to_string());
    }
    let ended = recorded.ended;
    let outcome = Outcome {
        window: recorded.window,
        analysis: recorded.analysis,
        per_cpu: recorded.per_cpu,
        stream: recorded.stream,
        finished_by: FinishedBy::Recorder,
        recorder: Some(stats),
        notes,
        no_event_syscalls: recorded.no_event_syscalls,
        companion_lost: recorded.companion_lost,
        from_companion: recorded.from_companion,
    };
    // Everything is read and the pipes are closed, so the instance can go
    // now, beside the writing: a slot back to the pool (then its linger
    // and perhaps its teardown), an instance of its own removed. That
    // waits out RCU grace periods (about 0.1 s here), so a child of ours
    // does it and outlives us: see `hand_off`. Poststop waits only for the
    // summary.
    // The slot this recording lets go of (its own, or full mode's
    // companion), and how long it waits for the next container.
    let slot = recording.slot.clone().or_else(|| recording.companion.as_ref().map(|c| c.claim.clone()));
    let linger = slot
        .as_ref()
        .and_then(|c| Pool::at_default().get(c.index))
        .map_or(record::pool::DEFAULT_LINGER, |s| Duration::from_secs(s.linger_secs));
    let removal = (ended != Ended::InstanceGone).then(|| {
        let slot = slot.clone();
        let own = recording.slot.is_none().then_some(inst);
        let tfs = tfs.clone();
        recorder::hand_off(move |detached| {
            let removed = own.map_or(Ok(()), |i| i.remove());
            if let Some(claim) = slot {
                let pool = Pool::at_default();
                let released = pool.release(&tfs, &claim).map_err(record_to_tracefs)?;
                if released && detached {
                    pool.linger_then_reap(&tfs, &claim, linger).map_err(record_to_tracefs)?;
                }
            }
            removed
        })
    });
    let remover = match removal {
        Some(Ok(recorder::Removal::Child(pid))) => Some(pid),
        _ => None,
    };
    // Released here, without a lingering child: a gc started now, that
    // waits out the linger first, tears the slot down if nobody claimed it.
    if let (Some(Ok(recorder::Removal::Done)), Some(_)) = (&removal, &slot) {
        let me = std::env::current_exe().map_err(|cause| Error::Spawn { path: "/proc/self/exe".into(), cause });
        if let Err(e) = me.and_then(|exe| spawn_gc(&exe, state_dir, Some(linger + Duration::from_secs(1)))) {
            tracing::warn!(error = %e, "the slot stays armed until the next gc");
        }
    }
    if let Some(pid) = remover {
        // Before the summary, which is what poststop waits for.
        info.remover = Some(Task { pid, start_ticks: task_facts(pid).0 });
        if let Err(e) = state_dir.write_json_unsynced(id, RECORDER_FILE, &info) {
            tracing::warn!(error = %e, "could not record the remover's pid");
        }
    }
    let written = write_outcome(state_dir, &recording, outcome);
    if written.is_ok() {
        if let Ok(dir) = state_dir.container_dir(id) {
            let _ = std::fs::remove_file(dir.join(SNAPSHOT_FILE));
        }
    }
    if let Some(pid) = remover {
        recorder::wait_for_conmon_exit_command(pid, Duration::from_millis(200));
    }
    tracing::info!(id = %id, summary_ms = drained.elapsed().as_millis() as u64, removal = ?removal, "recorder finished");
    if let Some(Err(e)) = removal {
        return Err(e.into());
    }
    written
}

/// Poststop: wait for the recorder's result, or fall back to the ring
/// buffer. `Ok(None)` when the container was not traced.
pub fn poststop(settings: &Settings, state: &State) -> Result<Option<Summary>> {
    let id = state.id();
    let recording: Recording = match settings.state_dir.read_json(id, STATE_FILE) {
        Ok(r) => r,
        Err(store::Error::Read { path, .. }) => return Err(Error::NotArmed { id: id.to_string(), path }),
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = &recording.not_traced {
        tracing::info!(id = %id, "{why}");
        return Ok(None);
    }
    let summary = finish(settings, &recording)?;
    correlate_checkpoint(settings, &recording, &summary);
    Ok(Some(summary))
}

/// Poststop's result: the recorder's summary, or the fallback's.
fn finish(settings: &Settings, recording: &Recording) -> Result<Summary> {
    let id = recording.id.as_str();
    let tfs = TraceFs::at(&recording.tracefs);
    let recorder: Option<RecorderInfo> = settings.state_dir.read_json(id, RECORDER_FILE).ok();
    let mut reason = None;
    if let Some(r) = &recorder {
        match wait_for_result(&settings.state_dir, recording, r, settings.finish_timeout) {
            Waited::Summary(summary) => {
                // The recorder (or its child) is removing the instance
                // now; poststop does not wait the grace periods that takes.
                // Read again: the remover is written just before the summary.
                let r: RecorderInfo = settings.state_dir.read_json(id, RECORDER_FILE).unwrap_or_else(|_| r.clone());
                if r.owns_instance() {
                    tracing::debug!(id = %id, recorder = r.pid, "the recorder lets the instance go");
                } else {
                    let_go(&tfs, recording)?;
                }
                return Ok(*summary);
            }
            Waited::RecorderGone => {}
            Waited::TimedOut => {
                tracing::warn!(id = %id, recorder = r.pid, "recorder still running; stopping it");
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(r.pid as i32), nix::sys::signal::Signal::SIGKILL);
                reason = Some(format!("the recorder did not finish within {} s and was killed", settings.finish_timeout.as_secs()));
            }
        }
    }
    // The recorder's outcome, held while the state dir was full: into
    // place now if there is room, else it stays held (and this says so).
    match crate::container::held::place(&settings.state_dir, id) {
        Ok(_) => {}
        Err(cause) => {
            if !instance_owned(&settings.state_dir, id) {
                let_go(&tfs, recording)?;
            }
            return Err(Error::Held { id: id.to_string(), held: crate::container::held::dir_for(&settings.state_dir, id), cause });
        }
    }
    if let Some(summary) = fresh_summary(&settings.state_dir, recording) {
        if !instance_owned(&settings.state_dir, id) {
            let_go(&tfs, recording)?;
        }
        return Ok(summary);
    }
    let reason = match (recorder, reason) {
        (_, Some(r)) => Some(r),
        (Some(r), None) => Some(format!("the recorder (pid {}) died before finishing", r.pid)),
        (None, None) => None,
    };
    fallback(&tfs, &settings.state_dir, recording, FinishedBy::Poststop, reason)
}

/// If a checkpoint of this container exists, joins it with the trace and
/// writes `correlation.json`. Looked for only under the configured
/// checkpoint roots: see [`crate::checkpoint::discover`]. Failures are
/// logged: the profile is written already.
fn correlate_checkpoint(settings: &Settings, recording: &Recording, summary: &Summary) {
    use crate::checkpoint::{self, correlate, discover};
    let (dirs, problem) = discover::search_dirs(&settings.checkpoint_roots, &recording.annotations);
    if let Some(e) = problem {
        tracing::warn!(id = %recording.id, "{e}");
    }
    let Some(path) = discover::find_own(&dirs, &recording.id) else { return };
    let opts = checkpoint::LoadOptions { memory: true, limits: checkpoint::Limits::DISCOVERY };
    let result = checkpoint::load(&path, &opts)
        .map_err(|e| e.to_line())
        .and_then(|c| correlate::correlate(summary, &c, &path).map_err(|e| e.to_string()))
        .and_then(|c| settings.state_dir.write_json(&recording.id, CORRELATION_FILE, &c).map_err(|e| e.to_string()));
    match result {
        Ok(written) => tracing::info!(id = %recording.id, checkpoint = %path.display(), report = %written.display(), "checkpoint correlated"),
        Err(e) => tracing::warn!(id = %recording.id, checkpoint = %path.display(), error = %e, "could not correlate the checkpoint"),
    }
}

/// How the wait for a recorder's result ended.
enum Waited {
    Summary(Box<Summary>),
    RecorderGone,
    TimedOut,
}

/// Waits until this run's summary is written or the recorder is gone, up
/// to `limit`. The recorder writes the summary a little before it exits
/// (it hands the instance to its remover first), so its pidfd alone would
/// wake too late: the summary is looked for every [`RESULT_POLL`] too.
/// Not inotify: closing an inotify fd waits out an SRCU grace period, 7 ms
/// measured on the container's stop path, more than this poll's latency.
fn wait_for_result(state_dir: &StateDir, recording: &Recording, r: &RecorderInfo, limit: Duration) -> Waited {
    let deadline = Instant::now() + limit;
    let pid = r.pid as i32;
    let pidfd = record::recorder::pidfd_open(pid);
    loop {
        if let Some(s) = fresh_summary(state_dir, recording) {
            return Waited::Summary(Box::new(s));
        }
        if !same_task_alive(pid, r.start_ticks) {
            // It may have written the summary just before it exited.
            return fresh_summary(state_dir, recording).map_or(Waited::RecorderGone, |s| Waited::Summary(Box::new(s)));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Waited::TimedOut;
        }
        let wait = left.min(RESULT_POLL);
        match &pidfd {
            Some(p) => {
                let mut fds = [nix::poll::PollFd::new(p.as_fd(), nix::poll::PollFlags::POLLIN)];
                let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX).max(1);
                let timeout = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
                if nix::poll::poll(&mut fds, timeout).is_err() {
                    std::thread::sleep(wait);
                }
            }
            None => std::thread::sleep(wait),
        }
    }
}

/// How often [`wait_for_result`] looks for the summary.
const RESULT_POLL: Duration = Duration::from_millis(2);

/// The summary written for this run of the container, if there is one.
fn fresh_summary(state_dir: &StateDir, recording: &Recording) -> Option<Summary> {
    state_dir
        .read_json::<Summary>(&recording.id, SUMMARY_FILE)
        .ok()
        .filter(|s| s.started_unix == recording.started_unix)
}

/// Builds the result from what is left in the ring buffer, merged with the
/// recorder's last saved aggregate. `reason` (the recorder's failure) marks
/// it incomplete: what the recorder read after its last save is gone.
fn fallback(
    tfs: &TraceFs,
    state_dir: &StateDir,
    recording: &Recording,
    by: FinishedBy,
    reason: Option<String>,
) -> Result<Summary> {
    let id = &recording.id;
    let Some(inst) = tfs.open_instance(&recording.instance)? else {
        return Err(Error::NoInstance { id: id.clone(), name: recording.instance.clone() });
    };
    // What the dead recorder read, counted by the kernel before the rest
    // is read here.
    let read_before = record::recorder::read_events(&inst);
    let saved: Option<Snapshot> = state_dir.read_json(id, SNAPSHOT_FILE).ok();
    let drained = drain(&inst, recording);
    // Read or not, the instance goes: a slot to the next container.
    let_go(tfs, recording)?;
    let (window, mut analysis, stream, per_cpu) = drained?;
    let mut notes = Vec::new();
    if let Some(r) = reason {
        let account = saved.as_ref().and_then(|s| s.read_through.as_ref()).filter(|_| recording.companion.is_none());
        match (account, &read_before) {
            (Some(through), Some(kernel)) => {
                let lost = record::recorder::unaccounted_reads(kernel, through);
                if lost > 0 {
                    notes.push(format!("{r}, having read {lost} trace records after its last save; calls among them are missing"));
                } else {
                    tracing::info!(id = %id, "{r}; its last save holds every record it read, the ring buffer the rest");
                }
            }
            _ => notes.push(format!("{r}; the profile is built from its last saved aggregate and the ring buffer's rest")),
        }
    }
    let mut window = window;
    if let Some(s) = saved {
        merge(&mut analysis, &s.analysis);
        if let Some(rule) = s.rule {
            window = Window { rule, opener: None };
        }
    }
    let outcome = Outcome {
        window,
        analysis,
        per_cpu,
        stream,
        finished_by: by,
        recorder: None,
        notes,
        no_event_syscalls: Vec::new(),
        companion_lost: None,
        from_companion: Vec::new(),
    };
    let summary = write_outcome(state_dir, recording, outcome)?;
    let _ = std::fs::remove_file(state_dir.container_dir(id)?.join(SNAPSHOT_FILE));
    Ok(summary)
}

/// Stops an instance and reads everything it still holds.
fn drain(inst: &Instance, recording: &Recording) -> Result<(Window, Analysis, StreamStats, Vec<CpuStats>)> {
    inst.set_tracing_on(false)?;
    let mut stream = Stream::open(inst, DECODED_SYSTEMS)?.without(&recording.canaries);
    let mut agg = Aggregator::new(recording.host_pid).with_runtime(recording.runtime_comm.as_deref());
    while stream.round(true, 64, |r| agg.push(r))? {}
    let per_cpu = inst.cpu_stats()?;
    let (window, analysis) = agg.finish();
    Ok((window, analysis, stream.stats().clone(), per_cpu))
}

/// Adds `other`'s counts into `into`.
fn merge(into: &mut Analysis, other: &Analysis) {
    for (k, v) in &other.syscalls {
        *into.syscalls.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &other.unnamed {
        *into.unnamed.entry(*k).or_default() += v;
    }
    for (k, m) in &other.errors {
        let e = into.errors.entry(k.clone()).or_default();
        for (errno, v) in m {
            *e.entry(errno.clone()).or_default() += v;
        }
    }
    for (tgid, p) in &other.processes {
        let q = into.processes.entry(*tgid).or_insert_with(|| crate::profile::Process { tgid: *tgid, ..Default::default() });
        if q.comm.is_empty() {
            q.comm = p.comm.clone();
        }
        q.exe = q.exe.clone().or_else(|| p.exe.clone());
        q.parent = q.parent.or(p.parent);
        q.ns_pid = q.ns_pid.or(p.ns_pid);
        for (k, v) in &p.syscalls {
            *q.syscalls.entry(k.clone()).or_default() += v;
        }
        q.total += p.total;
        q.first_ns = match (q.first_ns, p.first_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        q.last_ns = q.last_ns.max(p.last_ns);
    }
    into.events.total += other.events.total;
    into.events.in_window += other.events.in_window;
    into.events.syscalls_in_window += other.events.syscalls_in_window;
    into.events.excluded += other.events.excluded;
    into.episodes.extend(other.episodes.iter().cloned());
    into.episodes.sort_by_key(|e| e.start_ns);
    for (comm, n) in &other.other_tracers {
        *into.other_tracers.entry(comm.clone()).or_default() += n;
    }
}

/// Everything a finished recording needs to become files.
pub struct Outcome {
    pub window: Window,
    pub analysis: Analysis,
    pub per_cpu: Vec<CpuStats>,
    pub stream: StreamStats,
    pub finished_by: FinishedBy,
    pub recorder: Option<RecorderStats>,
    /// Extra reasons the result is incomplete.
    pub notes: Vec<String>,
    pub no_event_syscalls: Vec<String>,
    /// Events the full-mode companion lost (`None`: no companion read).
    pub companion_lost: Option<u64>,
    /// Calls only the companion saw.
    pub from_companion: Vec<String>,
}

/// Writes `seccomp.json` and `summary.json` (atomically) for a recording.
pub fn write_outcome(state_dir: &StateDir, recording: &Recording, o: Outcome) -> Result<Summary> {
    let id = &recording.id;
    let lost = o.per_cpu.iter().map(CpuStats::lost).sum::<u64>().max(o.stream.missed_events);
    let counts_exact = lost == 0 && o.stream.missed_pages == 0;
    let mut reasons = o.notes;
    match o.companion_lost {
        // The quenched companion saw every call: only the counts are short.
        Some(0) if !counts_exact => tracing::warn!(
            id = %id,
            lost,
            added = ?o.from_companion,
            "the full record lost events: counts are short, the allowlist is whole (companion)"
        ),
        Some(c) if c > 0 => reasons.push(format!(
            "the ring buffer lost {lost} events, and the quenched companion {c} (raise --buffer-size-kb)"
        )),
        _ if !counts_exact => reasons.push(format!("the ring buffer lost {lost} events (raise --buffer-size-kb)")),
        _ => {}
    }
    if o.window.rule == Rule::FirstEvent {
        reasons.push("no filter install or runtime marker was recorded; the window starts at the first event".into());
    }
    if !o.analysis.unnamed.is_empty() {
        let nrs: Vec<String> = o.analysis.unnamed.keys().map(|n| n.to_string()).collect();
        reasons.push(format!("syscall numbers without a name cannot be allowed: {}", nrs.join(", ")));
    }
    if o.stream.malformed > 0 {
        reasons.push(format!("{} trace records could not be decoded", o.stream.malformed));
    }
    for e in o.analysis.episodes.iter().filter(|e| e.late_stops > 0) {
        reasons.push(format!(
            "the checkpoint by {} (pid {}) stopped the container's tasks again after it was taken as over; calls counted in between may be CRIU's",
            e.tracer_comm, e.tracer_pid
        ));
    }
    if !o.analysis.episodes.is_empty() {
        tracing::info!(
            id = %id,
            episodes = o.analysis.episodes.len(),
            excluded = o.analysis.events.excluded,
            "checkpoint episodes: CRIU's calls kept out of the profile"
        );
    }

    let mut names: BTreeSet<String> = o.analysis.syscalls.keys().cloned().collect();
    let runtime_allowance: Vec<String> = crate::profile::window::runtime_allowance(recording.runtime_comm.as_deref())
        .iter()
        .filter(|n| !names.contains(**n))
        .map(|n| n.to_string())
        .collect();
    names.extend(runtime_allowance.iter().cloned());
    let profile = seccomp::build(&names)?;
    let profile_path = state_dir.container_dir(id)?.join(PROFILE_FILE);
    let profile_json = seccomp::to_json(&profile)?;

    let summary = Summary {
        id: id.clone(),
        host_pid: recording.host_pid,
        mode: recording.mode,
        finished_by: Some(o.finished_by),
        rule_text: o.window.rule.describe(),
        rule: o.window.rule,
        complete: reasons.is_empty(),
        incomplete_reasons: reasons,
        lost_events: lost,
        counts_exact,
        from_companion: o.from_companion,
        per_cpu: o.per_cpu,
        malformed_records: o.stream.malformed,
        analysis: o.analysis,
        recorder: o.recorder,
        no_event_syscalls: o.no_event_syscalls,
        runtime_allowance,
        profile: profile_path.clone(),
        arch: recording.arch.clone(),
        kernel_release: recording.kernel_release.clone(),
        started_unix: recording.started_unix,
        finished_unix: unix_now(),
        trace_clock_unix: trace_clock_unix(),
    };
    // Both or neither: a profile without its summary (a full disk between
    // the two) would be read as this run's by nobody and trusted by some.
    let summary_path = state_dir.container_dir(id)?.join(SUMMARY_FILE);
    let mut summary_json = serde_json::to_vec_pretty(&summary)
        .map_err(|cause| store::Error::Serialize { path: summary_path.clone(), cause })?;
    summary_json.push(b'\n');
    if let Err(cause) = store::write_all_atomic(&[(&profile_path, profile_json.as_bytes()), (&summary_path, &summary_json)]) {
        // Every call was read once from the kernel: kept elsewhere, or
        // lost (a full state dir).
        return Err(match crate::container::held::hold(state_dir, id, profile_json.as_bytes(), &summary_json) {
            Ok(held) => Error::Held { id: id.clone(), held, cause },
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "could not hold the profile either");
                cause.into()
            }
        });
    }
    if summary.complete {
        tracing::info!(id = %id, syscalls = names.len(), rule = %summary.rule_text, "profile written");
    } else {
        tracing::warn!(id = %id, reasons = ?summary.incomplete_reasons, "profile written but incomplete");
    }
    Ok(summary)
}

/// What a collection pass did.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Instances removed; those with a recording were finished first.
    pub removed: Vec<String>,
    /// Instances of containers that still run.
    pub kept: Vec<String>,
    /// Slots given back to the pool; those with a recording were finished
    /// first.
    pub released: Vec<String>,
    /// Slots torn down (unclaimed past their linger time).
    pub reaped: Vec<String>,
}

/// Removes our instances whose container is gone (pid dead or reused) and
/// whose recorder is not running, and does the same for slots: finishes
/// and releases those of gone containers, and tears down those left free
/// past their linger time (or every free one with `reap_idle`) whose
/// lingering process died. When a state dir has the recording, it is
/// finished first, so the profile is not lost.
pub fn gc(tfs: &TraceFs, state_dir: &StateDir, reap_idle: bool) -> Result<GcReport> {
    // One gc at a time finishes and releases: two finishing one recording
    // would both drain it, and the second write an empty profile over the
    // first's.
    let one_gc = crate::tracefs::lock_file(GC_LOCK, nix::fcntl::FlockArg::LockExclusive);
    let (stale, kept) = stale_instances(tfs, state_dir)?;
    let mut report = GcReport { kept, ..GcReport::default() };
    for (name, inst, recording) in stale {
        match recording {
            // Finished (or never traced), but its remover died: only the
            // directory is left.
            Some(r) if r.not_traced.is_some() || fresh_summary(state_dir, &r).is_some() => inst.remove()?,
            Some(r) => {
                let why = Some("the container was gone and no poststop had run".to_string());
                if let Err(e) = fallback(tfs, state_dir, &r, FinishedBy::Gc, why) {
                    tracing::warn!(instance = %name, error = %e, "could not finish stale recording");
                    if let Some(inst) = tfs.open_instance(&name)? {
                        inst.remove()?;
                    }
                }
            }
            None => inst.remove()?,
        }
        tracing::info!(instance = %name, "collected stale instance");
        report.removed.push(name);
    }
    for id in crate::container::held::held_ids(state_dir) {
        match crate::container::held::place(state_dir, &id) {
            Ok(Some(from)) => tracing::info!(id = %id, from = %from.display(), "held profile moved into place"),
            Ok(None) => {}
            Err(e) => tracing::warn!(id = %id, error = %e, "held profile still has no room"),
        }
    }
    let pool = Pool::at_default();
    let mut reaps = Vec::new();
    for (slot, chore) in slot_chores(tfs, &pool, reap_idle) {
        let claim = Claim { index: slot.index, generation: slot.generation };
        match chore {
            Chore::Finish(dir, r) => {
                let why = Some("the container was gone and no poststop had run".to_string());
                if let Err(e) = fallback(tfs, &dir, &r, FinishedBy::Gc, why) {
                    tracing::warn!(slot = %slot.instance, error = %e, "could not finish stale recording");
                    pool.release(tfs, &claim)?;
                }
                report.released.push(slot.instance);
            }
            Chore::Release => {
                pool.release(tfs, &claim)?;
                report.released.push(slot.instance);
            }
            Chore::Reap => reaps.push(slot),
        }
    }
    // Teardowns take seconds a slot: another gc (a give-up's, waiting to
    // release its slot) must not wait for them. Each step is under the
    // writer lock, so two teardowns of one slot only share the work.
    drop(one_gc);
    for slot in reaps {
        if pool.reap(tfs, slot.index, Some(slot.generation))? {
            report.reaped.push(slot.instance);
        }
    }
    for name in orphan_slots(tfs, &pool)? {
        if let Some(inst) = tfs.open_instance(&name)? {
            inst.remove()?;
            report.reaped.push(name);
        }
    }
    Ok(report)
}

/// What gc has to do for a slot.
enum Chore {
    /// Its container is gone without a summary: finish the recording (in
    /// that state dir), then release.
    Finish(StateDir, Box<Recording>),
    /// Its container is gone (or was never armed) and nobody releases it.
    Release,
    /// Free past its linger time, or half torn down, and nobody at it.
    Reap,
}

/// The slots that need gc, with what each needs.
fn slot_chores(tfs: &TraceFs, pool: &Pool, reap_idle: bool) -> Vec<(SlotState, Chore)> {
    let now = unix_now();
    let idle_worker = |s: &SlotState| !s.worker.as_ref().is_some_and(|w| w.alive());
    let mut out = Vec::new();
    for slot in pool.slots() {
        if tfs.open_instance(&slot.instance).ok().flatten().is_none() {
            pool.forget_if_gone(tfs, slot.index);
            continue;
        }
        let chore = match &slot.phase {
            SlotPhase::InUse { id, state_dir } => {
                let dir = StateDir::new(state_dir);
                let claim = Claim { index: slot.index, generation: slot.generation };
                let read = dir.read_json::<Recording>(id, STATE_FILE).ok();
                // Given up on (a signal or the watchdog) before its prestart
                // could name the slot in state.json: nothing will.
                let abandoned = read.as_ref().is_some_and(|r| r.not_traced.is_some()) && !instance_owned(&dir, id);
                let recording = read.filter(|r| {
                    r.slot.as_ref() == Some(&claim) || r.companion.as_ref().is_some_and(|c| c.claim == claim)
                });
                match recording {
                    None if abandoned => Some(Chore::Release),
                    Some(_) if instance_owned(&dir, id) => None,
                    Some(r) if r.not_traced.is_some() || fresh_summary(&dir, &r).is_some() => Some(Chore::Release),
                    Some(r) if !same_task_alive(r.host_pid, r.pid_start_ticks) => Some(Chore::Finish(dir, Box::new(r))),
                    Some(_) => None,
                    // Its prestart has not named it yet, or died first.
                    None => (now.saturating_sub(slot.since_unix) > GC_GRACE.as_secs()).then_some(Chore::Release),
                }
            }
            SlotPhase::Releasing => idle_worker(&slot).then_some(Chore::Release),
            SlotPhase::Free => {
                // Another build's slot is never claimed here: no use waiting.
                let stale = slot.version != record::pool::SLOT_VERSION;
                let due = (stale || now.saturating_sub(slot.since_unix) >= slot.linger_secs) && idle_worker(&slot);
                (reap_idle || due).then_some(Chore::Reap)
            }
            SlotPhase::Reaping => idle_worker(&slot).then_some(Chore::Reap),
        };
        if let Some(c) = chore {
            out.push((slot, c));
        }
    }
    out
}

/// Slot instances without a state file (it was lost), older than
/// [`GC_GRACE`] (a new slot's state is written right after its arming).
fn orphan_slots(tfs: &TraceFs, pool: &Pool) -> Result<Vec<String>> {
    let known: BTreeSet<String> = pool.slots().into_iter().map(|s| s.instance).collect();
    let mut out = Vec::new();
    for name in tfs.our_instances()?.into_iter().filter(|n| record::pool::is_slot(n) && !known.contains(n)) {
        let Some(inst) = tfs.open_instance(&name)? else { continue };
        if age(inst.path()).is_some_and(|a| a >= GC_GRACE) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Our instances to collect (with their recording in this state dir, if
/// any), and the names of those to keep. An instance is stale when its
/// container is gone (pid dead or reused) or was marked untraced, and no
/// recorder or remover of it runs; one with no recording here only when it
/// is old and every pid it follows is dead.
type Stale = (String, Instance, Option<Recording>);

fn stale_instances(tfs: &TraceFs, state_dir: &StateDir) -> Result<(Vec<Stale>, Vec<String>)> {
    let (mut stale, mut kept) = (Vec::new(), Vec::new());
    for name in tfs.our_instances()?.into_iter().filter(|n| !record::pool::is_slot(n)) {
        let id = name.strip_prefix(INSTANCE_PREFIX).unwrap_or_default();
        let recording: Option<Recording> = state_dir
            .read_json::<Recording>(id, STATE_FILE)
            .ok()
            .filter(|r| r.instance == name);
        let Some(inst) = tfs.open_instance(&name)? else { continue };
        let gone = match &recording {
            Some(r) => {
                !instance_owned(state_dir, id)
                    && (r.not_traced.is_some() || !same_task_alive(r.host_pid, r.pid_start_ticks))
            }
            None => {
                // Not ours to finish: only drop it if it is old and every
                // pid it follows is dead.
                let young = age(inst.path()).map(|a| a < GC_GRACE).unwrap_or(true);
                !young && inst.event_pids()?.iter().all(|p| !same_task_alive(*p, None))
            }
        };
        if gone {
            stale.push((name, inst, recording));
        } else {
            kept.push(name);
        }
    }
    Ok((stale, kept))
}

/// Start time (ticks since boot) and comm of a live task.
fn task_facts(pid: i32) -> (Option<u64>, Option<String>) {
    match procfs::process::Process::new(pid).and_then(|p| p.stat()) {
        Ok(stat) => (Some(stat.starttime), Some(stat.comm)),
        Err(_) => (None, None),
    }
}

/// True if `pid` is alive (not a zombie) and, when `start_ticks` is known,
/// is the same task that had that start time.
fn same_task_alive(pid: i32, start_ticks: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match procfs::process::Process::new(pid).and_then(|p| p.stat()) {
        Ok(stat) => stat.state != 'Z' && start_ticks.is_none_or(|t| t == stat.starttime),
        Err(_) => false,
    }
}

fn age(path: &Path) -> Option<Duration> {
    let meta = std::fs::metadata(path).ok()?;
    let changed = UNIX_EPOCH + Duration::from_secs(u64::try_from(std::os::unix::fs::MetadataExt::ctime(&meta)).ok()?);
    SystemTime::now().duration_since(changed).ok()
}

/// Unix time at trace-clock zero: now less /proc/uptime (the `local`
/// trace clock was measured to run with it).
fn trace_clock_unix() -> Option<f64> {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(now - uptime)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_gets_the_id_after_a_double_dash() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let argv = tmp.path().join("argv");
        let fake = tmp.path().join("collector");
        std::fs::write(&fake, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > {}.tmp && mv {0}.tmp {0}\n", argv.display())).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spawned = spawn_recorder(&fake, &StateDir::new(tmp.path()), "-rf").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !argv.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(spawned);
        let args = std::fs::read_to_string(&argv).unwrap();
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(args.first(), Some(&"record"), "{args:?}");
        assert_eq!(&args[args.len() - 2..], ["--", "-rf"], "{args:?}");
    }

    #[test]
    fn only_annotated_non_sandbox_containers_are_traced() {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(wants_tracing(None).is_err());
        assert!(wants_tracing(Some(&map(&[(TRACE_ANNOTATION, "yes")]))).is_err());
        assert!(wants_tracing(Some(&map(&[(TRACE_ANNOTATION, "true")]))).is_ok());
        let pause = map(&[(TRACE_ANNOTATION, "true"), ("io.kubernetes.cri-o.ContainerType", "sandbox")]);
        assert_eq!(wants_tracing(Some(&pause)), Err("a pod sandbox (pause) container"));
        let app = map(&[(TRACE_ANNOTATION, "true"), ("io.kubernetes.cri-o.ContainerType", "container")]);
        assert!(wants_tracing(Some(&app)).is_ok());
    }

    fn pipe_files() -> (std::fs::File, std::fs::File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (std::fs::File::from(r), std::fs::File::from(w))
    }

    #[test]
    fn the_recorder_goes_on_go_and_gives_up_when_prestart_closes_the_pipe() {
        let (r, mut w) = pipe_files();
        w.write_all(b"go\n").unwrap();
        assert!(wait_for_go(r, "c1").is_ok());
        let (r, w) = pipe_files();
        drop(w); // arming failed: prestart dropped its end unwritten
        let err = wait_for_go(r, "c1").unwrap_err().to_string();
        assert!(err.contains("did not arm"), "{err}");
    }

    #[test]
    fn a_remover_that_runs_keeps_the_instance_its_own() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let pid = child.id() as i32;
        let dead = RecorderInfo { pid: u32::MAX / 2, start_ticks: None, started_unix: 0, remover: None };
        assert!(!dead.owns_instance());
        let with_remover = RecorderInfo { remover: Some(Task { pid, start_ticks: task_facts(pid).0 }), ..dead.clone() };
        assert!(with_remover.owns_instance());
        // The same pid with another start time is another process.
        let reused = RecorderInfo { remover: Some(Task { pid, start_ticks: Some(1) }), ..dead };
        assert!(!reused.owns_instance());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!with_remover.owns_instance());
    }
}
