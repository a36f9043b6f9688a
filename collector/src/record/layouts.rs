//! The event layouts a recorder decodes with, cached once per boot.
//!
//! Reading `events/header_page` and 730 `format` files from tracefs is most
//! of a recorder's start-up (about 20 ms here, over a second under an
//! emulator), and the container waits for it. Event ids and layouts of
//! built-in events do not change while the kernel runs, so the parsed
//! layouts are saved in [`CACHE_DIR`] (under `/run`, which a boot empties),
//! keyed by `/proc/sys/kernel/random/boot_id`, and later recorders load
//! them from one file, whatever their state dir. Parsed, not the texts:
//! re-parsing 730 texts took 4-6 ms of every container start. A missing,
//! unreadable, foreign or older-format cache is simply rebuilt.
//!
//! The recorder asks [`load_cached`] while prestart arms its instance and,
//! on a miss, [`load_from_tracefs`] (which saves the cache) once it is.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::container::store::write_atomic;
use crate::trace::format::{EventFormat, HeaderPage};
use crate::tracefs::Instance;

/// Where the cache lives: the product's own directory under `/run`.
pub const CACHE_DIR: &str = "/run/oci-ftrace-syscall-analyzer/layouts";

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Header and event layouts, parsed.
#[derive(Debug, Clone)]
pub struct Layouts {
    pub header: HeaderPage,
    pub formats: Vec<EventFormat>,
    /// Whether they came from the cache.
    pub cached: bool,
}

/// Bumped whenever [`Cached`] or the layouts in it change shape.
const CACHE_VERSION: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    version: u32,
    boot_id: String,
    systems: Vec<String>,
    header: HeaderPage,
    formats: Vec<EventFormat>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    TraceFs(#[from] crate::tracefs::Error),
    #[error("event format of {system}:{event}: {cause}")]
    Format { system: String, event: String, cause: crate::trace::format::FormatError },
}

/// This boot's cache file in `cache_dir`, and the boot id it is named by.
fn cache_file(cache_dir: &Path) -> Option<(PathBuf, String)> {
    let boot_id = std::fs::read_to_string(BOOT_ID).map(|s| s.trim().to_string()).ok().filter(|s| is_boot_id(s))?;
    Some((cache_dir.join(format!("{boot_id}.json")), boot_id))
}

/// This boot's layouts of `systems` from `cache_dir`, if saved there. Needs
/// no instance, so a recorder reads them while prestart arms its own.
pub fn load_cached(systems: &[&str], cache_dir: &Path) -> Option<Layouts> {
    let (file, boot_id) = cache_file(cache_dir)?;
    read_cache(&file, &boot_id, systems)
}

/// The layouts of every event of `systems`, read from tracefs and saved in
/// `cache_dir` for later recorders (a failed save only costs the next
/// recorder the same read).
pub fn load_from_tracefs(inst: &Instance, systems: &[&str], cache_dir: Option<&Path>) -> Result<Layouts, Error> {
    let header = HeaderPage::parse(&inst.header_page()?).unwrap_or_default();
    let mut formats = Vec::new();
    for system in systems {
        for event in inst.event_names(system)? {
            let text = inst.event_format(system, &event)?;
            let f = EventFormat::parse(system, &text)
                .map_err(|cause| Error::Format { system: system.to_string(), event: event.clone(), cause })?;
            formats.push(f);
        }
    }
    let file = cache_dir.and_then(cache_file);
    let cached = Cached {
        version: CACHE_VERSION,
        boot_id: file.as_ref().map(|(_, boot)| boot.clone()).unwrap_or_default(),
        systems: systems.iter().map(|s| s.to_string()).collect(),
        header,
        formats,
    };
    if let Some((file, _)) = &file {
        save(file, &cached);
    }
    Ok(Layouts { header: cached.header, formats: cached.formats, cached: false })
}

fn read_cache(file: &Path, boot_id: &str, systems: &[&str]) -> Option<Layouts> {
    let bytes = std::fs::read(file).ok()?;
    let cached: Cached = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path = %file.display(), error = %e, "ignoring a broken or older layout cache");
            return None;
        }
    };
    if cached.version != CACHE_VERSION
        || cached.boot_id != boot_id
        || cached.systems.iter().map(String::as_str).ne(systems.iter().copied())
    {
        return None;
    }
    Some(Layouts { header: cached.header, formats: cached.formats, cached: true })
}

/// Writes this boot's cache and drops other boots' files.
fn save(file: &Path, cached: &Cached) {
    let Some(dir) = file.parent() else { return };
    let result = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::to_vec(cached).map_err(|e| e.to_string()))
        .and_then(|bytes| write_atomic(file, &bytes).map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::debug!(path = %file.display(), error = %e, "could not save the layout cache");
        return;
    }
    for stale in stale_files(dir, file) {
        let _ = std::fs::remove_file(stale);
    }
}

fn stale_files(dir: &Path, keep: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p != keep && p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// A boot id is a UUID; nothing else may name a file.
fn is_boot_id(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTER_OPEN: &str = "name: sys_enter_openat\nID: 700\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n";

    fn cached(boot: &str) -> Cached {
        Cached {
            version: CACHE_VERSION,
            boot_id: boot.into(),
            systems: vec!["syscalls".into()],
            header: HeaderPage::default(),
            formats: vec![EventFormat::parse("syscalls", ENTER_OPEN).unwrap()],
        }
    }

    #[test]
    fn a_cache_of_this_boot_is_used_and_another_boots_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let boot = "0b5e6f0e-2a43-4bd5-9d4c-1f1f3b1e2d3c";
        let file = dir.path().join(format!("{boot}.json"));
        std::fs::write(&file, serde_json::to_vec(&cached(boot)).unwrap()).unwrap();
        let l = read_cache(&file, boot, &["syscalls"]).expect("this boot's cache");
        assert!(l.cached);
        assert_eq!(l.formats[0].name, "sys_enter_openat");
        assert_eq!(l.formats[0].id, 700);
        assert!(read_cache(&file, "11111111-2a43-4bd5-9d4c-1f1f3b1e2d3c", &["syscalls"]).is_none());
        assert!(read_cache(&file, boot, &["syscalls", "sched"]).is_none(), "other systems");
    }

    #[test]
    fn a_broken_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let boot = "0b5e6f0e-2a43-4bd5-9d4c-1f1f3b1e2d3c";
        let file = dir.path().join(format!("{boot}.json"));
        std::fs::write(&file, b"{not json").unwrap();
        assert!(read_cache(&file, boot, &["syscalls"]).is_none());
        let mut c = cached(boot);
        c.version = 1; // an older binary's cache
        std::fs::write(&file, serde_json::to_vec(&c).unwrap()).unwrap();
        assert!(read_cache(&file, boot, &["syscalls"]).is_none());
        // The format of the release before: texts, no version.
        std::fs::write(&file, format!(r#"{{"boot_id":"{boot}","systems":["syscalls"],"header_page":"","events":[]}}"#)).unwrap();
        assert!(read_cache(&file, boot, &["syscalls"]).is_none());
    }

    #[test]
    fn saving_drops_other_boots() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("00000000-0000-0000-0000-000000000000.json");
        std::fs::write(&old, b"{}").unwrap();
        let boot = "0b5e6f0e-2a43-4bd5-9d4c-1f1f3b1e2d3c";
        let file = dir.path().join(format!("{boot}.json"));
        save(&file, &cached(boot));
        assert!(file.exists());
        assert!(!old.exists());
    }

    #[test]
    fn only_uuids_name_cache_files() {
        assert!(is_boot_id("0b5e6f0e-2a43-4bd5-9d4c-1f1f3b1e2d3c"));
        assert!(!is_boot_id("../../etc/passwd0000000000000000000000"));
        assert!(!is_boot_id(""));
    }
}
