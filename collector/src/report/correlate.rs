//! Rendering of a [`Correlation`]: a tree for people, JSON for programs.

use std::io::{self, Write};

use super::checkpoint::{fd_label, wrap_names, Node};
use super::Format;
use crate::checkpoint::correlate::{Correlation, ProcessView};

pub fn write_correlation<W: Write>(out: &mut W, c: &Correlation, format: Format) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, c).map_err(io::Error::other)?;
            writeln!(out)
        }
        Format::Table => write_tree(out, c),
    }
}

fn write_tree<W: Write>(out: &mut W, c: &Correlation) -> io::Result<()> {
    let mut root = Node::new(format!("Checkpoint {} of container {}", c.archive.display(), c.container));
    if let Some(t) = &c.checkpointed {
        root.push(Node::new(format!("checkpointed {t}")));
    }
    let episodes = match (c.episodes.len(), c.episode) {
        (0, _) => "none in the trace (was the container traced while it was checkpointed?)".to_string(),
        (n, Some(i)) => format!("{n} in the trace; this dump is episode {i} (its calls are not in the profile)"),
        (n, None) => format!("{n} in the trace; none at this dump's time"),
    };
    root.push(Node::new(format!("checkpoint episodes: {episodes}")));
    for note in &c.notes {
        root.push(Node::new(format!("note: {note}")));
    }

    let mut procs = Node::new(format!(
        "Processes ({} checkpointed; {} traced ones had no counterpart)",
        c.processes.len(),
        c.unmatched_traced
    ));
    for p in &c.processes {
        procs.push(process_node(p, c.mode));
    }
    root.push(procs);

    for s in &c.surface {
        let pids: Vec<String> = s.pids.iter().map(|p| p.to_string()).collect();
        let mut n = Node::new(format!(
            "Allowed against used (filter of PIDs {}): {} allowed, {} for some arguments; {} used; {} allowed and never used",
            pids.join(","),
            s.allowed,
            s.conditional,
            s.used,
            s.unused_allowed.len()
        ));
        let mut unused = Node::new("allowed, never used (the generated profile removes them)");
        for line in wrap_names(s.unused_allowed.iter(), 96) {
            unused = unused.leaf(line);
        }
        n.push(unused);
        if !s.used_but_denied.is_empty() {
            n.push(Node::new(format!("used although this filter denies them: {}", s.used_but_denied.join(" "))));
        }
        root.push(n);
    }
    root.write(out)
}

fn process_node(p: &ProcessView, mode: crate::record::Mode) -> Node {
    let host = match (p.host_pid, p.matched_by.as_deref(), mode) {
        (Some(h), Some(how), _) => format!("host pid {h}, by {how}"),
        // A process that made only calls seen before leaves no record.
        (_, _, crate::record::Mode::Profile) => "no call of its own recorded".to_string(),
        _ => "not in the trace".to_string(),
    };
    let mut n = Node::new(format!("[{}] {} ({}; {host})", p.pid, p.comm, p.state));
    if let Some(cmd) = &p.cmdline {
        n = n.leaf(format!("cmdline: {}", cmd.join(" ")));
    }
    for b in &p.blocked {
        n = n.leaf(format!("blocked in {} (thread {})", b.syscall, b.tid));
    }
    if !p.files.is_empty() {
        let mut f = Node::new("files");
        for fd in &p.files {
            f = f.leaf(fd_label(fd.fd, &fd.file));
        }
        n.push(f);
    }
    if !p.sockets.is_empty() {
        let mut s = Node::new("sockets");
        for fd in &p.sockets {
            s = s.leaf(fd_label(fd.fd, &fd.file));
        }
        n.push(s);
    }
    if p.host_pid.is_some() {
        let calls: Vec<String> = p.syscalls.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let mut s = Node::new(format!("syscalls seen ({})", calls.len()));
        for line in wrap_names(calls.iter(), 96) {
            s = s.leaf(line);
        }
        n.push(s);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::correlate::{Blocked, FdView, Surface};
    use crate::checkpoint::FileKind;

    #[test]
    fn the_tree_names_each_process_its_blocked_call_sockets_and_the_surface() {
        let c = Correlation {
            container: "abc".into(),
            mode: crate::record::Mode::Profile,
            archive: "/a.tar".into(),
            checkpointed: Some("2026-11-22T21:00:00Z".into()),
            dump_uptime_s: Some(12.0),
            episode: Some(1),
            episodes: vec![Default::default()],
            processes: vec![ProcessView {
                pid: 1,
                ppid: 0,
                comm: "sh".into(),
                state: "alive".into(),
                cmdline: Some(vec!["sh".into(), "-c".into(), "wait".into()]),
                host_pid: Some(4242),
                matched_by: Some("container-pid".into()),
                blocked: vec![Blocked { tid: 1, syscall: "wait4".into() }],
                files: vec![],
                sockets: vec![FdView {
                    fd: 3,
                    file: FileKind::Unix { ino: 9, path: "/run/app.sock".into(), r#type: "stream".into(), state: "listen".into(), peer: 0 },
                }],
                syscalls: [("wait4".to_string(), 2)].into_iter().collect(),
            }],
            unmatched_traced: 0,
            surface: vec![Surface {
                pids: vec![1],
                allowed: 300,
                conditional: 2,
                used: 1,
                unused_allowed: vec!["bpf".into(), "mount".into()],
                used_but_denied: vec![],
            }],
            notes: vec![],
        };
        let mut buf = Vec::new();
        write_correlation(&mut buf, &c, Format::Table).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("[1] sh (alive; host pid 4242, by container-pid)"), "{text}");
        assert!(text.contains("blocked in wait4 (thread 1)"), "{text}");
        assert!(text.contains("unix stream /run/app.sock listen"), "{text}");
        assert!(text.contains("wait4:2"), "{text}");
        assert!(text.contains("this dump is episode 1"), "{text}");
        assert!(text.contains("2 allowed and never used"), "{text}");
        assert!(text.contains("bpf mount"), "{text}");
        let mut json = Vec::new();
        write_correlation(&mut json, &c, Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["processes"][0]["host_pid"], 4242);
        assert_eq!(v["processes"][0]["sockets"][0]["kind"], "unix");
    }
}
