//! Outcomes that a full state dir could not take: a profile and its
//! summary, kept together under [`HELD_DIR`] (tmpfs, root only) until
//! there is room. The recorder reads each call once (the kernel's buffer
//! is consumed), so an outcome that cannot be written is lost unless it is
//! kept somewhere; poststop and gc move it into place once they can.
//!
//! Each held outcome is a directory with `seccomp.json` and
//! `summary.json`, named for the state dir and the container.

use std::fs;
use std::path::{Path, PathBuf};

use super::store::{self, StateDir, PROFILE_FILE, SUMMARY_FILE};

/// Where held outcomes wait (gone at reboot, like the instances).
pub const HELD_DIR: &str = "/run/oci-ftrace-syscall-analyzer/held";

/// Larger files are not ours: a held file is a profile or a summary.
const MAX_FILE: u64 = 16 << 20;

/// The held outcome of container `id` of `state_dir`.
pub fn dir_for(state_dir: &StateDir, id: &str) -> PathBuf {
    // The state dir's path, hashed (FNV-1a), keeps ids of two state dirs apart.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in state_dir.root().as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    Path::new(HELD_DIR).join(format!("{h:016x}-{id}"))
}

/// Keeps `profile` and `summary` of container `id` for later. Returns
/// where.
pub fn hold(state_dir: &StateDir, id: &str, profile: &[u8], summary: &[u8]) -> store::Result<PathBuf> {
    let dir = dir_for(state_dir, id);
    {
        use std::os::unix::fs::DirBuilderExt;
        // Root only, as the state dir is.
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)
    }
    .map_err(|cause| store::Error::CreateDir { path: dir.clone(), cause })?;
    store::write_all_atomic(&[(&dir.join(PROFILE_FILE), profile), (&dir.join(SUMMARY_FILE), summary)])?;
    Ok(dir)
}

/// Moves the held outcome of container `id`, if any, into its folder.
/// `Ok(None)`: nothing held; `Ok(Some(dir))`: moved from `dir`; an error
/// (still no room): it stays held.
pub fn place(state_dir: &StateDir, id: &str) -> store::Result<Option<PathBuf>> {
    let dir = dir_for(state_dir, id);
    if !dir.is_dir() {
        return Ok(None);
    }
    let read = |name: &str| -> store::Result<Vec<u8>> {
        let path = dir.join(name);
        let meta = fs::symlink_metadata(&path).map_err(|cause| store::Error::Read { path: path.clone(), cause })?;
        if !meta.is_file() || meta.len() > MAX_FILE {
            let cause = std::io::Error::other("not a regular file of at most 16 MiB");
            return Err(store::Error::Read { path, cause });
        }
        fs::read(&path).map_err(|cause| store::Error::Read { path, cause })
    };
    let (profile, summary) = (read(PROFILE_FILE)?, read(SUMMARY_FILE)?);
    let to = state_dir.container_dir(id)?;
    // A later run of the same id may have written its own since.
    let finished = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok().and_then(|v| v["finished_unix"].as_u64());
    let there = fs::read(to.join(SUMMARY_FILE)).ok().and_then(|b| finished(&b));
    if there.is_some_and(|t| finished(&summary).is_none_or(|h| t >= h)) {
        let _ = fs::remove_dir_all(&dir);
        return Ok(None);
    }
    store::write_all_atomic(&[(&to.join(PROFILE_FILE), &profile), (&to.join(SUMMARY_FILE), &summary)])?;
    let _ = fs::remove_dir_all(&dir);
    Ok(Some(dir))
}

/// Ids of the outcomes held for `state_dir`.
pub fn held_ids(state_dir: &StateDir) -> Vec<String> {
    let prefix = dir_for(state_dir, "");
    let Some(prefix) = prefix.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let Ok(entries) = fs::read_dir(HELD_DIR) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix(prefix)).map(str::to_string))
        .filter(|id| super::validate_id(id).is_ok())
        .collect()
}
