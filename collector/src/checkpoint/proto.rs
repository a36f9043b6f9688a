//! CRIU image messages as `prost` structs. Field numbers and types follow
//! CRIU's MIT-licensed schema (`images/*.proto` in checkpoint-restore/criu).
//! Only the fields this crate reads are declared; protobuf skips the rest.
//! `required` proto2 fields are declared `optional` so that a message missing
//! one still decodes (we report what is there rather than fail).

#![allow(missing_docs)]

/// `inventory.proto: inventory_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InventoryEntry {
    #[prost(uint32, optional, tag = "1")]
    pub img_version: Option<u32>,
    #[prost(bool, optional, tag = "2")]
    pub fdinfo_per_id: Option<bool>,
    #[prost(message, optional, tag = "3")]
    pub root_ids: Option<TaskKobjIdsEntry>,
    #[prost(bool, optional, tag = "4")]
    pub ns_per_id: Option<bool>,
    #[prost(uint32, optional, tag = "5")]
    pub root_cg_set: Option<u32>,
    #[prost(int32, optional, tag = "6")]
    pub lsmtype: Option<i32>,
    #[prost(uint64, optional, tag = "8")]
    pub dump_uptime: Option<u64>,
    /// `dump_criu_run_id`: newer than some schema copies; in CRIU 4.1.1
    /// output it is tag 13 and equals the "CRIU run id" line of dump.log.
    #[prost(string, optional, tag = "13")]
    pub dump_criu_run_id: Option<String>,
}

/// `pstree.proto: pstree_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PstreeEntry {
    #[prost(uint32, optional, tag = "1")]
    pub pid: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub ppid: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub pgid: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub sid: Option<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "5")]
    pub threads: Vec<u32>,
}

/// `core.proto: core_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CoreEntry {
    /// `march`: 1 = X86_64.
    #[prost(int32, optional, tag = "1")]
    pub mtype: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub thread_info: Option<ThreadInfoX86>,
    #[prost(message, optional, tag = "3")]
    pub tc: Option<TaskCoreEntry>,
    #[prost(message, optional, tag = "4")]
    pub ids: Option<TaskKobjIdsEntry>,
    #[prost(message, optional, tag = "5")]
    pub thread_core: Option<ThreadCoreEntry>,
}

/// `core.proto: task_core_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskCoreEntry {
    #[prost(uint32, optional, tag = "1")]
    pub task_state: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub exit_code: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub personality: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub flags: Option<u32>,
    #[prost(string, optional, tag = "6")]
    pub comm: Option<String>,
    #[prost(uint32, optional, tag = "9")]
    pub cg_set: Option<u32>,
    #[prost(int32, optional, tag = "11")]
    pub old_seccomp_mode: Option<i32>,
    #[prost(uint32, optional, tag = "12")]
    pub old_seccomp_filter: Option<u32>,
    #[prost(uint32, optional, tag = "13")]
    pub loginuid: Option<u32>,
    #[prost(int32, optional, tag = "14")]
    pub oom_score_adj: Option<i32>,
}

/// `core.proto: task_kobj_ids_entry` (also the whole of `ids-N.img`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskKobjIdsEntry {
    #[prost(uint32, optional, tag = "1")]
    pub vm_id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub files_id: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub fs_id: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub sighand_id: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub pid_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub net_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub ipc_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub uts_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub mnt_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub user_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "11")]
    pub cgroup_ns_id: Option<u32>,
}

/// `core.proto: thread_core_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ThreadCoreEntry {
    #[prost(sint32, optional, tag = "3")]
    pub sched_nice: Option<i32>,
    #[prost(uint32, optional, tag = "4")]
    pub sched_policy: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub pdeath_sig: Option<u32>,
    #[prost(message, optional, tag = "10")]
    pub creds: Option<CredsEntry>,
    /// `seccomp_mode`: 0 disabled, 1 strict, 2 filter.
    #[prost(int32, optional, tag = "11")]
    pub seccomp_mode: Option<i32>,
    /// Index of the thread's last filter in `seccomp.img`.
    #[prost(uint32, optional, tag = "12")]
    pub seccomp_filter: Option<u32>,
    /// Per-thread name. Newer than some copies of the schema; CRIU 4.1.1
    /// writes it (seen in the fixtures).
    #[prost(string, optional, tag = "13")]
    pub comm: Option<String>,
}

/// `creds.proto: creds_entry` (ids only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CredsEntry {
    #[prost(uint32, optional, tag = "1")]
    pub uid: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub gid: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub euid: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub egid: Option<u32>,
}

/// `core-x86.proto: thread_info_x86`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ThreadInfoX86 {
    #[prost(uint64, optional, tag = "1")]
    pub clear_tid_addr: Option<u64>,
    #[prost(message, optional, tag = "2")]
    pub gpregs: Option<UserX86Regs>,
    #[prost(message, optional, tag = "3")]
    pub fpregs: Option<UserX86Fpregs>,
}

/// `core-x86.proto: user_x86_regs_entry`: tags 1..=27 are
/// `struct user_regs_struct` in order (r15 … gs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserX86Regs {
    #[prost(uint64, optional, tag = "1")]
    pub r15: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub r14: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub r13: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub r12: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub bp: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub bx: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub r11: Option<u64>,
    #[prost(uint64, optional, tag = "8")]
    pub r10: Option<u64>,
    #[prost(uint64, optional, tag = "9")]
    pub r9: Option<u64>,
    #[prost(uint64, optional, tag = "10")]
    pub r8: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub ax: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub cx: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub dx: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    pub si: Option<u64>,
    #[prost(uint64, optional, tag = "15")]
    pub di: Option<u64>,
    #[prost(uint64, optional, tag = "16")]
    pub orig_ax: Option<u64>,
    #[prost(uint64, optional, tag = "17")]
    pub ip: Option<u64>,
    #[prost(uint64, optional, tag = "18")]
    pub cs: Option<u64>,
    #[prost(uint64, optional, tag = "19")]
    pub flags: Option<u64>,
    #[prost(uint64, optional, tag = "20")]
    pub sp: Option<u64>,
    #[prost(uint64, optional, tag = "21")]
    pub ss: Option<u64>,
    #[prost(uint64, optional, tag = "22")]
    pub fs_base: Option<u64>,
    #[prost(uint64, optional, tag = "23")]
    pub gs_base: Option<u64>,
    #[prost(uint64, optional, tag = "24")]
    pub ds: Option<u64>,
    #[prost(uint64, optional, tag = "25")]
    pub es: Option<u64>,
    #[prost(uint64, optional, tag = "26")]
    pub fs: Option<u64>,
    #[prost(uint64, optional, tag = "27")]
    pub gs: Option<u64>,
    /// `user_x86_regs_mode`: 1 native, 2 compat (32-bit).
    #[prost(int32, optional, tag = "28")]
    pub mode: Option<i32>,
}

impl UserX86Regs {
    /// The registers in `struct user_regs_struct` order (missing ones 0).
    pub fn user_regs(&self) -> [u64; 27] {
        [
            self.r15.unwrap_or(0),
            self.r14.unwrap_or(0),
            self.r13.unwrap_or(0),
            self.r12.unwrap_or(0),
            self.bp.unwrap_or(0),
            self.bx.unwrap_or(0),
            self.r11.unwrap_or(0),
            self.r10.unwrap_or(0),
            self.r9.unwrap_or(0),
            self.r8.unwrap_or(0),
            self.ax.unwrap_or(0),
            self.cx.unwrap_or(0),
            self.dx.unwrap_or(0),
            self.si.unwrap_or(0),
            self.di.unwrap_or(0),
            self.orig_ax.unwrap_or(0),
            self.ip.unwrap_or(0),
            self.cs.unwrap_or(0),
            self.flags.unwrap_or(0),
            self.sp.unwrap_or(0),
            self.ss.unwrap_or(0),
            self.fs_base.unwrap_or(0),
            self.gs_base.unwrap_or(0),
            self.ds.unwrap_or(0),
            self.es.unwrap_or(0),
            self.fs.unwrap_or(0),
            self.gs.unwrap_or(0),
        ]
    }
}

/// `core-x86.proto: user_x86_fpregs_entry` (the fxsave image).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserX86Fpregs {
    #[prost(uint32, optional, tag = "1")]
    pub cwd: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub swd: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub twd: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub fop: Option<u32>,
    #[prost(uint64, optional, tag = "5")]
    pub rip: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub rdp: Option<u64>,
    #[prost(uint32, optional, tag = "7")]
    pub mxcsr: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub mxcsr_mask: Option<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "9")]
    pub st_space: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "10")]
    pub xmm_space: Vec<u32>,
    #[prost(message, optional, tag = "13")]
    pub xsave: Option<UserX86Xsave>,
}

/// `core-x86.proto: user_x86_xsave_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserX86Xsave {
    #[prost(uint64, optional, tag = "1")]
    pub xstate_bv: Option<u64>,
    #[prost(uint32, repeated, packed = "false", tag = "2")]
    pub ymmh_space: Vec<u32>,
}

/// `fdinfo.proto: fdinfo_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FdinfoEntry {
    #[prost(uint32, optional, tag = "1")]
    pub id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub flags: Option<u32>,
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(uint32, optional, tag = "4")]
    pub fd: Option<u32>,
}

/// `fdinfo.proto: file_entry` (the kinds we decode).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileEntry {
    #[prost(int32, optional, tag = "1")]
    pub r#type: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub id: Option<u32>,
    #[prost(message, optional, tag = "3")]
    pub reg: Option<RegFileEntry>,
    #[prost(message, optional, tag = "4")]
    pub isk: Option<InetSkEntry>,
    #[prost(message, optional, tag = "16")]
    pub usk: Option<UnixSkEntry>,
    #[prost(message, optional, tag = "18")]
    pub pipe: Option<PipeEntry>,
}

/// `regfile.proto: reg_file_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegFileEntry {
    #[prost(uint32, optional, tag = "1")]
    pub id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub flags: Option<u32>,
    #[prost(uint64, optional, tag = "3")]
    pub pos: Option<u64>,
    #[prost(string, optional, tag = "6")]
    pub name: Option<String>,
    #[prost(sint32, optional, tag = "7")]
    pub mnt_id: Option<i32>,
    #[prost(uint64, optional, tag = "8")]
    pub size: Option<u64>,
    #[prost(uint32, optional, tag = "10")]
    pub mode: Option<u32>,
}

/// `sk-inet.proto: inet_sk_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InetSkEntry {
    #[prost(uint32, optional, tag = "1")]
    pub id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub ino: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub family: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub r#type: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub proto: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub state: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub src_port: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub dst_port: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub flags: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub backlog: Option<u32>,
    /// Address words in network byte order as CRIU stores them (1 for IPv4,
    /// 4 for IPv6).
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub src_addr: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "12")]
    pub dst_addr: Vec<u32>,
    #[prost(bool, optional, tag = "15")]
    pub v6only: Option<bool>,
    #[prost(string, optional, tag = "17")]
    pub ifname: Option<String>,
}

/// `sk-unix.proto: unix_sk_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnixSkEntry {
    #[prost(uint32, optional, tag = "1")]
    pub id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub ino: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub r#type: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub state: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub flags: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub uflags: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub backlog: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub peer: Option<u32>,
    /// Abstract names may hold NULs, hence bytes.
    #[prost(bytes = "vec", optional, tag = "11")]
    pub name: Option<Vec<u8>>,
    #[prost(string, optional, tag = "14")]
    pub name_dir: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub deleted: Option<bool>,
}

/// `pipe.proto: pipe_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PipeEntry {
    #[prost(uint32, optional, tag = "1")]
    pub id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub pipe_id: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub flags: Option<u32>,
}

/// `fs.proto: fs_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FsEntry {
    #[prost(uint32, optional, tag = "1")]
    pub cwd_id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub root_id: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub umask: Option<u32>,
}

/// `utsns.proto: utsns_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UtsnsEntry {
    #[prost(string, optional, tag = "1")]
    pub nodename: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub domainname: Option<String>,
}

/// `mm.proto: mm_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MmEntry {
    #[prost(uint64, optional, tag = "1")]
    pub mm_start_code: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub mm_end_code: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub mm_start_stack: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub mm_start_brk: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub mm_brk: Option<u64>,
    #[prost(uint64, optional, tag = "8")]
    pub mm_arg_start: Option<u64>,
    #[prost(uint64, optional, tag = "9")]
    pub mm_arg_end: Option<u64>,
    #[prost(uint64, optional, tag = "10")]
    pub mm_env_start: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub mm_env_end: Option<u64>,
    #[prost(uint32, optional, tag = "12")]
    pub exe_file_id: Option<u32>,
    /// `mm_saved_auxv`: the auxiliary vector, key/value words.
    #[prost(uint64, repeated, packed = "false", tag = "13")]
    pub mm_saved_auxv: Vec<u64>,
    #[prost(message, repeated, tag = "14")]
    pub vmas: Vec<VmaEntry>,
}

/// `vma.proto: vma_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VmaEntry {
    #[prost(uint64, optional, tag = "1")]
    pub start: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub end: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub pgoff: Option<u64>,
    /// For file mappings, the `files.img` id of the mapped file.
    #[prost(uint64, optional, tag = "4")]
    pub shmid: Option<u64>,
    #[prost(uint32, optional, tag = "5")]
    pub prot: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub flags: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub status: Option<u32>,
}

/// `pagemap.proto: pagemap_head` (first entry of `pagemap-N.img`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PagemapHead {
    #[prost(uint32, optional, tag = "1")]
    pub pages_id: Option<u32>,
}

/// `pagemap.proto: pagemap_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PagemapEntry {
    #[prost(uint64, optional, tag = "1")]
    pub vaddr: Option<u64>,
    #[prost(uint32, optional, tag = "2")]
    pub nr_pages: Option<u32>,
    #[prost(bool, optional, tag = "3")]
    pub in_parent: Option<bool>,
    /// `PE_PARENT` 1, `PE_LAZY` 2, `PE_PRESENT` 4.
    #[prost(uint32, optional, tag = "4")]
    pub flags: Option<u32>,
}

/// `stats.proto: stats_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatsEntry {
    #[prost(message, optional, tag = "1")]
    pub dump: Option<DumpStatsEntry>,
}

/// `stats.proto: dump_stats_entry`. Times are in microseconds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DumpStatsEntry {
    #[prost(uint32, optional, tag = "1")]
    pub freezing_time: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub frozen_time: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub memdump_time: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub memwrite_time: Option<u32>,
    #[prost(uint64, optional, tag = "5")]
    pub pages_scanned: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub pages_skipped_parent: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub pages_written: Option<u64>,
    #[prost(uint32, optional, tag = "8")]
    pub irmap_resolve: Option<u32>,
    #[prost(uint64, optional, tag = "9")]
    pub pages_lazy: Option<u64>,
}

/// `seccomp.proto: seccomp_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeccompEntry {
    #[prost(message, repeated, tag = "1")]
    pub seccomp_filters: Vec<SeccompFilter>,
}

/// `seccomp.proto: seccomp_filter`: raw `struct sock_filter` array.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeccompFilter {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub filter: Option<Vec<u8>>,
    /// Index of the filter installed before this one, if any.
    #[prost(uint32, optional, tag = "2")]
    pub prev: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub flags: Option<u32>,
}
