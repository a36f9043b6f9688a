//! `collector`: the command-line face of the library. One file per
//! subcommand; each turns raw arguments into settings and calls the library.

mod checkpoint;
mod gc;
mod install;
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
    /// Remove trace instances whose container is gone.
    Gc(gc::Args),
    /// Write the oci-hooks(5) files for an installed hook binary.
    InstallHooks(install::Args),
    /// Read Kubernetes / CRI-O / Podman checkpoint archives.
    Checkpoint(checkpoint::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let result = match cli.command {
        Command::Report(args) => report::run(args),
        Command::Gc(args) => gc::run(args),
        Command::InstallHooks(args) => install::run(args),
        Command::Checkpoint(args) => checkpoint::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("collector: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}
