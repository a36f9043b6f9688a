//! `collector record <id>`: the live recorder the prestart hook starts for
//! each traced container. Not meant to be run by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use collector::container::{validate_id, StateDir, DEFAULT_STATE_DIR};
use collector::lifecycle;

#[derive(clap::Args)]
pub struct Args {
    /// Container id (its state.json must exist).
    id: String,
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// File descriptor to write "ready" to once streaming.
    #[arg(long)]
    ready_fd: Option<i32>,
    /// File descriptor to wait on for "go" (the instance is armed) before
    /// touching the instance.
    #[arg(long)]
    go_fd: Option<i32>,
}

impl Args {
    /// `<state-dir>/recorder.log` (the id may not be valid yet).
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("recorder.log")
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    validate_id(&args.id)?;
    let summary = lifecycle::record(&StateDir::new(&args.state_dir), &args.id, args.ready_fd, args.go_fd)?;
    tracing::info!(id = %summary.id, complete = summary.complete, "recording finished");
    Ok(ExitCode::SUCCESS)
}
