//! CRIU checkpoint archives: streaming reader, image decoding, model.
//!
//! [`load`] walks an archive once, keeping only the CRIU images and metadata
//! members in memory (each under a size cap) and skipping page data; it
//! decodes them into a [`Checkpoint`]. Page data is read in a second
//! streaming pass only when asked for ([`memory`]: command lines,
//! environment, memory search). Layers: [`archive`] (bytes in), [`image`]
//! and [`proto`] (CRIU framing and messages), [`seccomp`] (BPF evaluation),
//! [`model`] (what the report reads).

pub mod archive;
pub mod core_notes;
pub mod coredump;
pub mod correlate;
pub mod diff;
pub mod discover;
pub mod error;
pub mod files;
pub mod image;
pub mod maps;
pub mod memory;
pub mod model;
pub mod proto;
pub mod seccomp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use archive::{DiffEntry, Format, Limits};
pub use error::{Error, Result};
pub use model::*;

use image::{decode_all, decode_one, Header};

/// Cap on one CRIU image member (not pages) held in memory.
const IMAGE_LIMIT: u64 = 64 << 20;
/// Cap on all CRIU image members held in memory at once: real dumps hold a
/// few MiB; many large `core-N.img` must end in an error, not an abort.
const IMAGES_LIMIT: u64 = 256 << 20;
/// Cap on `config.dump` when only the container id is wanted.
const CONFIG_LIMIT: u64 = 4 << 20;
/// Cap on one JSON metadata member.
const JSON_LIMIT: u64 = 16 << 20;
/// Cap on the entries listed from `rootfs-diff.tar`.
const DIFF_LIMIT: usize = 100_000;

/// The kubelet's default checkpoint directory.
pub const KUBELET_CHECKPOINTS: &str = "/var/lib/kubelet/checkpoints";

/// What [`load`] should do beyond the always-decoded images.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Read command lines and environments from the dumped pages (a second
    /// streaming pass over the archive).
    pub memory: bool,
    /// Bounds on each pass over the archive.
    pub limits: Limits,
}

/// Image members kept in memory for decoding.
fn wanted_image(name: &str) -> bool {
    const SINGLE: &[&str] = &[
        "inventory.img",
        "pstree.img",
        "files.img",
        "seccomp.img",
        "stats-dump",
    ];
    const PREFIXES: &[&str] = &[
        "core-", "ids-", "fdinfo-", "fs-", "utsns-", "mm-", "pagemap-",
    ];
    SINGLE.contains(&name)
        || (name.ends_with(".img") && PREFIXES.iter().any(|p| name.starts_with(p)))
}

const METADATA: &[&str] = &[
    "config.dump",
    "spec.dump",
    "network.status",
    "bind.mounts",
    "deleted.files",
    "stats-dump",
];

/// Reads and decodes the checkpoint at `path` (tar, tar.gz, tar.zst or a
/// directory).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Checkpoint> {
    let mut images: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut meta: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut rootfs_diff = Vec::new();
    let mut problems = Vec::new();
    let mut inventory_mtime = None;
    let mut held = 0u64;

    let (format, summary) = archive::walk_with(path, &opts.limits, |m, r| {
        if let Some(img) = m.name.strip_prefix("checkpoint/") {
            if img == "inventory.img" {
                inventory_mtime = m.mtime;
            }
            if wanted_image(img) {
                let data = archive::read_member(m, r, IMAGE_LIMIT)?;
                held += data.len() as u64;
                if held > IMAGES_LIMIT {
                    return Err(Error::ImagesTooLarge {
                        path: path.to_path_buf(),
                        limit: IMAGES_LIMIT,
                    });
                }
                images.insert(img.to_string(), data);
            }
        } else if METADATA.contains(&m.name.as_str()) {
            meta.insert(m.name.clone(), archive::read_member(m, r, JSON_LIMIT)?);
        } else if m.name == "rootfs-diff.tar" {
            match archive::list_nested(&m.name, r, DIFF_LIMIT) {
                Ok(list) => rootfs_diff = list,
                Err(e) => {
                    tracing::warn!(error = %e, "rootfs-diff.tar unreadable");
                    problems.push(e.to_line());
                }
            }
        }
        Ok(archive::Step::Next)
    })?;

    let ignored_note = if summary.ignored.is_empty() {
        String::new()
    } else {
        format!(" (skipped unsafe members: {})", summary.ignored.join(", "))
    };
    for required in ["inventory.img", "pstree.img"] {
        if !images.contains_key(required) {
            return Err(Error::NotCheckpoint {
                path: path.to_path_buf(),
                missing: if required == "inventory.img" {
                    "checkpoint/inventory.img"
                } else {
                    "checkpoint/pstree.img"
                },
                ignored: ignored_note,
            });
        }
    }

    let members: BTreeMap<String, u64> = summary
        .members
        .iter()
        .map(|m| (m.name.clone(), m.size))
        .collect();
    let checkpoint_size = members
        .iter()
        .filter(|(n, _)| n.starts_with("checkpoint/"))
        .map(|(_, s)| *s)
        .sum();
    let archive_size = if format == Format::Directory {
        members.values().sum()
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    };

    let mut ckpt = Checkpoint {
        path: path.to_path_buf(),
        format,
        archive_size,
        checkpoint_size,
        rootfs_diff_size: members.get("rootfs-diff.tar").copied(),
        metadata: Metadata::default(),
        inventory: Inventory::default(),
        hostname: None,
        domainname: None,
        processes: BTreeMap::new(),
        stats: None,
        seccomp_filters: Vec::new(),
        mounts: Vec::new(),
        bind_mounts: Vec::new(),
        deleted_files: Vec::new(),
        rootfs_diff,
        members,
        ignored_members: summary.ignored,
        problems,
        limits: opts.limits,
    };

    decode_images(&mut ckpt, &images, &meta)?;
    decode_metadata(&mut ckpt, &meta, inventory_mtime);
    for p in &ckpt.problems {
        tracing::warn!(problem = %p, "checkpoint decoded with a problem");
    }
    if opts.memory {
        match memory::fill_cmdline_env(&mut ckpt) {
            Ok(()) => {}
            // The images are decoded; a limit only costs the command lines.
            Err(e @ (Error::ByteLimit { .. } | Error::TimeLimit { .. })) => {
                tracing::warn!(error = %e, "command lines not read");
                ckpt.problems.push(format!("command lines not read: {}", e.to_line()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(ckpt)
}

/// The container id the checkpoint's `config.dump` names, reading nothing
/// else: the walk stops at that member, and runs under `limits`. `Ok(None)`
/// when there is no `config.dump` or it names no id.
pub fn container_id(path: &Path, limits: &Limits) -> Result<Option<String>> {
    let mut id = None;
    archive::walk_with(path, limits, |m, r| {
        if m.name != "config.dump" {
            return Ok(archive::Step::Next);
        }
        let cfg = parse_json(&m.name, &archive::read_member(m, r, CONFIG_LIMIT)?)?;
        id = str_at(&cfg, &["id", "ID"]).map(str::to_string);
        Ok(archive::Step::Stop)
    })?;
    Ok(id)
}

fn member_name(img: &str) -> String {
    format!("checkpoint/{img}")
}

/// Records a non-fatal problem and returns `None`.
fn soft<T>(problems: &mut Vec<String>, r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(e.to_line());
            None
        }
    }
}

fn decode_images(
    ckpt: &mut Checkpoint,
    images: &BTreeMap<String, Vec<u8>>,
    meta: &BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    let get = |name: &str| images.get(name).map(Vec::as_slice);
    let mut problems = std::mem::take(&mut ckpt.problems);

    // inventory and pstree are what make this a checkpoint: fatal if bad.
    let inv: proto::InventoryEntry = decode_one(
        &member_name("inventory.img"),
        get("inventory.img").unwrap_or_default(),
        Header::Inventory,
    )?;
    ckpt.inventory = Inventory {
        img_version: inv.img_version.unwrap_or(0),
        fdinfo_per_id: inv.fdinfo_per_id.unwrap_or(false),
        ns_per_id: inv.ns_per_id.unwrap_or(false),
        dump_uptime_us: inv.dump_uptime,
        lsm: inv.lsmtype.map(|l| match l {
            0 => "none".to_string(),
            1 => "selinux".to_string(),
            2 => "apparmor".to_string(),
            other => format!("lsm({other})"),
        }),
        criu_run_id: inv.dump_criu_run_id.filter(|s| !s.is_empty()),
    };
    let tree: Vec<proto::PstreeEntry> = decode_all(
        &member_name("pstree.img"),
        get("pstree.img").unwrap_or_default(),
        Header::Common(image::PSTREE_MAGIC),
    )?;

    let files: BTreeMap<u32, proto::FileEntry> = match get("files.img") {
        Some(data) => soft(
            &mut problems,
            decode_all::<proto::FileEntry>(
                &member_name("files.img"),
                data,
                Header::Common(image::FILES_MAGIC),
            ),
        )
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.id.map(|id| (id, f)))
        .collect(),
        None => BTreeMap::new(),
    };
    let reg_name = |id: u32| -> Option<String> {
        files
            .get(&id)
            .and_then(|f| f.reg.as_ref())
            .and_then(|r| r.name.clone())
    };

    for entry in &tree {
        let Some(pid) = entry.pid else { continue };
        let core_name = format!("core-{pid}.img");
        let core: proto::CoreEntry = match get(&core_name) {
            Some(data) => decode_one(
                &member_name(&core_name),
                data,
                Header::Common(image::CORE_MAGIC),
            )?,
            None => {
                problems.push(format!("member {}: missing", member_name(&core_name)));
                proto::CoreEntry::default()
            }
        };
        let tc = core.tc.clone().unwrap_or_default();
        let creds = core.thread_core.as_ref().and_then(|t| t.creds.clone());

        let mut threads = Vec::new();
        let tids = if entry.threads.is_empty() {
            vec![pid]
        } else {
            entry.threads.clone()
        };
        for tid in tids {
            let tcore = if tid == pid {
                Some(core.clone())
            } else {
                let n = format!("core-{tid}.img");
                get(&n).and_then(|d| {
                    soft(
                        &mut problems,
                        decode_one::<proto::CoreEntry>(
                            &member_name(&n),
                            d,
                            Header::Common(image::CORE_MAGIC),
                        ),
                    )
                })
            };
            threads.push(thread_from_core(tid, tcore.as_ref()));
        }

        let ids = match get(&format!("ids-{pid}.img")) {
            Some(d) => soft(
                &mut problems,
                decode_one::<proto::TaskKobjIdsEntry>(
                    &member_name(&format!("ids-{pid}.img")),
                    d,
                    Header::Common(image::IDS_MAGIC),
                ),
            ),
            None => core.ids.clone(),
        };
        let files_id = ids.as_ref().and_then(|i| i.files_id);

        let mut fds = Vec::new();
        if let Some(fid) = files_id {
            let n = format!("fdinfo-{fid}.img");
            if let Some(d) = get(&n) {
                let entries = soft(
                    &mut problems,
                    decode_all::<proto::FdinfoEntry>(
                        &member_name(&n),
                        d,
                        Header::Common(image::FDINFO_MAGIC),
                    ),
                )
                .unwrap_or_default();
                for fe in entries {
                    let id = fe.id.unwrap_or(0);
                    let kind = files
                        .get(&id)
                        .map(file_kind)
                        .unwrap_or_else(|| FileKind::Other {
                            r#type: fd_type_name(fe.r#type.unwrap_or(0)).to_string(),
                            id,
                        });
                    fds.push(Fd {
                        fd: fe.fd.unwrap_or(0),
                        flags: fe.flags.unwrap_or(0),
                        file: kind,
                    });
                }
                fds.sort_by_key(|f| f.fd);
            }
        }

        let (cwd, root) = match get(&format!("fs-{pid}.img")) {
            Some(d) => soft(
                &mut problems,
                decode_one::<proto::FsEntry>(
                    &member_name(&format!("fs-{pid}.img")),
                    d,
                    Header::Common(image::FS_MAGIC),
                ),
            )
            .map(|fs| (fs.cwd_id.and_then(reg_name), fs.root_id.and_then(reg_name)))
            .unwrap_or((None, None)),
            None => (None, None),
        };

        let memory = decode_memory(pid, &get, &files, &mut problems);

        let thread_core = core.thread_core.clone().unwrap_or_default();
        ckpt.processes.insert(
            pid,
            Process {
                pid,
                ppid: entry.ppid.unwrap_or(0),
                pgid: entry.pgid.unwrap_or(0),
                sid: entry.sid.unwrap_or(0),
                comm: tc.comm.clone().unwrap_or_default(),
                state: TaskState::from_criu(tc.task_state.unwrap_or(0)),
                exit_code: tc.exit_code.unwrap_or(0),
                uid: creds.as_ref().and_then(|c| c.uid),
                gid: creds.as_ref().and_then(|c| c.gid),
                threads,
                cwd,
                root,
                fds,
                cmdline: None,
                env: None,
                memory,
                seccomp_mode: thread_core
                    .seccomp_mode
                    .or(tc.old_seccomp_mode)
                    .unwrap_or(0) as u32,
                seccomp_filter: thread_core.seccomp_filter.or(tc.old_seccomp_filter),
                files_id,
                uts_ns_id: ids.as_ref().and_then(|i| i.uts_ns_id),
            },
        );
    }

    // Hostname: the UTS namespace of the first process, else any utsns image.
    let uts_id = ckpt.processes.values().next().and_then(|p| p.uts_ns_id);
    let uts_member = uts_id
        .map(|id| format!("utsns-{id}.img"))
        .filter(|n| images.contains_key(n))
        .or_else(|| images.keys().find(|k| k.starts_with("utsns-")).cloned());
    if let Some(n) = uts_member {
        if let Some(uts) = get(&n).and_then(|d| {
            soft(
                &mut problems,
                decode_one::<proto::UtsnsEntry>(
                    &member_name(&n),
                    d,
                    Header::Common(image::UTSNS_MAGIC),
                ),
            )
        }) {
            ckpt.hostname = uts.nodename;
            ckpt.domainname = uts.domainname;
        }
    }

    if let Some(d) = get("seccomp.img") {
        let member = member_name("seccomp.img");
        if let Some(entry) = soft(
            &mut problems,
            decode_one::<proto::SeccompEntry>(&member, d, Header::Common(image::SECCOMP_MAGIC)),
        ) {
            for (i, f) in entry.seccomp_filters.iter().enumerate() {
                let raw = f.filter.as_deref().unwrap_or_default();
                match seccomp::parse_filter(&member, i, raw) {
                    Ok(insns) => ckpt.seccomp_filters.push(seccomp::Filter {
                        insns,
                        prev: f.prev,
                    }),
                    Err(e) => {
                        problems.push(e.to_line());
                        // Keep indexes aligned with the image.
                        ckpt.seccomp_filters.push(seccomp::Filter {
                            insns: Vec::new(),
                            prev: f.prev,
                        });
                    }
                }
            }
        }
    }

    // CRIU writes stats-dump into the image directory; Podman moves it to
    // the top of the archive.
    if let Some(d) = get("stats-dump") {
        ckpt.stats = soft(&mut problems, decode_stats(&member_name("stats-dump"), d)).flatten();
    }
    if let Some(d) = meta.get("stats-dump") {
        ckpt.stats = soft(&mut problems, decode_stats("stats-dump", d)).flatten();
    }
    ckpt.problems = problems;
    Ok(())
}

/// Decodes `stats-dump` (service magic, then one `stats_entry`).
pub fn decode_stats(member: &str, data: &[u8]) -> Result<Option<DumpStats>> {
    let s: proto::StatsEntry = decode_one(member, data, Header::Service(image::STATS_MAGIC))?;
    Ok(s.dump.map(|d| DumpStats {
        freezing_time_us: d.freezing_time.unwrap_or(0),
        frozen_time_us: d.frozen_time.unwrap_or(0),
        memdump_time_us: d.memdump_time.unwrap_or(0),
        memwrite_time_us: d.memwrite_time.unwrap_or(0),
        pages_scanned: d.pages_scanned.unwrap_or(0),
        pages_skipped_parent: d.pages_skipped_parent.unwrap_or(0),
        pages_written: d.pages_written.unwrap_or(0),
        pages_lazy: d.pages_lazy.unwrap_or(0),
    }))
}

fn thread_from_core(tid: u32, core: Option<&proto::CoreEntry>) -> Thread {
    let regs = core
        .and_then(|c| c.thread_info.as_ref())
        .and_then(|t| t.gpregs.as_ref());
    let comm = core
        .and_then(|c| c.thread_core.as_ref())
        .and_then(|t| t.comm.clone())
        .or_else(|| {
            core.and_then(|c| c.tc.as_ref())
                .and_then(|t| t.comm.clone())
        });
    let compat = regs.and_then(|r| r.mode) == Some(2);
    let syscall = regs.and_then(|r| {
        let orig = r.orig_ax? as i64;
        // orig_ax is -1 outside a syscall. 32-bit (compat) tasks use another
        // table; we only name native x86_64 calls.
        if orig < 0 || compat {
            return None;
        }
        let nr = orig as u64;
        let name = syscalls::x86_64::Sysno::new(nr as usize)
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| format!("syscall_{nr}"));
        Some(Syscall {
            nr,
            name,
            ax: r.ax.unwrap_or(0) as i64,
            args: [
                r.di.unwrap_or(0),
                r.si.unwrap_or(0),
                r.dx.unwrap_or(0),
                r.r10.unwrap_or(0),
                r.r8.unwrap_or(0),
                r.r9.unwrap_or(0),
            ],
        })
    });
    Thread {
        tid,
        comm,
        syscall,
        ip: regs.and_then(|r| r.ip),
        sp: regs.and_then(|r| r.sp),
        regs: regs.map(|r| {
            Box::new(Registers {
                user: r.user_regs(),
                fp: core
                    .and_then(|c| c.thread_info.as_ref())
                    .and_then(|t| t.fpregs.clone()),
                compat,
            })
        }),
    }
}

fn decode_memory<'a>(
    pid: u32,
    get: &impl Fn(&str) -> Option<&'a [u8]>,
    files: &BTreeMap<u32, proto::FileEntry>,
    problems: &mut Vec<String>,
) -> Option<Memory> {
    let mm_name = format!("mm-{pid}.img");
    let mm = soft(
        problems,
        decode_one::<proto::MmEntry>(
            &member_name(&mm_name),
            get(&mm_name)?,
            Header::Common(image::MM_MAGIC),
        ),
    )?;
    let vmas = mm
        .vmas
        .iter()
        .map(|v| {
            let status = v.status.unwrap_or(0);
            let (start, end) = (v.start.unwrap_or(0), v.end.unwrap_or(0));
            let mut what = vma_label(status, v.shmid.unwrap_or(0), files);
            // CRIU does not always flag the main stack (VMA_AREA_STACK): it
            // is the private anonymous mapping that holds mm_start_stack.
            let start_stack = mm.mm_start_stack.unwrap_or(0);
            if what == "anon" && start <= start_stack && start_stack < end {
                what = "[stack]".into();
            }
            let file = (status & (1 << 6 | 1 << 7) != 0)
                .then(|| {
                    u32::try_from(v.shmid.unwrap_or(0))
                        .ok()
                        .and_then(|id| files.get(&id))
                        .and_then(|f| f.reg.as_ref())
                        .and_then(|r| r.name.clone())
                })
                .flatten();
            Vma {
                start,
                end,
                prot: v.prot.unwrap_or(0),
                status,
                what,
                pgoff: v.pgoff.unwrap_or(0),
                flags: v.flags.unwrap_or(0),
                file,
            }
        })
        .collect();
    let mut memory = Memory {
        arg: (mm.mm_arg_start.unwrap_or(0), mm.mm_arg_end.unwrap_or(0)),
        env: (mm.mm_env_start.unwrap_or(0), mm.mm_env_end.unwrap_or(0)),
        auxv: mm.mm_saved_auxv.clone(),
        vmas,
        pages_id: 0,
        runs: Vec::new(),
    };
    let pm_name = format!("pagemap-{pid}.img");
    if let Some(data) = get(&pm_name) {
        let member = member_name(&pm_name);
        let parsed = (|| -> Result<(u32, Vec<proto::PagemapEntry>)> {
            let mut img = image::Image::open(&member, data, Header::Common(image::PAGEMAP_MAGIC))?;
            let head: proto::PagemapHead = img.first()?;
            Ok((head.pages_id.unwrap_or(0), img.all()?))
        })();
        if let Some((pages_id, entries)) = soft(problems, parsed) {
            memory.pages_id = pages_id;
            let mut offset = 0u64;
            for e in entries {
                let flags = e.flags.unwrap_or(0);
                let in_parent = e.in_parent.unwrap_or(false) || flags & 1 != 0;
                // Old images have no flags: data present unless in the parent.
                let present = if e.flags.is_some() {
                    flags & 4 != 0
                } else {
                    !in_parent
                };
                let nr = e.nr_pages.unwrap_or(0) as u64;
                if present && !in_parent {
                    memory.runs.push(PageRun {
                        vaddr: e.vaddr.unwrap_or(0),
                        nr_pages: nr,
                        offset,
                    });
                    offset = offset.saturating_add(nr.saturating_mul(memory::PAGE_SIZE));
                }
            }
        }
    }
    Some(memory)
}

fn vma_label(status: u32, shmid: u64, files: &BTreeMap<u32, proto::FileEntry>) -> String {
    if status & (1 << 5) != 0 {
        "[heap]".into()
    } else if status & (1 << 1) != 0 {
        "[stack]".into()
    } else if status & (1 << 3) != 0 {
        "[vdso]".into()
    } else if status & (1 << 12) != 0 {
        "[vvar]".into()
    } else if status & (1 << 2) != 0 {
        "[vsyscall]".into()
    } else if status & (1 << 6 | 1 << 7) != 0 {
        u32::try_from(shmid)
            .ok()
            .and_then(|id| files.get(&id))
            .and_then(|f| f.reg.as_ref())
            .and_then(|r| r.name.clone())
            .unwrap_or_else(|| format!("file #{shmid}"))
    } else if status & (1 << 8) != 0 {
        "anon shared".into()
    } else {
        "anon".into()
    }
}

fn fd_type_name(t: i32) -> &'static str {
    match t {
        1 => "reg",
        2 => "pipe",
        3 => "fifo",
        4 => "inet",
        5 => "unix",
        6 => "eventfd",
        7 => "eventpoll",
        8 => "inotify",
        9 => "signalfd",
        10 => "packet",
        11 => "tty",
        12 => "fanotify",
        13 => "netlink",
        14 => "ns",
        15 => "tun",
        16 => "ext",
        17 => "timerfd",
        18 => "memfd",
        _ => "unknown",
    }
}

fn sock_type(t: u32) -> &'static str {
    match t {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        5 => "seqpacket",
        _ => "other",
    }
}

/// Socket states as CRIU records them (the kernel's `TCP_*` numbering,
/// which sock_diag also uses for unix sockets).
fn sock_state(s: u32) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// Formats CRIU's address words (network byte order in memory) with a port.
fn inet_addr(family: u32, words: &[u32], port: u32) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let ip = match (family, bytes.len()) {
        (2, 4..) => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        (10, 16..) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[..16]);
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        _ if family == 10 => "[::]".to_string(),
        _ => "0.0.0.0".to_string(),
    };
    format!("{ip}:{port}")
}

/// Turns a `files.img` entry into what the report shows.
pub fn file_kind(f: &proto::FileEntry) -> FileKind {
    let id = f.id.unwrap_or(0);
    if let Some(r) = &f.reg {
        return FileKind::Reg {
            path: r.name.clone().unwrap_or_default(),
            pos: r.pos.unwrap_or(0),
            size: r.size,
            flags: r.flags.unwrap_or(0),
        };
    }
    if let Some(p) = &f.pipe {
        return FileKind::Pipe {
            pipe_id: p.pipe_id.unwrap_or(0),
        };
    }
    if let Some(u) = &f.usk {
        let raw = u.name.clone().unwrap_or_default();
        let mut path = if raw.first() == Some(&0) {
            // Abstract namespace: conventionally shown with a leading '@'.
            format!(
                "@{}",
                String::from_utf8_lossy(&raw[1..]).trim_end_matches('\0')
            )
        } else {
            String::from_utf8_lossy(&raw)
                .trim_end_matches('\0')
                .to_string()
        };
        if let Some(dir) = &u.name_dir {
            if !path.starts_with('/') && !path.starts_with('@') && !path.is_empty() {
                path = format!("{}/{}", dir.trim_end_matches('/'), path);
            }
        }
        return FileKind::Unix {
            ino: u.ino.unwrap_or(0),
            path,
            r#type: sock_type(u.r#type.unwrap_or(0)).to_string(),
            state: sock_state(u.state.unwrap_or(0)).to_string(),
            peer: u.peer.unwrap_or(0),
        };
    }
    if let Some(s) = &f.isk {
        let family = s.family.unwrap_or(0);
        return FileKind::Inet {
            ino: s.ino.unwrap_or(0),
            family: match family {
                2 => "ipv4".into(),
                10 => "ipv6".into(),
                other => format!("af{other}"),
            },
            proto: match s.proto.unwrap_or(0) {
                6 => "tcp".into(),
                17 => "udp".into(),
                136 => "udplite".into(),
                other => format!("proto{other}"),
            },
            r#type: sock_type(s.r#type.unwrap_or(0)).to_string(),
            state: sock_state(s.state.unwrap_or(0)).to_string(),
            src: inet_addr(family, &s.src_addr, s.src_port.unwrap_or(0)),
            dst: inet_addr(family, &s.dst_addr, s.dst_port.unwrap_or(0)),
        };
    }
    FileKind::Other {
        r#type: fd_type_name(f.r#type.unwrap_or(0)).to_string(),
        id,
    }
}

fn parse_json(member: &str, data: &[u8]) -> Result<Value> {
    serde_json::from_slice(data).map_err(|source| Error::Json {
        member: member.to_string(),
        source,
    })
}

fn str_at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

fn decode_metadata(
    ckpt: &mut Checkpoint,
    meta: &BTreeMap<String, Vec<u8>>,
    inventory_mtime: Option<u64>,
) {
    let mut problems = std::mem::take(&mut ckpt.problems);
    let mut md = Metadata::default();
    let json = |problems: &mut Vec<String>, name: &str| -> Option<Value> {
        meta.get(name)
            .and_then(|d| soft(problems, parse_json(name, d)))
    };

    if let Some(cfg) = json(&mut problems, "config.dump") {
        md.id = str_at(&cfg, &["id", "ID"]).map(str::to_string);
        md.name = str_at(&cfg, &["name", "Name"]).map(str::to_string);
        md.image = str_at(&cfg, &["rootfsImageName", "rootfsImage", "RootfsImageName"])
            .map(str::to_string);
        md.image_ref = str_at(&cfg, &["rootfsImageRef", "rootfsImageID", "RootfsImageRef"])
            .map(str::to_string);
        md.runtime = str_at(&cfg, &["runtime", "OCIRuntime"]).map(str::to_string);
        md.created = str_at(&cfg, &["createdTime", "CreatedTime"]).map(str::to_string);
        md.checkpointed = str_at(&cfg, &["checkpointedTime", "CheckpointedAt"]).map(str::to_string);
    }
    if let Some(spec) = json(&mut problems, "spec.dump") {
        if let Some(ann) = spec.get("annotations").and_then(Value::as_object) {
            md.annotations = ann
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect();
        }
        if let Some(args) = spec.pointer("/process/args").and_then(Value::as_array) {
            md.command = args
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
        }
        if let Some(mounts) = spec.get("mounts").and_then(Value::as_array) {
            ckpt.mounts = mounts
                .iter()
                .map(|m| Mount {
                    destination: str_at(m, &["destination"]).unwrap_or_default().to_string(),
                    r#type: str_at(m, &["type"]).unwrap_or_default().to_string(),
                    source: str_at(m, &["source"]).unwrap_or_default().to_string(),
                    options: string_list(m.get("options")),
                })
                .collect();
        }
    }
    let ann = |k: &str| md.annotations.get(k).cloned();
    md.pod_name = ann("io.kubernetes.pod.name");
    md.pod_namespace = ann("io.kubernetes.pod.namespace");
    md.container_name = ann("io.kubernetes.container.name").or_else(|| md.name.clone());
    md.engine = match ann("io.container.manager").as_deref() {
        Some("libpod") => Some("Podman".to_string()),
        Some("cri-o") => Some("CRI-O".to_string()),
        Some(other) => Some(other.to_string()),
        // Kubelet/CRI-O archives carry these, Podman exports do not.
        None if ckpt.members.contains_key("bind.mounts") => Some("CRI-O".to_string()),
        None => None,
    };
    if md.checkpointed.is_none() {
        md.checkpointed = inventory_mtime.map(rfc3339);
    }
    if let Some(net) = json(&mut problems, "network.status") {
        let mut ips = Vec::new();
        collect_ips(&net, &mut ips);
        ips.dedup();
        md.ips = ips;
    }
    if let Some(b) = json(&mut problems, "bind.mounts") {
        if let Some(list) = b.as_array() {
            ckpt.bind_mounts = list
                .iter()
                .map(|m| BindMount {
                    destination: str_at(m, &["destination", "Destination"])
                        .unwrap_or_default()
                        .to_string(),
                    source: str_at(m, &["source", "Source"])
                        .unwrap_or_default()
                        .to_string(),
                    options: string_list(m.get("options").or_else(|| m.get("Options"))),
                })
                .collect();
        }
    }
    if let Some(d) = json(&mut problems, "deleted.files") {
        ckpt.deleted_files = string_list(Some(&d));
    }
    ckpt.metadata = md;
    ckpt.problems = problems;
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Finds IP addresses in `network.status`, whatever its shape (Podman 4's
/// `{"podman":{"interfaces":{..."subnets":[{"ipnet"}]}}}` or a list of CNI
/// results with `ips[].address`).
fn collect_ips(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if matches!(k.as_str(), "ipnet" | "address") {
                    if let Some(s) = val.as_str() {
                        let ip = s.split('/').next().unwrap_or(s);
                        if ip.parse::<std::net::IpAddr>().is_ok() {
                            out.push(ip.to_string());
                        }
                    }
                } else {
                    collect_ips(val, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_ips(x, out)),
        _ => {}
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One checkpoint found by [`list`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub path: PathBuf,
    pub size: u64,
    pub modified: Option<String>,
    /// Decoded summary, or the one-line error that stopped it.
    pub checkpoint: std::result::Result<Box<Checkpoint>, String>,
}

/// Lists checkpoint archives (and extracted checkpoint directories) in
/// `dir`, decoding each one's metadata. Unreadable ones are listed with
/// their error instead of failing the whole listing.
pub fn list(dir: &Path) -> Result<Vec<Listed>> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::List {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let is_archive = meta.is_file()
            && [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"]
                .iter()
                .any(|s| name.ends_with(s));
        let is_dir = meta.is_dir() && p.join("checkpoint/inventory.img").is_file();
        if !is_archive && !is_dir {
            continue;
        }
        let checkpoint = load(&p, &LoadOptions::default())
            .map(Box::new)
            .map_err(|e| e.to_line());
        out.push(Listed {
            size: if is_dir {
                checkpoint.as_ref().map(|c| c.archive_size).unwrap_or(0)
            } else {
                meta.len()
            },
            modified: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| rfc3339(d.as_secs())),
            path: p,
            checkpoint,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn inet_addresses() {
        // 10.88.0.7 as CRIU stores it: the in_addr bytes read as a native u32.
        let w = u32::from_le_bytes([10, 88, 0, 7]);
        assert_eq!(inet_addr(2, &[w], 80), "10.88.0.7:80");
        assert_eq!(
            inet_addr(10, &[0, 0, 0, u32::from_le_bytes([0, 0, 0, 1])], 443),
            "[::1]:443"
        );
        assert_eq!(inet_addr(2, &[], 0), "0.0.0.0:0");
    }

    #[test]
    fn ips_from_both_network_status_shapes() {
        let podman: Value = serde_json::from_str(
            r#"{"podman":{"interfaces":{"eth0":{"subnets":[{"ipnet":"10.88.0.7/16","gateway":"10.88.0.1"}]}}}}"#,
        )
        .unwrap();
        let cni: Value = serde_json::from_str(r#"[{"ips":[{"address":"10.1.2.3/24"}]}]"#).unwrap();
        let mut ips = Vec::new();
        collect_ips(&podman, &mut ips);
        collect_ips(&cni, &mut ips);
        assert_eq!(ips, vec!["10.88.0.7", "10.1.2.3"]);
    }
}

/// The seccomp verdict of one filter chain and the processes under it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeccompChain {
    /// Index of the newest filter of each identical chain in `seccomp.img`
    /// (CRIU often stores one copy per process).
    pub last_filters: Vec<u32>,
    pub pids: Vec<u32>,
    #[serde(flatten)]
    pub verdict: seccomp::Verdict,
}

/// Evaluates the filter chain of every process that runs under seccomp
/// filter mode, once per distinct chain content.
pub fn seccomp_chains(ckpt: &Checkpoint) -> Vec<SeccompChain> {
    type Key = Vec<Vec<seccomp::Insn>>;
    let mut groups: BTreeMap<Key, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
    for p in ckpt.processes.values() {
        if let (2, Some(last)) = (p.seccomp_mode, p.seccomp_filter) {
            let key: Key = seccomp::chain(&ckpt.seccomp_filters, last)
                .iter()
                .filter_map(|&i| {
                    ckpt.seccomp_filters
                        .get(i as usize)
                        .map(|f| f.insns.clone())
                })
                .collect();
            let g = groups.entry(key).or_default();
            if !g.0.contains(&last) {
                g.0.push(last);
            }
            g.1.push(p.pid);
        }
    }
    let mut out: Vec<SeccompChain> = groups
        .into_values()
        .map(|(lasts, pids)| SeccompChain {
            verdict: seccomp::evaluate(&ckpt.seccomp_filters, lasts.first().copied().unwrap_or(0)),
            last_filters: lasts,
            pids,
        })
        .collect();
    out.sort_by_key(|c| c.pids.first().copied());
    out
}
