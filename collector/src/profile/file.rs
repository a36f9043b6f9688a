//! A seccomp profile file as read back: the OCI `linux.seccomp` form this
//! project writes, and the containers/common form (Podman's and CRI-O's
//! default, `/usr/share/containers/seccomp.json`) with its per-rule
//! conditions (capabilities, kernel versions, architectures, arguments).
//!
//! Reading is lenient about fields it does not use, and strict about the
//! ones it does: a rule's names and action must be there.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// One profile, reduced to what merge and diff need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFile {
    pub default_action: String,
    pub default_errno: Option<u32>,
    /// `SCMP_ARCH_*` names (from `architectures`, or `archMap`).
    pub architectures: BTreeSet<String>,
    pub rules: Vec<Rule>,
}

/// One `syscalls` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub names: BTreeSet<String>,
    pub action: String,
    pub errno_ret: Option<u32>,
    /// Why the rule applies only sometimes (`None`: always, on the native
    /// architecture).
    pub condition: Option<String>,
    /// The rule is for other architectures only.
    pub foreign: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<RawArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
struct RawArchMap {
    architecture: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

pub const ALLOW: &str = "SCMP_ACT_ALLOW";

/// Parses a profile in either form.
pub fn parse(bytes: &[u8]) -> Result<ProfileFile, serde_json::Error> {
    let raw: Raw = serde_json::from_slice(bytes)?;
    let mut architectures: BTreeSet<String> = raw.architectures.unwrap_or_default().into_iter().collect();
    architectures.extend(raw.arch_map.unwrap_or_default().into_iter().map(|m| m.architecture));
    let native = native_go_arch();
    let rules = raw
        .syscalls
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let mut names: BTreeSet<String> = r.names.unwrap_or_default().into_iter().collect();
            names.extend(r.name);
            let inc = r.includes.unwrap_or_default();
            let exc = r.excludes.unwrap_or_default();
            let mut why = Vec::new();
            if r.args.as_ref().is_some_and(|a| !a.is_empty()) {
                why.push("for some arguments".to_string());
            }
            if let Some(caps) = inc.caps.filter(|c| !c.is_empty()) {
                why.push(format!("with {}", caps.join(", ")));
            }
            if let Some(caps) = exc.caps.filter(|c| !c.is_empty()) {
                why.push(format!("without {}", caps.join(", ")));
            }
            if let Some(k) = inc.min_kernel.filter(|k| !k.is_empty()) {
                why.push(format!("kernel >= {k}"));
            }
            if let Some(k) = exc.min_kernel.filter(|k| !k.is_empty()) {
                why.push(format!("kernel < {k}"));
            }
            let inc_arches = inc.arches.unwrap_or_default();
            let exc_arches = exc.arches.unwrap_or_default();
            let foreign = (!inc_arches.is_empty() && !inc_arches.iter().any(|a| a == native))
                || exc_arches.iter().any(|a| a == native);
            Rule {
                names,
                action: r.action,
                errno_ret: r.errno_ret,
                condition: (!why.is_empty()).then(|| why.join("; ")),
                foreign,
            }
        })
        .collect();
    Ok(ProfileFile { default_action: raw.default_action, default_errno: raw.default_errno_ret, architectures, rules })
}

impl ProfileFile {
    /// Calls allowed whatever the conditions, on the native architecture.
    pub fn allowed(&self) -> BTreeSet<String> {
        self.rules
            .iter()
            .filter(|r| r.action == ALLOW && r.condition.is_none() && !r.foreign)
            .flat_map(|r| r.names.iter().cloned())
            .collect()
    }

    /// Calls allowed only under a condition (and not also unconditionally),
    /// with the condition.
    pub fn allowed_conditionally(&self) -> BTreeMap<String, String> {
        let always = self.allowed();
        let mut out = BTreeMap::new();
        for r in self.rules.iter().filter(|r| r.action == ALLOW && !r.foreign) {
            if let Some(why) = &r.condition {
                for n in r.names.iter().filter(|n| !always.contains(*n)) {
                    out.entry(n.clone()).or_insert_with(|| why.clone());
                }
            }
        }
        out
    }
}

/// The architecture name containers/common uses in `includes.arches`.
fn native_go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_containers_common_form_with_conditions() {
        let text = br#"{
          "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
          "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
          "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
          ]}"#;
        let p = parse(text).unwrap();
        assert_eq!(p.default_errno, Some(38));
        assert!(p.architectures.contains("SCMP_ARCH_X86_64"));
        assert_eq!(p.allowed().into_iter().collect::<Vec<_>>(), ["read", "write"]);
        let cond = p.allowed_conditionally();
        assert_eq!(cond.get("mount").map(String::as_str), Some("with CAP_SYS_ADMIN"));
        assert_eq!(cond.get("personality").map(String::as_str), Some("for some arguments"));
        #[cfg(target_arch = "x86_64")]
        assert!(!cond.contains_key("s390_only"));
    }

    #[test]
    fn reads_what_we_write_and_rejects_garbage() {
        let names: BTreeSet<String> = ["read", "clone"].into_iter().map(String::from).collect();
        let json = super::super::seccomp::to_json(&super::super::seccomp::build(&names).unwrap()).unwrap();
        let p = parse(json.as_bytes()).unwrap();
        assert_eq!(p.allowed(), names);
        assert!(p.rules.iter().any(|r| r.errno_ret == Some(38) && r.names.contains("clone3")));
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"]}]}"#).is_err());
    }
}
