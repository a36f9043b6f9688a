//! Binary events to typed records: the formats read from tracefs tell where
//! each field is; this turns `trace_pipe_raw` pages into [`Record`]s without
//! going through text.


use super::format::{EventFormat, Field, HeaderPage, Layout};
use super::page::{for_each_event, read_uint, PageError, PageInfo};
use super::{Event, Parsed, Record};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event payload of {len} bytes is too short for its common header")]
    Short { len: usize },
    #[error("event type {id} has no known format")]
    UnknownType { id: u16 },
    #[error("event {name}: field {field} is outside the {len}-byte payload")]
    Field { name: String, field: String, len: usize },
}

/// How to read one event type.
#[derive(Debug, Clone)]
enum Kind {
    RawEnter { id: Field, args: Field },
    RawExit { id: Field, ret: Field },
    /// `syscalls:sys_enter_*`: the number and up to six argument fields.
    Enter { nr: Field, args: Vec<Field> },
    /// `syscalls:sys_exit_*`.
    Exit { nr: Field, ret: Field },
    Fork { parent: Field, child: Field, child_comm: Field },
    Exec { filename: Field, pid: Field, old_pid: Field },
    ProcessExit { comm: Field, pid: Field, group_dead: Option<Field> },
    NewTask { pid: Field, comm: Field, clone_flags: Field },
    Signal { sig: Field, code: Field, pid: Field, comm: Field },
    Other,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: Kind,
}

/// Decodes events of the formats it was given.
#[derive(Debug, Clone)]
pub struct Decoder {
    header: HeaderPage,
    common_pid: Field,
    /// Indexed by event id: one bounds-checked load per record, where a
    /// hash map cost a hash per record on the recorder's hottest path.
    by_id: Vec<Option<Entry>>,
}

impl Decoder {
    pub fn new(header: HeaderPage, formats: &[EventFormat]) -> Self {
        let common_pid = formats
            .iter()
            .find_map(|f| f.field("common_pid").cloned())
            .unwrap_or(Field { name: "common_pid".into(), offset: 4, size: 4, signed: true, layout: Layout::Inline });
        let len = formats.iter().map(|f| usize::from(f.id) + 1).max().unwrap_or(0);
        let mut by_id: Vec<Option<Entry>> = vec![None; len];
        for f in formats {
            by_id[usize::from(f.id)] = Some(Entry { name: f.name.clone(), kind: kind_of(f) });
        }
        Decoder { header, common_pid, by_id }
    }

    pub fn header(&self) -> &HeaderPage {
        &self.header
    }

    /// Decodes one event payload recorded on `cpu` at `ts`.
    pub fn decode(&self, cpu: u32, ts: u64, payload: &[u8]) -> Result<Record, DecodeError> {
        let id = read_uint(payload, 0, 2).ok_or(DecodeError::Short { len: payload.len() })? as u16;
        let pid = read_uint(payload, self.common_pid.offset, 4).ok_or(DecodeError::Short { len: payload.len() })? as u32 as i32;
        let entry = self.by_id.get(usize::from(id)).and_then(Option::as_ref).ok_or(DecodeError::UnknownType { id })?;
        let r = Reader { name: &entry.name, payload };
        let event = match &entry.kind {
            Kind::RawEnter { id, args } => {
                let mut a = [0u64; 6];
                for (i, slot) in a.iter_mut().enumerate() {
                    *slot = r.uint_at(args, i * 8, 8)?;
                }
                Event::SysEnter { nr: r.int(id)?, args: a }
            }
            Kind::RawExit { id, ret } => Event::SysExit { nr: r.int(id)?, ret: r.int(ret)? },
            Kind::Enter { nr, args } => {
                let mut a = [0u64; 6];
                for (slot, field) in a.iter_mut().zip(args) {
                    *slot = r.uint(field)?;
                }
                Event::SysEnter { nr: r.int(nr)?, args: a }
            }
            Kind::Exit { nr, ret } => Event::SysExit { nr: r.int(nr)?, ret: r.int(ret)? },
            Kind::Fork { parent, child, child_comm } => Event::Fork {
                parent_pid: r.int(parent)? as i32,
                child_pid: r.int(child)? as i32,
                child_comm: r.string(child_comm)?,
            },
            Kind::Exec { filename, pid, old_pid } => Event::Exec {
                filename: r.string(filename)?,
                pid: r.int(pid)? as i32,
                old_pid: r.int(old_pid)? as i32,
            },
            Kind::ProcessExit { comm, pid, group_dead } => Event::Exit {
                pid: r.int(pid)? as i32,
                comm: r.string(comm)?,
                group_dead: group_dead.as_ref().map(|f| r.uint(f).map(|v| v != 0)).transpose()?,
            },
            Kind::NewTask { pid, comm, clone_flags } => Event::NewTask {
                pid: r.int(pid)? as i32,
                comm: r.string(comm)?,
                clone_flags: r.uint(clone_flags)?,
            },
            Kind::Signal { sig, code, pid, comm } => Event::Signal {
                sig: r.int(sig)? as i32,
                code: r.int(code)? as i32,
                pid: r.int(pid)? as i32,
                comm: r.string(comm)?,
            },
            Kind::Other => Event::Other { name: entry.name.clone() },
        };
        Ok(Record { pid, tgid: None, comm: String::new(), cpu, ts_ns: ts, event })
    }

    /// Decodes every page in `bytes` (whole pages, as read from one CPU's
    /// `trace_pipe_raw`) into `out`. Malformed pages and events are counted.
    pub fn decode_pages(&self, cpu: u32, bytes: &[u8], out: &mut Parsed) -> PagesRead {
        let mut read = PagesRead::default();
        let size = self.header.page_size();
        if size == 0 {
            return read;
        }
        for page in bytes.chunks(size) {
            read.pages += 1;
            let mut events = Vec::new();
            let result = for_each_event(&self.header, page, |e| events.push((e.ts, e.payload)));
            for (ts, payload) in events {
                match self.decode(cpu, ts, payload) {
                    Ok(rec) => out.records.push(rec),
                    Err(e) => {
                        out.malformed += 1;
                        read.note(e.to_string());
                    }
                }
            }
            match result {
                Ok(PageInfo { missed: true, missed_count, .. }) => {
                    read.missed_pages += 1;
                    read.missed_events += missed_count.unwrap_or(0);
                }
                Ok(_) => {}
                Err(e) => {
                    out.malformed += 1;
                    read.note(page_error(cpu, e));
                }
            }
        }
        read
    }
}

fn page_error(cpu: u32, e: PageError) -> String {
    format!("cpu{cpu}: {e}")
}

/// Counters from reading pages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PagesRead {
    pub pages: u64,
    /// Pages the kernel flagged as following dropped events.
    pub missed_pages: u64,
    /// Dropped events the kernel counted on those pages.
    pub missed_events: u64,
    /// The first few problems, for the log.
    pub problems: Vec<String>,
}

impl PagesRead {
    fn note(&mut self, problem: String) {
        if self.problems.len() < 8 {
            self.problems.push(problem);
        }
    }
}

fn kind_of(f: &EventFormat) -> Kind {
    let get = |n: &str| f.field(n).cloned();
    let kind = match (f.system.as_str(), f.name.as_str()) {
        ("raw_syscalls", "sys_enter") => (|| Some(Kind::RawEnter { id: get("id")?, args: get("args")? }))(),
        ("raw_syscalls", "sys_exit") => (|| Some(Kind::RawExit { id: get("id")?, ret: get("ret")? }))(),
        ("syscalls", n) if n.starts_with("sys_enter_") => (|| {
            let nr = get("__syscall_nr")?;
            let args = f.fields.iter().filter(|x| x.offset > nr.offset).take(6).cloned().collect();
            Some(Kind::Enter { nr, args })
        })(),
        ("syscalls", n) if n.starts_with("sys_exit_") => (|| Some(Kind::Exit { nr: get("__syscall_nr")?, ret: get("ret")? }))(),
        ("sched", "sched_process_fork") => (|| {
            Some(Kind::Fork { parent: get("parent_pid")?, child: get("child_pid")?, child_comm: get("child_comm")? })
        })(),
        ("sched", "sched_process_exec") => (|| {
            Some(Kind::Exec { filename: get("filename")?, pid: get("pid")?, old_pid: get("old_pid")? })
        })(),
        ("sched", "sched_process_exit") => (|| {
            Some(Kind::ProcessExit { comm: get("comm")?, pid: get("pid")?, group_dead: get("group_dead") })
        })(),
        ("task", "task_newtask") => (|| {
            Some(Kind::NewTask { pid: get("pid")?, comm: get("comm")?, clone_flags: get("clone_flags")? })
        })(),
        ("signal", "signal_generate") => (|| {
            Some(Kind::Signal { sig: get("sig")?, code: get("code")?, pid: get("pid")?, comm: get("comm")? })
        })(),
        _ => None,
    };
    kind.unwrap_or(Kind::Other)
}

/// Bounds-checked field access on one payload.
struct Reader<'a> {
    name: &'a str,
    payload: &'a [u8],
}

impl Reader<'_> {
    fn err(&self, f: &Field) -> DecodeError {
        DecodeError::Field { name: self.name.to_string(), field: f.name.clone(), len: self.payload.len() }
    }

    fn uint_at(&self, f: &Field, extra: usize, size: usize) -> Result<u64, DecodeError> {
        read_uint(self.payload, f.offset + extra, size).ok_or_else(|| self.err(f))
    }

    fn uint(&self, f: &Field) -> Result<u64, DecodeError> {
        self.uint_at(f, 0, f.size.min(8))
    }

    /// Sign-extends signed fields to i64.
    fn int(&self, f: &Field) -> Result<i64, DecodeError> {
        let v = self.uint(f)?;
        let bits = (f.size.min(8) * 8) as u32;
        Ok(if f.signed && bits < 64 {
            let shift = 64 - bits;
            ((v << shift) as i64) >> shift
        } else {
            v as i64
        })
    }

    /// A NUL-terminated string, inline (`char comm[16]`) or dynamic.
    fn string(&self, f: &Field) -> Result<String, DecodeError> {
        let bytes = match f.layout {
            Layout::Inline => self.payload.get(f.offset..f.offset + f.size),
            Layout::DataLoc | Layout::RelLoc => {
                let loc = self.uint_at(f, 0, 4)?;
                let mut off = (loc & 0xffff) as usize;
                let len = (loc >> 16) as usize;
                if f.layout == Layout::RelLoc {
                    off += f.offset + f.size;
                }
                self.payload.get(off..off + len)
            }
        }
        .ok_or_else(|| self.err(f))?;
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}
