//! `collector checkpoint {show,inspect,memsearch,list}` (and, from
//! `forensics`, `files`, `maps`, `diff`, `coredump`): read Kubernetes,
//! CRI-O and Podman checkpoint archives. Turns the raw arguments into
//! settings, calls the `checkpoint` library and hands the result to
//! `report::checkpoint` for printing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use collector::checkpoint::maps::{MapFilter, MapSel};
use collector::checkpoint::{self, memory, LoadOptions};
use collector::report::checkpoint::{self as render, Sections, Style};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum TreeFormat {
    Tree,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum TableFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// One table row per archive: container, image, id, runtime, created,
    /// engine, IP, checkpoint size, rootfs diff size.
    Show {
        #[arg(required = true)]
        archives: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// The contents of one archive as a tree (or JSON).
    Inspect {
        archive: PathBuf,
        /// Process tree with PIDs in the container's namespace, state and
        /// the syscall each task sits in.
        #[arg(long)]
        ps_tree: bool,
        /// Command lines, read from the dumped memory.
        #[arg(long)]
        cmdline: bool,
        /// Environments, read from the dumped memory.
        #[arg(long)]
        env: bool,
        /// Open files (and cwd, root) per process.
        #[arg(long)]
        files: bool,
        /// Unix and inet sockets per process.
        #[arg(long)]
        sockets: bool,
        /// Mounts from the OCI spec and bind.mounts.
        #[arg(long)]
        mounts: bool,
        /// CRIU dump statistics (stats-dump).
        #[arg(long)]
        stats: bool,
        /// Container metadata and annotations.
        #[arg(long)]
        metadata: bool,
        /// Files changed (rootfs-diff.tar) and deleted (deleted.files).
        #[arg(long)]
        rootfs_diff: bool,
        /// Syscalls the seccomp filter allows (x86_64), by evaluating it.
        #[arg(long)]
        seccomp: bool,
        /// Everything above.
        #[arg(long)]
        all: bool,
        /// Only this process (PID in the container's namespace).
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, value_enum, default_value = "tree")]
        format: TreeFormat,
    },
    /// Search a process's dumped memory for a string or a regex.
    Memsearch {
        archive: PathBuf,
        /// PID in the container's namespace.
        #[arg(long)]
        pid: u32,
        /// Literal text to find.
        #[arg(long, conflicts_with = "regex")]
        string: Option<String>,
        /// Regular expression (bytes, Rust regex syntax).
        #[arg(long)]
        regex: Option<String>,
        /// Bytes of context shown around each match.
        #[arg(long, default_value_t = 32)]
        context: usize,
        /// Search only these mappings: heap, stack, anon, file, or a file's
        /// absolute path.
        #[arg(long)]
        map: Option<String>,
        /// Search only mappings with these permissions (e.g. rw, x).
        #[arg(long)]
        perm: Option<String>,
        /// Search only START-END (hex addresses, end excluded).
        #[arg(long)]
        range: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    #[command(flatten)]
    Forensics(crate::forensics::Command),
    /// Checkpoint archives in a directory.
    List {
        #[arg(default_value = checkpoint::KUBELET_CHECKPOINTS)]
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
}

pub(crate) fn table_style(f: TableFormat) -> Style {
    match f {
        TableFormat::Table => Style::Text,
        TableFormat::Json => Style::Json,
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut out = collector::report::escape::stdout();
    match args.command {
        Command::Show { archives, format } => {
            let mut loaded = Vec::new();
            let mut failed = 0;
            for a in &archives {
                match checkpoint::load(a, &LoadOptions::default()) {
                    Ok(c) => loaded.push(c),
                    Err(e) => {
                        eprintln!("collector: {}", crate::one_line(&format!("{:#}", anyhow::Error::new(e))));
                        failed += 1;
                    }
                }
            }
            if !loaded.is_empty() {
                render::write_show(&mut out, &loaded, table_style(format))?;
            }
            out.flush()?;
            Ok(if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Inspect {
            archive,
            ps_tree,
            cmdline,
            env,
            files,
            sockets,
            mounts,
            stats,
            metadata,
            rootfs_diff,
            seccomp,
            all,
            pid,
            format,
        } => {
            let s = Sections {
                ps_tree: ps_tree || all,
                cmdline: cmdline || all,
                env: env || all,
                files: files || all,
                sockets: sockets || all,
                mounts: mounts || all,
                stats: stats || all,
                metadata: metadata || all,
                rootfs_diff: rootfs_diff || all,
                seccomp: seccomp || all,
                pid,
            };
            // Like checkpointctl: with no section flag, show the tree.
            let s = if !(s.ps_tree
                || s.cmdline
                || s.env
                || s.files
                || s.sockets
                || s.mounts
                || s.stats
                || s.metadata
                || s.rootfs_diff
                || s.seccomp)
            {
                Sections { ps_tree: true, ..s }
            } else {
                s
            };
            let opts = LoadOptions {
                memory: s.cmdline || s.env,
                ..Default::default()
            };
            let ckpt = checkpoint::load(&archive, &opts)?;
            if let Some(pid) = pid {
                if !ckpt.processes.contains_key(&pid) {
                    let known: Vec<String> = ckpt.processes.keys().map(u32::to_string).collect();
                    bail!(
                        "no process with PID {pid} in {} (PIDs: {})",
                        archive.display(),
                        known.join(", ")
                    );
                }
            }
            let chains = s.seccomp.then(|| checkpoint::seccomp_chains(&ckpt));
            let style = match format {
                TreeFormat::Tree => Style::Text,
                TreeFormat::Json => Style::Json,
            };
            render::write_inspect(&mut out, &ckpt, &s, chains.as_deref(), style)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Memsearch {
            archive,
            pid,
            string,
            regex,
            context,
            map,
            perm,
            range,
            format,
        } => {
            let filter = MapFilter {
                map: map.as_deref().map(MapSel::parse).transpose()?,
                perm: perm.as_deref().map(MapFilter::parse_perm).transpose()?,
                range: range.as_deref().map(MapFilter::parse_range).transpose()?,
            };
            let (pattern, shown) = match (string, regex) {
                (Some(s), None) => (memory::Pattern::Literal(s.clone()), s),
                (None, Some(r)) => (memory::Pattern::Regex(r.clone()), r),
                _ => bail!("memsearch needs what to look for: --string TEXT or --regex PATTERN"),
            };
            let ckpt = checkpoint::load(&archive, &LoadOptions::default())?;
            let matches = memory::search(&ckpt, pid, &pattern, context, &filter)
                .with_context(|| format!("searching PID {pid} in {}", archive.display()))?;
            render::write_matches(&mut out, pid, &shown, &matches, table_style(format))?;
            out.flush()?;
            Ok(if matches.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Forensics(cmd) => crate::forensics::run(cmd),
        Command::List { dir, format } => {
            let items = checkpoint::list(&dir)?;
            render::write_list(&mut out, &dir, &items, table_style(format))?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
