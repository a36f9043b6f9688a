//! Moving the recorder out of the container's cgroups.
//!
//! The hook (and so the recorder it starts) runs in the runtime's cgroup,
//! which can be the container's own, a per-container scope (systemd:
//! `libpod-conmon-<id>.scope`, `crio-conmon-<id>.scope`) or the pod's; the
//! container's teardown kills everything there. Then the recorder moves
//! itself to the root of every hierarchy, v1 and v2, so it outlives the
//! container long enough to finish ([`tied_to_container`], [`leave_to_root`]).
//!
//! Where the runtime's cgroup is shared by all containers (podman with
//! cgroupfs: `/libpod_parent/conmon`), the recorder stays: each move waits
//! out an RCU grace period holding `cgroup_mutex`, and that cost the
//! container's start about 10 ms (bench/start-overhead).

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

/// Why the cgroups of `own` (a `/proc/PID/cgroup` text) go away with
/// the container whose init task has `init` and whose id is `id`, or `None`
/// when none of them does. A non-root cgroup is the container's when it is
/// named after its id, is the init's own or lies inside it, or holds it (a
/// pod). Without the init's cgroups (it is gone), every non-root one counts.
pub fn tied_to_container(own: &str, init: &str, id: &str) -> Option<String> {
    let init = memberships(init);
    for (hierarchy, path) in memberships(own) {
        if path == "/" {
            continue;
        }
        let Some((_, init_path)) = init.iter().find(|(h, _)| *h == hierarchy) else {
            return Some(format!("{path}: the container's cgroups are unknown"));
        };
        let holds = |outer: &str, inner: &str| inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('/'));
        if !id.is_empty() && path.contains(id) {
            return Some(format!("{path} is named after the container"));
        }
        if path == *init_path || holds(&path, init_path) || holds(init_path, &path) {
            return Some(format!("{path} holds or is the container's {init_path}"));
        }
    }
    None
}

/// The `cpu.stat` of task `pid`'s cgroup v2, if it has one (read while
/// the task lives: the path is gone with it).
pub fn cpu_stat_file(pid: i32) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let (_, path) = memberships(&text).into_iter().find(|(h, _)| h == "0:")?;
    let rel = path.trim_start_matches('/');
    // `..` cannot come from the kernel, but the text is still checked.
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    let file = PathBuf::from("/sys/fs/cgroup").join(rel).join("cpu.stat");
    file.is_file().then_some(file)
}

/// CPU time used by a cgroup (`usage_usec` of its `cpu.stat`).
pub fn cpu_usage(file: &std::path::Path) -> Option<std::time::Duration> {
    let text = fs::read_to_string(file).ok()?;
    let usec = text.lines().find_map(|l| l.strip_prefix("usage_usec "))?.trim().parse().ok()?;
    Some(std::time::Duration::from_micros(usec))
}

/// `hierarchy-id:controllers` and path of each line of a
/// `/proc/PID/cgroup` text.
fn memberships(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (hierarchy, path) = l.rsplit_once(':')?;
            Some((hierarchy.to_string(), path.to_string()))
        })
        .collect()
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

    const ID: &str = "01d3601415195cb4c2c7156dae755e8b1b6efc1517177429b1433c9726a08e1d";

    fn lines(paths: &[(&str, String)]) -> String {
        paths.iter().map(|(h, p)| format!("{h}:{p}\n")).collect()
    }

    #[test]
    fn a_cgroup_shared_by_all_containers_is_not_tied() {
        // podman, cgroupfs, v1 hybrid: conmon's cgroup is one for all.
        let ctr = format!("/libpod_parent/libpod-{ID}");
        let own = lines(&[("9:name=systemd", "/".into()), ("4:memory", "/libpod_parent/conmon".into()), ("0:", "/".into())]);
        let init = lines(&[("9:name=systemd", ctr.clone()), ("4:memory", ctr.clone()), ("0:", ctr)]);
        assert_eq!(tied_to_container(&own, &init, ID), None);
        // Already at every root.
        assert_eq!(tied_to_container("4:memory:/\n0::/\n", &init, ID), None);
    }

    #[test]
    fn scopes_pods_and_the_container_itself_are_tied() {
        let init = lines(&[("0:", format!("/machine.slice/libpod-{ID}.scope/container"))]);
        // systemd: a per-container conmon scope.
        let own = lines(&[("0:", format!("/machine.slice/libpod-conmon-{ID}.scope"))]);
        assert!(tied_to_container(&own, &init, ID).is_some_and(|w| w.contains("named after")));
        // The container's own cgroup, and one inside it.
        let own = lines(&[("0:", format!("/machine.slice/libpod-{ID}.scope"))]);
        assert!(tied_to_container(&own, &init, "other").is_some());
        let own = lines(&[("0:", format!("/machine.slice/libpod-{ID}.scope/container/x"))]);
        assert!(tied_to_container(&own, &init, "other").is_some());
        // CRI-O, conmon_cgroup = "pod": the pod holds the container.
        let init = lines(&[("0:", "/kubepods/besteffort/pod1234/crio-abcd".into())]);
        let own = lines(&[("0:", "/kubepods/besteffort/pod1234".into())]);
        assert!(tied_to_container(&own, &init, "abcd-not-in-path").is_some());
        // A sibling whose name merely starts like the pod's is not.
        let own = lines(&[("0:", "/kubepods/besteffort/pod12345".into())]);
        assert_eq!(tied_to_container(&own, &init, "zzz"), None);
        // The init's cgroups unknown: any non-root one counts.
        assert!(tied_to_container(&own, "", "zzz").is_some());
    }

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
