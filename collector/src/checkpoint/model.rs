//! What a checkpoint holds, as plain data for the report: processes with
//! their threads, files and memory layout, plus the container metadata.
//! Maps are `BTreeMap`s so JSON output is stable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::archive::{DiffEntry, Format, Limits};
use super::seccomp::Filter;

/// One checkpoint archive, decoded.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub format: Format,
    /// Size of the archive file (or of all files of a directory).
    pub archive_size: u64,
    /// Bytes under `checkpoint/` (CRIU images and pages).
    pub checkpoint_size: u64,
    pub rootfs_diff_size: Option<u64>,
    pub metadata: Metadata,
    pub inventory: Inventory,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// Keyed by PID in the container's PID namespace.
    pub processes: BTreeMap<u32, Process>,
    pub stats: Option<DumpStats>,
    #[serde(skip)]
    pub seccomp_filters: Vec<Filter>,
    pub mounts: Vec<Mount>,
    pub bind_mounts: Vec<BindMount>,
    pub deleted_files: Vec<String>,
    pub rootfs_diff: Vec<DiffEntry>,
    /// Member name → size, every regular member.
    pub members: BTreeMap<String, u64>,
    /// Members skipped because their names were absolute or used `..`.
    pub ignored_members: Vec<String>,
    /// Non-fatal decoding problems (a bad optional image), one line each.
    pub problems: Vec<String>,
    /// The limits it was loaded under; later passes (pages) keep to them.
    #[serde(skip)]
    pub limits: Limits,
}

impl Checkpoint {
    /// The PID-1-first list of root processes (ppid not in the dump).
    pub fn roots(&self) -> Vec<u32> {
        self.processes
            .values()
            .filter(|p| !self.processes.contains_key(&p.ppid) || p.ppid == p.pid)
            .map(|p| p.pid)
            .collect()
    }

    /// Children of `pid`, sorted.
    pub fn children(&self, pid: u32) -> Vec<u32> {
        self.processes
            .values()
            .filter(|p| p.ppid == pid && p.pid != pid)
            .map(|p| p.pid)
            .collect()
    }
}

/// Container metadata from `config.dump`, `spec.dump`, `network.status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metadata {
    pub id: Option<String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub image_ref: Option<String>,
    pub runtime: Option<String>,
    pub created: Option<String>,
    /// `checkpointedTime` when the engine records it, else the time stamp of
    /// `checkpoint/inventory.img` in the archive.
    pub checkpointed: Option<String>,
    /// `io.container.manager` (`libpod`, `cri-o`), else guessed from the
    /// archive's members.
    pub engine: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub container_name: Option<String>,
    pub ips: Vec<String>,
    pub annotations: BTreeMap<String, String>,
    pub command: Vec<String>,
}

/// `inventory.img`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub img_version: u32,
    pub fdinfo_per_id: bool,
    pub ns_per_id: bool,
    /// Host uptime at dump time, microseconds.
    pub dump_uptime_us: Option<u64>,
    pub lsm: Option<String>,
    /// CRIU's run id of the dump (also in dump.log).
    pub criu_run_id: Option<String>,
}

/// CRIU task states (`TASK_*` in criu/include/image.h and compel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Alive,
    Dead,
    Stopped,
    Helper,
    Thread,
    Zombie,
    Unknown,
}

impl TaskState {
    pub fn from_criu(v: u32) -> Self {
        match v {
            1 => TaskState::Alive,
            2 => TaskState::Dead,
            3 => TaskState::Stopped,
            4 => TaskState::Helper,
            5 => TaskState::Thread,
            6 => TaskState::Zombie,
            _ => TaskState::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Alive => "alive",
            TaskState::Dead => "dead",
            TaskState::Stopped => "stopped",
            TaskState::Helper => "helper",
            TaskState::Thread => "thread",
            TaskState::Zombie => "zombie",
            TaskState::Unknown => "unknown",
        }
    }
}

/// One process (thread group).
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub comm: String,
    pub state: TaskState,
    pub exit_code: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub threads: Vec<Thread>,
    pub cwd: Option<String>,
    pub root: Option<String>,
    pub fds: Vec<Fd>,
    /// From the dumped stack pages (`mm_arg_start..mm_arg_end`); `None` when
    /// not asked for or not dumped.
    pub cmdline: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    #[serde(skip)]
    pub memory: Option<Memory>,
    /// Seccomp mode of the main thread (0 off, 1 strict, 2 filter).
    pub seccomp_mode: u32,
    /// Index of its last filter in `seccomp.img`.
    pub seccomp_filter: Option<u32>,
    #[serde(skip)]
    pub files_id: Option<u32>,
    #[serde(skip)]
    pub uts_ns_id: Option<u32>,
}

/// One thread, with the syscall it was in when frozen.
#[derive(Debug, Clone, Serialize)]
pub struct Thread {
    pub tid: u32,
    pub comm: Option<String>,
    pub syscall: Option<Syscall>,
    pub ip: Option<u64>,
    pub sp: Option<u64>,
    /// Every register CRIU saved (for core files).
    #[serde(skip)]
    pub regs: Option<Box<Registers>>,
}

/// A thread's saved registers (x86_64).
#[derive(Debug, Clone, PartialEq)]
pub struct Registers {
    /// `struct user_regs_struct` order: r15 … gs.
    pub user: [u64; 27],
    /// The fxsave image and the AVX upper halves, when dumped.
    pub fp: Option<super::proto::UserX86Fpregs>,
    /// A 32-bit (compat) task.
    pub compat: bool,
}

/// A syscall a thread sat in (`orig_ax` ≥ 0 on x86_64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Syscall {
    pub nr: u64,
    pub name: String,
    /// Raw `ax` as dumped. For a restartable call CRIU rewinds the task so
    /// that `ax` holds the syscall number again; `-4` is EINTR.
    pub ax: i64,
    pub args: [u64; 6],
}

/// An open file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fd {
    pub fd: u32,
    pub flags: u32,
    #[serde(flatten)]
    pub file: FileKind,
}

/// What a descriptor refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FileKind {
    Reg {
        path: String,
        pos: u64,
        size: Option<u64>,
        flags: u32,
    },
    Pipe {
        pipe_id: u32,
    },
    Unix {
        ino: u32,
        path: String,
        r#type: String,
        state: String,
        peer: u32,
    },
    Inet {
        ino: u32,
        family: String,
        proto: String,
        r#type: String,
        state: String,
        src: String,
        dst: String,
    },
    Other {
        r#type: String,
        id: u32,
    },
}

/// Memory layout from `mm-N.img` and `pagemap-N.img`.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub arg: (u64, u64),
    pub env: (u64, u64),
    /// The saved auxiliary vector (`mm_saved_auxv`), key/value words.
    pub auxv: Vec<u64>,
    pub vmas: Vec<Vma>,
    pub pages_id: u32,
    /// Page runs whose data is in `pages-<pages_id>.img`, with their offset
    /// there.
    pub runs: Vec<PageRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    pub vaddr: u64,
    pub nr_pages: u64,
    /// Byte offset in the pages file.
    pub offset: u64,
}

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub status: u32,
    /// What it maps: `[heap]`, `[stack]`, a file path, `anon`…
    pub what: String,
    /// Offset in the mapped file, bytes (file mappings).
    pub pgoff: u64,
    /// `mmap` flags as dumped (`MAP_PRIVATE`, `MAP_SHARED`, …).
    pub flags: u32,
    /// The mapped file's path, for file mappings whose file is in `files.img`.
    pub file: Option<String>,
}

impl Vma {
    /// The kind of mapping, as `checkpoint maps` and `memsearch --map` name
    /// it: `heap`, `stack`, `vdso`, `vvar`, `vsyscall`, `file`, `shmem`,
    /// `anon`.
    pub fn kind(&self) -> &'static str {
        let s = self.status;
        if s & (1 << 5) != 0 {
            "heap"
        } else if s & (1 << 1) != 0 || self.what == "[stack]" {
            "stack"
        } else if s & (1 << 3) != 0 {
            "vdso"
        } else if s & (1 << 12) != 0 {
            "vvar"
        } else if s & (1 << 2) != 0 {
            "vsyscall"
        } else if s & (1 << 6 | 1 << 7) != 0 {
            "file"
        } else if s & (1 << 8 | 1 << 10 | 1 << 11) != 0 {
            "shmem"
        } else {
            "anon"
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True for an empty (or inverted, hence corrupt) range.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// `rwxp`-style protection string.
    pub fn perms(&self) -> String {
        let p = self.prot;
        format!(
            "{}{}{}{}",
            if p & 1 != 0 { 'r' } else { '-' },
            if p & 2 != 0 { 'w' } else { '-' },
            if p & 4 != 0 { 'x' } else { '-' },
            if self.status & (1 << 7 | 1 << 8) != 0 {
                's'
            } else {
                'p'
            },
        )
    }
}

/// `stats-dump`: times in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DumpStats {
    pub freezing_time_us: u32,
    pub frozen_time_us: u32,
    pub memdump_time_us: u32,
    pub memwrite_time_us: u32,
    pub pages_scanned: u64,
    pub pages_skipped_parent: u64,
    pub pages_written: u64,
    pub pages_lazy: u64,
}

/// A mount from the OCI spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub destination: String,
    pub r#type: String,
    pub source: String,
    pub options: Vec<String>,
}

/// An entry of `bind.mounts` (CRI-O).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindMount {
    pub destination: String,
    pub source: String,
    pub options: Vec<String>,
}
