//! `collector report <id>`: what a traced container did, and its profile.

use std::path::PathBuf;
use std::process::ExitCode;

use collector::container::store::{STATE_FILE, SUMMARY_FILE};
use collector::container::{Recording, StateDir, Summary, DEFAULT_STATE_DIR};
use collector::report::{print_summary, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Container id, or a unique prefix of one.
    id: String,
    /// The hook's state directory.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = StateDir::new(&args.state_dir);
    let id = dir.resolve(&args.id)?;
    let summary: Summary = match dir.read_json(&id, SUMMARY_FILE) {
        Err(e @ collector::container::store::Error::Read { .. }) => {
            // A container over the cap has a state.json that says why.
            if let Ok(rec) = dir.read_json::<Recording>(&id, STATE_FILE) {
                if let Some(why) = rec.not_traced {
                    anyhow::bail!("container {id} was {why}");
                }
            }
            return Err(anyhow::Error::new(e)
                .context(format!("container {id} has no summary yet (has it stopped, and did poststop run?)")))
        }
        other => other?,
    };
    print_summary(&summary, if args.json { Format::Json } else { Format::Table })?;
    Ok(ExitCode::SUCCESS)
}
