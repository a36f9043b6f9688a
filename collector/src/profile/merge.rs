//! Merging profiles: several recordings of one workload (runs, replicas)
//! into one profile that allows the union of what they saw.
//!
//! The result is deterministic (sorted names, sorted inputs) and is built
//! by [`super::seccomp::build_for`], so the ENOSYS rule is recomputed for
//! the union. How many inputs saw each call is returned beside the profile
//! ([`Merged::seen_by`]), never written into it. Incomplete inputs and
//! inputs for different architectures are refused unless asked for.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{Arch, LinuxSeccomp};
use serde::Serialize;

use super::file::{ProfileFile, ALLOW};
use super::seccomp;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nothing to merge: no inputs")]
    NoInputs,
    #[error("{input} is incomplete ({reasons}); pass --allow-incomplete to merge it anyway")]
    Incomplete { input: String, reasons: String },
    #[error("the inputs are for different architectures ({found}); pass --allow-mixed-arch to merge them anyway")]
    MixedArch { found: String },
    #[error("{input} has allow rules with conditions ({names}): merge takes plain allow lists only")]
    Conditional { input: String, names: String },
    #[error("{input} names an architecture this tool does not know: {arch}")]
    UnknownArch { input: String, arch: String },
    #[error(transparent)]
    Build(#[from] seccomp::Error),
}

/// One input to a merge.
#[derive(Debug, Clone)]
pub struct Input {
    /// How the user named it (id or path), for messages and the counts.
    pub label: String,
    pub profile: ProfileFile,
    /// From the recording's summary; `None` when unknown (a bare file).
    pub complete: Option<bool>,
    pub incomplete_reasons: Vec<String>,
}

/// What the caller allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub allow_incomplete: bool,
    pub allow_mixed_arch: bool,
}

/// The merged profile and how many inputs saw each call.
#[derive(Debug, Clone)]
pub struct Merged {
    pub profile: LinuxSeccomp,
    pub info: Info,
}

/// The counts kept beside the merged profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    pub inputs: Vec<String>,
    /// Inputs merged although incomplete (with `--allow-incomplete`).
    pub incomplete_inputs: Vec<String>,
    pub architectures: BTreeSet<String>,
    /// Allowed call → how many inputs allowed it.
    pub seen_by: BTreeMap<String, usize>,
}

/// Merges `inputs` into one profile.
pub fn merge(inputs: &[Input], opts: Options) -> Result<Merged, Error> {
    if inputs.is_empty() {
        return Err(Error::NoInputs);
    }
    let mut incomplete_inputs = Vec::new();
    for i in inputs {
        if i.complete == Some(false) {
            if !opts.allow_incomplete {
                let reasons = if i.incomplete_reasons.is_empty() { "no reason given".to_string() } else { i.incomplete_reasons.join("; ") };
                return Err(Error::Incomplete { input: i.label.clone(), reasons });
            }
            incomplete_inputs.push(i.label.clone());
        }
        let conditional = i.profile.allowed_conditionally();
        if !conditional.is_empty() {
            let names: Vec<&str> = conditional.keys().map(String::as_str).collect();
            return Err(Error::Conditional { input: i.label.clone(), names: names.join(", ") });
        }
    }
    let arch_sets: BTreeSet<&BTreeSet<String>> = inputs.iter().map(|i| &i.profile.architectures).collect();
    let architectures: BTreeSet<String> = inputs.iter().flat_map(|i| i.profile.architectures.iter().cloned()).collect();
    if arch_sets.len() > 1 && !opts.allow_mixed_arch {
        let found: Vec<String> = inputs
            .iter()
            .map(|i| format!("{}: {}", i.label, i.profile.architectures.iter().cloned().collect::<Vec<_>>().join("+")))
            .collect();
        return Err(Error::MixedArch { found: found.join(", ") });
    }
    let mut seen_by: BTreeMap<String, usize> = BTreeMap::new();
    for i in inputs {
        for name in i.profile.rules.iter().filter(|r| r.action == ALLOW && !r.foreign).flat_map(|r| r.names.iter()).collect::<BTreeSet<_>>() {
            *seen_by.entry(name.clone()).or_default() += 1;
        }
    }
    let mut arches = Vec::new();
    for a in &architectures {
        let arch: Arch = serde_json::from_value(serde_json::Value::String(a.clone()))
            .map_err(|_| Error::UnknownArch { input: label_of(inputs, a), arch: a.clone() })?;
        arches.push(arch);
    }
    if arches.is_empty() {
        arches.push(seccomp::native_arch());
    }
    let names: BTreeSet<String> = seen_by.keys().cloned().collect();
    let profile = seccomp::build_for(&names, arches)?;
    let mut labels: Vec<String> = inputs.iter().map(|i| i.label.clone()).collect();
    labels.sort();
    Ok(Merged { profile, info: Info { inputs: labels, incomplete_inputs, architectures, seen_by } })
}

fn label_of(inputs: &[Input], arch: &str) -> String {
    inputs.iter().find(|i| i.profile.architectures.contains(arch)).map(|i| i.label.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::file::parse;

    fn input(label: &str, names: &[&str], complete: Option<bool>) -> Input {
        let set: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let json = seccomp::to_json(&seccomp::build(&set).unwrap()).unwrap();
        Input { label: label.into(), profile: parse(json.as_bytes()).unwrap(), complete, incomplete_reasons: vec!["lost 3 events".into()] }
    }

    #[test]
    fn union_with_counts_and_enosys_recomputed() {
        let a = input("a", &["read", "write", "mkdir"], Some(true));
        let b = input("b", &["read", "write", "symlink", "clone3"], None);
        let m = merge(&[b.clone(), a.clone()], Options::default()).unwrap();
        let names = seccomp::allowed_names(&m.profile);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["clone3", "mkdir", "read", "symlink", "write"]);
        assert_eq!(m.info.seen_by["read"], 2);
        assert_eq!(m.info.seen_by["mkdir"], 1);
        assert_eq!(m.info.inputs, ["a", "b"]);
        // clone3 was seen by one input: allowed, so not in the ENOSYS rule.
        let json = serde_json::to_value(&m.profile).unwrap();
        let enosys = &json["syscalls"][1];
        assert_eq!(enosys["errnoRet"], 38);
        assert!(!enosys["names"].as_array().unwrap().iter().any(|n| n == "clone3"));
        // Deterministic whatever the order.
        let again = merge(&[a, b], Options::default()).unwrap();
        assert_eq!(seccomp::to_json(&again.profile).unwrap(), seccomp::to_json(&m.profile).unwrap());
        assert_eq!(again.info, m.info);
    }

    #[test]
    fn incomplete_and_mixed_arch_are_refused_unless_asked() {
        let a = input("a", &["read"], Some(true));
        let bad = input("bad", &["write"], Some(false));
        let err = merge(&[a.clone(), bad.clone()], Options::default()).unwrap_err();
        assert!(err.to_string().contains("bad is incomplete (lost 3 events)"), "{err}");
        let m = merge(&[a.clone(), bad], Options { allow_incomplete: true, ..Default::default() }).unwrap();
        assert_eq!(m.info.incomplete_inputs, ["bad"]);

        let mut arm = input("arm", &["read"], Some(true));
        arm.profile.architectures = ["SCMP_ARCH_AARCH64".to_string()].into_iter().collect();
        let err = merge(&[a.clone(), arm.clone()], Options::default()).unwrap_err();
        assert!(matches!(err, Error::MixedArch { .. }), "{err}");
        let m = merge(&[a, arm], Options { allow_mixed_arch: true, ..Default::default() }).unwrap();
        assert_eq!(m.info.architectures.len(), 2);
        assert_eq!(m.profile.architectures().as_ref().map(Vec::len), Some(2));
        assert!(matches!(merge(&[], Options::default()), Err(Error::NoInputs)));
    }

    #[test]
    fn conditional_rules_are_refused() {
        let text = br#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
        let i = Input { label: "default".into(), profile: parse(text).unwrap(), complete: None, incomplete_reasons: vec![] };
        let err = merge(&[i], Options::default()).unwrap_err();
        assert!(err.to_string().contains("conditions (mount)"), "{err}");
    }
}
