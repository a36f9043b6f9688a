//! Rendering of checkpoint results: the `show` and `list` tables, the
//! `inspect` tree, memory-search hits, and JSON for each. Reads the
//! `checkpoint` models only; computes nothing of its own.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::checkpoint::memory::Match;
use crate::checkpoint::{Checkpoint, FileKind, Listed, Process, SeccompChain, Thread};

/// Output shape of `inspect` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Tables and trees for people.
    Text,
    Json,
}

/// Which parts of a checkpoint `inspect` shows.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    pub ps_tree: bool,
    pub cmdline: bool,
    pub env: bool,
    pub files: bool,
    pub sockets: bool,
    pub mounts: bool,
    pub stats: bool,
    pub metadata: bool,
    pub rootfs_diff: bool,
    pub seccomp: bool,
    /// Only this process (PID in the container's namespace).
    pub pid: Option<u32>,
}

impl Sections {
    fn any_process_detail(&self) -> bool {
        self.cmdline || self.env || self.files || self.sockets
    }
}

/// `1.5 KiB`-style sizes.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn or_dash(s: Option<&str>) -> &str {
    s.filter(|s| !s.is_empty()).unwrap_or("-")
}

/// Left-aligned columns, two spaces apart.
fn write_table<W: Write>(out: &mut W, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(c.chars().count());
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn show_row(c: &Checkpoint) -> Vec<String> {
    let md = &c.metadata;
    vec![
        or_dash(md.container_name.as_deref()).to_string(),
        or_dash(md.image.as_deref()).to_string(),
        short_id(or_dash(md.id.as_deref())).to_string(),
        or_dash(md.runtime.as_deref()).to_string(),
        or_dash(md.created.as_deref()).to_string(),
        or_dash(md.engine.as_deref()).to_string(),
        if md.ips.is_empty() {
            "-".into()
        } else {
            md.ips.join(",")
        },
        human_size(c.checkpoint_size),
        c.rootfs_diff_size
            .map(human_size)
            .unwrap_or_else(|| "-".into()),
    ]
}

#[derive(Serialize)]
struct ShowJson<'a> {
    path: &'a std::path::Path,
    format: String,
    container: Option<&'a str>,
    image: Option<&'a str>,
    id: Option<&'a str>,
    runtime: Option<&'a str>,
    created: Option<&'a str>,
    checkpointed: Option<&'a str>,
    engine: Option<&'a str>,
    pod: Option<&'a str>,
    namespace: Option<&'a str>,
    ips: &'a [String],
    hostname: Option<&'a str>,
    checkpoint_size: u64,
    rootfs_diff_size: Option<u64>,
    archive_size: u64,
}

fn show_json(c: &Checkpoint) -> ShowJson<'_> {
    let md = &c.metadata;
    ShowJson {
        path: &c.path,
        format: c.format.to_string(),
        container: md.container_name.as_deref(),
        image: md.image.as_deref(),
        id: md.id.as_deref(),
        runtime: md.runtime.as_deref(),
        created: md.created.as_deref(),
        checkpointed: md.checkpointed.as_deref(),
        engine: md.engine.as_deref(),
        pod: md.pod_name.as_deref(),
        namespace: md.pod_namespace.as_deref(),
        ips: &md.ips,
        hostname: c.hostname.as_deref(),
        checkpoint_size: c.checkpoint_size,
        rootfs_diff_size: c.rootfs_diff_size,
        archive_size: c.archive_size,
    }
}

const SHOW_HEADER: [&str; 9] = [
    "CONTAINER",
    "IMAGE",
    "ID",
    "RUNTIME",
    "CREATED",
    "ENGINE",
    "IP",
    "CHKPT SIZE",
    "ROOT FS DIFF SIZE",
];

/// `checkpoint show`: one row per archive.
pub fn write_show<W: Write>(out: &mut W, cks: &[Checkpoint], style: Style) -> io::Result<()> {
    match style {
        Style::Json => {
            let rows: Vec<ShowJson> = cks.iter().map(show_json).collect();
            serde_json::to_writer_pretty(&mut *out, &rows).map_err(io::Error::other)?;
            writeln!(out)
        }
        Style::Text => {
            let rows: Vec<Vec<String>> = cks.iter().map(show_row).collect();
            write_table(out, &SHOW_HEADER, &rows)
        }
    }
}

/// `checkpoint list`.
pub fn write_list<W: Write>(
    out: &mut W,
    dir: &std::path::Path,
    items: &[Listed],
    style: Style,
) -> io::Result<()> {
    match style {
        Style::Json => {
            #[derive(Serialize)]
            struct Row<'a> {
                path: &'a std::path::Path,
                size: u64,
                modified: Option<&'a str>,
                #[serde(skip_serializing_if = "Option::is_none")]
                checkpoint: Option<ShowJson<'a>>,
                #[serde(skip_serializing_if = "Option::is_none")]
                error: Option<&'a str>,
            }
            let rows: Vec<Row> = items
                .iter()
                .map(|l| Row {
                    path: &l.path,
                    size: l.size,
                    modified: l.modified.as_deref(),
                    checkpoint: l.checkpoint.as_ref().ok().map(|c| show_json(c)),
                    error: l.checkpoint.as_ref().err().map(String::as_str),
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &rows).map_err(io::Error::other)?;
            writeln!(out)
        }
        Style::Text => {
            if items.is_empty() {
                return writeln!(out, "no checkpoints in {}", dir.display());
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|l| {
                    let name = l
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    match &l.checkpoint {
                        Ok(c) => vec![
                            name,
                            or_dash(c.metadata.pod_name.as_deref()).to_string(),
                            or_dash(c.metadata.pod_namespace.as_deref()).to_string(),
                            or_dash(c.metadata.container_name.as_deref()).to_string(),
                            or_dash(c.metadata.engine.as_deref()).to_string(),
                            or_dash(c.metadata.checkpointed.as_deref().or(l.modified.as_deref()))
                                .to_string(),
                            human_size(l.size),
                        ],
                        Err(e) => vec![
                            name,
                            format!("error: {e}"),
                            String::new(),
                            String::new(),
                            String::new(),
                            String::new(),
                            human_size(l.size),
                        ],
                    }
                })
                .collect();
            write_table(
                out,
                &[
                    "FILE",
                    "POD",
                    "NAMESPACE",
                    "CONTAINER",
                    "ENGINE",
                    "CHECKPOINTED",
                    "SIZE",
                ],
                &rows,
            )
        }
    }
}

/// Escapes control characters: labels carry strings from the archive
/// (command lines, file names), and a hostile one must not be able to
/// break the layout or send terminal escape sequences.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A node of the text tree.
pub(crate) struct Node {
    label: String,
    children: Vec<Node>,
}

impl Node {
    pub(crate) fn new(label: impl Into<String>) -> Self {
        Node {
            label: sanitize(&label.into()),
            children: Vec::new(),
        }
    }

    pub(crate) fn leaf(mut self, label: impl Into<String>) -> Self {
        self.children.push(Node::new(label));
        self
    }

    pub(crate) fn push(&mut self, n: Node) {
        self.children.push(n);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub(crate) fn write<W: Write>(&self, out: &mut W) -> io::Result<()> {
        writeln!(out, "{}", self.label)?;
        self.write_children(out, "")
    }

    fn write_children<W: Write>(&self, out: &mut W, prefix: &str) -> io::Result<()> {
        let n = self.children.len();
        for (i, c) in self.children.iter().enumerate() {
            let last = i + 1 == n;
            writeln!(
                out,
                "{prefix}{}{}",
                if last { "└── " } else { "├── " },
                c.label
            )?;
            let next = format!("{prefix}{}", if last { "    " } else { "│   " });
            c.write_children(out, &next)?;
        }
        Ok(())
    }
}

/// `alive, in wait4` / `zombie (exit 1)`.
pub fn task_status(p: &Process) -> String {
    let mut s = p.state.as_str().to_string();
    if matches!(
        p.state,
        crate::checkpoint::TaskState::Zombie | crate::checkpoint::TaskState::Dead
    ) {
        s.push_str(&format!(", exit {}", p.exit_code));
    }
    if let Some(sc) = p.threads.first().and_then(|t| t.syscall.as_ref()) {
        s.push_str(&format!(", in {}", sc.name));
    }
    s
}

fn thread_label(t: &Thread) -> String {
    format!(
        "thread {} {}{}",
        t.tid,
        t.comm.as_deref().unwrap_or("?"),
        t.syscall
            .as_ref()
            .map(|s| format!(" (in {})", s.name))
            .unwrap_or_default()
    )
}

pub(crate) fn fd_label(fd: u32, kind: &FileKind) -> String {
    match kind {
        FileKind::Reg { path, pos, .. } => format!("fd {fd}: {path} (pos {pos})"),
        FileKind::Pipe { pipe_id } => format!("fd {fd}: pipe:[{pipe_id}]"),
        FileKind::Unix {
            ino,
            path,
            r#type,
            state,
            peer,
        } => {
            let name = if path.is_empty() { "(unnamed)" } else { path };
            let peer = if *peer != 0 {
                format!(" peer {peer}")
            } else {
                String::new()
            };
            format!(
                "fd {fd}: unix {type} {name} {state} ino {ino}{peer}",
                r#type = r#type
            )
        }
        FileKind::Inet {
            proto,
            family,
            state,
            src,
            dst,
            ..
        } => format!("fd {fd}: {proto}/{family} {src} -> {dst} {state}"),
        FileKind::Other { r#type, id } => format!("fd {fd}: {type} (id {id})", r#type = r#type),
    }
}

fn is_socket(k: &FileKind) -> bool {
    matches!(k, FileKind::Unix { .. } | FileKind::Inet { .. })
}

fn process_node(c: &Checkpoint, p: &Process, s: &Sections, recurse: bool) -> Node {
    let mut n = Node::new(format!("[{}] {} ({})", p.pid, p.comm, task_status(p)));
    if s.cmdline {
        let cmd = match &p.cmdline {
            Some(v) if !v.is_empty() => v.join(" "),
            Some(_) => "(empty)".into(),
            None => "(not in the dumped pages)".into(),
        };
        n.push(Node::new(format!("cmdline: {cmd}")));
    }
    if s.env {
        let mut e = Node::new("environment");
        match &p.env {
            Some(v) => v.iter().for_each(|x| e.push(Node::new(x.clone()))),
            None => e.push(Node::new("(not in the dumped pages)")),
        }
        n.push(e);
    }
    if s.files || s.sockets {
        let title = if s.files { "open files" } else { "sockets" };
        let mut f = Node::new(title);
        if s.files {
            if let Some(cwd) = &p.cwd {
                f.push(Node::new(format!("cwd: {cwd}")));
            }
            if let Some(root) = &p.root {
                f.push(Node::new(format!("root: {root}")));
            }
        }
        for fd in &p.fds {
            if s.files || is_socket(&fd.file) {
                f.push(Node::new(fd_label(fd.fd, &fd.file)));
            }
        }
        if f.children.is_empty() {
            f.push(Node::new("(none)"));
        }
        n.push(f);
    }
    if p.threads.len() > 1 {
        for t in &p.threads {
            n.push(Node::new(thread_label(t)));
        }
    }
    if recurse {
        for child in c.children(p.pid) {
            if let Some(cp) = c.processes.get(&child) {
                n.push(process_node(c, cp, s, true));
            }
        }
    }
    n
}

fn micros(us: u32) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

pub(crate) fn wrap_names<'a>(names: impl Iterator<Item = &'a String>, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for name in names {
        if !cur.is_empty() && cur.len() + 1 + name.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(name);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

fn seccomp_node(chains: &[SeccompChain]) -> Node {
    let mut n = Node::new("Seccomp (x86_64, evaluated)");
    if chains.is_empty() {
        n.push(Node::new("no process runs under a seccomp filter"));
    }
    for ch in chains {
        let v = &ch.verdict;
        let pids: Vec<String> = ch.pids.iter().map(u32::to_string).collect();
        let mut c = Node::new(format!(
            "filter chain {:?}{} (PIDs {}): {} allowed, {} conditional, {} denied",
            v.chain,
            if ch.last_filters.len() > 1 {
                format!(", identical copies ending at {:?}", &ch.last_filters[1..])
            } else {
                String::new()
            },
            pids.join(", "),
            v.allowed.len(),
            v.conditional.len(),
            v.denied.len()
        ));
        let mut a = Node::new("allowed");
        wrap_names(v.allowed.iter(), 100)
            .into_iter()
            .for_each(|l| a.push(Node::new(l)));
        c.push(a);
        if !v.conditional.is_empty() {
            let mut cn = Node::new("allowed for some arguments");
            wrap_names(v.conditional.iter(), 100)
                .into_iter()
                .for_each(|l| cn.push(Node::new(l)));
            c.push(cn);
        }
        let mut by_action: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, action) in &v.denied {
            by_action
                .entry(action.as_str())
                .or_default()
                .push(name.clone());
        }
        for (action, names) in by_action {
            let mut d = Node::new(format!("denied → {action}: {} syscalls", names.len()));
            wrap_names(names.iter(), 100)
                .into_iter()
                .for_each(|l| d.push(Node::new(l)));
            c.push(d);
        }
        n.push(c);
    }
    n
}

/// `checkpoint inspect` as a tree.
pub fn write_inspect<W: Write>(
    out: &mut W,
    c: &Checkpoint,
    s: &Sections,
    seccomp: Option<&[SeccompChain]>,
    style: Style,
) -> io::Result<()> {
    if style == Style::Json {
        return write_inspect_json(out, c, s, seccomp);
    }
    let md = &c.metadata;
    let mut root = Node::new(format!("{} ({})", c.path.display(), c.format));
    root.push(Node::new(format!(
        "Container: {}{}",
        or_dash(md.container_name.as_deref()),
        md.id
            .as_deref()
            .map(|i| format!(" ({})", short_id(i)))
            .unwrap_or_default()
    )));
    if let Some(pod) = &md.pod_name {
        root.push(Node::new(format!(
            "Pod: {pod} (namespace {})",
            or_dash(md.pod_namespace.as_deref())
        )));
    }
    root.push(Node::new(format!(
        "Engine: {}",
        or_dash(md.engine.as_deref())
    )));
    root.push(Node::new(format!(
        "Image: {}",
        or_dash(md.image.as_deref())
    )));
    root.push(Node::new(format!(
        "Runtime: {}",
        or_dash(md.runtime.as_deref())
    )));
    root.push(Node::new(format!(
        "Created: {}",
        or_dash(md.created.as_deref())
    )));
    root.push(Node::new(format!(
        "Checkpointed: {}",
        or_dash(md.checkpointed.as_deref())
    )));
    root.push(Node::new(format!(
        "IP: {}",
        if md.ips.is_empty() {
            "-".into()
        } else {
            md.ips.join(", ")
        }
    )));
    root.push(Node::new(format!(
        "Hostname: {}",
        or_dash(c.hostname.as_deref())
    )));
    root.push(Node::new(format!(
        "Checkpoint size: {}",
        human_size(c.checkpoint_size)
    )));
    if let Some(d) = c.rootfs_diff_size {
        root.push(Node::new(format!("Root FS diff size: {}", human_size(d))));
    }
    if s.metadata {
        let mut m = Node::new("Metadata");
        m.push(Node::new(format!("ID: {}", or_dash(md.id.as_deref()))));
        m.push(Node::new(format!(
            "Image ref: {}",
            or_dash(md.image_ref.as_deref())
        )));
        m.push(Node::new(format!("Command: {}", md.command.join(" "))));
        m.push(Node::new(format!(
            "CRIU images: version {}, run id {}{}",
            c.inventory.img_version,
            or_dash(c.inventory.criu_run_id.as_deref()),
            c.inventory
                .dump_uptime_us
                .map(|u| format!(", dump uptime {:.3} s", u as f64 / 1e6))
                .unwrap_or_default()
        )));
        let mut a = Node::new("Annotations");
        for (k, v) in &md.annotations {
            a.push(Node::new(format!("{k}: {v}")));
        }
        m.push(a);
        root.push(m);
    }
    if s.stats {
        let mut n = Node::new("CRIU dump statistics");
        match &c.stats {
            Some(st) => {
                n = n
                    .leaf(format!("Freezing time: {}", micros(st.freezing_time_us)))
                    .leaf(format!("Frozen time: {}", micros(st.frozen_time_us)))
                    .leaf(format!("Memdump time: {}", micros(st.memdump_time_us)))
                    .leaf(format!("Memwrite time: {}", micros(st.memwrite_time_us)))
                    .leaf(format!("Pages scanned: {}", st.pages_scanned))
                    .leaf(format!("Pages written: {}", st.pages_written))
                    .leaf(format!(
                        "Pages skipped (parent): {}",
                        st.pages_skipped_parent
                    ))
                    .leaf(format!("Pages lazy: {}", st.pages_lazy));
            }
            None => n.push(Node::new("(no stats-dump)")),
        }
        root.push(n);
    }
    if s.ps_tree || s.any_process_detail() || s.pid.is_some() {
        let mut t = Node::new("Process tree (PIDs in the container's namespace)");
        match s.pid {
            Some(pid) => {
                if let Some(p) = c.processes.get(&pid) {
                    t.push(process_node(c, p, s, false));
                }
            }
            None => {
                for r in c.roots() {
                    if let Some(p) = c.processes.get(&r) {
                        t.push(process_node(c, p, s, true));
                    }
                }
            }
        }
        root.push(t);
    }
    if s.mounts {
        let mut m = Node::new("Mounts (OCI spec)");
        for mt in &c.mounts {
            m.push(Node::new(format!(
                "{} ← {} ({}) [{}]",
                mt.destination,
                mt.source,
                mt.r#type,
                mt.options.join(",")
            )));
        }
        if !c.bind_mounts.is_empty() {
            let mut b = Node::new("bind.mounts");
            for bm in &c.bind_mounts {
                b.push(Node::new(format!(
                    "{} ← {} [{}]",
                    bm.destination,
                    bm.source,
                    bm.options.join(",")
                )));
            }
            m.push(b);
        }
        root.push(m);
    }
    if s.rootfs_diff {
        let mut d = Node::new("Root FS diff (rootfs-diff.tar)");
        for e in &c.rootfs_diff {
            d.push(Node::new(format!(
                "{} {} ({})",
                e.kind,
                e.path,
                human_size(e.size)
            )));
        }
        if c.rootfs_diff.is_empty() {
            d.push(Node::new("(none)"));
        }
        if !c.deleted_files.is_empty() {
            let mut del = Node::new("Deleted files (deleted.files)");
            c.deleted_files
                .iter()
                .for_each(|f| del.push(Node::new(f.clone())));
            d.push(del);
        }
        root.push(d);
    }
    if s.seccomp {
        root.push(seccomp_node(seccomp.unwrap_or_default()));
    }
    if !c.problems.is_empty() || !c.ignored_members.is_empty() {
        let mut pr = Node::new("Problems");
        c.problems
            .iter()
            .for_each(|p| pr.push(Node::new(p.clone())));
        c.ignored_members
            .iter()
            .for_each(|m| pr.push(Node::new(format!("skipped unsafe member name {m}"))));
        root.push(pr);
    }
    root.write(out)
}

fn write_inspect_json<W: Write>(
    out: &mut W,
    c: &Checkpoint,
    s: &Sections,
    seccomp: Option<&[SeccompChain]>,
) -> io::Result<()> {
    #[derive(Serialize)]
    struct Json<'a> {
        #[serde(flatten)]
        summary: ShowJson<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<&'a crate::checkpoint::Metadata>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stats: Option<&'a crate::checkpoint::DumpStats>,
        #[serde(skip_serializing_if = "Option::is_none")]
        processes: Option<Vec<Process>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mounts: Option<&'a [crate::checkpoint::Mount]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        bind_mounts: Option<&'a [crate::checkpoint::BindMount]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rootfs_diff: Option<&'a [crate::checkpoint::DiffEntry]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        deleted_files: Option<&'a [String]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seccomp: Option<&'a [SeccompChain]>,
        problems: &'a [String],
        ignored_members: &'a [String],
    }
    let want_procs = s.ps_tree || s.any_process_detail() || s.pid.is_some();
    let processes = want_procs.then(|| {
        c.processes
            .values()
            .filter(|p| match s.pid {
                Some(pid) => pid == p.pid,
                None => true,
            })
            .map(|p| {
                let mut p = p.clone();
                if !s.cmdline {
                    p.cmdline = None;
                }
                if !s.env {
                    p.env = None;
                }
                if !s.files {
                    p.fds.retain(|f| s.sockets && is_socket(&f.file));
                }
                p
            })
            .collect()
    });
    let j = Json {
        summary: show_json(c),
        metadata: s.metadata.then_some(&c.metadata),
        stats: if s.stats { c.stats.as_ref() } else { None },
        processes,
        mounts: s.mounts.then_some(c.mounts.as_slice()),
        bind_mounts: s.mounts.then_some(c.bind_mounts.as_slice()),
        rootfs_diff: s.rootfs_diff.then_some(c.rootfs_diff.as_slice()),
        deleted_files: s.rootfs_diff.then_some(c.deleted_files.as_slice()),
        seccomp: if s.seccomp { seccomp } else { None },
        problems: &c.problems,
        ignored_members: &c.ignored_members,
    };
    serde_json::to_writer_pretty(&mut *out, &j).map_err(io::Error::other)?;
    writeln!(out)
}

/// `checkpoint memsearch` hits.
pub fn write_matches<W: Write>(
    out: &mut W,
    pid: u32,
    pattern: &str,
    matches: &[Match],
    style: Style,
) -> io::Result<()> {
    match style {
        Style::Json => {
            serde_json::to_writer_pretty(&mut *out, matches).map_err(io::Error::other)?;
            writeln!(out)
        }
        Style::Text => {
            if matches.is_empty() {
                return writeln!(
                    out,
                    "no match for {pattern:?} in the dumped memory of PID {pid}"
                );
            }
            let rows: Vec<Vec<String>> = matches
                .iter()
                .map(|m| {
                    vec![
                        format!("0x{:016x}", m.address),
                        format!("{} {}", m.perms, m.mapping),
                        format!(
                            "0x{:x}-0x{:x}+0x{:x}",
                            m.mapping_start, m.mapping_end, m.offset_in_mapping
                        ),
                        sanitize(&format!("{}[{}]{}", m.before, m.matched, m.after)),
                    ]
                })
                .collect();
            write_table(
                out,
                &["ADDRESS", "MAPPING", "RANGE+OFFSET", "CONTEXT"],
                &rows,
            )?;
            writeln!(out, "{} match(es) in PID {pid}", matches.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn tree_drawing() {
        let mut root = Node::new("r");
        let mut a = Node::new("a");
        a.push(Node::new("a1"));
        root.push(a);
        root.push(Node::new("b"));
        let mut out = Vec::new();
        root.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "r\n├── a\n│   └── a1\n└── b\n"
        );
    }
}
