//! What changed between two checkpoints of one container: processes added,
//! gone and changed (command line, state, the call each is blocked in,
//! threads, descriptors and sockets), mappings and dumped memory per
//! process, files changed or deleted in the root file system, and the UTS
//! namespace. Pure: compares two decoded [`Checkpoint`]s.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::archive::DiffEntry;
use super::maps::dumped_in;
use super::model::{Checkpoint, Fd, FileKind, Process};

/// One field that differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    pub field: &'static str,
    pub a: String,
    pub b: String,
}

/// A process as the diff names it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Brief {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub state: String,
    /// The call its main thread is blocked in.
    pub blocked: Option<String>,
    pub cmdline: Option<Vec<String>>,
}

/// A process in both checkpoints that differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Changed {
    pub pid: u32,
    pub comm: String,
    pub changes: Vec<Change>,
    pub fds_added: Vec<Fd>,
    pub fds_removed: Vec<Fd>,
}

/// A mapping as compared.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub what: String,
}

/// Memory of a process in both checkpoints that differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemoryChange {
    pub pid: u32,
    pub comm: String,
    pub dumped_pages_a: u64,
    pub dumped_pages_b: u64,
    pub mappings_added: Vec<Mapping>,
    pub mappings_removed: Vec<Mapping>,
}

/// A file of `rootfs-diff.tar` in both checkpoints that differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub a: DiffEntry,
    pub b: DiffEntry,
}

/// Root file system changes between the checkpoints.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Files {
    /// In B's `rootfs-diff.tar`, not in A's.
    pub added: Vec<DiffEntry>,
    /// In A's, not in B's.
    pub removed: Vec<DiffEntry>,
    /// In both, with another size, kind, link or time stamp.
    pub changed: Vec<FileChange>,
    pub deleted_added: Vec<String>,
    pub deleted_removed: Vec<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    /// Container identity and time (name, id, image, checkpointed).
    pub container: Vec<Change>,
    /// Hostname and domain name (UTS namespace).
    pub namespaces: Vec<Change>,
    pub processes_added: Vec<Brief>,
    pub processes_gone: Vec<Brief>,
    pub processes_changed: Vec<Changed>,
    pub memory: Vec<MemoryChange>,
    pub files: Files,
    /// Mount destinations added and removed (OCI spec).
    pub mounts_added: Vec<String>,
    pub mounts_removed: Vec<String>,
}

impl Diff {
    /// True when nothing but the checkpoint time differs.
    pub fn is_empty(&self) -> bool {
        self.container.iter().all(|c| c.field == "checkpointed")
            && self.namespaces.is_empty()
            && self.processes_added.is_empty()
            && self.processes_gone.is_empty()
            && self.processes_changed.is_empty()
            && self.memory.is_empty()
            && self.files == Files::default()
            && self.mounts_added.is_empty()
            && self.mounts_removed.is_empty()
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

fn push(out: &mut Vec<Change>, field: &'static str, a: String, b: String) {
    if a != b {
        out.push(Change { field, a, b });
    }
}

fn blocked(p: &Process) -> Option<String> {
    p.threads
        .first()
        .and_then(|t| t.syscall.as_ref())
        .map(|s| s.name.clone())
}

fn brief(p: &Process) -> Brief {
    Brief {
        pid: p.pid,
        ppid: p.ppid,
        comm: p.comm.clone(),
        state: p.state.as_str().to_string(),
        blocked: blocked(p),
        cmdline: p.cmdline.clone(),
    }
}

/// A descriptor with what changes on every read or write left out (the
/// file position), so that only a different file counts.
fn fd_key(f: &Fd) -> Fd {
    let mut k = f.clone();
    if let FileKind::Reg { pos, size, .. } = &mut k.file {
        *pos = 0;
        *size = None;
    }
    k
}

fn fd_sets(p: &Process) -> BTreeMap<String, Fd> {
    p.fds
        .iter()
        .map(|f| {
            let k = fd_key(f);
            (format!("{k:?}"), f.clone())
        })
        .collect()
}

fn threads(p: &Process) -> String {
    p.threads
        .iter()
        .map(|t| {
            format!(
                "{}{}",
                t.tid,
                t.syscall
                    .as_ref()
                    .map(|s| format!(" ({})", s.name))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn process_change(a: &Process, b: &Process) -> Option<Changed> {
    let mut changes = Vec::new();
    push(&mut changes, "comm", a.comm.clone(), b.comm.clone());
    push(&mut changes, "ppid", a.ppid.to_string(), b.ppid.to_string());
    if let (Some(ca), Some(cb)) = (&a.cmdline, &b.cmdline) {
        push(&mut changes, "cmdline", ca.join(" "), cb.join(" "));
    }
    push(
        &mut changes,
        "state",
        a.state.as_str().into(),
        b.state.as_str().into(),
    );
    push(&mut changes, "blocked in", opt(&blocked(a)), opt(&blocked(b)));
    push(&mut changes, "threads", threads(a), threads(b));
    push(&mut changes, "cwd", opt(&a.cwd), opt(&b.cwd));
    push(
        &mut changes,
        "uid",
        format!("{:?}", a.uid),
        format!("{:?}", b.uid),
    );
    let fa = fd_sets(a);
    let fb = fd_sets(b);
    let fds_added: Vec<Fd> = fb
        .iter()
        .filter(|(k, _)| !fa.contains_key(*k))
        .map(|(_, f)| f.clone())
        .collect();
    let fds_removed: Vec<Fd> = fa
        .iter()
        .filter(|(k, _)| !fb.contains_key(*k))
        .map(|(_, f)| f.clone())
        .collect();
    (!changes.is_empty() || !fds_added.is_empty() || !fds_removed.is_empty()).then(|| Changed {
        pid: b.pid,
        comm: b.comm.clone(),
        changes,
        fds_added,
        fds_removed,
    })
}

fn mappings(p: &Process) -> BTreeSet<Mapping> {
    p.memory
        .iter()
        .flat_map(|m| m.vmas.iter())
        .map(|v| Mapping {
            start: v.start,
            end: v.end,
            perms: v.perms(),
            what: v.what.clone(),
        })
        .collect()
}

fn dumped(p: &Process) -> u64 {
    p.memory
        .as_ref()
        .map(|m| dumped_in(m, 0, u64::MAX))
        .unwrap_or(0)
}

fn memory_change(a: &Process, b: &Process) -> Option<MemoryChange> {
    let ma = mappings(a);
    let mb = mappings(b);
    let c = MemoryChange {
        pid: b.pid,
        comm: b.comm.clone(),
        dumped_pages_a: dumped(a),
        dumped_pages_b: dumped(b),
        mappings_added: mb.difference(&ma).cloned().collect(),
        mappings_removed: ma.difference(&mb).cloned().collect(),
    };
    (c.dumped_pages_a != c.dumped_pages_b
        || !c.mappings_added.is_empty()
        || !c.mappings_removed.is_empty())
    .then_some(c)
}

fn files(a: &Checkpoint, b: &Checkpoint) -> Files {
    let ea: BTreeMap<&str, &DiffEntry> = a.rootfs_diff.iter().map(|e| (e.path.as_str(), e)).collect();
    let eb: BTreeMap<&str, &DiffEntry> = b.rootfs_diff.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut f = Files::default();
    for (p, e) in &eb {
        match ea.get(p) {
            None => f.added.push((*e).clone()),
            Some(old) if old != e => f.changed.push(FileChange {
                path: p.to_string(),
                a: (*old).clone(),
                b: (*e).clone(),
            }),
            Some(_) => {}
        }
    }
    f.removed = ea
        .iter()
        .filter(|(p, _)| !eb.contains_key(*p))
        .map(|(_, e)| (*e).clone())
        .collect();
    let da: BTreeSet<&String> = a.deleted_files.iter().collect();
    let db: BTreeSet<&String> = b.deleted_files.iter().collect();
    f.deleted_added = db.difference(&da).map(|s| s.to_string()).collect();
    f.deleted_removed = da.difference(&db).map(|s| s.to_string()).collect();
    f
}

/// Compares checkpoint `a` (older) with `b` (newer). Processes are matched
/// by PID in the container's namespace (stable within one container).
pub fn diff(a: &Checkpoint, b: &Checkpoint) -> Diff {
    let mut container = Vec::new();
    let ma = &a.metadata;
    let mb = &b.metadata;
    push(&mut container, "name", opt(&ma.name), opt(&mb.name));
    push(&mut container, "id", opt(&ma.id), opt(&mb.id));
    push(&mut container, "image", opt(&ma.image), opt(&mb.image));
    push(&mut container, "checkpointed", opt(&ma.checkpointed), opt(&mb.checkpointed));
    push(&mut container, "ips", ma.ips.join(", "), mb.ips.join(", "));
    let mut namespaces = Vec::new();
    push(&mut namespaces, "hostname", opt(&a.hostname), opt(&b.hostname));
    push(&mut namespaces, "domainname", opt(&a.domainname), opt(&b.domainname));

    let mut d = Diff {
        a: a.path.display().to_string(),
        b: b.path.display().to_string(),
        container,
        namespaces,
        processes_added: Vec::new(),
        processes_gone: Vec::new(),
        processes_changed: Vec::new(),
        memory: Vec::new(),
        files: files(a, b),
        mounts_added: Vec::new(),
        mounts_removed: Vec::new(),
    };
    for (pid, pb) in &b.processes {
        match a.processes.get(pid) {
            None => d.processes_added.push(brief(pb)),
            Some(pa) => {
                d.processes_changed.extend(process_change(pa, pb));
                d.memory.extend(memory_change(pa, pb));
            }
        }
    }
    d.processes_gone = a
        .processes
        .values()
        .filter(|p| !b.processes.contains_key(&p.pid))
        .map(brief)
        .collect();
    let mnt_a: BTreeSet<&String> = a.mounts.iter().map(|m| &m.destination).collect();
    let mnt_b: BTreeSet<&String> = b.mounts.iter().map(|m| &m.destination).collect();
    d.mounts_added = mnt_b.difference(&mnt_a).map(|s| s.to_string()).collect();
    d.mounts_removed = mnt_a.difference(&mnt_b).map(|s| s.to_string()).collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_position_alone_is_no_change() {
        let f = |pos| Fd {
            fd: 3,
            flags: 0,
            file: FileKind::Reg {
                path: "/data/x".into(),
                pos,
                size: Some(pos),
                flags: 0,
            },
        };
        assert_eq!(fd_key(&f(10)), fd_key(&f(99)));
        assert_ne!(f(10), f(99));
    }
}
