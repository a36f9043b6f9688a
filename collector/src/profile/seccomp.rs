//! Syscall set → seccomp profile JSON.
//!
//! The output is the subset both CRI-O/Podman (containers/common) and
//! containerd (OCI `LinuxSeccomp`) accept: deny by default with EPERM, the
//! native architecture only (32-bit ABI calls were not traced, so they stay
//! denied), one sorted allow rule, and one rule that answers the unseen
//! calls of [`super::enosys::FALLBACKS`] with ENOSYS so that libcs fall
//! back to the older call instead of failing.

use std::collections::BTreeSet;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

/// EPERM, so a denied call fails with "Operation not permitted" (and not
/// with ENOSYS, which programs take as "try something else"); the calls
/// where falling back is the right answer are listed in
/// [`super::enosys::FALLBACKS`].
pub const DEFAULT_ERRNO: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the seccomp profile: {0}")]
    Build(oci_spec::OciSpecError),
    #[error("serialising the seccomp profile: {0}")]
    Json(serde_json::Error),
}

/// Builds the profile that allows exactly `names` on the native
/// architecture (and answers the unseen fallback calls with ENOSYS).
pub fn build(names: &BTreeSet<String>) -> Result<LinuxSeccomp, Error> {
    build_for(names, vec![native_arch()])
}

/// [`build`] for the given architectures (a merge of profiles recorded on
/// several).
pub fn build_for(names: &BTreeSet<String>, architectures: Vec<Arch>) -> Result<LinuxSeccomp, Error> {
    let mut builder = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(DEFAULT_ERRNO)
        .architectures(architectures);
    let mut rules = Vec::new();
    if !names.is_empty() {
        rules.push(
            LinuxSyscallBuilder::default()
                .names(names.iter().cloned().collect::<Vec<_>>())
                .action(LinuxSeccompAction::ScmpActAllow)
                .build()
                .map_err(Error::Build)?,
        );
    }
    let enosys = super::enosys::unseen(names);
    if !enosys.is_empty() {
        rules.push(
            LinuxSyscallBuilder::default()
                .names(enosys.into_iter().collect::<Vec<_>>())
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(super::enosys::ENOSYS)
                .build()
                .map_err(Error::Build)?,
        );
    }
    if !rules.is_empty() {
        builder = builder.syscalls(rules);
    }
    builder.build().map_err(Error::Build)
}

/// Pretty JSON with a trailing newline; stable for equal inputs.
pub fn to_json(profile: &LinuxSeccomp) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(profile).map_err(Error::Json)?;
    text.push('\n');
    Ok(text)
}

/// The allowed names of a profile we (or anyone) wrote.
pub fn allowed_names(profile: &LinuxSeccomp) -> BTreeSet<String> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
        .flat_map(|r| r.names().iter().cloned())
        .collect()
}

/// The seccomp architecture this binary runs on.
pub fn native_arch() -> Arch {
    match std::env::consts::ARCH {
        "aarch64" => Arch::ScmpArchAarch64,
        "x86" => Arch::ScmpArchX86,
        "arm" => Arch::ScmpArchArm,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390x" => Arch::ScmpArchS390x,
        "powerpc64" => Arch::ScmpArchPpc64le,
        _ => Arch::ScmpArchX86_64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exact_json_shape() {
        let names: BTreeSet<String> =
            ["write", "read", "exit_group", "statx", "clone"].into_iter().map(String::from).collect();
        let json = to_json(&build(&names).unwrap()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        // statx was seen: allowed. The other fallback calls were not: ENOSYS.
        let enosys: Vec<&str> = crate::profile::enosys::FALLBACKS.iter().map(|f| f.name).filter(|n| *n != "statx").collect();
        assert!(enosys.contains(&"clone3"));
        assert_eq!(
            value,
            serde_json::json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [
                    {"names": ["clone", "exit_group", "read", "statx", "write"], "action": "SCMP_ACT_ALLOW"},
                    {"names": enosys, "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
                ]
            })
        );
        // Key order is stable too, so files diff cleanly.
        assert!(json.starts_with("{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"defaultErrnoRet\": 1,"));
        let back: LinuxSeccomp = serde_json::from_str(&json).unwrap();
        assert_eq!(allowed_names(&back), names);
    }

    #[test]
    fn empty_set_allows_nothing() {
        let profile = build(&BTreeSet::new()).unwrap();
        assert!(allowed_names(&profile).is_empty());
        let value = serde_json::to_value(&profile).unwrap();
        assert_eq!(value["defaultAction"], "SCMP_ACT_ERRNO");
        // Only the ENOSYS rule.
        assert_eq!(value["syscalls"].as_array().map(Vec::len), Some(1));
        assert_eq!(value["syscalls"][0]["errnoRet"], 38);
    }
}
