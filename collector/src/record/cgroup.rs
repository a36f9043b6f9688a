//! Moving the recorder out of the container's cgroups.
//!
//! The hook (and so the recorder it starts) runs in the runtime's or the
//! container's cgroup, and container teardown kills everything there. The
//! recorder moves itself to the root of every hierarchy, v1 and v2, so it
//! outlives the container long enough to finish.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("moving pid {pid} to {path}: {cause}")]
pub struct MoveError {
    pub pid: u32,
    pub path: PathBuf,
    pub cause: std::io::Error,
}

/// The `cgroup.procs` of every cgroup hierarchy root mounted here (v1
/// controllers, named v1 hierarchies such as `name=systemd`, and v2).
pub fn root_procs_files(mountinfo: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(root), Some(mount), Some(fstype)) = (fields.get(3), fields.get(4), fields.get(dash + 1)) else {
            continue;
        };
        // Only mounts of a hierarchy's root: a bind of a sub-cgroup is not
        // a way out.
        if (*fstype == "cgroup" || *fstype == "cgroup2") && *root == "/" {
            out.push(PathBuf::from(mount).join("cgroup.procs"));
        }
    }
    out
}

/// Moves `pid` to the root cgroup of every hierarchy. Returns the files
/// written; failures are returned too, for the caller to log.
pub fn leave_to_root(pid: u32) -> (Vec<PathBuf>, Vec<MoveError>) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut moved = Vec::new();
    let mut failed = Vec::new();
    for path in root_procs_files(&info) {
        let result = OpenOptions::new().write(true).open(&path).and_then(|mut f| f.write_all(pid.to_string().as_bytes()));
        match result {
            Ok(()) => moved.push(path),
            Err(cause) => failed.push(MoveError { pid, path, cause }),
        }
    }
    (moved, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_v2_and_named_roots_but_not_sub_cgroup_binds() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro\n\
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
90 80 0:29 /libpod_parent/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
40 1 0:5 / /proc rw - proc proc rw\n";
        let files = root_procs_files(info);
        assert_eq!(
            files,
            ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/memory"]
                .iter()
                .map(|m| PathBuf::from(m).join("cgroup.procs"))
                .collect::<Vec<_>>()
        );
    }
}
