//! `collector checkpoint {files,maps,diff,coredump}`: the forensics
//! subcommands. Turns raw arguments into settings, calls the `checkpoint`
//! library and hands results to `report::forensics`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use collector::checkpoint::{self, coredump, files, maps, LoadOptions};
use collector::report::forensics as render;

use crate::checkpoint::{table_style, TableFormat};

#[derive(Subcommand)]
pub enum Command {
    /// Files the container changed (rootfs-diff.tar) and deleted
    /// (deleted.files); with PATH, that changed file's contents on stdout
    /// (control characters escaped when stdout is a terminal).
    Files {
        archive: PathBuf,
        /// A changed file, as the container saw it (e.g. /data/x).
        path: Option<String>,
        /// Copy at most this many bytes of the file.
        #[arg(long, default_value_t = files::CONTENT_LIMIT)]
        max_bytes: u64,
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// What changed from checkpoint A to checkpoint B of one container:
    /// processes, descriptors and sockets, mappings and dumped memory, files,
    /// hostname.
    Diff {
        a: PathBuf,
        b: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// One ELF core file per process (core.PID in DIR) that gdb loads:
    /// registers, command line, auxv, file mappings and the dumped memory.
    Coredump {
        archive: PathBuf,
        /// Only this process (PID in the container's namespace).
        #[arg(long)]
        pid: Option<u32>,
        /// Directory for the core files (created if missing).
        #[arg(short = 'o', long = "output")]
        out_dir: PathBuf,
        /// The container's root file system: file-backed pages that were not
        /// dumped are read from there (resolved inside it).
        #[arg(long)]
        rootfs: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// The memory mappings of one process with protection, kind, file and
    /// dumped pages (crit's `x mems` and `x rss`).
    Maps {
        archive: PathBuf,
        /// PID in the container's namespace.
        #[arg(long)]
        pid: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
}

/// Most bytes of a file put into JSON (it is held in memory there).
const JSON_CONTENT_LIMIT: u64 = 16 << 20;

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let mut out = collector::report::escape::stdout();
    match cmd {
        Command::Files {
            archive,
            path,
            max_bytes,
            format,
        } => {
            let ckpt = checkpoint::load(&archive, &LoadOptions::default())?;
            let Some(want) = path else {
                render::write_files(&mut out, &ckpt, table_style(format))?;
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            };
            match format {
                TableFormat::Json => {
                    let mut buf = Vec::new();
                    let found = files::cat(
                        &archive,
                        &want,
                        max_bytes.min(JSON_CONTENT_LIMIT),
                        &ckpt.deleted_files,
                        &mut buf,
                    )?;
                    let text = String::from_utf8(buf);
                    let j = serde_json::json!({
                        "path": format!("/{}", found.path),
                        "size": found.size,
                        "written": found.written,
                        "utf8": text.is_ok(),
                        "content": match &text {
                            Ok(s) => s.clone(),
                            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                        },
                    });
                    serde_json::to_writer_pretty(&mut out, &j)?;
                    writeln!(out)?;
                }
                TableFormat::Table => {
                    let found = if out.raw().is_terminal() {
                        let mut esc = render::Escaping::new(&mut out);
                        files::cat(&archive, &want, max_bytes, &ckpt.deleted_files, &mut esc)?
                    } else {
                        files::cat(&archive, &want, max_bytes, &ckpt.deleted_files, out.raw())?
                    };
                    if found.written < found.size {
                        tracing::warn!(
                            shown = found.written,
                            size = found.size,
                            "output cut at --max-bytes"
                        );
                    }
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { a, b, format } => {
            let opts = LoadOptions { memory: true, ..Default::default() };
            let ca = checkpoint::load(&a, &opts)?;
            let cb = checkpoint::load(&b, &opts)?;
            let d = checkpoint::diff::diff(&ca, &cb);
            render::write_diff(&mut out, &d, table_style(format))?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Coredump {
            archive,
            pid,
            out_dir,
            rootfs,
            format,
        } => {
            let ckpt = checkpoint::load(&archive, &LoadOptions { memory: true, ..Default::default() })?;
            let opts = coredump::Options { pid, out_dir, rootfs };
            let cores = coredump::write_cores(&ckpt, &opts)
                .with_context(|| format!("core files from {}", archive.display()))?;
            render::write_cores(&mut out, &cores, table_style(format))?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Maps {
            archive,
            pid,
            format,
        } => {
            let ckpt = checkpoint::load(&archive, &LoadOptions::default())?;
            let m = maps::maps(&ckpt, pid)
                .with_context(|| format!("maps of {}", archive.display()))?;
            render::write_maps(&mut out, &m, table_style(format))?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
