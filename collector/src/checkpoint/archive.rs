//! Streaming access to a checkpoint: a tar (plain, gzip or zstd, told apart
//! by magic bytes, not by file name) or an already extracted directory.
//! Nothing is ever written to disk. Member names are only used as lookup
//! keys, and names that are absolute or climb with `..` are skipped and
//! reported, so a hostile archive cannot even pretend to be elsewhere.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use super::error::{Error, Result};

/// How the checkpoint is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Tar,
    Gzip,
    Zstd,
    Directory,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Tar => "tar",
            Format::Gzip => "tar+gzip",
            Format::Zstd => "tar+zstd",
            Format::Directory => "directory",
        })
    }
}

/// One regular-file member as the walker hands it to a visitor.
#[derive(Debug, Clone)]
pub struct Member {
    /// Normalised name: no leading `./`, `/`-separated.
    pub name: String,
    pub size: u64,
    /// Modification time (seconds since the epoch), when known.
    pub mtime: Option<u64>,
}

/// What a walk saw besides what the visitor took.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Regular members, in archive order.
    pub members: Vec<Member>,
    /// Raw names that were skipped because they are absolute or use `..`.
    pub ignored: Vec<String>,
}

/// Longest a single pass over one archive may take: a decompression bomb or
/// a stalled file system ends in an error, not a hang.
pub const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(900);

/// Errors out once `start` is more than [`TIME_LIMIT`] ago.
pub fn check_time(path: &Path, start: std::time::Instant) -> Result<()> {
    if start.elapsed() > TIME_LIMIT {
        return Err(Error::TimeLimit {
            path: path.to_path_buf(),
            secs: TIME_LIMIT.as_secs(),
        });
    }
    Ok(())
}

/// Upper bound on the directory depth we descend into for extracted
/// checkpoints; real ones are two levels deep.
const MAX_DIR_DEPTH: usize = 8;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Tells the storage format of `path` by looking at its first bytes.
pub fn detect(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Ok(Format::Directory);
    }
    let mut head = [0u8; 4];
    let mut file = File::open(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let n = read_up_to(&mut file, &mut head).map_err(|source| Error::Archive {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(if n >= 4 && head == ZSTD_MAGIC {
        Format::Zstd
    } else if n >= 2 && head[..2] == GZIP_MAGIC {
        Format::Gzip
    } else {
        Format::Tar
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Normalises a member name; `None` for names we refuse to use.
pub fn normalize(raw: &str) -> Option<String> {
    let path = Path::new(raw);
    let mut parts = Vec::new();
    for comp in path.components() {
        match comp {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            // Absolute and climbing names are never legitimate in a checkpoint.
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// Walks every regular member of the checkpoint at `path`, calling `visit`
/// with its description and a reader over its content. The visitor may read
/// as much or as little as it wants; the rest is skipped.
pub fn walk<F>(path: &Path, mut visit: F) -> Result<(Format, Summary)>
where
    F: FnMut(&Member, &mut dyn Read) -> Result<()>,
{
    let format = detect(path)?;
    let mut summary = Summary::default();
    match format {
        Format::Directory => walk_dir(path, path, 0, &mut summary, &mut visit)?,
        _ => {
            let file = File::open(path).map_err(|source| Error::Open {
                path: path.to_path_buf(),
                source,
            })?;
            let buffered = BufReader::with_capacity(256 << 10, file);
            let reader: Box<dyn Read> = match format {
                Format::Zstd => {
                    Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(
                        |source| Error::Archive {
                            path: path.to_path_buf(),
                            source,
                        },
                    )?)
                }
                Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
                _ => Box::new(buffered),
            };
            walk_tar(path, reader, &mut summary, &mut visit)?;
        }
    }
    if summary.members.is_empty() && summary.ignored.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((format, summary))
}

fn walk_tar<F>(
    path: &Path,
    reader: Box<dyn Read>,
    summary: &mut Summary,
    visit: &mut F,
) -> Result<()>
where
    F: FnMut(&Member, &mut dyn Read) -> Result<()>,
{
    let archive_err = |source| Error::Archive {
        path: path.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(archive_err)?;
    let mut previous: Option<String> = None;
    let start = std::time::Instant::now();
    for entry in entries {
        check_time(path, start)?;
        // A failure to read the next header after a member usually means the
        // archive was cut inside that member: name it.
        let mut entry = entry.map_err(|source| match &previous {
            Some(prev) => Error::Read {
                path: path.to_path_buf(),
                member: prev.clone(),
                source,
            },
            // Not even a first header: this is no tar at all.
            None => Error::NotTar { path: path.to_path_buf() },
        })?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let Some(name) = normalize(&raw) else {
            tracing::warn!(member = %raw, "skipping unsafe member name (absolute or '..')");
            summary.ignored.push(raw);
            continue;
        };
        let member = Member {
            name,
            size: entry.size(),
            mtime: entry.header().mtime().ok(),
        };
        visit(&member, &mut entry).map_err(|e| fill_path(e, path, &member))?;
        previous = Some(member.name.clone());
        summary.members.push(member);
    }
    Ok(())
}

fn walk_dir<F>(
    root: &Path,
    dir: &Path,
    depth: usize,
    summary: &mut Summary,
    visit: &mut F,
) -> Result<()>
where
    F: FnMut(&Member, &mut dyn Read) -> Result<()>,
{
    if depth > MAX_DIR_DEPTH {
        return Ok(());
    }
    let list_err = |source| Error::List {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(list_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for p in names {
        // symlink_metadata: links are not followed, so an extracted
        // checkpoint cannot point us outside itself.
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            walk_dir(root, &p, depth + 1, summary, visit)?;
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let rel = p.strip_prefix(root).unwrap_or(&p);
        let Some(name) = rel.to_str().and_then(normalize) else {
            continue;
        };
        let member = Member {
            name,
            size: meta.len(),
            mtime: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
        };
        let mut file = File::open(&p).map_err(|source| Error::Open {
            path: p.clone(),
            source,
        })?;
        visit(&member, &mut file).map_err(|e| fill_path(e, root, &member))?;
        summary.members.push(member);
    }
    Ok(())
}

/// A read failure inside a member (most often a tar cut short) is reported
/// with the archive path and the member's name.
fn fill_path(e: Error, archive: &Path, member: &Member) -> Error {
    match e {
        Error::Read {
            path,
            member: m,
            source,
        } if path.as_os_str().is_empty() => Error::Read {
            path: archive.to_path_buf(),
            member: m,
            source,
        },
        Error::Archive { source, .. } => Error::Read {
            path: archive.to_path_buf(),
            member: member.name.clone(),
            source,
        },
        other => other,
    }
}

/// Reads a whole member into memory, refusing members over `limit` bytes
/// before allocating (the size in the tar header can lie, so the read is
/// capped as well).
pub fn read_member(member: &Member, reader: &mut dyn Read, limit: u64) -> Result<Vec<u8>> {
    if member.size > limit {
        return Err(Error::MemberTooLarge {
            member: member.name.clone(),
            size: member.size,
            limit,
        });
    }
    let mut buf = Vec::with_capacity(member.size as usize);
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| Error::Read {
            path: PathBuf::new(),
            member: member.name.clone(),
            source,
        })?;
    if (buf.len() as u64) < member.size {
        return Err(Error::ShortMember {
            member: member.name.clone(),
            got: buf.len() as u64,
            size: member.size,
        });
    }
    if buf.len() as u64 > limit {
        return Err(Error::MemberTooLarge {
            member: member.name.clone(),
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}

/// One entry of a nested tar (`rootfs-diff.tar`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffEntry {
    pub path: String,
    pub size: u64,
    /// `file`, `dir`, `symlink`, `hardlink`, `other`.
    pub kind: &'static str,
    /// Modification time (seconds since the epoch) from the tar header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<u64>,
    /// Where a link points (never followed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Lists a nested tar while streaming it; entries are never extracted.
pub fn list_nested(
    member: &str,
    reader: &mut dyn Read,
    max_entries: usize,
) -> Result<Vec<DiffEntry>> {
    let err = |source| Error::NestedTar {
        member: member.to_string(),
        source,
    };
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(err)? {
        let entry = entry.map_err(err)?;
        if out.len() >= max_entries {
            tracing::warn!(member, max_entries, "nested tar listing truncated");
            break;
        }
        let t = entry.header().entry_type();
        let kind = if t.is_file() {
            "file"
        } else if t.is_dir() {
            "dir"
        } else if t.is_symlink() {
            "symlink"
        } else if t.is_hard_link() {
            "hardlink"
        } else {
            "other"
        };
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = raw.trim_start_matches("./").to_string();
        if path.is_empty() {
            continue;
        }
        let link = if t.is_symlink() || t.is_hard_link() {
            entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        } else {
            None
        };
        out.push(DiffEntry {
            path,
            size: entry.size(),
            kind,
            mtime: entry.header().mtime().ok(),
            link,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_rejects_escapes() {
        assert_eq!(
            normalize("./checkpoint/core-1.img").as_deref(),
            Some("checkpoint/core-1.img")
        );
        assert_eq!(normalize("config.dump").as_deref(), Some("config.dump"));
        assert_eq!(normalize("../../etc/passwd"), None);
        assert_eq!(normalize("checkpoint/../../x"), None);
        assert_eq!(normalize("/etc/shadow"), None);
        assert_eq!(normalize("./"), None);
    }
}
