//! `collector export`: a profile in the form Kubernetes or a runtime takes:
//! a kubelet `Localhost` file, an SPO `SeccompProfile` resource, or the
//! OCI `linux.seccomp` object.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use collector::catalog;
use collector::container::{StateDir, DEFAULT_STATE_DIR};
use collector::profile::export;
use oci_spec::runtime::LinuxSeccomp;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Target {
    /// DIR/NAME.json for the kubelet, and the Pod securityContext for it.
    Kubelet,
    /// A Security Profiles Operator SeccompProfile (YAML).
    Spo,
    /// The runtime-spec linux.seccomp object (JSON).
    Oci,
}

#[derive(clap::Args)]
pub struct Args {
    /// Container id, unique prefix, or profile file.
    #[arg(value_name = "ID|FILE")]
    input: String,
    #[arg(long, value_enum)]
    format: Target,
    /// The profile's name: a path under --root for kubelet (e.g.
    /// profiles/web), the object name for spo. Default: the run's name,
    /// else the short container id, else the file's stem.
    #[arg(long)]
    name: Option<String>,
    /// The kubelet's seccomp root.
    #[arg(long, value_name = "DIR", default_value = export::DEFAULT_KUBELET_ROOT)]
    root: PathBuf,
    /// The SeccompProfile's namespace (spo).
    #[arg(long)]
    namespace: Option<String>,
    /// The hook's state directory.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Print JSON (kubelet: the path and the securityContext; spo: the
    /// resource as JSON; oci: the object, as always).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = StateDir::new(&args.state_dir);
    let loaded = catalog::load(&dir, &args.input)?;
    let profile: LinuxSeccomp = serde_json::from_slice(&loaded.bytes)
        .with_context(|| format!("{} is not in the OCI seccomp form", loaded.path.display()))?;
    let name = args.name.clone().or_else(|| loaded.name.clone()).unwrap_or_else(|| default_name(&loaded));
    let mut out = collector::report::escape::stdout();
    use std::io::Write;
    match args.format {
        Target::Kubelet => {
            let relative = export::kubelet_path(&name)?;
            let path = args.root.join(&relative);
            catalog::write_file(&path, &loaded.bytes)?;
            if args.json {
                let mut value = export::kubelet_security_context(&relative);
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("path".into(), serde_json::Value::String(path.display().to_string()));
                }
                serde_json::to_writer_pretty(&mut out, &value)?;
                writeln!(out)?;
            } else {
                eprintln!("wrote {}", path.display());
                out.write_all(export::kubelet_snippet(&relative)?.as_bytes())?;
            }
        }
        Target::Spo => {
            let mut annotations = BTreeMap::new();
            if let Some(id) = &loaded.id {
                annotations.insert("oci-ftrace-syscall-analyzer/container-id".to_string(), id.clone());
            }
            let resource = export::spo_resource(&profile, &name, args.namespace.as_deref(), annotations)?;
            if args.json {
                serde_json::to_writer_pretty(&mut out, &resource)?;
                writeln!(out)?;
            } else {
                out.write_all(export::spo_yaml(&resource)?.as_bytes())?;
            }
        }
        Target::Oci => out.write_all(export::oci_json(&profile)?.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn default_name(loaded: &catalog::Loaded) -> String {
    if let Some(id) = &loaded.id {
        return id.chars().take(12).collect();
    }
    loaded.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "profile".into())
}
