//! `collector report <id>`: what a traced container did, and its profile;
//! with `--checkpoint`, joined with a checkpoint of the same container.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use collector::checkpoint::correlate::{correlate, Correlation};
use collector::container::store::{self, STATE_FILE, SUMMARY_FILE};
use collector::container::{Recording, StateDir, Summary, DEFAULT_STATE_DIR};
use collector::lifecycle::CORRELATION_FILE;
use collector::report::correlate::write_correlation;
use collector::report::{write_summary, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Container id, or a unique prefix of one.
    id: String,
    /// The hook's state directory.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// A checkpoint of this container (kubelet/CRI-O tar, Podman export, or
    /// an extracted directory): map its processes to the traced ones and
    /// compare its seccomp filter with the calls used. Without it, the
    /// correlation poststop wrote (if it found a checkpoint) is shown.
    #[arg(long, value_name = "ARCHIVE")]
    checkpoint: Option<PathBuf>,
    /// Print JSON instead of a table (the summary's fields, plus
    /// `correlation` when there is one).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = StateDir::new(&args.state_dir);
    let id = dir.resolve(&args.id)?;
    let summary: Summary = match dir.read_json(&id, SUMMARY_FILE) {
        Err(store::Error::Read { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
            // A container over the cap has a state.json that says why; a
            // corrupt one is reported as such, not as "no summary yet".
            match dir.read_json::<Recording>(&id, STATE_FILE) {
                Ok(Recording { not_traced: Some(why), .. }) => anyhow::bail!("container {id} was {why}"),
                Ok(_) => {}
                Err(e @ store::Error::Read { .. }) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
            anyhow::bail!("container {id} has no summary yet (has it stopped, and did poststop run?)")
        }
        other => other?,
    };
    let correlation: Option<Correlation> = match &args.checkpoint {
        Some(path) => {
            let opts = collector::checkpoint::LoadOptions { memory: true, ..Default::default() };
            let ckpt = collector::checkpoint::load(path, &opts).map_err(|e| anyhow::anyhow!(e.to_line()))?;
            Some(correlate(&summary, &ckpt, path)?)
        }
        None => match dir.read_json(&id, CORRELATION_FILE) {
            Ok(c) => Some(c),
            Err(e) if is_not_found(&e) => None,
            // The summary is still worth showing; say what is wrong.
            Err(e) => {
                tracing::warn!("{e}; the checkpoint correlation is not shown");
                None
            }
        },
    };

    let mut out = collector::report::escape::stdout();
    if args.json {
        let mut value = serde_json::to_value(&summary).context("summary to JSON")?;
        if let (Some(c), Some(obj)) = (&correlation, value.as_object_mut()) {
            obj.insert("correlation".into(), serde_json::to_value(c).context("correlation to JSON")?);
        }
        serde_json::to_writer_pretty(&mut out, &value)?;
        use std::io::Write;
        writeln!(out)?;
    } else {
        write_summary(&mut out, &summary, Format::Table)?;
        if let Some(c) = &correlation {
            use std::io::Write;
            writeln!(out)?;
            write_correlation(&mut out, c, Format::Table)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn is_not_found(e: &store::Error) -> bool {
    matches!(e, store::Error::Read { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
}
