//! Changed files of a checkpoint: the members of `rootfs-diff.tar` (files
//! the container wrote) and `deleted.files`, and the contents of one of them.
//! The nested tar is streamed from inside the archive: nothing is extracted,
//! names are compared as text only, links are reported and never followed,
//! and every read has a byte cap, a member cap and a time limit.

use std::io::{Read, Write};

use serde::Serialize;

use super::archive;
use super::error::{Error, Result};

/// Largest file [`cat`] copies out (the rest is cut, and said so).
pub const CONTENT_LIMIT: u64 = 256 << 20;
/// Most nested members [`cat`] looks at before giving up.
const NESTED_MEMBERS: usize = 1_000_000;

/// What [`cat`] found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Found {
    /// The path as stored in `rootfs-diff.tar` (without a leading `./`).
    pub path: String,
    /// Size in the tar header.
    pub size: u64,
    /// Bytes written out (less than `size` when the limit cut it).
    pub written: u64,
}

/// Turns a container path (`/data/x`, `data/x`, `./data/x`) into the form
/// compared against nested names; `None` for names that climb or are empty.
pub fn container_path(p: &str) -> Option<String> {
    let trimmed = p.trim_start_matches('/');
    archive::normalize(trimmed)
}

/// Copies the contents of `want` from the checkpoint's `rootfs-diff.tar`
/// into `out`, at most `limit` bytes. A link, a directory or a name that is
/// only in `deleted.files` is an error that says so.
pub fn cat(
    path: &std::path::Path,
    want: &str,
    limit: u64,
    deleted: &[String],
    out: &mut dyn Write,
) -> Result<Found> {
    let key = container_path(want).ok_or_else(|| Error::BadPath {
        path: want.to_string(),
    })?;
    let mut found: Option<Result<Found>> = None;
    let mut saw_diff = false;
    archive::walk(path, |m, r| {
        if m.name != "rootfs-diff.tar" || found.is_some() {
            return Ok(());
        }
        saw_diff = true;
        found = find_in_nested(&m.name, r, &key, limit, out)?;
        Ok(())
    })?;
    match found {
        Some(r) => r,
        None => {
            let slash = format!("/{key}");
            Err(Error::NotChanged {
                path: slash.clone(),
                why: if deleted.iter().any(|d| d == &slash || d == &key) {
                    "it is listed in deleted.files: the container deleted it"
                } else if saw_diff {
                    "it is not in rootfs-diff.tar (the container did not change it)"
                } else {
                    "the checkpoint has no rootfs-diff.tar"
                },
            })
        }
    }
}

/// Scans a nested tar for `key`. `Ok(None)`: not there. The inner result is
/// the outcome for the user (found, or found but not a regular file).
fn find_in_nested(
    member: &str,
    r: &mut dyn Read,
    key: &str,
    limit: u64,
    out: &mut dyn Write,
) -> Result<Option<Result<Found>>> {
    let err = |source| Error::NestedTar {
        member: member.to_string(),
        source,
    };
    let mut tar = tar::Archive::new(r);
    let start = std::time::Instant::now();
    for (i, entry) in tar.entries().map_err(err)?.enumerate() {
        archive::check_time(std::path::Path::new(member), start)?;
        if i >= NESTED_MEMBERS {
            tracing::warn!(member, limit = NESTED_MEMBERS, "nested tar: member limit reached");
            break;
        }
        let mut entry = entry.map_err(err)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // Names that climb or are absolute never match anything.
        let Some(name) = archive::normalize(&raw) else {
            continue;
        };
        if name != key {
            continue;
        }
        let t = entry.header().entry_type();
        if t.is_symlink() || t.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Ok(Some(Err(Error::NotRegular {
                path: format!("/{name}"),
                kind: if t.is_symlink() { "a symbolic link" } else { "a hard link" },
                target,
            })));
        }
        if !t.is_file() {
            return Ok(Some(Err(Error::NotRegular {
                path: format!("/{name}"),
                kind: if t.is_dir() { "a directory" } else { "not a regular file" },
                target: String::new(),
            })));
        }
        let size = entry.size();
        let written = std::io::copy(&mut (&mut entry).take(limit), out).map_err(|source| {
            Error::Read {
                path: Default::default(),
                member: format!("{member}:{name}"),
                source,
            }
        })?;
        if written < size.min(limit) {
            return Err(Error::ShortMember {
                member: format!("{member}:{name}"),
                got: written,
                size,
            });
        }
        if size > limit {
            tracing::warn!(file = %name, size, limit, "changed file cut at the size limit");
        }
        return Ok(Some(Ok(Found {
            path: name,
            size,
            written,
        })));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths() {
        assert_eq!(container_path("/data/x").as_deref(), Some("data/x"));
        assert_eq!(container_path("./data/x").as_deref(), Some("data/x"));
        assert_eq!(container_path("data//x").as_deref(), Some("data/x"));
        assert_eq!(container_path("/../etc/passwd"), None);
        assert_eq!(container_path("/"), None);
    }

    fn nested(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, t, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*t);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // set_path refuses `..`; write the raw bytes as a hostile tool would.
            let raw = name.as_bytes();
            h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn finds_files_and_refuses_links_and_escapes() {
        let t = nested(&[
            ("../etc/passwd", tar::EntryType::Regular, b"evil", None),
            ("./data/x", tar::EntryType::Regular, b"hello\x1b[2J", None),
            ("data/link", tar::EntryType::Symlink, b"", Some("/etc/shadow")),
            ("data", tar::EntryType::Directory, b"", None),
        ]);
        let mut out = Vec::new();
        let got = find_in_nested("rootfs-diff.tar", &mut t.as_slice(), "data/x", 100, &mut out)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.size, 9);
        assert_eq!(out, b"hello\x1b[2J");
        let mut out = Vec::new();
        let e = find_in_nested("rootfs-diff.tar", &mut t.as_slice(), "data/link", 100, &mut out)
            .unwrap()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link") && e.contains("/etc/shadow"), "{e}");
        assert!(out.is_empty());
        let e = find_in_nested("rootfs-diff.tar", &mut t.as_slice(), "data", 100, &mut out)
            .unwrap()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("directory"), "{e}");
        // `../etc/passwd` is never matched, whatever is asked.
        assert!(find_in_nested("x", &mut t.as_slice(), "etc/passwd", 100, &mut out)
            .unwrap()
            .is_none());
        // The byte cap holds.
        let mut out = Vec::new();
        let got = find_in_nested("x", &mut t.as_slice(), "data/x", 4, &mut out)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((got.written, out.as_slice()), (4, &b"hell"[..]));
    }
}
