//! The state directory: one folder per container id, written atomically.
//!
//! `<state-dir>/<id>/state.json` is written at prestart, `seccomp.json` and
//! `summary.json` at poststop. Ids are validated before they become paths,
//! so a container's data can never steer a write outside its own folder.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::input::validate_id;
use crate::profile::{Analysis, Rule};
use crate::tracefs::CpuStats;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/oci-ftrace-syscall-analyzer";
pub const STATE_FILE: &str = "state.json";
pub const PROFILE_FILE: &str = "seccomp.json";
pub const SUMMARY_FILE: &str = "summary.json";
/// Largest state-dir file read into memory (summaries of long full-mode
/// recordings reach a few MiB).
pub const READ_LIMIT: u64 = 256 << 20;

/// Reads a regular file of at most [`READ_LIMIT`] bytes. Opened with
/// O_NONBLOCK and checked before reading, so a FIFO or a device put in
/// place of a state file is refused instead of blocking forever.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not a regular file but {what}")));
    }
    if meta.len() > READ_LIMIT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} bytes is more than the {READ_LIMIT}-byte limit", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(READ_LIMIT + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Id(#[from] super::input::Error),
    #[error("creating directory {path}: {cause}")]
    CreateDir { path: PathBuf, cause: std::io::Error },
    #[error("writing {path}: {cause}")]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("reading {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path} is not valid: {cause}")]
    Parse { path: PathBuf, cause: serde_json::Error },
    #[error("serialising {path}: {cause}")]
    Serialize { path: PathBuf, cause: serde_json::Error },
    #[error("no recorded container matches {prefix:?} in {dir}")]
    NotFound { prefix: String, dir: PathBuf },
    #[error("{prefix:?} matches {} containers in {dir}: {}", .matches.len(), .matches.join(", "))]
    Ambiguous { prefix: String, dir: PathBuf, matches: Vec<String> },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What prestart knew about the container (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recording {
    pub id: String,
    /// The OCI state as the runtime gave it.
    pub oci_state: oci_spec::runtime::State,
    pub annotations: BTreeMap<String, String>,
    pub host_pid: i32,
    /// `/proc/<pid>/stat` start time (clock ticks since boot), to tell a
    /// reused pid from ours.
    pub pid_start_ticks: Option<u64>,
    /// The init task's comm at prestart (e.g. `runc:[2:INIT]`).
    pub runtime_comm: Option<String>,
    pub instance: String,
    /// The slot (`record::pool`) that records this container; `None`: the
    /// instance is its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<crate::record::pool::Claim>,
    /// Full mode: a slot recorded beside the own instance, quenched in the
    /// kernel, so the allowlist is complete even when the full record's
    /// counts are not (`record::recorder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companion: Option<Companion>,
    /// Threads of the hook whose records open a slot's buffer
    /// (`record::canary`): not the container's, dropped when read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<i32>,
    pub tracefs: PathBuf,
    /// The per-CPU buffer size set at arming; `None`: the kernel's default.
    pub buffer_size_kb: Option<u64>,
    #[serde(default)]
    pub mode: crate::record::Mode,
    pub kernel_release: String,
    pub arch: String,
    /// Unix time (seconds) when tracing was armed.
    pub started_unix: u64,
    /// Recording could not be armed (the reason); poststop then only notes it.
    pub not_traced: Option<String>,
}

/// A full-mode recording's quenched slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Companion {
    pub instance: String,
    pub claim: crate::record::pool::Claim,
}

/// What poststop made of the recording (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    pub host_pid: i32,
    #[serde(default)]
    pub mode: crate::record::Mode,
    #[serde(default)]
    pub finished_by: Option<FinishedBy>,
    pub rule: Rule,
    /// The rule in words, as the report shows it.
    pub rule_text: String,
    /// False when the profile may miss calls; `incomplete_reasons` says why.
    pub complete: bool,
    pub incomplete_reasons: Vec<String>,
    pub lost_events: u64,
    /// Full mode: false when events were lost, so per-call counts and
    /// times are short; the allowlist is still complete when `complete`
    /// (the quenched companion lost nothing).
    #[serde(default = "yes")]
    pub counts_exact: bool,
    /// Full mode: calls in the allowlist only because the companion saw
    /// them (the full record lost them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_companion: Vec<String>,
    pub per_cpu: Vec<CpuStats>,
    pub malformed_records: u64,
    pub analysis: Analysis,
    /// The live recorder's figures, when it produced this result.
    #[serde(default)]
    pub recorder: Option<RecorderStats>,
    /// Native syscalls with no enter event on this kernel (profile mode
    /// cannot see them).
    #[serde(default)]
    pub no_event_syscalls: Vec<String>,
    /// Calls the profile allows for the runtime's own start-up although
    /// they were not seen this time (see `profile::window::RUNTIME_ALLOWANCE`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_allowance: Vec<String>,
    pub profile: PathBuf,
    pub arch: String,
    pub kernel_release: String,
    pub started_unix: u64,
    pub finished_unix: u64,
    /// Unix time at trace-clock zero, taken when the summary was written
    /// (the trace clock, `local`, runs with /proc/uptime): dates the
    /// checkpoint episodes.
    #[serde(default)]
    pub trace_clock_unix: Option<f64>,
}

fn yes() -> bool {
    true
}

/// Who wrote the final profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinishedBy {
    /// The live recorder, when the init task exited (or it was stopped).
    Recorder,
    /// Poststop, from what was left in the ring buffer.
    Poststop,
    /// A gc pass, for a container whose poststop never came.
    Gc,
}

/// The recorder's own figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecorderStats {
    pub pid: u32,
    pub cpu_seconds: f64,
    pub max_rss_kib: u64,
    pub pages: u64,
    pub bytes: u64,
    pub records: u64,
    /// Events switched off after their syscall was seen (profile mode).
    pub quenched: usize,
    /// Events switched back on: only CRIU had made their call.
    #[serde(default)]
    pub restored: usize,
    pub ended: Option<crate::record::recorder::Ended>,
    /// The event layouts came from the per-boot cache, not 730 tracefs reads.
    #[serde(default)]
    pub layouts_cached: bool,
}

/// The state directory root.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<id>`, for a validated id.
    pub fn container_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.root.join(id))
    }

    /// Creates `<root>/<id>` (and the root) with mode 0700.
    pub fn create_container_dir(&self, id: &str) -> Result<PathBuf> {
        let dir = self.container_dir(id)?;
        create_private_dir(&self.root)?;
        create_private_dir(&dir)?;
        Ok(dir)
    }

    pub fn write_json<T: Serialize>(&self, id: &str, file: &str, value: &T) -> Result<PathBuf> {
        self.write_json_as(id, file, value, Durability::Synced)
    }

    /// Like [`StateDir::write_json`], still atomic, but not synced to disk:
    /// for bookkeeping that matters only while this boot runs (which
    /// process records, what prestart armed). Each fsync cost a container
    /// start about a millisecond, and a power loss ends the container too.
    pub fn write_json_unsynced<T: Serialize>(&self, id: &str, file: &str, value: &T) -> Result<PathBuf> {
        self.write_json_as(id, file, value, Durability::Unsynced)
    }

    fn write_json_as<T: Serialize>(&self, id: &str, file: &str, value: &T, durability: Durability) -> Result<PathBuf> {
        let path = self.container_dir(id)?.join(file);
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|cause| Error::Serialize { path: path.clone(), cause })?;
        bytes.push(b'\n');
        write_atomic_as(&path, &bytes, durability)?;
        Ok(path)
    }

    pub fn read_json<T: for<'de> Deserialize<'de>>(&self, id: &str, file: &str) -> Result<T> {
        let path = self.container_dir(id)?.join(file);
        let bytes = read_regular(&path).map_err(|cause| Error::Read { path: path.clone(), cause })?;
        serde_json::from_slice(&bytes).map_err(|cause| Error::Parse { path, cause })
    }

    /// Ids of every container folder.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(cause) => return Err(Error::Read { path: self.root.clone(), cause }),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The one id equal to, or else starting with, `prefix`.
    pub fn resolve(&self, prefix: &str) -> Result<String> {
        let ids = self.ids()?;
        if ids.iter().any(|id| id == prefix) {
            return Ok(prefix.to_string());
        }
        let matches: Vec<String> = ids.into_iter().filter(|id| id.starts_with(prefix)).collect();
        match matches.len() {
            0 => Err(Error::NotFound { prefix: prefix.to_string(), dir: self.root.clone() }),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            _ => Err(Error::Ambiguous { prefix: prefix.to_string(), dir: self.root.clone(), matches }),
        }
    }
}

fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(cause) => Err(Error::CreateDir { path: path.to_path_buf(), cause }),
    }
}

/// Whether [`write_atomic_as`] syncs the file and the rename to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Synced,
    Unsynced,
}

/// Writes `bytes` to a temp file beside `path`, syncs it and renames it
/// over `path`, so readers see the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_as(path, bytes, Durability::Synced)
}

/// Writes several files so that either all are replaced or none is: every
/// temp file is written and synced first (a full disk fails here, and the
/// old files stay), then each is renamed into place (a rename needs no
/// space). Used for a profile and its summary, which only make sense
/// together.
pub fn write_all_atomic(files: &[(&Path, &[u8])]) -> Result<()> {
    write_all_atomic_as(files, Durability::Synced)
}

fn write_atomic_as(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    write_all_atomic_as(&[(path, bytes)], durability)
}

/// [`write_all_atomic`], with the syncs only if `durability` asks for them.
fn write_all_atomic_as(files: &[(&Path, &[u8])], durability: Durability) -> Result<()> {
    let synced = durability == Durability::Synced;
    let mut temps: Vec<(PathBuf, &Path)> = Vec::new();
    let cleanup = |temps: &[(PathBuf, &Path)]| {
        for (tmp, _) in temps {
            let _ = fs::remove_file(tmp);
        }
    };
    for (path, bytes) in files {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            if synced {
                f.sync_all()?;
            }
            Ok(())
        })();
        temps.push((tmp, path));
        if let Err(cause) = written {
            cleanup(&temps);
            return Err(Error::Write { path: path.to_path_buf(), cause });
        }
    }
    for (i, (tmp, path)) in temps.iter().enumerate() {
        if let Err(cause) = fs::rename(tmp, path) {
            cleanup(&temps[i..]);
            return Err(Error::Write { path: path.to_path_buf(), cause });
        }
    }
    // Make the renames themselves durable.
    if synced {
        for dir in temps.iter().filter_map(|(_, p)| p.parent()).collect::<std::collections::BTreeSet<_>>() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
    }
    Ok(())
}

/// Annotations as a sorted map (the OCI type uses a HashMap).
pub fn sorted_annotations(map: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        write_all_atomic(&[(&a, b"a1"), (&b, b"b1")]).unwrap();
        assert_eq!((fs::read(&a).unwrap(), fs::read(&b).unwrap()), (b"a1".to_vec(), b"b1".to_vec()));
        // The second cannot be written (its directory is gone): the first
        // keeps its old content, and no temp file is left.
        let gone = dir.path().join("gone/b.json");
        assert!(write_all_atomic(&[(&a, b"a2"), (&gone, b"b2")]).is_err());
        assert_eq!(fs::read(&a).unwrap(), b"a1");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A failed write keeps the old file.
        let missing = dir.path().join("nope/x.json");
        assert!(write_atomic(&missing, b"three").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"two");
    }

    #[test]
    fn resolves_ids_and_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        for id in ["abc123", "abd999", "zzz"] {
            sd.create_container_dir(id).unwrap();
        }
        assert_eq!(sd.resolve("abc").unwrap(), "abc123");
        assert_eq!(sd.resolve("zzz").unwrap(), "zzz");
        assert!(matches!(sd.resolve("ab"), Err(Error::Ambiguous { .. })));
        assert!(matches!(sd.resolve("q"), Err(Error::NotFound { .. })));
        assert!(sd.container_dir("../x").is_err());
    }
}
