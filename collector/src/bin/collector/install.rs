//! `collector install-hooks`: write the oci-hooks(5) files that point at an
//! installed `oci-ftrace-hook`.
//!
//! The shipped `hooks.d/*.json` are the templates; only the hook path and
//! the state dir argument change, and poststop gets the checkpoint roots.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use collector::container::store::write_atomic;
use collector::container::DEFAULT_STATE_DIR;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "oci-ftrace-syscall-analyzer-prestart.json",
        include_str!("../../../../hooks.d/oci-ftrace-syscall-analyzer-prestart.json"),
    ),
    (
        "oci-ftrace-syscall-analyzer-poststop.json",
        include_str!("../../../../hooks.d/oci-ftrace-syscall-analyzer-poststop.json"),
    ),
];

#[derive(clap::Args)]
pub struct Args {
    /// Absolute path of the installed hook binary.
    #[arg(long)]
    hook_path: PathBuf,
    /// Where CRI-O and Podman look for hooks.
    #[arg(long, default_value = "/etc/containers/oci/hooks.d")]
    hooks_dir: PathBuf,
    /// The state directory the hook writes to.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// A directory poststop may search for a container's checkpoint
    /// (repeatable; the checkpoint-dir annotation may name it or a
    /// directory below it). Default: the kubelet's.
    #[arg(long = "checkpoint-root", value_name = "DIR", default_value = collector::checkpoint::KUBELET_CHECKPOINTS)]
    checkpoint_roots: Vec<PathBuf>,
    /// Extra arguments for the hook (e.g. `--buffer-size-kb=16384`).
    #[arg(long = "hook-arg", allow_hyphen_values = true)]
    hook_args: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.hook_path.is_absolute() {
        bail!("--hook-path {} must be absolute (runtimes do not search PATH)", args.hook_path.display());
    }
    std::fs::create_dir_all(&args.hooks_dir)
        .with_context(|| format!("creating {}", args.hooks_dir.display()))?;
    if let Some(bad) = args.checkpoint_roots.iter().find(|r| !r.is_absolute()) {
        bail!("--checkpoint-root {} must be absolute", bad.display());
    }
    for (name, template) in TEMPLATES {
        let mut extra = args.hook_args.clone();
        if name.contains("poststop") {
            extra.extend(args.checkpoint_roots.iter().map(|r| format!("--checkpoint-root={}", r.display())));
        }
        let text = render(template, &args.hook_path, &args.state_dir, &extra)
            .with_context(|| format!("template {name}"))?;
        let dest = args.hooks_dir.join(name);
        write_atomic(&dest, text.as_bytes())?;
        eprintln!("wrote {}", dest.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn render(template: &str, hook: &Path, state_dir: &Path, extra: &[String]) -> anyhow::Result<String> {
    let mut value: serde_json::Value = serde_json::from_str(template)?;
    let hook_obj = value.get_mut("hook").and_then(|h| h.as_object_mut()).context("no \"hook\" object")?;
    hook_obj.insert("path".into(), hook.to_string_lossy().into_owned().into());
    let args = hook_obj.get_mut("args").and_then(|a| a.as_array_mut()).context("no \"hook.args\" array")?;
    // args: [argv0, stage, "--state-dir", DIR]
    let pos = args.iter().position(|a| a == "--state-dir").context("no --state-dir in hook.args")?;
    let slot = args.get_mut(pos + 1).context("--state-dir without a value")?;
    *slot = state_dir.to_string_lossy().into_owned().into();
    args.extend(extra.iter().cloned().map(Into::into));
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_path_state_dir_and_extra_args() {
        for (_, t) in TEMPLATES {
            let out = render(t, Path::new("/opt/h"), Path::new("/s"), &["--fail-closed".into()]).unwrap();
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["hook"]["path"], "/opt/h");
            let args = v["hook"]["args"].as_array().unwrap();
            assert_eq!(args[2], "--state-dir");
            assert_eq!(args[3], "/s");
            assert_eq!(args.last().unwrap(), "--fail-closed");
            assert_eq!(v["when"]["annotations"]["^oci-ftrace-syscall-analyzer/trace$"], "^true$");
        }
    }
}
