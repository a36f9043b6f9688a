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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tfs = TraceFs::locate_or_mount()?;
    let report = lifecycle::gc(&tfs, &StateDir::new(&args.state_dir))?;
    for name in &report.removed {
        tracing::warn!(instance = %name, "removed stale instance");
    }
    eprintln!("gc: removed {}, kept {} (container still running)", report.removed.len(), report.kept.len());
    Ok(ExitCode::SUCCESS)
}
