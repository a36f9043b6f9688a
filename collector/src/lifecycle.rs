//! One traced container from start to stop: what the hook's `prestart` and
//! `poststop` stages do, and the clean-up of instances whose container is
//! gone (`collector gc`, and the start of every prestart).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_spec::runtime::State;

use crate::container::store::{self, sorted_annotations, PROFILE_FILE, STATE_FILE, SUMMARY_FILE};
use crate::container::{live_pid, Recording, StateDir, Summary};
use crate::profile::{analyze, seccomp, Rule};
use crate::record::{self, instance_name, ArmConfig};
use crate::tracefs::{InstanceGuard, TraceFs, INSTANCE_PREFIX};

/// The annotation that opts a container in.
pub const TRACE_ANNOTATION: &str = "oci-ftrace-syscall-analyzer/trace";

/// Instances younger than this are never collected: their prestart may
/// still be writing `state.json` in another state dir.
const GC_GRACE: Duration = Duration::from_secs(10);

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
    Profile(#[from] seccomp::Error),
    #[error("no recording for container {id}: {path} is missing (prestart did not arm it; see the hook log)")]
    NotArmed { id: String, path: PathBuf },
    #[error("trace instance {name} of container {id} is gone; nothing was recorded")]
    NoInstance { id: String, name: String },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: StateDir,
    pub arm: ArmConfig,
}

/// Prestart: validate, collect stale instances, write `state.json`, arm.
pub fn prestart(settings: &Settings, state: &State) -> Result<Recording> {
    let id = state.id().to_string();
    let pid = live_pid(state)?;
    let tfs = TraceFs::locate_or_mount()?;
    match gc(&tfs, &settings.state_dir) {
        Ok(report) if !report.removed.is_empty() => tracing::info!(removed = ?report.removed, "collected stale instances"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not collect stale instances"),
    }

    let name = instance_name(&id);
    let (start_ticks, comm) = task_facts(pid);
    let recording = Recording {
        id: id.clone(),
        oci_state: state.clone(),
        annotations: sorted_annotations(state.annotations().as_ref()),
        host_pid: pid,
        pid_start_ticks: start_ticks,
        runtime_comm: comm,
        instance: name.clone(),
        tracefs: tfs.root().to_path_buf(),
        buffer_size_kb: settings.arm.buffer_size_kb,
        kernel_release: nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        started_unix: unix_now(),
        not_traced: None,
    };
    settings.state_dir.create_container_dir(&id)?;
    // state.json goes first: a concurrent gc then knows whose instance it is.
    settings.state_dir.write_json(&id, STATE_FILE, &recording)?;

    // A restarted container keeps its id; its old instance is ours to drop.
    if let Some(old) = tfs.open_instance(&name)? {
        tracing::warn!(instance = %name, "removing a leftover instance of this container");
        old.remove()?;
    }
    // Only the init task: its other threads (e.g. Go's in runc init) exist
    // before the filter and are not under it.
    record::arm(&tfs, &name, &[pid], &settings.arm)?;
    tracing::info!(id = %id, pid, instance = %name, "armed");
    Ok(recording)
}

/// Poststop: drain and remove the instance, write `seccomp.json` and
/// `summary.json`.
pub fn poststop(settings: &Settings, state: &State) -> Result<Summary> {
    let id = state.id();
    let recording: Recording = match settings.state_dir.read_json(id, STATE_FILE) {
        Ok(r) => r,
        Err(store::Error::Read { path, .. }) => return Err(Error::NotArmed { id: id.to_string(), path }),
        Err(e) => return Err(e.into()),
    };
    let tfs = TraceFs::at(&recording.tracefs);
    finish(&tfs, &settings.state_dir, &recording)
}

/// Turns an armed recording into a profile and a summary. The instance is
/// removed whatever happens.
pub fn finish(tfs: &TraceFs, state_dir: &StateDir, recording: &Recording) -> Result<Summary> {
    let id = &recording.id;
    let Some(inst) = tfs.open_instance(&recording.instance)? else {
        return Err(Error::NoInstance { id: id.clone(), name: recording.instance.clone() });
    };
    let guard = InstanceGuard::new(inst);
    let drained = record::drain(guard.instance())?;
    guard.keep().remove()?;

    let (window, analysis) = analyze(&drained.parsed.records, recording.host_pid);
    for e in &drained.parsed.errors {
        tracing::warn!(error = %e, "malformed trace record");
    }
    let lost = drained.lost();
    let mut reasons = Vec::new();
    if lost > 0 {
        reasons.push(format!("the ring buffer lost {lost} events (raise --buffer-size-kb)"));
    }
    if window.rule == Rule::FirstEvent {
        reasons.push("no filter install or runtime marker was recorded; the window starts at the first event".into());
    }
    if !analysis.unnamed.is_empty() {
        let nrs: Vec<String> = analysis.unnamed.keys().map(|n| n.to_string()).collect();
        reasons.push(format!("syscall numbers without a name cannot be allowed: {}", nrs.join(", ")));
    }
    if drained.parsed.malformed > 0 {
        reasons.push(format!("{} trace records could not be parsed", drained.parsed.malformed));
    }

    let names: BTreeSet<String> = analysis.syscalls.keys().cloned().collect();
    let profile = seccomp::build(&names)?;
    let profile_path = state_dir.container_dir(id)?.join(PROFILE_FILE);
    store::write_atomic(&profile_path, seccomp::to_json(&profile)?.as_bytes())?;

    let summary = Summary {
        id: id.clone(),
        host_pid: recording.host_pid,
        rule_text: window.rule.describe(),
        rule: window.rule,
        complete: reasons.is_empty(),
        incomplete_reasons: reasons,
        lost_events: lost,
        per_cpu: drained.stats,
        malformed_records: drained.parsed.malformed,
        analysis,
        profile: profile_path,
        arch: recording.arch.clone(),
        kernel_release: recording.kernel_release.clone(),
        started_unix: recording.started_unix,
        finished_unix: unix_now(),
    };
    state_dir.write_json(id, SUMMARY_FILE, &summary)?;
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
    pub kept: Vec<String>,
}

/// Removes our instances whose container is gone (pid dead or reused).
/// When this state dir has the recording, it is finished first, so the
/// profile is not lost (CRI-O runs poststop only when a container is
/// removed, which may be long after it stopped).
pub fn gc(tfs: &TraceFs, state_dir: &StateDir) -> Result<GcReport> {
    let mut report = GcReport::default();
    for name in tfs.our_instances()? {
        let id = name.strip_prefix(INSTANCE_PREFIX).unwrap_or_default();
        let recording: Option<Recording> = state_dir
            .read_json::<Recording>(id, STATE_FILE)
            .ok()
            .filter(|r| r.instance == name);
        let Some(inst) = tfs.open_instance(&name)? else { continue };
        let gone = match &recording {
            Some(r) => !same_task_alive(r.host_pid, r.pid_start_ticks),
            None => {
                // Not ours to finish: only drop it if it is old and every
                // pid it follows is dead.
                let young = age(inst.path()).map(|a| a < GC_GRACE).unwrap_or(true);
                !young && inst.event_pids()?.iter().all(|p| !same_task_alive(*p, None))
            }
        };
        if !gone {
            report.kept.push(name);
            continue;
        }
        match recording {
            Some(r) => {
                if let Err(e) = finish(tfs, state_dir, &r) {
                    tracing::warn!(instance = %name, error = %e, "could not finish stale recording");
                    // finish() removes the instance on its own paths; make sure.
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
    Ok(report)
}

/// Start time (ticks since boot) and comm of a live task.
fn task_facts(pid: i32) -> (Option<u64>, Option<String>) {
    match procfs::process::Process::new(pid).and_then(|p| p.stat()) {
        Ok(stat) => (Some(stat.starttime), Some(stat.comm)),
        Err(_) => (None, None),
    }
}

/// True if `pid` is alive and, when `start_ticks` is known, is the same
/// task that had that start time.
fn same_task_alive(pid: i32, start_ticks: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match procfs::process::Process::new(pid).and_then(|p| p.stat()) {
        Ok(stat) => start_ticks.is_none_or(|t| t == stat.starttime),
        Err(_) => false,
    }
}

fn age(path: &Path) -> Option<Duration> {
    let meta = std::fs::metadata(path).ok()?;
    let changed = UNIX_EPOCH + Duration::from_secs(u64::try_from(std::os::unix::fs::MetadataExt::ctime(&meta)).ok()?);
    SystemTime::now().duration_since(changed).ok()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
