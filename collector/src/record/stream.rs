//! Streaming an instance's per-CPU `trace_pipe_raw` pages: read every CPU
//! until it is empty, decode, and hand records on in time order.
//!
//! CPUs are merged by timestamp. A CPU read until it was empty has given
//! everything it committed, so what any CPU records later is stamped after
//! the newest record seen so far, give or take events still being
//! committed: records older than the newest one less a slack are released
//! sorted; the rest wait for the next round (or the final one).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{ErrorKind, Read};

use super::layouts::{self, Layouts};
use crate::trace::page::for_each_event;
use crate::trace::{Decoder, Event, Record};
use crate::tracefs::{self, Instance};

/// Records this much older than the newest one seen are taken as final.
const SLACK_NS: u64 = 10_000_000;

/// Syscall numbers below this are looked up by index (x86_64 has ~460;
/// larger ones, e.g. the x32 range, are not switched off by number).
const MAX_NR: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    TraceFs(#[from] tracefs::Error),
    #[error(transparent)]
    Layouts(#[from] layouts::Error),
    #[error("reading cpu{cpu} trace_pipe_raw: {cause}")]
    Read { cpu: u32, cause: std::io::Error },
}

/// Running totals of what the stream saw.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamStats {
    pub pages: u64,
    pub bytes: u64,
    pub records: u64,
    /// Events or pages that could not be decoded.
    pub malformed: u64,
    /// Pages the kernel flagged as following lost events.
    pub missed_pages: u64,
    /// Lost events the kernel counted on those pages.
    pub missed_events: u64,
    /// Events on the pages read, by CPU: what the kernel counts as taken
    /// out of the buffer (its `read events`). Not part of a summary.
    #[serde(skip)]
    pub consumed: BTreeMap<u32, u64>,
}

/// Which event produced a syscall number, so it can be switched off.
#[derive(Debug, Clone)]
pub struct EventName {
    pub system: String,
    pub name: String,
}

pub struct Stream {
    pipes: Vec<(u32, File)>,
    decoder: Decoder,
    names: HashMap<u16, EventName>,
    /// Per-syscall enter event that recorded each number.
    /// By syscall number (below [`MAX_NR`]): the per-syscall event id.
    enter_events: Vec<Option<u16>>,
    held: Vec<Record>,
    /// Newest timestamp decoded so far.
    newest: u64,
    page: Vec<u8>,
    stats: StreamStats,
    problems: u32,
    /// Tasks whose records are not the container's (a claim's canary,
    /// `record::canary`), dropped up to and with their exit record; a
    /// later task with the same id is the container's.
    foreign: Vec<Foreign>,
}

#[derive(Debug, Clone, Copy)]
struct Foreign {
    pid: i32,
    exited_at: Option<u64>,
}

impl Foreign {
    /// True if `r` is this task's (records come in time order).
    fn owns(&mut self, r: &Record) -> bool {
        if r.pid != self.pid {
            return false;
        }
        match self.exited_at {
            Some(t) => r.ts_ns <= t,
            None => {
                if matches!(r.event, Event::Exit { .. }) {
                    self.exited_at = Some(r.ts_ns);
                }
                true
            }
        }
    }
}

impl Stream {
    /// Opens the raw pipes and reads the layouts of every event of
    /// `systems` (plus `events/header_page`) from tracefs.
    pub fn open(inst: &Instance, systems: &[&str]) -> Result<Self, Error> {
        let pipes = inst.open_raw_pipes()?;
        let layouts = layouts::load_from_tracefs(inst, systems, None)?;
        Ok(Self::with_layouts(pipes, &layouts))
    }

    /// A stream over pipes opened beforehand, decoding with `layouts`.
    pub fn with_layouts(pipes: Vec<(u32, File)>, layouts: &Layouts) -> Self {
        let header = layouts.header;
        let formats = &layouts.formats;
        let names = formats.iter().map(|f| (f.id, EventName { system: f.system.clone(), name: f.name.clone() })).collect();
        let decoder = Decoder::new(header, formats);
        Stream {
            pipes,
            page: vec![0; header.page_size().max(4096)],
            decoder,
            names,
            enter_events: vec![None; MAX_NR],
            held: Vec::new(),
            newest: 0,
            stats: StreamStats::default(),
            problems: 0,
            foreign: Vec::new(),
        }
    }

    /// Drops the records of these tasks, up to and with their exit.
    pub fn without(mut self, pids: &[i32]) -> Self {
        self.foreign = pids.iter().map(|&pid| Foreign { pid, exited_at: None }).collect();
        self
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Records decoded but held back until their time order is settled.
    pub fn unsettled(&self) -> &[Record] {
        &self.held
    }

    /// The per-syscall enter event that recorded `nr`, once one has.
    pub fn enter_event_for(&self, nr: i64) -> Option<&EventName> {
        let id = usize::try_from(nr).ok().and_then(|i| self.enter_events.get(i).copied().flatten())?;
        self.names.get(&id)
    }

    /// Reads every CPU until it is empty, or for at most `max_pages` pages
    /// per CPU, and hands settled records to `sink` in time order. `last`
    /// (the final round, tracing stopped) releases everything read. Returns
    /// true if some CPU still had data (come back at once, do not sleep).
    pub fn round(&mut self, last: bool, max_pages: usize, mut sink: impl FnMut(&Record)) -> Result<bool, Error> {
        let mut limit = u64::MAX;
        let mut more = false;
        for i in 0..self.pipes.len() {
            let cpu = self.pipes[i].0;
            let before = self.held.len();
            let mut pages = 0;
            let mut cut_short = false;
            loop {
                if pages >= max_pages {
                    cut_short = true;
                    break;
                }
                pages += 1;
                let n = match self.pipes[i].1.read(&mut self.page) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(cause) => return Err(Error::Read { cpu, cause }),
                };
                self.stats.pages += 1;
                self.stats.bytes += n as u64;
                self.decode_page(cpu, n);
            }
            let newest_here = self.held[before..].iter().map(|r| r.ts_ns).max();
            if let Some(t) = newest_here {
                self.newest = self.newest.max(t);
            }
            if cut_short {
                more = true;
                // Pages come out in order, so this CPU's newest record so far
                // bounds what is safe to release: its unread pages may hold
                // records older than another CPU's.
                if let Some(t) = newest_here {
                    limit = limit.min(t);
                }
            }
        }
        if !last {
            limit = limit.min(self.newest.saturating_sub(SLACK_NS));
        }
        // Stable sort: equal stamps keep CPU-then-read order.
        self.held.sort_by_key(|r| r.ts_ns);
        let cut = self.held.partition_point(|r| r.ts_ns <= limit);
        let foreign = &mut self.foreign;
        for r in self.held.drain(..cut) {
            if foreign.iter_mut().any(|f| f.owns(&r)) {
                continue;
            }
            sink(&r);
        }
        Ok(more)
    }

    fn decode_page(&mut self, cpu: u32, len: usize) {
        let Stream { decoder, page, held, stats, enter_events, names, problems, .. } = self;
        let mut bad = 0u64;
        let mut good = 0u64;
        let result = for_each_event(decoder.header(), &page[..len], |raw| {
            match decoder.decode(cpu, raw.ts, raw.payload) {
                Ok(rec) => {
                    if let Event::SysEnter { nr, .. } = rec.event {
                        let id = u16::from_le_bytes([raw.payload[0], raw.payload[1]]);
                        let slot = usize::try_from(nr).ok().and_then(|i| enter_events.get_mut(i));
                        if let Some(slot @ None) = slot {
                            if names.get(&id).is_some_and(|n| n.system == "syscalls") {
                                *slot = Some(id);
                            }
                        }
                    }
                    held.push(rec);
                    good += 1;
                }
                Err(e) => {
                    bad += 1;
                    if *problems < 8 {
                        *problems += 1;
                        tracing::warn!(cpu, error = %e, "undecodable trace event");
                    }
                }
            }
        });
        stats.malformed += bad;
        match result {
            Ok(info) => {
                if info.missed {
                    stats.missed_pages += 1;
                    stats.missed_events += info.missed_count.unwrap_or(0);
                }
            }
            Err(e) => {
                stats.malformed += 1;
                if *problems < 8 {
                    *problems += 1;
                    tracing::warn!(cpu, error = %e, "malformed trace page");
                }
            }
        }
        stats.records += good;
        *stats.consumed.entry(cpu).or_default() += good + bad;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pid: i32, ts_ns: u64, event: Event) -> Record {
        Record { pid, tgid: None, comm: String::new(), cpu: 0, ts_ns, event }
    }

    fn call(pid: i32, ts_ns: u64) -> Record {
        rec(pid, ts_ns, Event::SysEnter { nr: 17, args: [0; 6] })
    }

    #[test]
    fn a_foreign_task_is_dropped_up_to_its_exit_and_its_id_is_free_after() {
        let mut f = Foreign { pid: 7, exited_at: None };
        assert!(f.owns(&call(7, 10)));
        assert!(!f.owns(&call(8, 11)), "another task is the container's");
        assert!(f.owns(&rec(7, 12, Event::Exit { pid: 7, comm: "ftrace-canary".into(), group_dead: None })));
        assert!(f.owns(&call(7, 12)), "a record stamped with the exit is still the canary's");
        assert!(!f.owns(&call(7, 13)), "a later task with the same id is the container's");
    }
}
