//! The one error type of the checkpoint reader. Every variant names the
//! archive (or directory) member it is about, so a one-line message tells the
//! user which part of a checkpoint is bad.

use std::path::PathBuf;

/// Errors from reading a checkpoint archive and decoding its CRIU images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open checkpoint {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: reading archive")]
    Archive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: member {member}: read failed")]
    Read {
        path: PathBuf,
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a tar archive (plain, gzip or zstd), nor a checkpoint directory")]
    NotTar { path: PathBuf },
    #[error("{path}: the archive is empty")]
    Empty { path: PathBuf },
    #[error("{path}: not a checkpoint archive: no member {missing}{ignored}")]
    NotCheckpoint {
        path: PathBuf,
        missing: &'static str,
        /// Text listing members that were skipped as unsafe, if any.
        ignored: String,
    },
    #[error("member {member}: the archive ends after {got} of its {size} bytes")]
    ShortMember { member: String, got: u64, size: u64 },
    #[error(
        "member {member}: {size} bytes is more than the {limit}-byte limit for this kind of member"
    )]
    MemberTooLarge {
        member: String,
        size: u64,
        limit: u64,
    },
    #[error("member {member}: truncated at offset {offset}: needed {needed} more bytes, {available} left")]
    Truncated {
        member: String,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("member {member}: wrong magic 0x{found:08x} (expected 0x{expected:08x})")]
    BadMagic {
        member: String,
        found: u32,
        expected: u32,
    },
    #[error("member {member}: entry length {len} at offset {offset} is over the {limit}-byte entry limit")]
    EntryTooLarge {
        member: String,
        offset: usize,
        len: u64,
        limit: usize,
    },
    #[error("member {member}: entry length {len} at offset {offset} runs past the end ({available} bytes left)")]
    EntryPastEnd {
        member: String,
        offset: usize,
        len: u64,
        available: usize,
    },
    #[error("member {member}: protobuf entry at offset {offset}")]
    Decode {
        member: String,
        offset: usize,
        #[source]
        source: prost::DecodeError,
    },
    #[error("member {member}: empty image (no entry)")]
    NoEntry { member: String },
    #[error("member {member}: invalid JSON")]
    Json {
        member: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("member {member}: nested tar")]
    NestedTar {
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("member {member}: bad seccomp filter #{index}: {reason}")]
    Filter {
        member: String,
        index: usize,
        reason: String,
    },
    #[error("no process with PID {pid} in checkpoint/pstree.img (PIDs: {known})")]
    NoSuchPid { pid: u32, known: String },
    #[error("{what} {value:?}: {reason}")]
    BadFilter {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("PID {pid} has no mapping that matches {filter}")]
    NoMapping { pid: u32, filter: String },
    #[error("{path:?}: not a usable container path (empty, or climbs with '..')")]
    BadPath { path: String },
    #[error("{path}: no contents in the checkpoint: {why}")]
    NotChanged { path: String, why: &'static str },
    #[error("{path} in rootfs-diff.tar is {kind}{}; it is not followed", if target.is_empty() { String::new() } else { format!(" to {target:?}") })]
    NotRegular {
        path: String,
        kind: &'static str,
        target: String,
    },
    #[error("cannot write core file {path}")]
    CoreWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{count} processes: more than {limit} cores at once; choose one with --pid")]
    TooManyProcesses { count: usize, limit: usize },
    #[error("PID {pid}: {count} memory segments are more than an ELF core can count")]
    TooManySegments { pid: u32, count: usize },
    #[error("ELF writer: {reason}")]
    Elf { reason: String },
    #[error("{path}: reading took more than {secs} s; stopped")]
    TimeLimit { path: PathBuf, secs: f64 },
    #[error("{path}: more than {} MiB read out of the archive, its limit here; stopped", limit >> 20)]
    ByteLimit { path: PathBuf, limit: u64 },
    #[error("{path}: more than {limit} members, the limit here; stopped")]
    TooManyMembers { path: PathBuf, limit: usize },
    #[error("{path}: corrupt or truncated {} stream", match format { super::Format::Gzip => "gzip", _ => "zstd" })]
    Stream {
        path: PathBuf,
        format: super::Format,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: its CRIU images hold more than {} MiB, the limit for decoding; stopped", limit >> 20)]
    ImagesTooLarge { path: PathBuf, limit: u64 },
    #[error("invalid search pattern")]
    Pattern(#[from] regex::Error),
    #[error("cannot list {path}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The message with its causes, `a: b: c`, for places that keep an
    /// error as one line of text (problems, `list` rows).
    pub fn to_line(&self) -> String {
        let mut line = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            line.push_str(": ");
            line.push_str(&e.to_string());
            cur = e.source();
        }
        // Causes may quote the archive (a tar header, JSON): one line, no
        // control characters.
        if line.chars().any(char::is_control) {
            line = line.chars().flat_map(|c| {
                let esc: Vec<char> = if c.is_control() { c.escape_default().collect() } else { vec![c] };
                esc
            }).collect();
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_that_quotes_a_newline_stays_one_line() {
        let e = Error::NestedTar {
            member: "rootfs-diff.tar".into(),
            source: std::io::Error::other("bad header \"a\nb\u{1b}[2J\""),
        };
        let line = e.to_line();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains("a\\nb\\u{1b}[2J"), "{line}");
    }
}
