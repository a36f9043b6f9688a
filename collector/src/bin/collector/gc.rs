//! `collector gc`: remove our trace instances whose container is gone.

use std::path::PathBuf;
use std::process::ExitCode;

use collector::container::{StateDir, DEFAULT_STATE_DIR};
use collector::lifecycle;
use collector::tracefs::TraceFs;

#[derive(clap::Args)]
pub struct Args {
    /// The hook's state directory (recordings found there are finished
    /// into profiles before their instance is removed).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Also tear down every free trace slot now, instead of after its
    /// linger time (seconds per slot: one grace period per trigger).
    #[arg(long)]
    reap_idle: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tfs = TraceFs::locate_or_mount()?;
    let report = lifecycle::gc(&tfs, &StateDir::new(&args.state_dir), args.reap_idle)?;
    for name in &report.removed {
        tracing::warn!(instance = %name, "removed stale instance");
    }
    for name in &report.released {
        tracing::info!(slot = %name, "released a slot of a gone container");
    }
    for name in &report.reaped {
        tracing::info!(slot = %name, "tore down an idle slot");
    }
    eprintln!(
        "gc: removed {}, kept {} (container still running); slots released {}, torn down {}",
        report.removed.len(),
        report.kept.len(),
        report.released.len(),
        report.reaped.len()
    );
    Ok(ExitCode::SUCCESS)
}
