//! Memory maps of a checkpointed process: each VMA of `mm-N.img` with its
//! protection, what it maps and how many of its pages were dumped
//! (`pagemap-N.img`), like crit's `x mems` and `x rss` together. Also the
//! mapping filter that `memsearch --map/--perm/--range` applies. Pure: works
//! on the decoded [`Checkpoint`], no archive access.

use serde::Serialize;

use super::error::{Error, Result};
use super::memory::PAGE_SIZE;
use super::model::{Checkpoint, Memory, Process, Vma};

/// One row of `checkpoint maps`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MapRow {
    pub start: u64,
    pub end: u64,
    /// `rwxp`-style.
    pub perms: String,
    /// `heap`, `stack`, `vdso`, `vvar`, `vsyscall`, `file`, `shmem`, `anon`.
    pub kind: &'static str,
    /// The mapped file, for file mappings; the label otherwise.
    pub what: String,
    /// Offset in the mapped file, bytes.
    pub offset: u64,
    pub pages: u64,
    /// Pages whose contents are in the checkpoint.
    pub dumped_pages: u64,
}

/// The maps of one process with totals.
#[derive(Debug, Clone, Serialize)]
pub struct Maps {
    pub pid: u32,
    pub comm: String,
    pub vmas: Vec<MapRow>,
    pub total_pages: u64,
    pub dumped_pages: u64,
}

/// Looks a process up, with the known PIDs in the error.
pub fn process(ckpt: &Checkpoint, pid: u32) -> Result<&Process> {
    ckpt.processes.get(&pid).ok_or_else(|| Error::NoSuchPid {
        pid,
        known: ckpt
            .processes
            .keys()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Pages of `[start, end)` that the pagemap says were dumped.
pub fn dumped_in(mem: &Memory, start: u64, end: u64) -> u64 {
    mem.runs
        .iter()
        .map(|r| {
            let rs = r.vaddr;
            let re = r
                .vaddr
                .saturating_add(r.nr_pages.saturating_mul(PAGE_SIZE));
            let lo = rs.max(start);
            let hi = re.min(end);
            hi.saturating_sub(lo) / PAGE_SIZE
        })
        .sum()
}

/// The VMAs of `pid`.
pub fn maps(ckpt: &Checkpoint, pid: u32) -> Result<Maps> {
    let p = process(ckpt, pid)?;
    let mut out = Maps {
        pid,
        comm: p.comm.clone(),
        vmas: Vec::new(),
        total_pages: 0,
        dumped_pages: 0,
    };
    let Some(mem) = &p.memory else {
        return Ok(out);
    };
    for v in &mem.vmas {
        let pages = v.len() / PAGE_SIZE;
        let dumped = dumped_in(mem, v.start, v.end);
        out.total_pages += pages;
        out.dumped_pages += dumped;
        out.vmas.push(MapRow {
            start: v.start,
            end: v.end,
            perms: v.perms(),
            kind: v.kind(),
            what: v.file.clone().unwrap_or_else(|| v.what.clone()),
            offset: v.pgoff,
            pages,
            dumped_pages: dumped,
        });
    }
    Ok(out)
}

/// Which mappings `--map` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapSel {
    Heap,
    Stack,
    Anon,
    /// Any file mapping.
    File,
    /// File mappings of this path.
    Path(String),
}

impl MapSel {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "heap" => MapSel::Heap,
            "stack" => MapSel::Stack,
            "anon" => MapSel::Anon,
            "file" => MapSel::File,
            p if p.starts_with('/') => MapSel::Path(p.to_string()),
            other => {
                return Err(Error::BadFilter {
                    what: "--map",
                    value: other.to_string(),
                    reason: "expected heap, stack, anon, file or an absolute path",
                })
            }
        })
    }

    fn matches(&self, v: &Vma) -> bool {
        match self {
            MapSel::Heap => v.kind() == "heap",
            MapSel::Stack => v.kind() == "stack",
            // Private anonymous memory (what malloc's mmap arenas are).
            MapSel::Anon => v.kind() == "anon",
            MapSel::File => v.kind() == "file",
            MapSel::Path(p) => v.kind() == "file" && v.file.as_deref() == Some(p.as_str()),
        }
    }
}

/// The mapping filter of `memsearch`: all given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapFilter {
    pub map: Option<MapSel>,
    /// `PROT_*` bits that must all be set (r 1, w 2, x 4).
    pub perm: Option<u32>,
    /// Only addresses in `[start, end)`.
    pub range: Option<(u64, u64)>,
}

impl MapFilter {
    pub fn is_empty(&self) -> bool {
        self.map.is_none() && self.perm.is_none() && self.range.is_none()
    }

    /// Parses `rw`, `x`, `r-x`…: the letters that must be present.
    pub fn parse_perm(s: &str) -> Result<u32> {
        let mut bits = 0;
        for c in s.chars() {
            bits |= match c {
                'r' => 1,
                'w' => 2,
                'x' => 4,
                '-' => 0,
                _ => {
                    return Err(Error::BadFilter {
                        what: "--perm",
                        value: s.to_string(),
                        reason: "expected letters among r, w, x (e.g. rw or x)",
                    })
                }
            };
        }
        if bits == 0 {
            return Err(Error::BadFilter {
                what: "--perm",
                value: s.to_string(),
                reason: "expected letters among r, w, x (e.g. rw or x)",
            });
        }
        Ok(bits)
    }

    /// Parses `A-B` (hex, `0x` optional) into a half-open range.
    pub fn parse_range(s: &str) -> Result<(u64, u64)> {
        let bad = |reason| Error::BadFilter {
            what: "--range",
            value: s.to_string(),
            reason,
        };
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| bad("expected START-END in hex, e.g. 0x7f0000000000-0x7f0000100000"))?;
        let hex = |x: &str| {
            let x = x.trim();
            let x = x
                .strip_prefix("0x")
                .or_else(|| x.strip_prefix("0X"))
                .unwrap_or(x);
            u64::from_str_radix(x, 16)
        };
        let (a, b) = match (hex(a), hex(b)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(bad("expected START-END in hex, e.g. 0x7f0000000000-0x7f0000100000")),
        };
        if a >= b {
            return Err(bad("START must be below END"));
        }
        Ok((a, b))
    }

    /// The address ranges of `vmas` this filter lets through, sorted.
    pub fn ranges(&self, vmas: &[Vma]) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = vmas
            .iter()
            .filter(|v| !v.is_empty())
            .filter(|v| self.map.as_ref().is_none_or(|m| m.matches(v)))
            .filter(|v| self.perm.is_none_or(|p| v.prot & p == p))
            .filter_map(|v| match self.range {
                None => Some((v.start, v.end)),
                Some((a, b)) => {
                    let lo = v.start.max(a);
                    let hi = v.end.min(b);
                    (lo < hi).then_some((lo, hi))
                }
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The filter as the user wrote it, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.map {
            parts.push(format!(
                "--map {}",
                match m {
                    MapSel::Heap => "heap",
                    MapSel::Stack => "stack",
                    MapSel::Anon => "anon",
                    MapSel::File => "file",
                    MapSel::Path(p) => p.as_str(),
                }
            ));
        }
        if let Some(p) = self.perm {
            let mut s = String::new();
            for (bit, c) in [(1, 'r'), (2, 'w'), (4, 'x')] {
                if p & bit != 0 {
                    s.push(c);
                }
            }
            parts.push(format!("--perm {s}"));
        }
        if let Some((a, b)) = self.range {
            parts.push(format!("--range 0x{a:x}-0x{b:x}"));
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::model::PageRun;

    fn vma(start: u64, end: u64, prot: u32, status: u32, file: Option<&str>) -> Vma {
        Vma {
            start,
            end,
            prot,
            status,
            what: String::new(),
            pgoff: 0,
            flags: 0,
            file: file.map(str::to_string),
        }
    }

    #[test]
    fn parses_filters_and_rejects_bad_ones() {
        assert_eq!(MapFilter::parse_perm("rw").unwrap(), 3);
        assert_eq!(MapFilter::parse_perm("x").unwrap(), 4);
        assert!(MapFilter::parse_perm("q").is_err());
        assert!(MapFilter::parse_perm("").is_err());
        assert_eq!(
            MapFilter::parse_range("0x1000-2000").unwrap(),
            (0x1000, 0x2000)
        );
        assert!(MapFilter::parse_range("2000-1000").is_err());
        assert!(MapFilter::parse_range("zz-1").is_err());
        assert!(MapFilter::parse_range("1000").is_err());
        assert_eq!(MapSel::parse("heap").unwrap(), MapSel::Heap);
        assert_eq!(
            MapSel::parse("/bin/busybox").unwrap(),
            MapSel::Path("/bin/busybox".into())
        );
        let e = MapSel::parse("bogus").unwrap_err().to_string();
        assert!(e.contains("--map") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn filter_selects_ranges() {
        let vmas = vec![
            vma(0x1000, 0x3000, 5, 1 << 6, Some("/bin/x")),
            vma(0x3000, 0x4000, 3, 1 << 6, Some("/bin/x")),
            vma(0x10000, 0x20000, 3, 1 << 5, None),
            vma(0x7000_0000, 0x7000_4000, 3, 1 << 1, None),
            vma(0x5000_0000, 0x5000_1000, 3, 1, None),
        ];
        let f = |map: Option<MapSel>, perm: Option<u32>, range| MapFilter { map, perm, range };
        assert_eq!(f(Some(MapSel::Heap), None, None).ranges(&vmas), vec![(0x10000, 0x20000)]);
        assert_eq!(f(None, Some(4), None).ranges(&vmas), vec![(0x1000, 0x3000)]);
        assert_eq!(
            f(Some(MapSel::Path("/bin/x".into())), Some(3), None).ranges(&vmas),
            vec![(0x3000, 0x4000)]
        );
        assert_eq!(f(Some(MapSel::Anon), None, None).ranges(&vmas), vec![(0x5000_0000, 0x5000_1000)]);
        assert_eq!(
            f(None, None, Some((0x2000, 0x11000))).ranges(&vmas),
            vec![(0x2000, 0x3000), (0x3000, 0x4000), (0x10000, 0x11000)]
        );
    }

    #[test]
    fn dumped_pages_count_overlap() {
        let mem = Memory {
            runs: vec![
                PageRun { vaddr: 0x1000, nr_pages: 2, offset: 0 },
                PageRun { vaddr: 0x5000, nr_pages: 1, offset: 0x2000 },
            ],
            ..Memory::default()
        };
        assert_eq!(dumped_in(&mem, 0x0, 0x10000), 3);
        assert_eq!(dumped_in(&mem, 0x2000, 0x6000), 2);
        assert_eq!(dumped_in(&mem, 0x3000, 0x5000), 0);
    }
}
