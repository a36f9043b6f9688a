//! The state directory as a user manages it: list the recordings, find
//! the runs of one workload, and load a profile named by container id,
//! unique id prefix, or file path, with what its summary says about it.
//!
//! This sits above [`crate::container`] (the folders) and
//! [`crate::profile`] (what is in a profile); it prints nothing.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::container::store::{self, PROFILE_FILE, STATE_FILE, SUMMARY_FILE};
use crate::container::{Recording, StateDir, Summary};
use crate::profile::file::{self, ProfileFile};
use crate::profile::merge;

/// The annotation that names a run (Podman 4 does not pass its container
/// name to hooks): `--annotation oci-ftrace-syscall-analyzer/name=web`.
pub const NAME_ANNOTATION: &str = "oci-ftrace-syscall-analyzer/name";
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// CRI-O's own name for the container (`k8s_<container>_<pod>_…`).
const CRIO_NAME: &str = "io.kubernetes.cri-o.ContainerName";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("reading {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path} is not a seccomp profile: {cause}")]
    Parse { path: PathBuf, cause: serde_json::Error },
    #[error("container {id} has no profile yet ({why})")]
    NoProfile { id: String, why: String },
    #[error("no recording in {dir} has {what}")]
    NoMatch { what: String, dir: PathBuf },
    #[error("writing {path}: {cause}")]
    Write { path: PathBuf, cause: std::io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One row of `collector list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub id: String,
    pub short_id: String,
    pub name: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub container: Option<String>,
    pub started_unix: Option<u64>,
    pub ended_unix: Option<u64>,
    pub mode: Option<String>,
    pub complete: Option<bool>,
    /// Calls the profile allows.
    pub allowed: Option<usize>,
    pub window: Option<String>,
    /// False when the hook did not trace it (`not_traced` says why).
    pub traced: bool,
    pub not_traced: Option<String>,
    /// What could not be read, if anything.
    pub problem: Option<String>,
}

/// Every recording in `dir`, sorted by start time then id.
pub fn list(dir: &StateDir) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = dir.ids()?.into_iter().map(|id| entry(dir, &id)).collect();
    out.sort_by(|a, b| (a.started_unix, &a.id).cmp(&(b.started_unix, &b.id)));
    Ok(out)
}

fn entry(dir: &StateDir, id: &str) -> Entry {
    let mut e = Entry {
        id: id.to_string(),
        short_id: id.chars().take(12).collect(),
        name: None,
        pod: None,
        namespace: None,
        container: None,
        started_unix: None,
        ended_unix: None,
        mode: None,
        complete: None,
        allowed: None,
        window: None,
        traced: true,
        not_traced: None,
        problem: None,
    };
    let mut problems = Vec::new();
    match dir.read_json::<Recording>(id, STATE_FILE) {
        Ok(rec) => {
            let a = &rec.annotations;
            e.pod = a.get(POD_NAME).cloned();
            e.namespace = a.get(POD_NAMESPACE).cloned();
            e.container = a.get(CONTAINER_NAME).cloned();
            e.name = a.get(NAME_ANNOTATION).or_else(|| a.get(CONTAINER_NAME)).or_else(|| a.get(CRIO_NAME)).cloned();
            e.started_unix = Some(rec.started_unix);
            e.mode = serde_json::to_value(rec.mode).ok().and_then(|v| v.as_str().map(String::from));
            e.traced = rec.not_traced.is_none();
            e.not_traced = rec.not_traced;
        }
        Err(err) => problems.push(err.to_string()),
    }
    match dir.read_json::<Summary>(id, SUMMARY_FILE) {
        Ok(s) => {
            e.ended_unix = Some(s.finished_unix);
            e.complete = Some(s.complete);
            e.window = Some(s.rule_text);
            e.started_unix = e.started_unix.or(Some(s.started_unix));
        }
        Err(store::Error::Read { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => problems.push(err.to_string()),
    }
    if let Ok(path) = dir.container_dir(id).map(|d| d.join(PROFILE_FILE)) {
        match store::read_regular(&path) {
            Ok(bytes) => match file::parse(&bytes) {
                Ok(p) => e.allowed = Some(p.allowed().len()),
                Err(cause) => problems.push(Error::Parse { path, cause }.to_string()),
            },
            Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => {}
            Err(cause) => problems.push(Error::Read { path, cause }.to_string()),
        }
    }
    if !problems.is_empty() {
        e.problem = Some(problems.join("; "));
    }
    e
}

/// The ids of every finished run whose name (or pod name) is `name`.
pub fn select(dir: &StateDir, name: Option<&str>, pod: Option<&str>) -> Result<Vec<String>> {
    let entries = list(dir)?;
    let ids: Vec<String> = entries
        .into_iter()
        .filter(|e| name.is_none_or(|n| e.name.as_deref() == Some(n) || e.container.as_deref() == Some(n)))
        .filter(|e| pod.is_none_or(|p| e.pod.as_deref() == Some(p)))
        .filter(|e| e.allowed.is_some())
        .map(|e| e.id)
        .collect();
    if ids.is_empty() {
        let what = match (name, pod) {
            (Some(n), Some(p)) => format!("name {n:?} in pod {p:?} and a profile"),
            (Some(n), None) => format!("name {n:?} and a profile"),
            (None, Some(p)) => format!("pod {p:?} and a profile"),
            (None, None) => "a profile".to_string(),
        };
        return Err(Error::NoMatch { what, dir: dir.root().to_path_buf() });
    }
    Ok(ids)
}

/// A profile named on the command line, read.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// How the user named it.
    pub label: String,
    /// The container id, when it came from the state dir (or a file in it).
    pub id: Option<String>,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub profile: ProfileFile,
    /// From `summary.json` beside the profile, when there is one.
    pub complete: Option<bool>,
    pub incomplete_reasons: Vec<String>,
    /// The run's name (see [`Entry::name`]).
    pub name: Option<String>,
}

impl Loaded {
    /// As an input to [`merge::merge`].
    pub fn merge_input(&self) -> merge::Input {
        merge::Input {
            label: self.label.clone(),
            profile: self.profile.clone(),
            complete: self.complete,
            incomplete_reasons: self.incomplete_reasons.clone(),
        }
    }
}

/// Whether `arg` names a file rather than a container id: it has a `/`,
/// ends in `.json`, or is an existing file.
pub fn is_file_arg(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".json") || Path::new(arg).is_file()
}

/// Loads `arg`: a file path, else a container id or unique prefix in `dir`.
pub fn load(dir: &StateDir, arg: &str) -> Result<Loaded> {
    if is_file_arg(arg) {
        return load_file(arg, Path::new(arg));
    }
    let id = dir.resolve(arg)?;
    let path = dir.container_dir(&id)?.join(PROFILE_FILE);
    if !path.exists() {
        let why = match dir.read_json::<Recording>(&id, STATE_FILE) {
            Ok(Recording { not_traced: Some(why), .. }) => format!("it was {why}"),
            _ => "is it still running, and did poststop run?".to_string(),
        };
        return Err(Error::NoProfile { id, why });
    }
    load_file(&id, &path)
}

fn load_file(label: &str, path: &Path) -> Result<Loaded> {
    let bytes = store::read_regular(path).map_err(|cause| Error::Read { path: path.to_path_buf(), cause })?;
    let profile = file::parse(&bytes).map_err(|cause| Error::Parse { path: path.to_path_buf(), cause })?;
    let mut loaded = Loaded {
        label: label.to_string(),
        id: None,
        path: path.to_path_buf(),
        bytes,
        profile,
        complete: None,
        incomplete_reasons: Vec::new(),
        name: None,
    };
    // A profile in a container's folder: its summary says whether it is
    // complete, its state what the run is called.
    let folder = path.parent().unwrap_or(Path::new("."));
    if let Ok(text) = store::read_regular(&folder.join(SUMMARY_FILE)) {
        if let Ok(s) = serde_json::from_slice::<Summary>(&text) {
            loaded.complete = Some(s.complete);
            loaded.incomplete_reasons = s.incomplete_reasons;
            loaded.id = Some(s.id);
        }
    }
    if let Ok(text) = store::read_regular(&folder.join(STATE_FILE)) {
        if let Ok(r) = serde_json::from_slice::<Recording>(&text) {
            let a = &r.annotations;
            loaded.name = a.get(NAME_ANNOTATION).or_else(|| a.get(CONTAINER_NAME)).cloned();
            loaded.id = Some(r.id);
        }
    }
    Ok(loaded)
}

/// Writes `bytes` to `path` atomically, creating its parent folders.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|cause| Error::Write { path: parent.to_path_buf(), cause })?;
    }
    store::write_atomic(path, bytes)?;
    Ok(())
}

/// Where the merge counts go beside a merged profile at `profile`:
/// `web.json` → `web.merge.json`.
pub fn merge_info_path(profile: &Path) -> PathBuf {
    let stem = profile.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "profile".into());
    profile.with_file_name(format!("{stem}.merge.json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A state dir with one finished, complete run named `name`.
    pub(crate) fn finished(dir: &StateDir, id: &str, name: &str, names: &[&str], complete: bool) {
        let folder = dir.create_container_dir(id).unwrap();
        let set: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let json = crate::profile::seccomp::to_json(&crate::profile::seccomp::build(&set).unwrap()).unwrap();
        fs::write(folder.join(PROFILE_FILE), json).unwrap();
        let state = serde_json::json!({
            "id": id, "oci_state": {"ociVersion": "1.0.2", "id": id, "status": "creating", "pid": 1, "bundle": "/b"},
            "annotations": {NAME_ANNOTATION: name, POD_NAME: "web-1"}, "host_pid": 1, "pid_start_ticks": null,
            "runtime_comm": null, "instance": "i", "tracefs": "/t", "buffer_size_kb": null, "kernel_release": "6.18",
            "arch": "x86_64", "started_unix": 100, "not_traced": null
        });
        fs::write(folder.join(STATE_FILE), state.to_string()).unwrap();
        let summary = serde_json::json!({
            "id": id, "host_pid": 1, "rule": {"kind": "first-event"}, "rule_text": "from the first event",
            "complete": complete, "incomplete_reasons": if complete { vec![] } else { vec!["lost 5 events"] },
            "lost_events": 0, "per_cpu": [], "malformed_records": 0,
            "analysis": serde_json::to_value(crate::profile::Analysis::default()).unwrap(), "profile": "/p",
            "arch": "x86_64", "kernel_release": "6.18", "started_unix": 100, "finished_unix": 105
        });
        fs::write(folder.join(SUMMARY_FILE), summary.to_string()).unwrap();
    }

    #[test]
    fn lists_loads_and_selects() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        finished(&dir, "aaa111", "web", &["read", "write"], true);
        finished(&dir, "aaa222", "web", &["read", "mkdir"], false);
        dir.create_container_dir("bbb333").unwrap();
        let rows = list(&dir).unwrap();
        assert_eq!(rows.len(), 3);
        let a = rows.iter().find(|r| r.id == "aaa111").unwrap();
        assert_eq!(a.name.as_deref(), Some("web"));
        assert_eq!(a.pod.as_deref(), Some("web-1"));
        assert_eq!(a.allowed, Some(2));
        assert_eq!(a.complete, Some(true));
        assert_eq!(a.ended_unix, Some(105));
        let b = rows.iter().find(|r| r.id == "bbb333").unwrap();
        assert!(b.problem.as_deref().unwrap_or_default().contains("state.json"), "{b:?}");

        assert_eq!(select(&dir, Some("web"), None).unwrap(), ["aaa111", "aaa222"]);
        assert!(matches!(select(&dir, Some("db"), None), Err(Error::NoMatch { .. })));

        let l = load(&dir, "aaa2").unwrap();
        assert_eq!(l.complete, Some(false));
        assert_eq!(l.incomplete_reasons, ["lost 5 events"]);
        assert!(matches!(load(&dir, "aaa"), Err(Error::Store(store::Error::Ambiguous { .. }))));
        assert!(matches!(load(&dir, "zzz"), Err(Error::Store(store::Error::NotFound { .. }))));
        assert!(matches!(load(&dir, "bbb"), Err(Error::NoProfile { .. })));
        let missing = tmp.path().join("nope.json");
        assert!(matches!(load(&dir, missing.to_str().unwrap()), Err(Error::Read { .. })));
        let garbage = tmp.path().join("garbage.json");
        fs::write(&garbage, "{").unwrap();
        let err = load(&dir, garbage.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("is not a seccomp profile"), "{err}");
        // A file inside a container folder carries its summary along.
        let by_path = load(&dir, tmp.path().join("aaa111/seccomp.json").to_str().unwrap()).unwrap();
        assert_eq!(by_path.complete, Some(true));
        assert_eq!(by_path.name.as_deref(), Some("web"));
    }

    #[test]
    fn writes_atomically_into_new_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("profiles/web.json");
        write_file(&path, b"{}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(merge_info_path(&path), tmp.path().join("profiles/web.merge.json"));
    }
}
