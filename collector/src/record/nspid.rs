//! Host pid → container pid, learnt while the processes live.
//!
//! A checkpoint names its processes by their pid inside the container's
//! PID namespace; the trace names them by host pid. `/proc/<pid>/status`
//! (`NSpid`) links the two, but only while the process exists, so the
//! recorder asks as soon as a process shows up in the aggregate. A pid
//! that was reused by then is caught by comparing PID namespaces.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// Learns and keeps the mapping for one container.
#[derive(Debug)]
pub struct NsPids {
    proc_root: PathBuf,
    /// The container's PID namespace (`pid:[inode]`), from its init task.
    pidns: Option<String>,
    known: BTreeMap<i32, i32>,
    tried: HashSet<i32>,
}

impl NsPids {
    /// For the container whose init task is host pid `init_pid`.
    pub fn new(init_pid: i32) -> Self {
        Self::with_proc(PathBuf::from("/proc"), init_pid)
    }

    fn with_proc(proc_root: PathBuf, init_pid: i32) -> Self {
        let pidns = std::fs::read_link(proc_root.join(init_pid.to_string()).join("ns/pid"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        NsPids { proc_root, pidns, known: BTreeMap::new(), tried: HashSet::new() }
    }

    /// Looks up every host pid in `pids` not asked about before.
    pub fn learn(&mut self, pids: impl IntoIterator<Item = i32>) {
        for pid in pids {
            if !self.tried.insert(pid) {
                continue;
            }
            if let Some(ns) = self.lookup(pid) {
                self.known.insert(pid, ns);
            }
        }
    }

    pub fn get(&self, host_pid: i32) -> Option<i32> {
        self.known.get(&host_pid).copied()
    }

    pub fn all(&self) -> &BTreeMap<i32, i32> {
        &self.known
    }

    fn lookup(&self, pid: i32) -> Option<i32> {
        let dir = self.proc_root.join(pid.to_string());
        // Same namespace as the container's init, or it is someone else now.
        let ns = std::fs::read_link(dir.join("ns/pid")).ok()?.to_string_lossy().into_owned();
        if self.pidns.as_deref() != Some(ns.as_str()) {
            return None;
        }
        parse_nspid(&std::fs::read_to_string(dir.join("status")).ok()?)
    }
}

/// The innermost pid of the `NSpid:` line of a status file.
fn parse_nspid(status: &str) -> Option<i32> {
    status.lines().find_map(|l| l.strip_prefix("NSpid:")).and_then(|rest| rest.split_whitespace().last()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn innermost_pid_of_nspid() {
        assert_eq!(parse_nspid("Name:\tsh\nNSpid:\t4242\t7\nNSpgid:\t1\n"), Some(7));
        assert_eq!(parse_nspid("NSpid:\t1\n"), Some(1));
        assert_eq!(parse_nspid("Name:\tsh\n"), None);
        assert_eq!(parse_nspid("NSpid:\tx\n"), None);
    }

    #[test]
    fn this_process_maps_to_its_own_namespace_pid() {
        let me = std::process::id() as i32;
        let mut m = NsPids::new(me);
        m.learn([me, me]);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(m.get(me), parse_nspid(&status));
    }

    #[test]
    fn a_process_in_another_pid_namespace_is_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, ns) in [(10, "pid:[1]"), (20, "pid:[2]")] {
            let d = dir.path().join(pid.to_string());
            std::fs::create_dir_all(d.join("ns")).unwrap();
            std::os::unix::fs::symlink(ns, d.join("ns/pid")).unwrap();
            std::fs::write(d.join("status"), format!("NSpid:\t{pid}\t{}\n", pid / 10)).unwrap();
        }
        let mut m = NsPids::with_proc(dir.path().to_path_buf(), 10);
        m.learn([10, 20, 30]);
        assert_eq!(m.all().iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>(), [(10, 1)]);
    }
}
