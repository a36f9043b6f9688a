//! Where poststop looks for a container's own checkpoint, and how it tells
//! it is the container's own.
//!
//! Only directories an admin configured (the hook's `--checkpoint-root`)
//! are searched. The `checkpoint-dir` annotation, which whoever writes Pod
//! annotations controls, may only name one of those roots or a directory
//! below one: `..` is refused, and the resolved path (symlinks followed)
//! must stay inside the resolved root. Each archive found is opened under
//! [`Limits::DISCOVERY`] and read only up to its `config.dump`, whose id
//! must be the container's; the whole search has one deadline.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::correlate::{candidates, kubelet_prefix, CHECKPOINT_DIR_ANNOTATION};
use super::{container_id, Limits};

/// Longest the whole search may take at poststop.
pub const SEARCH_TIME: Duration = Duration::from_secs(15);

/// Why the annotation's directory is not searched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("annotation {CHECKPOINT_DIR_ANNOTATION}={value:?} is ignored: no --checkpoint-root is configured in the hook's args")]
    NoRoots { value: String },
    #[error("annotation {CHECKPOINT_DIR_ANNOTATION}={value:?} is ignored: it is empty or uses '..'")]
    Climbs { value: String },
    #[error("annotation {CHECKPOINT_DIR_ANNOTATION}={value:?} is ignored: it is not a directory under a --checkpoint-root ({roots})")]
    Outside { value: String, roots: String },
}

/// The directories to search, in order, for a container with these
/// annotations: the annotation's (validated), then every root by the
/// kubelet's name prefix. A bad annotation is an error the caller logs;
/// the roots are searched anyway.
pub fn search_dirs(
    roots: &[PathBuf],
    annotations: &BTreeMap<String, String>,
) -> (Vec<(PathBuf, Option<String>)>, Option<Error>) {
    let mut dirs = Vec::new();
    let mut problem = None;
    if let Some(value) = annotations.get(CHECKPOINT_DIR_ANNOTATION) {
        match annotated_dir(roots, value) {
            Ok(dir) => dirs.push((dir, None)),
            Err(e) => problem = Some(e),
        }
    }
    if let Some(prefix) = kubelet_prefix(annotations) {
        for root in roots {
            dirs.push((root.clone(), Some(prefix.clone())));
        }
    }
    (dirs, problem)
}

/// The directory the annotation names, if it is (under) a root. A relative
/// value is taken below each root in turn.
pub fn annotated_dir(roots: &[PathBuf], value: &str) -> Result<PathBuf, Error> {
    if roots.is_empty() {
        return Err(Error::NoRoots { value: value.into() });
    }
    let path = Path::new(value);
    let climbs = path.components().any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)));
    if value.is_empty() || climbs {
        return Err(Error::Climbs { value: value.into() });
    }
    let tries: Vec<PathBuf> = if path.is_absolute() {
        vec![path.to_path_buf()]
    } else {
        roots.iter().map(|r| r.join(path)).collect()
    };
    for candidate in tries {
        // Resolved, so a symlink under a root cannot lead out of it.
        let Ok(real) = candidate.canonicalize() else { continue };
        if !real.is_dir() {
            continue;
        }
        let inside = roots
            .iter()
            .filter_map(|r| r.canonicalize().ok())
            .any(|root| real.starts_with(&root));
        if inside {
            return Ok(real);
        }
    }
    Err(Error::Outside {
        value: value.into(),
        roots: roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}

/// The newest archive in `dirs` whose `config.dump` names container `id`,
/// found within [`SEARCH_TIME`]. Archives that cannot be read are logged
/// and passed over.
pub fn find_own(dirs: &[(PathBuf, Option<String>)], id: &str) -> Option<PathBuf> {
    let deadline = Instant::now() + SEARCH_TIME;
    for (dir, prefix) in dirs {
        for path in candidates(dir, prefix.as_deref()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(id, limit_s = SEARCH_TIME.as_secs(), "checkpoint search stopped at its time limit");
                return None;
            }
            match container_id(&path, &Limits::DISCOVERY.within(left)) {
                Ok(Some(theirs)) if theirs == id => return Some(path),
                Ok(_) => {}
                Err(e) => tracing::warn!(checkpoint = %path.display(), error = %e.to_line(), "checkpoint passed over"),
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotation_names_a_directory_under_a_root_at_most() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("team/a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let roots = vec![root.clone()];
        let real_root = root.canonicalize().unwrap();

        assert_eq!(annotated_dir(&roots, "team/a").unwrap(), real_root.join("team/a"));
        assert_eq!(annotated_dir(&roots, root.to_str().unwrap()).unwrap(), real_root);
        let abs = root.join("team");
        assert_eq!(annotated_dir(&roots, abs.to_str().unwrap()).unwrap(), real_root.join("team"));

        for bad in ["../outside", "team/../../outside", ""] {
            assert!(matches!(annotated_dir(&roots, bad), Err(Error::Climbs { .. })), "{bad}");
        }
        for bad in [outside.to_str().unwrap(), "escape", "/etc", "missing"] {
            let e = annotated_dir(&roots, bad).unwrap_err();
            assert!(matches!(e, Error::Outside { .. }), "{bad}: {e}");
            assert_eq!(e.to_string().lines().count(), 1);
        }
        assert!(matches!(annotated_dir(&[], "team"), Err(Error::NoRoots { .. })));
    }

    #[test]
    fn kubelet_names_are_looked_for_in_every_root_only() {
        let mut ann = BTreeMap::new();
        for (k, v) in [("io.kubernetes.pod.name", "web"), ("io.kubernetes.pod.namespace", "prod"), ("io.kubernetes.container.name", "app")] {
            ann.insert(k.to_string(), v.to_string());
        }
        let (dirs, problem) = search_dirs(&[], &ann);
        assert!(dirs.is_empty() && problem.is_none());
        let roots = vec![PathBuf::from("/a"), PathBuf::from("/b")];
        let (dirs, _) = search_dirs(&roots, &ann);
        assert_eq!(dirs.len(), 2);
        assert_eq!(dirs[1], (PathBuf::from("/b"), Some("checkpoint-web_prod-app-".to_string())));
    }
}
