//! Rendering of the checkpoint forensics commands: `checkpoint files`
//! (changed and deleted files, one file's contents), `checkpoint maps`, and
//! JSON for each. Every string from the archive goes through [`sanitize`]
//! before it reaches a terminal; file contents are escaped when stdout is a
//! terminal ([`Escaping`]).

use std::io::{self, Write};

use serde::Serialize;

use super::checkpoint::{fd_label, human_size, sanitize, Node, Style};
use crate::checkpoint::coredump::Core;
use crate::checkpoint::diff::{Brief, Diff};
use crate::checkpoint::maps::Maps;
use crate::checkpoint::{Checkpoint, DiffEntry};

/// Left-aligned columns, two spaces apart (cells already sanitized).
pub(crate) fn table<W: Write>(out: &mut W, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut line = |cells: &[String]| -> io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
    for r in rows {
        line(r)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct FilesJson<'a> {
    archive: String,
    changed: &'a [DiffEntry],
    deleted: &'a [String],
    rootfs_diff_size: Option<u64>,
}

/// `checkpoint files ARCHIVE`: the changed and the deleted files.
pub fn write_files<W: Write>(out: &mut W, c: &Checkpoint, style: Style) -> io::Result<()> {
    match style {
        Style::Json => {
            let j = FilesJson {
                archive: c.path.display().to_string(),
                changed: &c.rootfs_diff,
                deleted: &c.deleted_files,
                rootfs_diff_size: c.rootfs_diff_size,
            };
            serde_json::to_writer_pretty(&mut *out, &j).map_err(io::Error::other)?;
            writeln!(out)
        }
        Style::Text => {
            let rows: Vec<Vec<String>> = c
                .rootfs_diff
                .iter()
                .map(|e| {
                    let mut name = format!("/{}", e.path);
                    if let Some(l) = &e.link {
                        name.push_str(&format!(" -> {l}"));
                    }
                    vec![
                        e.kind.to_string(),
                        if e.kind == "file" { e.size.to_string() } else { "-".into() },
                        sanitize(&name),
                    ]
                })
                .chain(
                    c.deleted_files
                        .iter()
                        .map(|d| vec!["deleted".into(), "-".into(), sanitize(d)]),
                )
                .collect();
            if rows.is_empty() {
                return writeln!(out, "no changed or deleted files in {}", sanitize(&c.path.display().to_string()));
            }
            table(out, &["KIND", "SIZE", "PATH"], &rows)?;
            let files = c.rootfs_diff.iter().filter(|e| e.kind == "file").count();
            writeln!(
                out,
                "{files} changed file(s) ({}), {} deleted",
                human_size(c.rootfs_diff.iter().filter(|e| e.kind == "file").map(|e| e.size).sum()),
                c.deleted_files.len()
            )
        }
    }
}

pub use super::escape::Escaping;

/// `checkpoint maps ARCHIVE --pid N`.
pub fn write_maps<W: Write>(out: &mut W, m: &Maps, style: Style) -> io::Result<()> {
    match style {
        Style::Json => {
            serde_json::to_writer_pretty(&mut *out, m).map_err(io::Error::other)?;
            writeln!(out)
        }
        Style::Text => {
            let rows: Vec<Vec<String>> = m
                .vmas
                .iter()
                .map(|v| {
                    vec![
                        format!("{:012x}-{:012x}", v.start, v.end),
                        v.perms.clone(),
                        v.kind.to_string(),
                        format!("{:x}", v.offset),
                        v.pages.to_string(),
                        v.dumped_pages.to_string(),
                        sanitize(&v.what),
                    ]
                })
                .collect();
            writeln!(out, "PID {} ({})", m.pid, sanitize(&m.comm))?;
            table(
                out,
                &["RANGE", "PERMS", "KIND", "OFFSET", "PAGES", "DUMPED", "MAPS"],
                &rows,
            )?;
            writeln!(
                out,
                "{} mapping(s), {} pages ({}), {} dumped ({})",
                m.vmas.len(),
                m.total_pages,
                human_size(m.total_pages * 4096),
                m.dumped_pages,
                human_size(m.dumped_pages * 4096)
            )
        }
    }
}

fn brief_label(sign: char, p: &Brief) -> String {
    let mut s = format!("{sign} [{}] {} ({}", p.pid, p.comm, p.state);
    if let Some(b) = &p.blocked {
        s.push_str(&format!(", in {b}"));
    }
    s.push(')');
    if let Some(c) = p.cmdline.as_ref().filter(|c| !c.is_empty()) {
        s.push_str(&format!(": {}", c.join(" ")));
    }
    s
}

fn file_label(e: &DiffEntry) -> String {
    let mut s = format!("/{}", e.path);
    match &e.link {
        Some(l) => s.push_str(&format!(" -> {l}")),
        None if e.kind == "file" => s.push_str(&format!(" ({} B)", e.size)),
        None => s.push_str(&format!(" ({})", e.kind)),
    }
    s
}

/// `checkpoint diff A B`: a tree of what changed (every label sanitized by
/// [`Node`]), or JSON.
pub fn write_diff<W: Write>(out: &mut W, d: &Diff, style: Style) -> io::Result<()> {
    if style == Style::Json {
        serde_json::to_writer_pretty(&mut *out, d).map_err(io::Error::other)?;
        return writeln!(out);
    }
    let mut root = Node::new(format!("{} -> {}", d.a, d.b));
    if !d.container.is_empty() {
        let mut n = Node::new("container");
        for c in &d.container {
            n.push(Node::new(format!("{}: {} -> {}", c.field, c.a, c.b)));
        }
        root.push(n);
    }
    if !d.namespaces.is_empty() {
        let mut n = Node::new("namespaces");
        for c in &d.namespaces {
            n.push(Node::new(format!("{}: {} -> {}", c.field, c.a, c.b)));
        }
        root.push(n);
    }
    let mut procs = Node::new("processes");
    for p in &d.processes_added {
        procs.push(Node::new(brief_label('+', p)));
    }
    for p in &d.processes_gone {
        procs.push(Node::new(brief_label('-', p)));
    }
    for c in &d.processes_changed {
        let mut n = Node::new(format!("~ [{}] {}", c.pid, c.comm));
        for ch in &c.changes {
            n.push(Node::new(format!("{}: {} -> {}", ch.field, ch.a, ch.b)));
        }
        for f in &c.fds_added {
            n.push(Node::new(format!("+ {}", fd_label(f.fd, &f.file))));
        }
        for f in &c.fds_removed {
            n.push(Node::new(format!("- {}", fd_label(f.fd, &f.file))));
        }
        procs.push(n);
    }
    if procs.is_empty() {
        procs.push(Node::new("(no change)"));
    }
    root.push(procs);
    let mut mem = Node::new("memory");
    for m in &d.memory {
        let mut n = Node::new(format!(
            "[{}] {}: dumped pages {} -> {}",
            m.pid, m.comm, m.dumped_pages_a, m.dumped_pages_b
        ));
        for v in &m.mappings_added {
            n.push(Node::new(format!("+ {:x}-{:x} {} {}", v.start, v.end, v.perms, v.what)));
        }
        for v in &m.mappings_removed {
            n.push(Node::new(format!("- {:x}-{:x} {} {}", v.start, v.end, v.perms, v.what)));
        }
        mem.push(n);
    }
    if mem.is_empty() {
        mem.push(Node::new("(no change)"));
    }
    root.push(mem);
    let f = &d.files;
    let mut files = Node::new("files");
    for e in &f.added {
        files.push(Node::new(format!("+ {}", file_label(e))));
    }
    for c in &f.changed {
        files.push(Node::new(format!("~ {} -> {}", file_label(&c.a), file_label(&c.b))));
    }
    for e in &f.removed {
        files.push(Node::new(format!("- {}", file_label(e))));
    }
    for p in &f.deleted_added {
        files.push(Node::new(format!("+ deleted {p}")));
    }
    for p in &f.deleted_removed {
        files.push(Node::new(format!("- deleted {p}")));
    }
    if files.is_empty() {
        files.push(Node::new("(no change)"));
    }
    root.push(files);
    if !d.mounts_added.is_empty() || !d.mounts_removed.is_empty() {
        let mut n = Node::new("mounts");
        d.mounts_added.iter().for_each(|m| n.push(Node::new(format!("+ {m}"))));
        d.mounts_removed.iter().for_each(|m| n.push(Node::new(format!("- {m}"))));
        root.push(n);
    }
    root.write(out)
}

/// `checkpoint coredump`: the files written, and what they lack.
pub fn write_cores<W: Write>(out: &mut W, cores: &[Core], style: Style) -> io::Result<()> {
    if style == Style::Json {
        serde_json::to_writer_pretty(&mut *out, cores).map_err(io::Error::other)?;
        return writeln!(out);
    }
    let rows: Vec<Vec<String>> = cores
        .iter()
        .map(|c| {
            vec![
                c.pid.to_string(),
                sanitize(&c.comm),
                c.threads.to_string(),
                c.segments.to_string(),
                human_size(c.dumped_bytes),
                human_size(c.from_rootfs_diff + c.from_rootfs),
                c.missing.len().to_string(),
                sanitize(&c.path.display().to_string()),
            ]
        })
        .collect();
    table(
        out,
        &["PID", "COMM", "THREADS", "SEGMENTS", "DUMPED", "FROM FILES", "LEFT OUT", "CORE"],
        &rows,
    )?;
    for c in cores {
        for m in &c.missing {
            writeln!(
                out,
                "  PID {}: {:x}-{:x} {} left out: {}",
                c.pid,
                m.start,
                m.end,
                sanitize(&m.what),
                sanitize(&m.why)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_writer_masks_control_bytes() {
        let mut v = Vec::new();
        Escaping::new(&mut v).write_all(b"ok\n\x1b[2J\\\xff\t").unwrap();
        assert_eq!(String::from_utf8(v).unwrap(), "ok\n\\x1b[2J\\\\\\xff\t");
    }
}
