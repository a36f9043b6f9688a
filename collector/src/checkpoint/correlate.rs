//! A checkpoint joined with the trace of the same container.
//!
//! The checkpoint names processes by their pid in the container's PID
//! namespace; the recorder noted that pid for each traced process
//! (`ns_pid`). Joined on it, each checkpointed process gets the syscalls
//! it was seen to make, next to what the checkpoint says it was doing: the
//! call it was blocked in, its open files and sockets, its command line.
//! The filter the container ran under (`seccomp.img`) is compared with the
//! calls the workload used: what it allowed and nobody used is the attack
//! surface a generated profile removes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{seccomp_chains, Checkpoint, FileKind};
use crate::container::Summary;
use crate::profile::episode::Episode;
use crate::profile::Process as Traced;

/// Why a checkpoint and a trace cannot be joined.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("checkpoint {archive} is of container {theirs}, not {ours}: pass the archive of this container")]
    OtherContainer { archive: PathBuf, theirs: String, ours: String },
}

/// The report model: see the module docs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Correlation {
    pub container: String,
    /// The recording mode of the trace.
    #[serde(default)]
    pub mode: crate::record::Mode,
    pub archive: PathBuf,
    /// When the engine says it checkpointed (config.dump), if it says.
    pub checkpointed: Option<String>,
    /// CRIU's uptime at the dump, in seconds: the trace clock's scale.
    pub dump_uptime_s: Option<f64>,
    /// The trace's checkpoint episode this dump falls in (1-based), if any.
    pub episode: Option<usize>,
    /// Every checkpoint episode the trace holds.
    pub episodes: Vec<Episode>,
    pub processes: Vec<ProcessView>,
    /// Traced processes that no checkpointed process matched (they had
    /// exited by then, or their container pid is unknown).
    pub unmatched_traced: usize,
    /// One entry per distinct filter chain in the checkpoint.
    pub surface: Vec<Surface>,
    /// Caveats in words (e.g. the archive names no container id).
    pub notes: Vec<String>,
}

/// One checkpointed process, with what the trace says about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessView {
    /// Pid in the container's PID namespace (the checkpoint's).
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub state: String,
    pub cmdline: Option<Vec<String>>,
    /// The host pid of the traced process it is, when matched.
    pub host_pid: Option<i32>,
    /// How it was matched: `container-pid` or `comm`.
    pub matched_by: Option<String>,
    /// Per thread (container tid), the syscall it sat in when frozen.
    pub blocked: Vec<Blocked>,
    pub files: Vec<FdView>,
    pub sockets: Vec<FdView>,
    /// The calls the trace saw this process make (inside the window).
    pub syscalls: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocked {
    pub tid: u32,
    pub syscall: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdView {
    pub fd: u32,
    #[serde(flatten)]
    pub file: FileKind,
}

/// Allowed against used, for one filter chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Surface {
    /// Container pids running under this chain.
    pub pids: Vec<u32>,
    /// Allowed whatever the arguments.
    pub allowed: usize,
    /// Allowed for some arguments only.
    pub conditional: usize,
    /// Distinct calls the workload was seen to make.
    pub used: usize,
    /// Allowed (wholly or for some arguments) and never used: what the
    /// generated profile takes away.
    pub unused_allowed: Vec<String>,
    /// Used although this filter denies them whatever the arguments (none
    /// are expected: they would have failed).
    pub used_but_denied: Vec<String>,
}

/// Joins `ckpt` (loaded from `archive`) with `summary`. Refuses an archive
/// of another container.
pub fn correlate(summary: &Summary, ckpt: &Checkpoint, archive: &Path) -> Result<Correlation, Error> {
    let mut notes = Vec::new();
    match ckpt.metadata.id.as_deref() {
        Some(theirs) if theirs != summary.id => {
            return Err(Error::OtherContainer {
                archive: archive.to_path_buf(),
                theirs: theirs.to_string(),
                ours: summary.id.clone(),
            })
        }
        Some(_) => {}
        None => notes.push("the archive names no container id; it is taken to be this container's".to_string()),
    }
    if summary.mode == crate::record::Mode::Profile {
        notes.push(
            "profile mode records each syscall until it is first seen: a process's list holds the calls it made first (full mode lists every call)"
                .into(),
        );
    }
    let traced = &summary.analysis.processes;
    if traced.values().all(|p| p.ns_pid.is_none()) && !traced.is_empty() {
        notes.push("the trace has no container pids (recorded by an older recorder): processes are matched by comm".into());
    }

    let mut used_hosts = BTreeSet::new();
    let mut processes = Vec::new();
    for p in ckpt.processes.values() {
        let (host, how) = match match_process(p.pid, &p.comm, traced, &ckpt.processes) {
            Some((t, how)) => (Some(t), Some(how)),
            None => (None, None),
        };
        if let Some(t) = host {
            used_hosts.insert(t.tgid);
        }
        let (sockets, files): (Vec<FdView>, Vec<FdView>) = p
            .fds
            .iter()
            .map(|f| FdView { fd: f.fd, file: f.file.clone() })
            .partition(|f| matches!(f.file, FileKind::Unix { .. } | FileKind::Inet { .. }));
        processes.push(ProcessView {
            pid: p.pid,
            ppid: p.ppid,
            comm: p.comm.clone(),
            state: p.state.as_str().to_string(),
            cmdline: p.cmdline.clone(),
            host_pid: host.map(|t| t.tgid),
            matched_by: how.map(String::from),
            blocked: p
                .threads
                .iter()
                .filter_map(|t| t.syscall.as_ref().map(|s| Blocked { tid: t.tid, syscall: s.name.clone() }))
                .collect(),
            files,
            sockets,
            syscalls: host.map(|t| t.syscalls.clone()).unwrap_or_default(),
        });
    }

    let used: BTreeSet<&str> = summary.analysis.syscalls.keys().map(String::as_str).collect();
    let surface = seccomp_chains(ckpt)
        .into_iter()
        .map(|c| {
            let v = &c.verdict;
            Surface {
                pids: c.pids.clone(),
                allowed: v.allowed.len(),
                conditional: v.conditional.len(),
                used: used.len(),
                unused_allowed: v
                    .allowed
                    .iter()
                    .chain(v.conditional.iter())
                    .filter(|n| !used.contains(n.as_str()))
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                used_but_denied: v.denied.keys().filter(|n| used.contains(n.as_str())).cloned().collect(),
            }
        })
        .collect::<Vec<_>>();
    if surface.is_empty() {
        notes.push("no process of the checkpoint ran under a seccomp filter: there is no allowed set to compare".into());
    }

    let dump_uptime_s = ckpt.inventory.dump_uptime_us.map(|us| us as f64 / 1e6);
    let episodes = summary.analysis.episodes.clone();
    // CRIU's uptime at the dump is on the trace clock's scale. Without it,
    // the engine's checkpoint time (to the second) is put on that scale
    // with the wall time of trace-clock zero the summary noted.
    let episode = match (dump_uptime_s, &ckpt.metadata.checkpointed, summary.trace_clock_unix) {
        (Some(t), _, _) => episode_at(&episodes, t, 1.0),
        (None, Some(when), Some(zero)) => parse_rfc3339(when).and_then(|unix| episode_at(&episodes, unix - zero, 2.0)),
        _ => None,
    };
    Ok(Correlation {
        container: summary.id.clone(),
        mode: summary.mode,
        archive: archive.to_path_buf(),
        checkpointed: ckpt.metadata.checkpointed.clone(),
        dump_uptime_s,
        episode,
        episodes,
        processes,
        unmatched_traced: traced.keys().filter(|k| !used_hosts.contains(*k)).count(),
        surface,
        notes,
    })
}

/// The traced process a checkpointed one is: by container pid (the newest
/// such process with the same comm, else the newest with that pid), or,
/// when the trace has no container pids, by a comm both sides have once.
fn match_process<'a>(
    pid: u32,
    comm: &str,
    traced: &'a BTreeMap<i32, Traced>,
    checkpointed: &BTreeMap<u32, super::Process>,
) -> Option<(&'a Traced, &'static str)> {
    let pid = i32::try_from(pid).ok()?;
    let same_pid: Vec<&Traced> = traced.values().filter(|t| t.ns_pid == Some(pid)).collect();
    let newest = |v: &[&'a Traced]| v.iter().copied().max_by_key(|t| t.first_ns.unwrap_or(0));
    if !same_pid.is_empty() {
        let named: Vec<&Traced> = same_pid.iter().copied().filter(|t| t.comm == comm).collect();
        return newest(if named.is_empty() { &same_pid } else { &named }).map(|t| (t, "container-pid"));
    }
    if traced.values().any(|t| t.ns_pid.is_some()) {
        return None;
    }
    let mine: Vec<&Traced> = traced.values().filter(|t| t.comm == comm).collect();
    let theirs = checkpointed.values().filter(|p| p.comm == comm).count();
    (mine.len() == 1 && theirs == 1).then(|| (mine[0], "comm"))
}

/// The episode (1-based) whose time span holds trace time `t` seconds,
/// give or take `slack` seconds (CRIU notes the dump time as it finishes,
/// after the last stop; engines note it to the second).
fn episode_at(episodes: &[Episode], t: f64, slack: f64) -> Option<usize> {
    let (t, slack) = ((t.max(0.0) * 1e9) as u64, (slack * 1e9) as u64);
    episodes
        .iter()
        .position(|e| e.start_ns.saturating_sub(slack) <= t && t <= e.end_ns.saturating_add(slack))
        .map(|i| i + 1)
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)`; other offsets
/// and forms are not needed here and give `None`.
fn parse_rfc3339(s: &str) -> Option<f64> {
    let (date, time) = s.split_once('T')?;
    let time = time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00"))?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    // Days from civil (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

/// The annotation naming a directory where this container's checkpoints
/// are put (e.g. `podman container checkpoint --export DIR/...`).
pub const CHECKPOINT_DIR_ANNOTATION: &str = "oci-ftrace-syscall-analyzer/checkpoint-dir";

/// At most this many archives are opened when looking for a container's.
const MAX_CANDIDATES: usize = 8;

/// Checkpoint archives (or extracted checkpoint directories) in `dir`
/// whose names start with `prefix` (any name when `None`), newest first,
/// at most [`MAX_CANDIDATES`]. Symlinks and other file types are ignored:
/// the directory may come from a container's annotation.
pub fn candidates(dir: &Path, prefix: Option<&str>) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let name = e.file_name().into_string().ok()?;
            if prefix.is_some_and(|p| !name.starts_with(p)) {
                return None;
            }
            let meta = std::fs::symlink_metadata(&path).ok()?;
            let archive = meta.is_file()
                && [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"].iter().any(|s| name.ends_with(s));
            let extracted = meta.is_dir() && path.join("checkpoint/inventory.img").is_file();
            (archive || extracted).then(|| (meta.modified().unwrap_or(std::time::UNIX_EPOCH), path))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    found.into_iter().take(MAX_CANDIDATES).map(|(_, p)| p).collect()
}

/// The kubelet's name prefix for a container's checkpoints:
/// `checkpoint-<pod>_<namespace>-<container>-`.
pub fn kubelet_prefix(annotations: &BTreeMap<String, String>) -> Option<String> {
    let get = |k: &str| annotations.get(k).filter(|v| !v.is_empty() && !v.contains('/'));
    let pod = get("io.kubernetes.pod.name")?;
    let ns = get("io.kubernetes.pod.namespace")?;
    let ctr = get("io.kubernetes.container.name")?;
    Some(format!("checkpoint-{pod}_{ns}-{ctr}-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Fd, Process, Syscall, TaskState, Thread};
    use crate::profile::{Analysis, Rule};

    fn summary(id: &str) -> Summary {
        let mut a = Analysis::default();
        for (tgid, comm, ns, calls) in [
            (100, "sh", Some(1), &["wait4", "execve"][..]),
            (120, "sleep", Some(5), &["clock_nanosleep"][..]),
            // An earlier process that had container pid 5 too.
            (110, "sleep", Some(5), &["nanosleep"][..]),
            (130, "cat", Some(9), &["read"][..]),
        ] {
            let mut p = Traced { tgid, comm: comm.into(), ns_pid: ns, first_ns: Some(tgid as u64), ..Default::default() };
            for c in calls {
                p.syscalls.insert(c.to_string(), 1);
                *a.syscalls.entry(c.to_string()).or_default() += 1;
            }
            a.processes.insert(tgid, p);
        }
        Summary {
            id: id.into(),
            host_pid: 100,
            mode: crate::record::Mode::Profile,
            finished_by: None,
            recorder: None,
            no_event_syscalls: vec![],
            runtime_allowance: vec![],
            rule: Rule::FirstEvent,
            rule_text: String::new(),
            complete: true,
            incomplete_reasons: vec![],
            lost_events: 0,
            counts_exact: true,
            from_companion: vec![],
            per_cpu: vec![],
            malformed_records: 0,
            analysis: a,
            profile: "/x".into(),
            arch: "x86_64".into(),
            kernel_release: String::new(),
            started_unix: 0,
            finished_unix: 0,
            trace_clock_unix: None,
        }
    }

    fn proc(pid: u32, comm: &str, blocked: &str, fds: Vec<Fd>) -> Process {
        Process {
            pid,
            ppid: 0,
            pgid: 1,
            sid: 1,
            comm: comm.into(),
            state: TaskState::Alive,
            exit_code: 0,
            uid: None,
            gid: None,
            threads: vec![Thread {
                tid: pid,
                comm: None,
                syscall: Some(Syscall { nr: 0, name: blocked.into(), ax: 0, args: [0; 6] }),
                ip: None,
                sp: None,
                regs: None,
            }],
            cwd: None,
            root: None,
            fds,
            cmdline: None,
            env: None,
            memory: None,
            seccomp_mode: 0,
            seccomp_filter: None,
            files_id: None,
            uts_ns_id: None,
        }
    }

    fn checkpoint(id: Option<&str>) -> Checkpoint {
        let mut c = Checkpoint {
            path: "/a.tar".into(),
            format: crate::checkpoint::Format::Tar,
            archive_size: 0,
            checkpoint_size: 0,
            rootfs_diff_size: None,
            metadata: Default::default(),
            inventory: Default::default(),
            hostname: None,
            domainname: None,
            processes: BTreeMap::new(),
            stats: None,
            seccomp_filters: vec![],
            mounts: vec![],
            bind_mounts: vec![],
            deleted_files: vec![],
            rootfs_diff: vec![],
            members: BTreeMap::new(),
            limits: Default::default(),
            ignored_members: vec![],
            problems: vec![],
        };
        c.metadata.id = id.map(String::from);
        let listener = Fd {
            fd: 3,
            flags: 0,
            file: FileKind::Unix { ino: 7, path: "/run/app.sock".into(), r#type: "stream".into(), state: "listen".into(), peer: 0 },
        };
        c.processes.insert(1, proc(1, "sh", "wait4", vec![]));
        c.processes.insert(5, proc(5, "sleep", "clock_nanosleep", vec![listener]));
        c
    }

    #[test]
    fn processes_join_on_the_container_pid() {
        let c = correlate(&summary("abc"), &checkpoint(Some("abc")), Path::new("/a.tar")).unwrap();
        let sh = &c.processes[0];
        assert_eq!((sh.pid, sh.host_pid, sh.matched_by.as_deref()), (1, Some(100), Some("container-pid")));
        assert_eq!(sh.blocked[0].syscall, "wait4");
        assert!(sh.syscalls.contains_key("wait4"));
        // The newer of the two processes that had pid 5.
        let sleep = &c.processes[1];
        assert_eq!(sleep.host_pid, Some(120));
        assert!(sleep.syscalls.contains_key("clock_nanosleep") && !sleep.syscalls.contains_key("nanosleep"));
        assert_eq!(sleep.sockets.len(), 1);
        assert!(sleep.files.is_empty());
        // cat had exited; the older sleep was replaced.
        assert_eq!(c.unmatched_traced, 2);
        assert!(c.notes.iter().any(|n| n.contains("seccomp")), "{:?}", c.notes);
    }

    #[test]
    fn another_containers_checkpoint_is_refused() {
        let err = correlate(&summary("abc"), &checkpoint(Some("def")), Path::new("/a.tar")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("is of container def, not abc"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn an_archive_without_an_id_is_joined_with_a_note() {
        let c = correlate(&summary("abc"), &checkpoint(None), Path::new("/a.tar")).unwrap();
        assert!(c.notes.iter().any(|n| n.contains("names no container id")));
    }

    #[test]
    fn without_container_pids_a_comm_both_sides_have_once_matches() {
        let mut s = summary("abc");
        for p in s.analysis.processes.values_mut() {
            p.ns_pid = None;
        }
        let c = correlate(&s, &checkpoint(Some("abc")), Path::new("/a.tar")).unwrap();
        assert_eq!((c.processes[0].host_pid, c.processes[0].matched_by.as_deref()), (Some(100), Some("comm")));
        // Two traced sleeps: ambiguous, so no match.
        assert_eq!(c.processes[1].host_pid, None);
    }

    #[test]
    fn candidates_are_archives_newest_first_and_never_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("checkpoint-p_n-c-1.tar"), b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.join("checkpoint-p_n-c-2.tar.zst"), b"x").unwrap();
        std::fs::write(d.join("checkpoint-p_n-other-3.tar"), b"x").unwrap();
        std::fs::write(d.join("notes.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("checkpoint-p_n-c-9.tar")).unwrap();
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names(candidates(d, Some("checkpoint-p_n-c-"))), ["checkpoint-p_n-c-2.tar.zst", "checkpoint-p_n-c-1.tar"]);
        assert_eq!(candidates(d, None).len(), 3);
        assert!(candidates(&d.join("missing"), None).is_empty());
    }

    #[test]
    fn the_kubelet_prefix_needs_all_three_names_and_no_slashes() {
        let mut a: BTreeMap<String, String> = [
            ("io.kubernetes.pod.name", "web"),
            ("io.kubernetes.pod.namespace", "prod"),
            ("io.kubernetes.container.name", "app"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(kubelet_prefix(&a).as_deref(), Some("checkpoint-web_prod-app-"));
        a.insert("io.kubernetes.container.name".into(), "../x".into());
        assert_eq!(kubelet_prefix(&a), None);
        a.remove("io.kubernetes.container.name");
        assert_eq!(kubelet_prefix(&a), None);
    }

    #[test]
    fn the_dump_time_picks_its_episode() {
        let e = |s: u64, e: u64| Episode { start_ns: s * 1_000_000_000, end_ns: e * 1_000_000_000, ..Default::default() };
        let eps = [e(10, 11), e(50, 51)];
        assert_eq!(episode_at(&eps, 51.5, 1.0), Some(2));
        assert_eq!(episode_at(&eps, 10.2, 1.0), Some(1));
        assert_eq!(episode_at(&eps, 30.0, 1.0), None);
    }

    #[test]
    fn rfc3339_times_of_engines_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2026-11-22T21:02:48Z"), Some(1_795_381_368.0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00.5+00:00"), Some(951_782_400.5));
        assert_eq!(parse_rfc3339("2026-11-22 21:02:48"), None);
        assert_eq!(parse_rfc3339("2026-13-22T21:02:48Z"), None);
    }
}
