//! Comparing profiles: what one allows that another does not, and what a
//! profile removes from a runtime's default (`/usr/share/containers/
//! seccomp.json`, which Podman and CRI-O apply): the attack surface taken
//! away, and (the loud part) any call it allows that the default denies.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::file::ProfileFile;

/// `A` → `B`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Allowed by B, not by A.
    pub added: BTreeSet<String>,
    /// Allowed by A, not by B.
    pub removed: BTreeSet<String>,
    /// Allowed by both.
    pub common: usize,
    /// The default errno of each, when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_errno: Option<(Option<u32>, Option<u32>)>,
}

/// A profile against a runtime's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Against {
    /// Calls the default allows whatever the conditions.
    pub default_allowed: usize,
    /// Calls the default allows only under conditions (capabilities,
    /// arguments, kernel version).
    pub default_conditional: usize,
    pub profile_allowed: usize,
    /// Allowed by the default (always), denied by the profile.
    pub removed: BTreeSet<String>,
    /// Allowed by the default under a condition, denied by the profile.
    pub removed_conditional: BTreeSet<String>,
    /// Allowed by both.
    pub kept: usize,
    /// Allowed by the profile, denied by the default whatever the
    /// conditions: the profile widens the default here.
    pub denied_by_default: BTreeSet<String>,
    /// Allowed by the profile always, by the default only under a
    /// condition (which is given).
    pub conditional_in_default: BTreeMap<String, String>,
}

/// What changed from `a` to `b`.
pub fn diff(a: &ProfileFile, b: &ProfileFile) -> Diff {
    let (x, y) = (a.allowed(), b.allowed());
    Diff {
        added: y.difference(&x).cloned().collect(),
        removed: x.difference(&y).cloned().collect(),
        common: x.intersection(&y).count(),
        default_errno: (a.default_errno != b.default_errno).then_some((a.default_errno, b.default_errno)),
    }
}

/// `profile` against `default`.
pub fn against(profile: &ProfileFile, default: &ProfileFile) -> Against {
    let mine = profile.allowed();
    let theirs = default.allowed();
    let theirs_cond = default.allowed_conditionally();
    Against {
        default_allowed: theirs.len(),
        default_conditional: theirs_cond.len(),
        profile_allowed: mine.len(),
        removed: theirs.difference(&mine).cloned().collect(),
        removed_conditional: theirs_cond.keys().filter(|n| !mine.contains(*n)).cloned().collect(),
        kept: theirs.intersection(&mine).count(),
        denied_by_default: mine.iter().filter(|n| !theirs.contains(*n) && !theirs_cond.contains_key(*n)).cloned().collect(),
        conditional_in_default: theirs_cond.iter().filter(|(n, _)| mine.contains(*n)).map(|(n, w)| (n.clone(), w.clone())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::file::parse;

    fn ours(names: &[&str]) -> ProfileFile {
        let set: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let json = crate::profile::seccomp::to_json(&crate::profile::seccomp::build(&set).unwrap()).unwrap();
        parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn added_and_removed() {
        let d = diff(&ours(&["read", "write", "mkdir"]), &ours(&["read", "write", "symlink"]));
        assert_eq!(d.added.into_iter().collect::<Vec<_>>(), ["symlink"]);
        assert_eq!(d.removed.into_iter().collect::<Vec<_>>(), ["mkdir"]);
        assert_eq!(d.common, 2);
        assert_eq!(d.default_errno, None);
    }

    #[test]
    fn against_a_default_counts_removals_and_flags_widening() {
        let default = parse(br#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
            "syscalls":[{"names":["read","write","mkdir","ptrace"],"action":"SCMP_ACT_ALLOW"},
                        {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#).unwrap();
        let a = against(&ours(&["read", "write", "mount", "kexec_load"]), &default);
        assert_eq!(a.default_allowed, 4);
        assert_eq!(a.default_conditional, 1);
        assert_eq!(a.profile_allowed, 4);
        assert_eq!(a.removed.iter().map(String::as_str).collect::<Vec<_>>(), ["mkdir", "ptrace"]);
        assert_eq!(a.kept, 2);
        assert_eq!(a.denied_by_default.iter().map(String::as_str).collect::<Vec<_>>(), ["kexec_load"]);
        assert_eq!(a.conditional_in_default.get("mount").map(String::as_str), Some("with CAP_SYS_ADMIN"));
        assert!(a.removed_conditional.is_empty());
    }
}
