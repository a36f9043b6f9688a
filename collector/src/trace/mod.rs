//! Pure trace parsing: bytes in, typed events out. No file system, no policy.
//!
//! Two forms: the text an instance's `trace` file prints (with
//! `record-tgid`), and the binary per-CPU pages of `trace_pipe_raw`, decoded
//! with the layouts tracefs describes in `events/header_page` and
//! `events/*/format`. A malformed record is counted and skipped, so one bad
//! record never costs the whole trace.

pub mod binary;
pub mod format;
pub mod page;
mod text;

pub use binary::{Decoder, PagesRead};
pub use format::{EventFormat, HeaderPage};
pub use text::{parse_line, parse_text, ParseError};

/// One recorded event with its common header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Thread id (tracefs's `common_pid`).
    pub pid: i32,
    /// Thread-group (process) id, when known (text with `record-tgid`;
    /// binary records carry only the thread id).
    pub tgid: Option<i32>,
    /// The command name tracefs printed. It is resolved when the trace is
    /// read, so it may be a later name of the task; exec events are the
    /// reliable source. Empty for binary records.
    pub comm: String,
    pub cpu: u32,
    /// Trace clock timestamp in nanoseconds.
    pub ts_ns: u64,
    pub event: Event,
}

impl Record {
    /// The process this record belongs to (the thread id if tgid is unknown).
    pub fn process(&self) -> i32 {
        self.tgid.unwrap_or(self.pid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `raw_syscalls:sys_enter`: syscall number and its six raw arguments.
    SysEnter { nr: i64, args: [u64; 6] },
    /// `raw_syscalls:sys_exit` or `syscalls:sys_exit_*`: number and return.
    SysExit { nr: i64, ret: i64 },
    /// `task:task_newtask`: `clone_flags` tells threads from processes.
    NewTask { pid: i32, comm: String, clone_flags: u64 },
    /// `sched:sched_process_fork`.
    Fork { parent_pid: i32, child_pid: i32, child_comm: String },
    /// `sched:sched_process_exec`.
    Exec { filename: String, pid: i32, old_pid: i32 },
    /// `sched:sched_process_exit`.
    Exit { pid: i32, comm: String, group_dead: Option<bool> },
    /// `signal:signal_generate`: the recording task sent signal `sig` with
    /// `si_code` `code` to task `pid`, whose comm is `comm`.
    Signal { sig: i32, code: i32, pid: i32, comm: String },
    /// Any other event, by name; kept so counts stay honest.
    Other { name: String },
}

/// A parsed trace: records in file order, plus what could not be parsed.
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<Record>,
    /// Lines that looked like records but did not parse.
    pub malformed: u64,
    /// The first few parse errors, for the log.
    pub errors: Vec<ParseError>,
}
