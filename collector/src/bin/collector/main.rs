//! `collector`: the command-line face of the library. One file per
//! subcommand; each turns raw arguments into settings and calls the library.

mod checkpoint;
mod diff;
mod export;
mod forensics;
mod gc;
mod install;
mod list;
mod merge;
mod record;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "collector", version, about = "Seccomp profiles from ftrace, and CRIU checkpoint forensics")]
struct Cli {
    /// Log filter (tracing-subscriber EnvFilter syntax); RUST_LOG also works.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a traced container did and where its profile is.
    Report(report::Args),
    /// List every recording in the state dir.
    List(list::Args),
    /// Merge several recordings of a workload into one profile.
    Merge(merge::Args),
    /// Compare two profiles, or a profile with a runtime's default.
    Diff(diff::Args),
    /// Write a profile for the kubelet, as an SPO resource, or as OCI JSON.
    Export(export::Args),
    /// Remove trace instances whose container is gone.
    Gc(gc::Args),
    /// Write the oci-hooks(5) files for an installed hook binary.
    InstallHooks(install::Args),
    /// The live recorder of one container (started by the prestart hook).
    #[command(hide = true)]
    Record(record::Args),
    /// Read Kubernetes / CRI-O / Podman checkpoint archives.
    Checkpoint(checkpoint::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The recorder has no stderr (it is detached): it logs beside its
    // container's files.
    let log_file = match &cli.command {
        Command::Record(args) => Some(args.log_file()),
        _ => None,
    };
    init_logging(&cli.log, log_file);
    let result = match cli.command {
        Command::Report(args) => report::run(args),
        Command::List(args) => list::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Export(args) => export::run(args),
        Command::Gc(args) => gc::run(args),
        Command::InstallHooks(args) => install::run(args),
        Command::Record(args) => record::run(args),
        Command::Checkpoint(args) => checkpoint::run(args),
    };
    match result {
        Ok(code) => code,
        // `collector … | head`: the reader is gone; nothing to report.
        Err(err) if broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("collector: {}", one_line(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}

fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Errors may quote input (a tar header, a JSON fragment): keep them to one
/// short line, with control characters escaped.
pub fn one_line(msg: &str) -> String {
    const MAX: usize = 400;
    let mut out: String = msg.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
    if out.chars().count() > MAX {
        out = out.chars().take(MAX).collect::<String>() + "…";
    }
    out
}

fn init_logging(filter: &str, file: Option<std::path::PathBuf>) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let builder = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter));
    let opened = file.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
    let _ = match opened {
        Some(f) => builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
