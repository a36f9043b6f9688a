//! ELF core files from a checkpoint, one per process, that gdb loads: the
//! notes (NT_PRSTATUS and NT_PRFPREG/NT_X86_XSTATE per thread, NT_PRPSINFO,
//! NT_SIGINFO, NT_AUXV, NT_FILE) are built from `core-N.img`, `pstree.img`
//! and `mm-N.img`; memory comes from the dumped pages. Pages that were not
//! dumped are zero for private anonymous memory; for file mappings they are
//! read from the file as `rootfs-diff.tar` holds it (the container changed
//! it) or from the root file system the user names, resolved inside that
//! directory (links cannot leave it); otherwise they are left out (a
//! segment without file bytes) and listed. The ELF header and program
//! headers are written with `object`'s ELF writer; the pages are streamed
//! from the archive straight to their place in the file, so memory use does
//! not grow with the dump. Files are written under a temporary name and
//! renamed when complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object::elf;
use object::write::elf::{FileHeader, ProgramHeader, Writer};
use object::Endianness;
use serde::Serialize;

use super::error::{Error, Result};
use super::memory::{stream_pages, PAGE_SIZE};
use super::core_notes::notes;
use super::model::{Checkpoint, Process, Vma};
use super::{files, maps};

/// Program headers an ELF file can count without extended numbering.
const MAX_SEGMENTS: usize = 0xfffe;
/// Most processes written in one run (each keeps a file open).
const MAX_PROCESSES: usize = 512;
/// Most bytes of mapped files read into one core (and the most read from
/// `rootfs-diff.tar` for one file).
const MAX_SOURCE_FILE: u64 = 1 << 30;

/// What to write.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this process (PID in the container); all when `None`.
    pub pid: Option<u32>,
    pub out_dir: PathBuf,
    /// The container's root file system, for file-backed pages.
    pub rootfs: Option<PathBuf>,
}

/// A range of memory the core has no bytes for.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Missing {
    pub start: u64,
    pub end: u64,
    pub what: String,
    pub why: String,
}

/// One core file written.
#[derive(Debug, Clone, Serialize)]
pub struct Core {
    pub pid: u32,
    pub comm: String,
    pub path: PathBuf,
    pub threads: usize,
    pub segments: usize,
    pub size: u64,
    pub dumped_bytes: u64,
    /// Bytes of file mappings read from `rootfs-diff.tar`.
    pub from_rootfs_diff: u64,
    /// Bytes of file mappings read from `--rootfs`.
    pub from_rootfs: u64,
    pub missing: Vec<Missing>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Dumped,
    Zero,
    File,
    Missing,
}

#[derive(Debug, Clone)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    /// Zero for a range the core has no bytes for.
    filesz: u64,
    offset: u64,
    flags: u32,
}

/// Where to get the bytes of one mapped file.
enum Source {
    Bytes(Vec<u8>),
    Disk(File),
}

impl Source {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        match self {
            Source::Bytes(b) => {
                let start = usize::try_from(off).unwrap_or(usize::MAX).min(b.len());
                let n = buf.len().min(b.len() - start);
                if let (Some(d), Some(s)) = (buf.get_mut(..n), b.get(start..start + n)) {
                    d.copy_from_slice(s);
                }
                n
            }
            Source::Disk(f) => {
                let mut got = 0;
                while got < buf.len() {
                    match f.read_at(&mut buf[got..], off + got as u64) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                got
            }
        }
    }
}

/// A file-backed range to copy into the core after the pages.
struct FileFill {
    path: String,
    file_offset: u64,
    len: u64,
    core_offset: u64,
}

struct Plan {
    segments: Vec<Segment>,
    fills: Vec<FileFill>,
    missing: Vec<Missing>,
}

fn flags_of(v: &Vma) -> u32 {
    let mut f = 0;
    if v.prot & 1 != 0 {
        f |= elf::PF_R;
    }
    if v.prot & 2 != 0 {
        f |= elf::PF_W;
    }
    if v.prot & 4 != 0 {
        f |= elf::PF_X;
    }
    f
}

/// Splits every VMA into dumped, zero, file and missing pieces and turns
/// them into segments (pieces with bytes merge; missing ones stand alone).
fn plan(p: &Process, sources: &BTreeMap<String, Source>, why_no_source: &BTreeMap<String, String>) -> Plan {
    let mut out = Plan {
        segments: Vec::new(),
        fills: Vec::new(),
        missing: Vec::new(),
    };
    let Some(mem) = &p.memory else { return out };
    let mut runs: Vec<(u64, u64)> = mem
        .runs
        .iter()
        .map(|r| (r.vaddr, r.vaddr.saturating_add(r.nr_pages.saturating_mul(PAGE_SIZE))))
        .collect();
    runs.sort_unstable();
    let mut vmas: Vec<&Vma> = mem.vmas.iter().filter(|v| !v.is_empty() && v.kind() != "vsyscall").collect();
    vmas.sort_by_key(|v| v.start);
    for v in vmas {
        // Pieces of this VMA.
        let mut pieces: Vec<(u64, u64, Src)> = Vec::new();
        let mut at = v.start;
        let gap = |a: u64, b: u64, pieces: &mut Vec<(u64, u64, Src)>| {
            let src = match v.kind() {
                // PROT_NONE reservations (Go, the JVM) can be huge and
                // are never read: no bytes for them.
                _ if v.prot & 7 == 0 => Src::Missing,
                "anon" | "heap" | "stack" => Src::Zero,
                "file" if v.file.as_ref().is_some_and(|f| sources.contains_key(f)) => Src::File,
                _ => Src::Missing,
            };
            pieces.push((a, b, src));
        };
        for &(rs, re) in &runs {
            let lo = rs.max(v.start);
            let hi = re.min(v.end);
            if lo >= hi || hi <= at {
                continue;
            }
            let lo = lo.max(at);
            if lo > at {
                gap(at, lo, &mut pieces);
            }
            pieces.push((lo, hi, Src::Dumped));
            at = hi;
        }
        if at < v.end {
            gap(at, v.end, &mut pieces);
        }
        for (a, b, src) in pieces {
            if src == Src::Missing {
                let why = match v.kind() {
                    "file" => v
                        .file
                        .as_ref()
                        .and_then(|f| why_no_source.get(f).cloned())
                        .unwrap_or_else(|| "not dumped; the mapped file is unknown".into()),
                    _ if v.prot & 7 == 0 => "no access (PROT_NONE): nothing to read".into(),
                    "vvar" => "kernel data page, never dumped".into(),
                    k => format!("{k} memory not dumped"),
                };
                out.missing.push(Missing {
                    start: a,
                    end: b,
                    what: v.file.clone().unwrap_or_else(|| v.what.clone()),
                    why,
                });
                out.segments.push(Segment {
                    vaddr: a,
                    memsz: b - a,
                    filesz: 0,
                    offset: 0,
                    flags: flags_of(v),
                });
                continue;
            }
            if src == Src::File {
                if let Some(f) = &v.file {
                    out.fills.push(FileFill {
                        path: f.clone(),
                        file_offset: v.pgoff.saturating_add(a - v.start),
                        len: b - a,
                        // Filled in once offsets are known (vaddr for now).
                        core_offset: a,
                    });
                }
            }
            match out.segments.last_mut() {
                Some(s) if s.filesz > 0 && s.vaddr + s.memsz == a && s.flags == flags_of(v) => {
                    s.memsz += b - a;
                    s.filesz += b - a;
                }
                _ => out.segments.push(Segment {
                    vaddr: a,
                    memsz: b - a,
                    filesz: b - a,
                    offset: 0,
                    flags: flags_of(v),
                }),
            }
        }
    }
    out
}

/// Opens `path` (a container path) inside `root`: `RESOLVE_IN_ROOT` keeps
/// `..` and symbolic links inside it.
fn open_in_root(root: &Path, path: &str) -> std::result::Result<File, String> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{AsRawFd, FromRawFd};
    let dir = File::open(root).map_err(|e| format!("cannot open --rootfs {}: {e}", root.display()))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(dir.as_raw_fd(), path, how).map_err(|e| format!("{path} not readable in --rootfs: {e}"))?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    let meta = f.metadata().map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path} in --rootfs is not a regular file"));
    }
    Ok(f)
}

/// Finds the bytes of every file mapped by the chosen processes: the
/// changed copy in `rootfs-diff.tar` first, else the file under `--rootfs`.
fn sources(ckpt: &Checkpoint, procs: &[&Process], rootfs: Option<&Path>) -> (BTreeMap<String, Source>, BTreeMap<String, String>) {
    let mut wanted: Vec<String> = procs
        .iter()
        .filter_map(|p| p.memory.as_ref())
        .flat_map(|m| m.vmas.iter())
        .filter(|v| v.kind() == "file")
        .filter_map(|v| v.file.clone())
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut got = BTreeMap::new();
    let mut why = BTreeMap::new();
    for f in wanted {
        let key = files::container_path(&f);
        let in_diff = key
            .as_ref()
            .is_some_and(|k| ckpt.rootfs_diff.iter().any(|e| &e.path == k && e.kind == "file"));
        if in_diff {
            let mut buf = Vec::new();
            match files::cat(&ckpt.path, &f, MAX_SOURCE_FILE, &[], &mut buf) {
                Ok(_) => {
                    got.insert(f, Source::Bytes(buf));
                }
                Err(e) => {
                    why.insert(f, format!("not dumped; rootfs-diff.tar copy unreadable: {}", e.to_line()));
                }
            }
            continue;
        }
        match rootfs {
            Some(root) => match open_in_root(root, &f) {
                Ok(file) => {
                    got.insert(f, Source::Disk(file));
                }
                Err(e) => {
                    why.insert(f, format!("not dumped; {e}"));
                }
            },
            None => {
                why.insert(f, "not dumped; pass --rootfs to read it from the container's root file system".into());
            }
        }
    }
    (got, why)
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::CoreWrite {
        path: path.to_path_buf(),
        source,
    }
}

struct Open {
    tmp: PathBuf,
    file: File,
    plan: Plan,
    dumped: u64,
}

/// Writes `core.<pid>` for the chosen processes into `opts.out_dir`. On
/// an error no partial core is left behind (finished ones stay).
pub fn write_cores(ckpt: &Checkpoint, opts: &Options) -> Result<Vec<Core>> {
    let result = write_all(ckpt, opts);
    if result.is_err() {
        if let Ok(dir) = std::fs::read_dir(&opts.out_dir) {
            for e in dir.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".core.") && name.ends_with(".partial") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    result
}

fn write_all(ckpt: &Checkpoint, opts: &Options) -> Result<Vec<Core>> {
    let procs: Vec<&Process> = match opts.pid {
        Some(pid) => vec![maps::process(ckpt, pid)?],
        None => ckpt.processes.values().collect(),
    };
    if procs.len() > MAX_PROCESSES {
        return Err(Error::TooManyProcesses {
            count: procs.len(),
            limit: MAX_PROCESSES,
        });
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(write_err(&opts.out_dir))?;
    let (sources, why) = sources(ckpt, &procs, opts.rootfs.as_deref());
    let mut open: BTreeMap<u32, Open> = BTreeMap::new();
    for p in &procs {
        let mut plan = plan(p, &sources, &why);
        if plan.segments.len() > MAX_SEGMENTS {
            return Err(Error::TooManySegments {
                pid: p.pid,
                count: plan.segments.len(),
            });
        }
        let notes = notes(p);
        let mut head = Vec::new();
        let mut w = Writer::new(Endianness::Little, true, &mut head);
        w.reserve_file_header();
        w.reserve_program_headers(plan.segments.len() as u32 + 1);
        let notes_off = w.reserve(notes.len(), 4) as u64;
        let mut off = (w.reserved_len() as u64).next_multiple_of(PAGE_SIZE);
        for s in &mut plan.segments {
            // Like the kernel, a segment without bytes points at where the
            // next one's start (never at offset 0, where readers would find
            // the core's own ELF header).
            s.offset = off;
            off = off.saturating_add(s.filesz);
        }
        // Now that segments have offsets, place the file fills.
        for f in &mut plan.fills {
            f.core_offset = core_offset(&plan.segments, f.core_offset).unwrap_or(u64::MAX);
        }
        plan.fills.retain(|f| f.core_offset != u64::MAX);
        w.write_file_header(&FileHeader {
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            e_type: elf::ET_CORE,
            e_machine: elf::EM_X86_64,
            e_entry: 0,
            e_flags: 0,
        })
        .map_err(|e| Error::Elf { reason: e.to_string() })?;
        w.write_align_program_headers();
        w.write_program_header(&ProgramHeader {
            p_type: elf::PT_NOTE,
            p_flags: 0,
            p_offset: notes_off,
            p_vaddr: 0,
            p_paddr: 0,
            p_filesz: notes.len() as u64,
            p_memsz: 0,
            p_align: 4,
        });
        for s in &plan.segments {
            w.write_program_header(&ProgramHeader {
                p_type: elf::PT_LOAD,
                p_flags: s.flags,
                p_offset: s.offset,
                p_vaddr: s.vaddr,
                p_paddr: 0,
                p_filesz: s.filesz,
                p_memsz: s.memsz,
                p_align: PAGE_SIZE,
            });
        }
        w.write_align(4);
        w.write(&notes);
        let tmp = opts.out_dir.join(format!(".core.{}.partial", p.pid));
        let file = File::create(&tmp).map_err(write_err(&tmp))?;
        // Zero pages stay holes: the file is sparse.
        file.set_len(off).map_err(write_err(&tmp))?;
        file.write_all_at(&head, 0).map_err(write_err(&tmp))?;
        open.insert(
            p.pid,
            Open {
                tmp,
                file,
                plan,
                dumped: 0,
            },
        );
    }
    let pids: std::collections::BTreeSet<u32> = open.keys().copied().collect();
    stream_pages(ckpt, &pids, |pid, vaddr, bytes| {
        let Some(o) = open.get_mut(&pid) else { return Ok(()) };
        let mut at = 0usize;
        while at < bytes.len() {
            let va = vaddr.saturating_add(at as u64);
            let Some((off, room)) = locate(&o.plan.segments, va) else {
                // Not in any mapping (a corrupt pagemap): skip a page.
                at += PAGE_SIZE as usize;
                continue;
            };
            let n = room.min((bytes.len() - at) as u64) as usize;
            o.file
                .write_all_at(&bytes[at..at + n], off)
                .map_err(write_err(&o.tmp))?;
            o.dumped += n as u64;
            at += n;
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    for p in procs {
        let Some(o) = open.remove(&p.pid) else { continue };
        let (mut from_diff, mut from_rootfs) = (0u64, 0u64);
        let mut buf = vec![0u8; 1 << 20];
        for f in &o.plan.fills {
            let Some(src) = sources.get(&f.path) else { continue };
            let mut done = 0u64;
            while done < f.len {
                if from_diff + from_rootfs + done >= MAX_SOURCE_FILE {
                    tracing::warn!(pid = p.pid, limit = MAX_SOURCE_FILE, "file-backed pages cut at the byte limit");
                    break;
                }
                let n = (f.len - done).min(buf.len() as u64) as usize;
                let got = src.read_at(f.file_offset.saturating_add(done), &mut buf[..n]);
                if got == 0 {
                    break; // past the end of the file: those pages stay zero
                }
                o.file
                    .write_all_at(&buf[..got], f.core_offset.saturating_add(done))
                    .map_err(write_err(&o.tmp))?;
                done += got as u64;
            }
            match src {
                Source::Bytes(_) => from_diff += done,
                Source::Disk(_) => from_rootfs += done,
            }
        }
        let path = opts.out_dir.join(format!("core.{}", p.pid));
        std::fs::rename(&o.tmp, &path).map_err(write_err(&path))?;
        out.push(Core {
            pid: p.pid,
            comm: p.comm.clone(),
            size: o.file.metadata().map(|m| m.len()).unwrap_or(0),
            path,
            threads: p.threads.len(),
            segments: o.plan.segments.len(),
            dumped_bytes: o.dumped,
            from_rootfs_diff: from_diff,
            from_rootfs,
            missing: o.plan.missing,
        });
    }
    Ok(out)
}

/// File offset of `vaddr` in the core and the bytes left in its segment.
fn locate(segs: &[Segment], vaddr: u64) -> Option<(u64, u64)> {
    let i = segs.partition_point(|s| s.vaddr + s.memsz <= vaddr);
    let s = segs.get(i)?;
    let into = vaddr.checked_sub(s.vaddr)?;
    (s.filesz > into).then(|| (s.offset.saturating_add(into), s.filesz - into))
}

fn core_offset(segs: &[Segment], vaddr: u64) -> Option<u64> {
    locate(segs, vaddr).map(|(o, _)| o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::core_notes::{prpsinfo, prstatus};
    use crate::checkpoint::model::{Memory, PageRun, Registers, TaskState, Thread};

    fn vma(start: u64, end: u64, prot: u32, status: u32, file: Option<&str>) -> Vma {
        Vma {
            start,
            end,
            prot,
            status,
            what: file.unwrap_or("anon").into(),
            pgoff: 0x1000,
            flags: 0,
            file: file.map(str::to_string),
        }
    }

    fn process() -> Process {
        Process {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            comm: "prog".into(),
            state: TaskState::Alive,
            exit_code: 0,
            uid: Some(0),
            gid: Some(0),
            threads: vec![Thread {
                tid: 1,
                comm: None,
                syscall: None,
                ip: Some(0x401000),
                sp: None,
                regs: Some(Box::new(Registers {
                    user: [7; 27],
                    fp: None,
                    compat: false,
                })),
            }],
            cwd: None,
            root: None,
            fds: Vec::new(),
            cmdline: Some(vec!["prog".into(), "-x".into()]),
            env: None,
            memory: Some(Memory {
                vmas: vec![
                    vma(0x400000, 0x403000, 5, 1 << 6, Some("/bin/prog")),
                    vma(0x600000, 0x602000, 3, 1 << 5, None),
                    vma(0x700000, 0x701000, 1, 1 << 12, None),
                ],
                runs: vec![PageRun { vaddr: 0x401000, nr_pages: 1, offset: 0 }],
                ..Memory::default()
            }),
            seccomp_mode: 0,
            seccomp_filter: None,
            files_id: None,
            uts_ns_id: None,
        }
    }

    #[test]
    fn plan_without_the_file_leaves_it_out_and_says_why() {
        let p = process();
        let why = BTreeMap::from([("/bin/prog".to_string(), "no rootfs".to_string())]);
        let plan = plan(&p, &BTreeMap::new(), &why);
        let segs: Vec<(u64, u64, u64)> = plan.segments.iter().map(|s| (s.vaddr, s.memsz, s.filesz)).collect();
        assert_eq!(
            segs,
            vec![
                (0x400000, 0x1000, 0),      // file page not dumped: no bytes
                (0x401000, 0x1000, 0x1000), // dumped
                (0x402000, 0x1000, 0),
                (0x600000, 0x2000, 0x2000), // heap: zero pages have bytes
                (0x700000, 0x1000, 0),      // vvar
            ]
        );
        assert_eq!(plan.missing.len(), 3);
        assert_eq!(plan.missing[0].why, "no rootfs");
    }

    #[test]
    fn plan_with_the_file_fills_from_it_at_the_right_offset() {
        let p = process();
        let src = BTreeMap::from([("/bin/prog".to_string(), Source::Bytes(vec![1; 0x5000]))]);
        let plan = plan(&p, &src, &BTreeMap::new());
        assert_eq!(plan.segments[0].vaddr, 0x400000);
        assert_eq!(plan.segments[0].filesz, 0x3000);
        let offs: Vec<(u64, u64)> = plan.fills.iter().map(|f| (f.file_offset, f.len)).collect();
        assert_eq!(offs, vec![(0x1000, 0x1000), (0x3000, 0x1000)]);
    }

    #[test]
    fn notes_have_the_kernel_sizes() {
        let p = process();
        let n = notes(&p);
        // PRSTATUS (20 + 336) + PRPSINFO (20 + 136) + SIGINFO (20 + 128) + FILE.
        let file_desc = 16 + 24 + "/bin/prog\0".len();
        assert_eq!(n.len(), 356 + 156 + 148 + 20 + file_desc.next_multiple_of(4));
        let ps = prstatus(&p, 1, &[7; 27], false);
        assert_eq!(ps.len(), 336);
        assert_eq!(&ps[112..120], &7u64.to_le_bytes());
        let info = prpsinfo(&p);
        assert_eq!(info.len(), 136);
        assert_eq!(&info[40..44], b"prog");
        assert_eq!(&info[56..63], b"prog -x");
    }

    #[test]
    fn hostile_layouts_do_not_panic() {
        let mut p = process();
        if let Some(m) = p.memory.as_mut() {
            m.vmas = vec![
                vma(0x1000, 0x7fff_ffff_f000, 0, 0, None), // PROT_NONE reservation
                vma(0x9000, 0x5000, 3, 0, None),          // inverted
                vma(u64::MAX - 0x1000, u64::MAX, 3, 0, None),
            ];
            m.runs = vec![PageRun { vaddr: u64::MAX - 0x1000, nr_pages: u64::MAX, offset: 0 }];
        }
        let plan = plan(&p, &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(plan.segments[0].filesz, 0, "PROT_NONE has no bytes");
        assert!(plan.missing[0].why.contains("PROT_NONE"));
        assert_eq!(plan.segments.len(), 2);
        assert_eq!(locate(&plan.segments, u64::MAX - 1), Some((u64::MAX - 1 - (u64::MAX - 0x1000), 1)));
    }

    #[test]
    fn locate_maps_addresses_to_offsets() {
        let segs = vec![
            Segment { vaddr: 0x1000, memsz: 0x2000, filesz: 0x2000, offset: 0x4000, flags: 0 },
            Segment { vaddr: 0x5000, memsz: 0x1000, filesz: 0, offset: 0, flags: 0 },
        ];
        assert_eq!(locate(&segs, 0x1800), Some((0x4800, 0x1800)));
        assert_eq!(locate(&segs, 0x5000), None);
        assert_eq!(locate(&segs, 0x9000), None);
    }
}
