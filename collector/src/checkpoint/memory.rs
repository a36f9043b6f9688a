//! Process memory from a checkpoint: `pagemap-N.img` says which virtual
//! pages were dumped and in what order, `pages-<id>.img` holds their bytes.
//! This module streams the pages members (a second pass over the archive),
//! so memory use is bounded by a chunk size, not by the dump's size. It
//! reads command lines and environments (`mm_arg_*`, `mm_env_*` ranges) and
//! searches memory with a literal or a regex.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use regex::bytes::Regex;
use serde::Serialize;

use super::archive;
use super::error::{Error, Result};
use super::maps::{self, MapFilter};
use super::model::{Checkpoint, PageRun, Vma};

pub const PAGE_SIZE: u64 = 4096;
/// Bytes handed to a sink at a time.
const CHUNK: u64 = 4 << 20;
/// Bytes kept from the previous chunk of the same run when searching, so a
/// match that straddles a chunk boundary is still found (up to this long).
const OVERLAP: usize = 64 << 10;
/// Longest argument or environment area we read (the kernel caps argv+envp
/// well below this by default).
const MAX_ARGS: u64 = 4 << 20;
/// Stop a search after this many matches.
pub const MAX_MATCHES: usize = 10_000;

/// Streams the dumped pages of `pids`. `sink(pid, vaddr, bytes)` sees each
/// present page run in order, in chunks.
pub(crate) fn stream_pages<F>(ckpt: &Checkpoint, pids: &BTreeSet<u32>, mut sink: F) -> Result<()>
where
    F: FnMut(u32, u64, &[u8]) -> Result<()>,
{
    let mut wanted: BTreeMap<String, (u32, Vec<PageRun>)> = BTreeMap::new();
    for pid in pids {
        if let Some(mem) = ckpt.processes.get(pid).and_then(|p| p.memory.as_ref()) {
            let mut runs = mem.runs.clone();
            runs.sort_by_key(|r| r.offset);
            wanted.insert(
                format!("checkpoint/pages-{}.img", mem.pages_id),
                (*pid, runs),
            );
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    let start = std::time::Instant::now();
    archive::walk_with(&ckpt.path, &ckpt.limits, |m, r| {
        let Some((pid, runs)) = wanted.get(&m.name) else {
            return Ok(archive::Step::Next);
        };
        let mut pos = 0u64;
        for run in runs {
            if run.offset < pos {
                continue; // overlapping runs in a corrupt pagemap
            }
            skip(r, run.offset - pos, &m.name, pos)?;
            pos = run.offset;
            let len = run.nr_pages.saturating_mul(PAGE_SIZE);
            let mut done = 0u64;
            while done < len {
                archive::check_time(&ckpt.path, start)?;
                let n = (len - done).min(CHUNK);
                buf.resize(n as usize, 0);
                read_exact(r, &mut buf, &m.name, pos)?;
                sink(*pid, run.vaddr.saturating_add(done), &buf)?;
                done += n;
                pos += n;
            }
        }
        Ok(archive::Step::Next)
    })?;
    Ok(())
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8], member: &str, offset: u64) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Error::Truncated {
                    member: member.to_string(),
                    offset: offset as usize + got,
                    needed: buf.len() - got,
                    available: 0,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::Read {
                    path: Default::default(),
                    member: member.to_string(),
                    source,
                })
            }
        }
    }
    Ok(())
}

fn skip(r: &mut dyn Read, n: u64, member: &str, offset: u64) -> Result<()> {
    let copied =
        std::io::copy(&mut r.take(n), &mut std::io::sink()).map_err(|source| Error::Read {
            path: Default::default(),
            member: member.to_string(),
            source,
        })?;
    if copied < n {
        return Err(Error::Truncated {
            member: member.to_string(),
            offset: offset as usize + copied as usize,
            needed: (n - copied) as usize,
            available: 0,
        });
    }
    Ok(())
}

/// A byte range of one process's memory being collected.
struct Collect {
    start: u64,
    data: Vec<u8>,
    filled: bool,
}

impl Collect {
    fn new((start, end): (u64, u64)) -> Option<Self> {
        let len = end.checked_sub(start)?.min(MAX_ARGS);
        (len > 0).then(|| Collect {
            start,
            data: vec![0; len as usize],
            filled: false,
        })
    }

    fn feed(&mut self, vaddr: u64, bytes: &[u8]) {
        let end = self.start + self.data.len() as u64;
        let chunk_end = vaddr.saturating_add(bytes.len() as u64);
        let lo = self.start.max(vaddr);
        let hi = end.min(chunk_end);
        if lo >= hi {
            return;
        }
        let dst = (lo - self.start) as usize..(hi - self.start) as usize;
        let src = (lo - vaddr) as usize..(hi - vaddr) as usize;
        if let (Some(d), Some(s)) = (self.data.get_mut(dst), bytes.get(src)) {
            d.copy_from_slice(s);
            self.filled = true;
        }
    }

    fn strings(&self) -> Option<Vec<String>> {
        if !self.filled {
            return None;
        }
        let mut parts: Vec<String> = self
            .data
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        while parts.last().is_some_and(String::is_empty) {
            parts.pop();
        }
        Some(parts)
    }
}

/// Fills `cmdline` and `env` of every process from the dumped pages.
pub fn fill_cmdline_env(ckpt: &mut Checkpoint) -> Result<()> {
    let mut want: BTreeMap<u32, (Option<Collect>, Option<Collect>)> = BTreeMap::new();
    for (pid, p) in &ckpt.processes {
        if let Some(m) = &p.memory {
            want.insert(*pid, (Collect::new(m.arg), Collect::new(m.env)));
        }
    }
    let pids: BTreeSet<u32> = want.keys().copied().collect();
    stream_pages(ckpt, &pids, |pid, vaddr, bytes| {
        if let Some((a, e)) = want.get_mut(&pid) {
            if let Some(a) = a {
                a.feed(vaddr, bytes);
            }
            if let Some(e) = e {
                e.feed(vaddr, bytes);
            }
        }
        Ok(())
    })?;
    for (pid, (a, e)) in want {
        if let Some(p) = ckpt.processes.get_mut(&pid) {
            p.cmdline = a.and_then(|c| c.strings());
            p.env = e.and_then(|c| c.strings());
        }
    }
    Ok(())
}

/// One memory search hit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Match {
    pub pid: u32,
    pub address: u64,
    pub len: usize,
    /// The owning mapping: `[heap]`, `[stack]`, a file, `anon`.
    pub mapping: String,
    pub perms: String,
    pub mapping_start: u64,
    pub mapping_end: u64,
    pub offset_in_mapping: u64,
    /// Printable rendering of the bytes before, of, and after the match.
    pub before: String,
    pub matched: String,
    pub after: String,
}

/// What to look for.
pub enum Pattern {
    Literal(String),
    Regex(String),
}

impl Pattern {
    fn compile(&self) -> Result<Regex> {
        Ok(match self {
            Pattern::Literal(s) => Regex::new(&regex::escape(s))?,
            // (?-u): match raw bytes, memory is not UTF-8.
            Pattern::Regex(r) => Regex::new(&format!("(?-u:{r})")).or_else(|_| Regex::new(r))?,
        })
    }
}

/// Renders bytes for a one-line context: printable ASCII as is, the rest
/// as `.`.
pub fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// Searches the dumped memory of `pid`, only where `filter` lets through
/// (every mapping when it is empty).
pub fn search(
    ckpt: &Checkpoint,
    pid: u32,
    pattern: &Pattern,
    context: usize,
    filter: &MapFilter,
) -> Result<Vec<Match>> {
    let proc_ = maps::process(ckpt, pid)?;
    let re = pattern.compile()?;
    let vmas: Vec<Vma> = proc_
        .memory
        .as_ref()
        .map(|m| m.vmas.clone())
        .unwrap_or_default();
    let allowed = if filter.is_empty() {
        None
    } else {
        let r = filter.ranges(&vmas);
        if r.is_empty() {
            return Err(Error::NoMapping {
                pid,
                filter: filter.describe(),
            });
        }
        Some(r)
    };
    let mut scan = Scanner {
        re: &re,
        vmas: &vmas,
        pid,
        context,
        window: Vec::new(),
        window_start: 0,
        seen: BTreeSet::new(),
        out: Vec::new(),
    };
    let pids = BTreeSet::from([pid]);
    stream_pages(ckpt, &pids, |_, vaddr, bytes| {
        match &allowed {
            None => scan.feed(vaddr, bytes),
            Some(ranges) => {
                let end = vaddr.saturating_add(bytes.len() as u64);
                for &(a, b) in ranges {
                    let lo = a.max(vaddr);
                    let hi = b.min(end);
                    if lo < hi {
                        let part = bytes
                            .get((lo - vaddr) as usize..(hi - vaddr) as usize)
                            .unwrap_or_default();
                        scan.feed(lo, part);
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(scan.out)
}

/// The search state across chunks: a sliding window over contiguous memory.
struct Scanner<'a> {
    re: &'a Regex,
    vmas: &'a [Vma],
    pid: u32,
    context: usize,
    window: Vec<u8>,
    window_start: u64,
    seen: BTreeSet<u64>,
    out: Vec<Match>,
}

impl Scanner<'_> {
    fn feed(&mut self, vaddr: u64, bytes: &[u8]) {
        if self.out.len() >= MAX_MATCHES || bytes.is_empty() {
            return;
        }
        // Continue the window only if this chunk follows it in memory.
        if self.window_start.saturating_add(self.window.len() as u64) != vaddr {
            self.window.clear();
            self.window_start = vaddr;
        }
        self.window.extend_from_slice(bytes);
        let window = &self.window;
        for m in self.re.find_iter(window) {
            let address = self.window_start + m.start() as u64;
            if !self.seen.insert(address) {
                continue;
            }
            let vma = self
                .vmas
                .iter()
                .find(|v| v.start <= address && address < v.end);
            let b = m.start().saturating_sub(self.context);
            let a = (m.end() + self.context).min(window.len());
            self.out.push(Match {
                pid: self.pid,
                address,
                len: m.len(),
                mapping: vma.map(|v| v.what.clone()).unwrap_or_else(|| "?".into()),
                perms: vma.map(Vma::perms).unwrap_or_default(),
                mapping_start: vma.map(|v| v.start).unwrap_or(0),
                mapping_end: vma.map(|v| v.end).unwrap_or(0),
                offset_in_mapping: vma.map(|v| address - v.start).unwrap_or(0),
                before: printable(window.get(b..m.start()).unwrap_or_default()),
                matched: printable(m.as_bytes()),
                after: printable(window.get(m.end()..a).unwrap_or_default()),
            });
            if self.out.len() >= MAX_MATCHES {
                tracing::warn!(max = MAX_MATCHES, "memory search stopped at the match limit");
                break;
            }
        }
        if self.window.len() > OVERLAP {
            let cut = self.window.len() - OVERLAP;
            self.window.drain(..cut);
            self.window_start += cut as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_splits_nul_separated_strings() {
        let mut c = Collect::new((0x1000, 0x1010)).unwrap();
        c.feed(0x0ff8, b"xxxxxxxxsh\0-c\0echo hi\0\0\0\0\0");
        assert_eq!(c.strings().unwrap(), vec!["sh", "-c", "echo hi"]);
        let empty = Collect::new((0x1000, 0x1010)).unwrap();
        assert_eq!(empty.strings(), None);
        assert!(Collect::new((5, 5)).is_none());
        assert!(Collect::new((6, 5)).is_none());
    }

    #[test]
    fn printable_masks_binary() {
        assert_eq!(printable(b"a\0b\xffc"), "a.b.c");
    }
}
