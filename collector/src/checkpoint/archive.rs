//! Streaming access to a checkpoint: a tar (plain, gzip or zstd, told apart
//! by magic bytes, not by file name) or an already extracted directory.
//! Nothing is ever written to disk. Member names are only used as lookup
//! keys, and names that are absolute or climb with `..` are skipped and
//! reported, so a hostile archive cannot even pretend to be elsewhere.
//! Every pass runs under [`Limits`]: bytes read out of the archive (after
//! decompression), members seen and wall time; a plain tar's unread member
//! data is seeked over, so a huge or sparse member costs nothing.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

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
pub const TIME_LIMIT: Duration = Duration::from_secs(900);

/// Bounds on one pass over an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes read out of the archive, after decompression (seeks over a
    /// plain tar's skipped data do not count).
    pub bytes: u64,
    /// Tar headers (or directory entries) seen.
    pub members: usize,
    pub time: Duration,
}

impl Limits {
    /// For commands an admin runs on an archive of their choosing.
    pub const COMMAND: Limits = Limits {
        bytes: 64 << 30,
        members: 1_000_000,
        time: TIME_LIMIT,
    };
    /// For archives poststop finds on its own: whoever could write there
    /// (a tenant) chose their content, and the container's teardown waits.
    pub const DISCOVERY: Limits = Limits {
        bytes: 256 << 20,
        members: 20_000,
        time: Duration::from_secs(5),
    };

    /// These limits with at most `time` of wall time.
    pub fn within(self, time: Duration) -> Limits {
        Limits {
            time: self.time.min(time),
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::COMMAND
    }
}

/// What a visitor wants after a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Next,
    Stop,
}

/// Why a pass was cut short by its reader.
#[derive(Debug)]
enum Cut {
    Bytes,
    Time,
    /// The decompressor failed: kind and message of its error.
    Stream(std::io::ErrorKind, String),
}

/// Shared by every reader of one pass.
#[derive(Debug)]
struct Tally {
    limits: Limits,
    start: Instant,
    read: u64,
    cut: Option<Cut>,
}

/// A reader that counts what it hands out against the pass's [`Tally`] and
/// fails, for good, once a limit is passed.
struct Budget<R> {
    inner: R,
    tally: Rc<RefCell<Tally>>,
    /// Errors of `inner` are a corrupt compressed stream, not file I/O.
    decompressing: bool,
}

impl<R> Budget<R> {
    fn new(inner: R, tally: &Rc<RefCell<Tally>>, decompressing: bool) -> Self {
        Budget {
            inner,
            tally: tally.clone(),
            decompressing,
        }
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut t = self.tally.borrow_mut();
        if t.cut.is_none() && t.start.elapsed() > t.limits.time {
            t.cut = Some(Cut::Time);
        }
        if t.cut.is_some() {
            return Err(std::io::Error::other("archive read stopped at a limit"));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                t.read = t.read.saturating_add(n as u64);
                if t.read > t.limits.bytes {
                    t.cut = Some(Cut::Bytes);
                    return Err(std::io::Error::other("archive read stopped at its byte limit"));
                }
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                if self.decompressing {
                    t.cut = Some(Cut::Stream(e.kind(), e.to_string()));
                }
                Err(e)
            }
        }
    }
}

impl<R: Seek> Seek for Budget<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// The error a pass ends with: a limit or a corrupt stream if the reader
/// saw one (whatever error the tar layer made of it), else `result`'s.
fn settle<T>(path: &Path, format: Format, tally: &Rc<RefCell<Tally>>, result: Result<T>) -> Result<T> {
    let t = tally.borrow();
    match &t.cut {
        None => result,
        Some(Cut::Bytes) => Err(Error::ByteLimit {
            path: path.to_path_buf(),
            limit: t.limits.bytes,
        }),
        Some(Cut::Time) => Err(Error::TimeLimit {
            path: path.to_path_buf(),
            secs: t.limits.time.as_secs_f64(),
        }),
        Some(Cut::Stream(kind, msg)) => Err(Error::Stream {
            path: path.to_path_buf(),
            format,
            source: std::io::Error::new(*kind, msg.clone()),
        }),
    }
}

/// Errors out once `start` is more than [`TIME_LIMIT`] ago.
pub fn check_time(path: &Path, start: std::time::Instant) -> Result<()> {
    if start.elapsed() > TIME_LIMIT {
        return Err(Error::TimeLimit {
            path: path.to_path_buf(),
            secs: TIME_LIMIT.as_secs_f64(),
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
/// as much or as little as it wants; the rest is skipped. Runs under
/// [`Limits::COMMAND`].
pub fn walk<F>(path: &Path, mut visit: F) -> Result<(Format, Summary)>
where
    F: FnMut(&Member, &mut dyn Read) -> Result<()>,
{
    walk_with(path, &Limits::COMMAND, |m, r| visit(m, r).map(|()| Step::Next))
}

/// [`walk`] under `limits`, and the visitor may stop the walk.
pub fn walk_with<F>(path: &Path, limits: &Limits, mut visit: F) -> Result<(Format, Summary)>
where
    F: FnMut(&Member, &mut dyn Read) -> Result<Step>,
{
    let format = detect(path)?;
    let mut summary = Summary::default();
    let tally = Rc::new(RefCell::new(Tally {
        limits: *limits,
        start: Instant::now(),
        read: 0,
        cut: None,
    }));
    let result = match format {
        Format::Directory => {
            let mut seen = 0;
            walk_dir(path, path, 0, &tally, &mut seen, &mut summary, &mut visit).map(|_| ())
        }
        _ => walk_file(path, format, &tally, &mut summary, &mut visit),
    };
    settle(path, format, &tally, result)?;
    if summary.members.is_empty() && summary.ignored.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((format, summary))
}

fn walk_file<F>(
    path: &Path,
    format: Format,
    tally: &Rc<RefCell<Tally>>,
    summary: &mut Summary,
    visit: &mut F,
) -> Result<()>
where
    F: FnMut(&Member, &mut dyn Read) -> Result<Step>,
{
    let file = File::open(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let buffered = BufReader::with_capacity(256 << 10, file);
    let archive_err = |source| Error::Archive {
        path: path.to_path_buf(),
        source,
    };
    match format {
        Format::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(buffered).map_err(archive_err)?;
            let mut archive = tar::Archive::new(Budget::new(Box::new(decoder) as Box<dyn Read>, tally, true));
            let entries = archive.entries().map_err(archive_err)?;
            walk_entries(path, entries, tally, summary, visit)
        }
        Format::Gzip => {
            let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
            let mut archive = tar::Archive::new(Budget::new(Box::new(decoder) as Box<dyn Read>, tally, true));
            let entries = archive.entries().map_err(archive_err)?;
            walk_entries(path, entries, tally, summary, visit)
        }
        // Seekable: data no visitor reads is seeked over, not read.
        _ => {
            let mut archive = tar::Archive::new(Budget::new(buffered, tally, false));
            let entries = archive.entries_with_seek().map_err(archive_err)?;
            walk_entries(path, entries, tally, summary, visit)
        }
    }
}

fn walk_entries<'a, R: Read + 'a, F>(
    path: &Path,
    entries: tar::Entries<'a, R>,
    tally: &Rc<RefCell<Tally>>,
    summary: &mut Summary,
    visit: &mut F,
) -> Result<()>
where
    F: FnMut(&Member, &mut dyn Read) -> Result<Step>,
{
    let limits = tally.borrow().limits;
    let mut previous: Option<String> = None;
    for (seen, entry) in entries.enumerate() {
        if seen >= limits.members {
            return Err(Error::TooManyMembers {
                path: path.to_path_buf(),
                limit: limits.members,
            });
        }
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
        let step = visit(&member, &mut entry).map_err(|e| fill_path(e, path, &member))?;
        previous = Some(member.name.clone());
        summary.members.push(member);
        if step == Step::Stop {
            break;
        }
    }
    Ok(())
}

/// Returns whether the visitor asked to stop.
fn walk_dir<F>(
    root: &Path,
    dir: &Path,
    depth: usize,
    tally: &Rc<RefCell<Tally>>,
    seen: &mut usize,
    summary: &mut Summary,
    visit: &mut F,
) -> Result<bool>
where
    F: FnMut(&Member, &mut dyn Read) -> Result<Step>,
{
    if depth > MAX_DIR_DEPTH {
        return Ok(false);
    }
    let limits = tally.borrow().limits;
    let list_err = |source| Error::List {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(list_err)? {
        *seen += 1;
        if *seen > limits.members {
            return Err(Error::TooManyMembers {
                path: root.to_path_buf(),
                limit: limits.members,
            });
        }
        if let Ok(e) = e {
            names.push(e.path());
        }
    }
    names.sort();
    for p in names {
        if tally.borrow().start.elapsed() > limits.time {
            return Err(Error::TimeLimit {
                path: root.to_path_buf(),
                secs: limits.time.as_secs_f64(),
            });
        }
        // symlink_metadata: links are not followed, so an extracted
        // checkpoint cannot point us outside itself.
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if walk_dir(root, &p, depth + 1, tally, seen, summary, visit)? {
                return Ok(true);
            }
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
        let file = File::open(&p).map_err(|source| Error::Open {
            path: p.clone(),
            source,
        })?;
        let mut file = Budget::new(file, tally, false);
        let step = visit(&member, &mut file).map_err(|e| fill_path(e, root, &member))?;
        summary.members.push(member);
        if step == Step::Stop {
            return Ok(true);
        }
    }
    Ok(false)
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
