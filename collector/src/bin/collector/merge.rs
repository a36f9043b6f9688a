//! `collector merge`: several recordings of one workload into one profile,
//! with how many of them saw each call kept beside it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use collector::catalog;
use collector::container::{StateDir, DEFAULT_STATE_DIR};
use collector::profile::{merge, seccomp};
use collector::report::profiles::{write_merge, MergeReport};
use collector::report::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Container ids (or unique prefixes) and profile files.
    #[arg(value_name = "ID|FILE")]
    inputs: Vec<String>,
    /// Every finished run with this name (annotation
    /// oci-ftrace-syscall-analyzer/name, or io.kubernetes.container.name).
    #[arg(long)]
    name: Option<String>,
    /// Every finished run of this pod (io.kubernetes.pod.name).
    #[arg(long)]
    pod: Option<String>,
    /// Write the profile here (atomically) and the counts beside it as
    /// NAME.merge.json; without it the profile goes to stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Merge inputs whose recording is incomplete (lost events, …).
    #[arg(long)]
    allow_incomplete: bool,
    /// Merge inputs recorded for different architectures.
    #[arg(long)]
    allow_mixed_arch: bool,
    /// The hook's state directory.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Print JSON: with -o, the counts; without, the profile and the counts.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = StateDir::new(&args.state_dir);
    let mut names = args.inputs.clone();
    if args.name.is_some() || args.pod.is_some() {
        names.extend(catalog::select(&dir, args.name.as_deref(), args.pod.as_deref())?);
    }
    if names.is_empty() {
        anyhow::bail!("nothing to merge: name container ids or files, or use --name/--pod");
    }
    names.sort();
    names.dedup();
    // The same profile named twice (by id and by path) counts once.
    let mut inputs = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for n in &names {
        let loaded = catalog::load(&dir, n)?;
        if seen.insert(std::fs::canonicalize(&loaded.path).unwrap_or_else(|_| loaded.path.clone())) {
            inputs.push(loaded.merge_input());
        }
    }
    let opts = merge::Options { allow_incomplete: args.allow_incomplete, allow_mixed_arch: args.allow_mixed_arch };
    let merged = merge::merge(&inputs, opts)?;
    let text = seccomp::to_json(&merged.profile)?;
    let mut out = collector::report::escape::stdout();
    match &args.output {
        Some(path) => {
            catalog::write_file(path, text.as_bytes())?;
            let counts = catalog::merge_info_path(path);
            let mut info = serde_json::to_vec_pretty(&merged.info).context("merge counts to JSON")?;
            info.push(b'\n');
            catalog::write_file(&counts, &info)?;
            let report = MergeReport {
                profile: Some(path.display().to_string()),
                counts: Some(counts.display().to_string()),
                info: &merged.info,
            };
            write_merge(&mut out, &report, if args.json { Format::Json } else { Format::Table })?;
        }
        None if args.json => {
            let value = serde_json::json!({"profile": merged.profile, "merge": merged.info});
            serde_json::to_writer_pretty(&mut out, &value)?;
            use std::io::Write;
            writeln!(out)?;
        }
        None => {
            use std::io::Write;
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
