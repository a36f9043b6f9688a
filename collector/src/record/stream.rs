//! Streaming an instance's per-CPU `trace_pipe_raw` pages: read every CPU
//! until it is empty, decode, and hand records on in time order.
//!
//! CPUs are merged by timestamp. The instance runs on the `mono` trace
//! clock, so a read round knows the time it started: records stamped before
//! that (less a small slack for events still being committed) are complete
//! and are released sorted; later ones wait for the next round.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read};

use crate::trace::format::{EventFormat, HeaderPage};
use crate::trace::page::for_each_event;
use crate::trace::{Decoder, Event, Record};
use crate::tracefs::{self, Instance};

/// Events committed this long before a round started are taken as final.
const SLACK_NS: u64 = 2_000_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    TraceFs(#[from] tracefs::Error),
    #[error("event format of {system}:{event}: {cause}")]
    Format { system: String, event: String, cause: crate::trace::format::FormatError },
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
    enter_events: HashMap<i64, u16>,
    held: Vec<Record>,
    page: Vec<u8>,
    stats: StreamStats,
    problems: u32,
}

impl Stream {
    /// Opens the raw pipes and reads the layouts of every enabled-able event
    /// of `systems` (plus `events/header_page`).
    pub fn open(inst: &Instance, systems: &[&str]) -> Result<Self, Error> {
        let header = HeaderPage::parse(&inst.header_page()?).unwrap_or_default();
        let mut formats = Vec::new();
        for system in systems {
            for event in inst.event_names(system)? {
                let text = inst.event_format(system, &event)?;
                let f = EventFormat::parse(system, &text).map_err(|cause| Error::Format {
                    system: system.to_string(),
                    event: event.clone(),
                    cause,
                })?;
                formats.push(f);
            }
        }
        let names = formats.iter().map(|f| (f.id, EventName { system: f.system.clone(), name: f.name.clone() })).collect();
        let decoder = Decoder::new(header, &formats);
        let pipes = inst.open_raw_pipes()?;
        Ok(Stream {
            pipes,
            page: vec![0; header.page_size().max(4096)],
            decoder,
            names,
            enter_events: HashMap::new(),
            held: Vec::new(),
            stats: StreamStats::default(),
            problems: 0,
        })
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// The per-syscall enter event that recorded `nr`, once one has.
    pub fn enter_event_for(&self, nr: i64) -> Option<&EventName> {
        self.enter_events.get(&nr).and_then(|id| self.names.get(id))
    }

    /// Reads every CPU until it is empty, or for at most `max_pages` pages
    /// per CPU. Records stamped before `now_ns - SLACK_NS` go to `sink` in
    /// time order; with `now_ns = None` (the final round) everything does.
    /// Returns true if some CPU still had data (the caller should come back
    /// at once rather than sleep).
    pub fn round(&mut self, now_ns: Option<u64>, max_pages: usize, mut sink: impl FnMut(&Record)) -> Result<bool, Error> {
        // A CPU cut short may still hold records older than what another
        // CPU gave: release nothing past the oldest such cut.
        let mut limit = now_ns.map(|now| now.saturating_sub(SLACK_NS)).unwrap_or(u64::MAX);
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
            if cut_short {
                more = true;
                // Pages come out in order, so this CPU's newest record so far
                // bounds what is safe to release.
                if let Some(last) = self.held[before..].iter().map(|r| r.ts_ns).max() {
                    limit = limit.min(last);
                }
            }
        }
        // Stable sort: equal stamps keep CPU-then-read order.
        self.held.sort_by_key(|r| r.ts_ns);
        let cut = self.held.partition_point(|r| r.ts_ns <= limit);
        for r in self.held.drain(..cut) {
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
                        if !enter_events.contains_key(&nr) && names.get(&id).is_some_and(|n| n.system == "syscalls") {
                            enter_events.insert(nr, id);
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
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: the `mono` trace clock's time base.
pub fn mono_now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64),
        Err(_) => 0,
    }
}
