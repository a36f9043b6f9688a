//! Rendering of report models: a table for people, JSON for programs.
//!
//! This is the only module that writes to stdout. It reads models built
//! elsewhere and never computes results of its own.

pub mod checkpoint;
pub mod correlate;
pub mod escape;
pub mod profiles;
pub mod forensics;

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
    write_summary(&mut escape::stdout(), summary, format)
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
    if !s.counts_exact && s.complete {
        writeln!(
            out,
            "  note:     {} events lost: counts and times are short; the allowlist is whole (the quenched companion saw every call{})",
            s.lost_events,
            if s.from_companion.is_empty() { String::new() } else { format!(", and alone saw {}", s.from_companion.join(" ")) }
        )?;
    }
    if !s.runtime_allowance.is_empty() {
        writeln!(
            out,
            "  also allowed, unseen this run: {} (the runtime's own start-up may make them)",
            s.runtime_allowance.join(" ")
        )?;
    }
    let excluded = if a.events.excluded > 0 { format!(", {} excluded (checkpoints)", a.events.excluded) } else { String::new() };
    writeln!(
        out,
        "events      {} recorded, {} in window, {} syscalls{excluded}, {} lost, {} malformed",
        a.events.total, a.events.in_window, a.events.syscalls_in_window, s.lost_events, s.malformed_records
    )?;
    if let Some(r) = &s.recorder {
        let restored = if r.restored > 0 { format!(" ({} back on after checkpoints)", r.restored) } else { String::new() };
        writeln!(
            out,
            "recorder    pid {}, {:.2} s CPU, {} KiB peak RSS, {} pages, {} events switched off{restored}",
            r.pid, r.cpu_seconds, r.max_rss_kib, r.pages, r.quenched
        )?;
    }
    if let Some(by) = s.finished_by {
        writeln!(out, "finished by {}", serde_json::to_value(by).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())?;
    }
    write_episodes(out, s)?;
    writeln!(out)?;

    // Which processes made each call.
    let mut callers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in a.processes.values() {
        for name in p.syscalls.keys() {
            callers.entry(name.as_str()).or_default().push(format!("{}:{}", p.tgid, escape::field(&p.comm)));
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
            escape::field(&p.comm),
            p.total,
            escape::field(p.exe.as_deref().unwrap_or("-"))
        )?;
    }
    Ok(())
}

/// Checkpoint episodes: when, how long, which tasks, what was excluded,
/// and the calls each task resumed with.
fn write_episodes<W: Write>(out: &mut W, s: &Summary) -> io::Result<()> {
    let a = &s.analysis;
    if !a.episodes.is_empty() {
        writeln!(
            out,
            "checkpoints {} episode{}: CRIU's parasite ran in the container's tasks; its {} calls are not in the profile",
            a.episodes.len(),
            if a.episodes.len() == 1 { "" } else { "s" },
            a.events.excluded
        )?;
    }
    for (i, e) in a.episodes.iter().enumerate() {
        let secs = e.start_ns as f64 / 1e9;
        let when = s.trace_clock_unix.map(|base| format!("{}, ", utc(base + secs))).unwrap_or_default();
        let ms = e.end_ns.saturating_sub(e.start_ns) as f64 / 1e6;
        writeln!(
            out,
            "  {:<2} {when}trace clock {secs:.3} s, {ms:.1} ms, {} pid {}, {} stops",
            i + 1,
            e.tracer_comm,
            e.tracer_pid,
            e.stops
        )?;
        let tasks: Vec<String> =
            e.tasks.iter().map(|t| format!("{}:{} ({} calls)", t.pid, t.comm, t.excluded)).collect();
        write_wrapped(out, "     tasks     ", &tasks)?;
        let calls: Vec<String> = e.excluded.iter().map(|(name, n)| format!("{name} {n}")).collect();
        write_wrapped(out, "     excluded  ", &calls)?;
        if !e.resumed.is_empty() {
            let resumed: Vec<String> = e
                .resumed
                .iter()
                .map(|r| format!("{}:{} {}{}", r.pid, r.comm, r.syscall, if r.new { " (new)" } else { "" }))
                .collect();
            write_wrapped(out, "     resumed   ", &resumed)?;
        }
        if e.late_stops > 0 {
            writeln!(out, "     warning   {} stops came after the episode was taken as over", e.late_stops)?;
        }
    }
    if a.episodes.iter().any(|e| e.resumed.iter().any(|r| r.new)) {
        writeln!(
            out,
            "  (new) a call first made when a task resumed after the checkpoint, usually the interrupted call restarted: it stays in the profile, a restored container makes it too"
        )?;
    }
    if !a.other_tracers.is_empty() {
        let others: Vec<String> = a.other_tracers.iter().map(|(comm, n)| format!("{comm} {n}")).collect();
        write_wrapped(out, "ptrace      stops reported to other processes (their calls are counted): ", &others)?;
    }
    Ok(())
}

/// `items` after `lead`, comma separated, wrapped under the lead.
fn write_wrapped<W: Write>(out: &mut W, lead: &str, items: &[String]) -> io::Result<()> {
    const WIDTH: usize = 100;
    let indent = " ".repeat(lead.len().min(16));
    let mut line = lead.to_string();
    let mut first = true;
    for item in items {
        if !first && line.len() + item.len() + 2 > WIDTH {
            writeln!(out, "{},", line.trim_end())?;
            line = indent.clone();
            first = true;
        }
        if !first {
            line.push_str(", ");
        }
        line.push_str(item);
        first = false;
    }
    writeln!(out, "{}", line.trim_end())
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds.
fn utc(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
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
            runtime_allowance: vec![],
            rule: Rule::FirstEvent,
            rule_text: Rule::FirstEvent.describe(),
            complete: false,
            incomplete_reasons: vec!["lost 5 events".into()],
            lost_events: 5,
            counts_exact: true,
            from_companion: vec![],
            per_cpu: vec![],
            malformed_records: 0,
            analysis: a,
            profile: "/s/abc/seccomp.json".into(),
            arch: "x86_64".into(),
            kernel_release: "6.18".into(),
            started_unix: 1,
            finished_unix: 2,
            trace_clock_unix: None,
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
    fn dates_are_utc() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_379_463.9), "2026-11-22 20:31:03 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn episodes_say_when_how_long_who_and_what_was_left_out() {
        use crate::profile::episode::{Episode, EpisodeTask, Resumed};
        let mut s = summary();
        s.trace_clock_unix = Some(1_795_369_986.0);
        s.analysis.events.excluded = 5;
        let excluded = [("vmsplice", 3), ("sendto", 2)].iter().map(|(k, v)| (k.to_string(), *v)).collect();
        s.analysis.episodes = vec![Episode {
            tracer_pid: 21999,
            tracer_comm: "criu".into(),
            start_ns: 9_477_501_628_000,
            end_ns: 9_477_534_513_000,
            stops: 44,
            tasks: vec![EpisodeTask { pid: 7, tgid: 7, comm: "sh".into(), stops: 44, excluded: 5 }],
            excluded,
            excluded_calls: 5,
            resumed: vec![Resumed { pid: 7, comm: "sh".into(), syscall: "restart_syscall".into(), ts_ns: 9_477_700_000_000, new: true }],
            late_stops: 0,
        }];
        s.analysis.other_tracers.insert("strace".into(), 12);
        let mut buf = Vec::new();
        write_summary(&mut buf, &s, Format::Table).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("checkpoints 1 episode: "), "{text}");
        assert!(text.contains("its 5 calls are not in the profile"), "{text}");
        assert!(text.contains("  1  2026-11-22 20:31:03 UTC, trace clock 9477.502 s, 32.9 ms, criu pid 21999, 44 stops"), "{text}");
        assert!(text.contains("tasks     7:sh (5 calls)"), "{text}");
        assert!(text.contains("excluded  sendto 2, vmsplice 3"), "{text}");
        assert!(text.contains("resumed   7:sh restart_syscall (new)"), "{text}");
        assert!(text.contains("stays in the profile"), "{text}");
        assert!(text.contains("strace 12"), "{text}");
        assert!(text.contains("5 excluded (checkpoints)"), "{text}");
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
