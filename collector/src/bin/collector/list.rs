//! `collector list`: every recording in the state dir, one line each.

use std::path::PathBuf;
use std::process::ExitCode;

use collector::catalog;
use collector::container::{StateDir, DEFAULT_STATE_DIR};
use collector::report::profiles::write_list;
use collector::report::Format;

#[derive(clap::Args)]
pub struct Args {
    /// The hook's state directory.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let entries = catalog::list(&StateDir::new(&args.state_dir))?;
    write_list(&mut collector::report::escape::stdout(), &entries, if args.json { Format::Json } else { Format::Table })?;
    Ok(ExitCode::SUCCESS)
}
