//! The forms Kubernetes and runtimes take a profile in:
//!
//! - **kubelet**: a `Localhost` profile file under the kubelet's seccomp
//!   root (`/var/lib/kubelet/seccomp`), referred to from a Pod's
//!   `securityContext.seccompProfile`;
//! - **spo**: a `SeccompProfile` custom resource of the Security Profiles
//!   Operator (`security-profiles-operator.x-k8s.io/v1beta1`), as YAML;
//! - **oci**: the runtime-spec `linux.seccomp` object, for a bundle's
//!   `config.json`.
//!
//! Everything here is pure: the caller writes the file.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSyscall};
use serde::Serialize;

pub const DEFAULT_KUBELET_ROOT: &str = "/var/lib/kubelet/seccomp";
pub const SPO_API_VERSION: &str = "security-profiles-operator.x-k8s.io/v1beta1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("profile name {0:?} must be a relative path without '.' or '..' components (e.g. profiles/web)")]
    BadName(String),
    #[error("profile name {0:?} has no letters or digits to make a Kubernetes object name from")]
    BadObjectName(String),
    #[error("writing the SeccompProfile as YAML: {0}")]
    Yaml(yaml_serde::Error),
    #[error("writing JSON: {0}")]
    Json(serde_json::Error),
}

/// `NAME` as a path under the kubelet's seccomp root, with `.json` added
/// when missing: `profiles/web` → `profiles/web.json`.
pub fn kubelet_path(name: &str) -> Result<PathBuf, Error> {
    let bad = || Error::BadName(name.to_string());
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(bad());
    }
    let path = Path::new(name);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) || name.ends_with('/') {
        return Err(bad());
    }
    Ok(if name.ends_with(".json") { path.to_path_buf() } else { PathBuf::from(format!("{name}.json")) })
}

/// The Pod `securityContext` that uses a profile at `relative` under the
/// kubelet's seccomp root.
pub fn kubelet_security_context(relative: &Path) -> serde_json::Value {
    serde_json::json!({
        "securityContext": {
            "seccompProfile": {"type": "Localhost", "localhostProfile": relative.to_string_lossy()}
        }
    })
}

/// [`kubelet_security_context`] as the YAML snippet a Pod spec takes.
pub fn kubelet_snippet(relative: &Path) -> Result<String, Error> {
    yaml_serde::to_string(&kubelet_security_context(relative)).map_err(Error::Yaml)
}

/// A Kubernetes object name (DNS-1123 subdomain) made from `name`:
/// lower case, anything else than `[a-z0-9.-]` becomes `-`.
pub fn object_name(name: &str) -> Result<String, Error> {
    let mapped: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
        .collect();
    let trimmed: String = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric()).chars().take(253).collect();
    let trimmed = trimmed.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    if trimmed.is_empty() {
        return Err(Error::BadObjectName(name.to_string()));
    }
    Ok(trimmed)
}

/// The `SeccompProfile` custom resource.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfileResource {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: SpoSpec,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The CRD's spec: the OCI fields it has. It has no `defaultErrnoRet`:
/// `SCMP_ACT_ERRNO` without one returns EPERM, the same as our default.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpoSpec {
    pub default_action: LinuxSeccompAction,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<Arch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<LinuxSyscall>,
}

/// The resource for `profile`, named `name` (made a valid object name).
pub fn spo_resource(
    profile: &LinuxSeccomp,
    name: &str,
    namespace: Option<&str>,
    annotations: BTreeMap<String, String>,
) -> Result<SeccompProfileResource, Error> {
    Ok(SeccompProfileResource {
        api_version: SPO_API_VERSION,
        kind: "SeccompProfile",
        metadata: Metadata { name: object_name(name)?, namespace: namespace.map(String::from), annotations },
        spec: SpoSpec {
            default_action: profile.default_action(),
            architectures: profile.architectures().clone().unwrap_or_default(),
            syscalls: profile.syscalls().clone().unwrap_or_default(),
        },
    })
}

/// The resource as YAML.
pub fn spo_yaml(resource: &SeccompProfileResource) -> Result<String, Error> {
    yaml_serde::to_string(resource).map_err(Error::Yaml)
}

/// The runtime-spec `linux.seccomp` object, pretty JSON.
pub fn oci_json(profile: &LinuxSeccomp) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(profile).map_err(Error::Json)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn profile() -> LinuxSeccomp {
        let names: BTreeSet<String> = ["read", "write", "clone"].into_iter().map(String::from).collect();
        crate::profile::seccomp::build(&names).unwrap()
    }

    #[test]
    fn kubelet_names_stay_under_the_root() {
        assert_eq!(kubelet_path("profiles/web").unwrap(), PathBuf::from("profiles/web.json"));
        assert_eq!(kubelet_path("web.json").unwrap(), PathBuf::from("web.json"));
        for bad in ["", "/etc/x", "../x", "a/../b", "./a", "a/", "a\nb"] {
            assert!(kubelet_path(bad).is_err(), "{bad:?}");
        }
        let snippet = kubelet_snippet(Path::new("profiles/web.json")).unwrap();
        assert!(snippet.contains("type: Localhost"), "{snippet}");
        assert!(snippet.contains("localhostProfile: profiles/web.json"), "{snippet}");
    }

    #[test]
    fn object_names_are_dns_1123() {
        assert_eq!(object_name("Web_Server 1").unwrap(), "web-server-1");
        assert_eq!(object_name("--x--").unwrap(), "x");
        assert!(object_name("__").is_err());
    }

    #[test]
    fn spo_yaml_has_the_crd_required_fields() {
        let r = spo_resource(&profile(), "web", Some("prod"), BTreeMap::new()).unwrap();
        let yaml = spo_yaml(&r).unwrap();
        let v: serde_json::Value = yaml_serde::from_str(&yaml).unwrap();
        assert_eq!(v["apiVersion"], SPO_API_VERSION);
        assert_eq!(v["kind"], "SeccompProfile");
        assert_eq!(v["metadata"]["name"], "web");
        assert_eq!(v["metadata"]["namespace"], "prod");
        assert_eq!(v["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(v["spec"].get("defaultErrnoRet").is_none(), "not in the CRD");
        let rules = v["spec"]["syscalls"].as_array().unwrap();
        for rule in rules {
            assert!(rule["action"].is_string() && rule["names"].is_array(), "{rule}");
        }
        assert_eq!(rules[1]["errnoRet"], 38, "an integer, as the CRD has it");
    }

    #[test]
    fn oci_object_round_trips() {
        let text = oci_json(&profile()).unwrap();
        let back: LinuxSeccomp = serde_json::from_str(&text).unwrap();
        assert_eq!(back, profile());
    }
}
