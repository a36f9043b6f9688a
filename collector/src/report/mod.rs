//! Rendering of report models: a table for people, JSON for programs.
//!
//! This is the only module that writes to stdout. It reads models built
//! elsewhere and never computes results of its own.

pub mod checkpoint;

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::container::Summary;

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// The report of one traced container.
pub fn write_summary<W: Write>(out: &mut W, summary: &Summary, format: Format) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, summary).map_err(io::Error::other)?;
            writeln!(out)
        }
        Format::Table => write_summary_table(out, summary),
    }
}

pub fn print_summary(summary: &Summary, format: Format) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    write_summary(&mut out, summary, format)
}

fn write_summary_table<W: Write>(out: &mut W, s: &Summary) -> io::Result<()> {
    let a = &s.analysis;
    writeln!(out, "container   {}", s.id)?;
    let mode = match s.mode {
        crate::record::Mode::Profile => "profile (each syscall's event switched off once seen: counts are lower bounds)",
        crate::record::Mode::Full => "full (every call recorded)",
    };
    writeln!(out, "mode        {mode}")?;
    writeln!(out, "window      {}", s.rule_text)?;
    writeln!(
        out,
        "profile     {} ({} syscalls allowed, {})",
        s.profile.display(),
        a.syscalls.len(),
        if s.complete { "complete" } else { "INCOMPLETE" }
    )?;
    for reason in &s.incomplete_reasons {
        writeln!(out, "  warning:  {reason}")?;
    }
    writeln!(
        out,
        "events      {} recorded, {} in window, {} syscalls, {} lost, {} malformed",
        a.events.total, a.events.in_window, a.events.syscalls_in_window, s.lost_events, s.malformed_records
    )?;
    if let Some(r) = &s.recorder {
        writeln!(
            out,
            "recorder    pid {}, {:.2} s CPU, {} KiB peak RSS, {} pages, {} events switched off",
            r.pid, r.cpu_seconds, r.max_rss_kib, r.pages, r.quenched
        )?;
    }
    if let Some(by) = s.finished_by {
        writeln!(out, "finished by {}", serde_json::to_value(by).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())?;
    }
    writeln!(out)?;

    // Which processes made each call.
    let mut callers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in a.processes.values() {
        for name in p.syscalls.keys() {
            callers.entry(name.as_str()).or_default().push(format!("{}:{}", p.tgid, p.comm));
        }
    }
    let width = a.syscalls.keys().map(String::len).max().unwrap_or(7).max(7);
    writeln!(out, "{:<width$}  {:>8}  PROCESSES", "SYSCALL", "COUNT")?;
    for (name, count) in &a.syscalls {
        let who = callers.get(name.as_str()).map(|v| v.join(" ")).unwrap_or_default();
        writeln!(out, "{name:<width$}  {count:>8}  {who}")?;
    }
    for (nr, count) in &a.unnamed {
        writeln!(out, "{:<width$}  {count:>8}  (no name for this number: not in the profile)", format!("#{nr}"))?;
    }
    if !a.errors.is_empty() {
        writeln!(out)?;
        writeln!(out, "{:<width$}  {:>8}  ERRNO", "FAILED", "COUNT")?;
        for (name, by_errno) in &a.errors {
            for (errno, count) in by_errno {
                writeln!(out, "{name:<width$}  {count:>8}  {errno}")?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "{:>8}  {:>8}  {:<16}  {:>8}  EXE", "PID", "PARENT", "COMM", "SYSCALLS")?;
    for p in a.processes.values() {
        let parent = p.parent.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:>8}  {:>8}  {:<16}  {:>8}  {}",
            p.tgid,
            parent,
            p.comm,
            p.total,
            p.exe.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Analysis, Process, Rule};

    fn summary() -> Summary {
        let mut a = Analysis::default();
        a.syscalls.insert("read".into(), 3);
        a.syscalls.insert("write".into(), 1);
        a.unnamed.insert(999, 2);
        a.errors.entry("read".into()).or_default().insert("EAGAIN".into(), 2);
        a.events.total = 10;
        let mut p = Process { tgid: 7, comm: "sh".into(), exe: Some("/bin/sh".into()), total: 4, ..Default::default() };
        p.syscalls.insert("read".into(), 3);
        p.syscalls.insert("write".into(), 1);
        a.processes.insert(7, p);
        Summary {
            id: "abc".into(),
            host_pid: 7,
            mode: crate::record::Mode::Full,
            finished_by: Some(crate::container::store::FinishedBy::Recorder),
            recorder: None,
            no_event_syscalls: vec![],
            rule: Rule::FirstEvent,
            rule_text: Rule::FirstEvent.describe(),
            complete: false,
            incomplete_reasons: vec!["lost 5 events".into()],
            lost_events: 5,
            per_cpu: vec![],
            malformed_records: 0,
            analysis: a,
            profile: "/s/abc/seccomp.json".into(),
            arch: "x86_64".into(),
            kernel_release: "6.18".into(),
            started_unix: 1,
            finished_unix: 2,
        }
    }

    #[test]
    fn table_names_calls_processes_rule_and_losses() {
        let mut buf = Vec::new();
        write_summary(&mut buf, &summary(), Format::Table).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("from the first event"), "{text}");
        assert!(text.contains("INCOMPLETE"));
        assert!(text.contains("5 lost"));
        assert!(text.lines().any(|l| l.starts_with("read") && l.contains(" 3 ") && l.ends_with("7:sh")), "{text}");
        assert!(text.contains("#999"));
        assert!(text.contains("/s/abc/seccomp.json"));
        assert!(text.contains("full (every call recorded)"));
        assert!(text.contains("finished by recorder"));
        assert!(text.lines().any(|l| l.starts_with("read") && l.ends_with("EAGAIN")), "{text}");
    }

    #[test]
    fn json_round_trips() {
        let mut buf = Vec::new();
        write_summary(&mut buf, &summary(), Format::Json).unwrap();
        let back: Summary = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back.analysis, summary().analysis);
        assert_eq!(back.rule, Rule::FirstEvent);
    }
}
