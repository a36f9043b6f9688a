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
    /// Wait this many seconds first (a recorder that released its slot
    /// itself starts one to tear it down once its linger time is over).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    after: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(secs) = args.after {
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
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
    let mut line = outcome(report.removed.len(), report.kept.len());
    if report.released.len() + report.reaped.len() > 0 {
        line.push_str(&format!("; slots released {}, torn down {}", report.released.len(), report.reaped.len()));
    }
    eprintln!("gc: {line}");
    Ok(ExitCode::SUCCESS)
}

/// The one line gc prints: what it removed, and what it kept only when it
/// kept something.
fn outcome(removed: usize, kept: usize) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    match (removed, kept) {
        (0, 0) => "no stale trace instances".to_string(),
        (r, 0) => format!("removed {r} stale trace instance{}", plural(r)),
        (r, k) => format!(
            "removed {r} stale trace instance{}; kept {k} whose container or recorder still runs",
            plural(r)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::outcome;

    #[test]
    fn says_kept_only_when_something_was_kept() {
        assert_eq!(outcome(0, 0), "no stale trace instances");
        assert_eq!(outcome(2, 0), "removed 2 stale trace instances");
        assert_eq!(outcome(1, 3), "removed 1 stale trace instance; kept 3 whose container or recorder still runs");
        assert!(!outcome(0, 0).contains("kept 0"));
    }
}
