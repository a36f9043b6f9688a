//! `collector diff`: the calls added and removed between two profiles, or
//! what a profile removes from a runtime's default (`--against`).

use std::path::PathBuf;
use std::process::ExitCode;

use collector::catalog;
use collector::container::{StateDir, DEFAULT_STATE_DIR};
use collector::profile::diff;
use collector::report::profiles::{write_against, write_diff, AgainstReport, DiffReport};
use collector::report::Format;

#[derive(clap::Args)]
pub struct Args {
    /// The profile (container id, unique prefix, or file).
    #[arg(value_name = "A")]
    a: String,
    /// The profile to compare it with.
    #[arg(value_name = "B", required_unless_present = "against", conflicts_with = "against")]
    b: Option<String>,
    /// A runtime's default profile, e.g. /usr/share/containers/seccomp.json
    /// (Podman's and CRI-O's): what A removes from it, and any call A
    /// allows that it denies.
    #[arg(long, value_name = "FILE")]
    against: Option<PathBuf>,
    /// The hook's state directory.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = StateDir::new(&args.state_dir);
    let a = catalog::load(&dir, &args.a)?;
    let format = if args.json { Format::Json } else { Format::Table };
    let mut out = collector::report::escape::stdout();
    if let Some(path) = &args.against {
        // Always a file, even without a '/'.
        let default = catalog::load(&dir, &path_arg(path))?;
        let against = diff::against(&a.profile, &default.profile);
        let report = AgainstReport { profile: a.path.display().to_string(), default: default.path.display().to_string(), against: &against };
        write_against(&mut out, &report, format)?;
    } else if let Some(b) = &args.b {
        let b = catalog::load(&dir, b)?;
        let d = diff::diff(&a.profile, &b.profile);
        let report = DiffReport { a: a.path.display().to_string(), b: b.path.display().to_string(), diff: &d };
        write_diff(&mut out, &report, format)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `path` in a form [`catalog::load`] takes as a file.
fn path_arg(path: &std::path::Path) -> String {
    let s = path.display().to_string();
    if catalog::is_file_arg(&s) { s } else { format!("./{s}") }
}
