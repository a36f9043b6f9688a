//! Printing profile management results: the list of recordings, a merge,
//! a diff, a diff against a runtime's default, and export notes. Names and
//! annotations come from containers, so every such string is escaped
//! before it reaches a terminal.

use std::collections::BTreeSet;
use std::io::{self, Write};

use serde::Serialize;

use super::Format;
use crate::catalog::Entry;
use crate::profile::diff::{Against, Diff};
use crate::profile::merge::Info;

/// `s` with control characters (escape sequences, newlines) escaped, and
/// cut to `max` characters.
pub fn escape(s: &str, max: usize) -> String {
    let mut out: String = s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
    if out.chars().count() > max {
        out = out.chars().take(max.saturating_sub(1)).collect::<String>() + "…";
    }
    out
}

fn json<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// `collector list`.
pub fn write_list<W: Write>(out: &mut W, entries: &[Entry], format: Format) -> io::Result<()> {
    if format == Format::Json {
        return json(out, entries);
    }
    writeln!(
        out,
        "{:<12}  {:<24}  {:<20}  {:<20}  {:<7}  {:<10}  {:>7}  WINDOW / STATUS",
        "ID", "NAME", "STARTED", "ENDED", "MODE", "COMPLETE", "ALLOWED"
    )?;
    for e in entries {
        let mut name = e.name.as_deref().map(|n| escape(n, 24)).unwrap_or_else(|| "-".into());
        if let Some(pod) = &e.pod {
            let ns = e.namespace.as_deref().map(|n| format!("{}/", escape(n, 20))).unwrap_or_default();
            let ctr = e.container.as_deref().map(|c| format!(" {}", escape(c, 20))).unwrap_or_default();
            name = format!("{ns}{}{ctr}", escape(pod, 30));
        }
        let when = |t: Option<u64>| t.map(|t| super::utc(t as f64).trim_end_matches(" UTC").to_string()).unwrap_or_else(|| "-".into());
        let complete = match e.complete {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        let allowed = e.allowed.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        let status = if let Some(why) = &e.not_traced {
            format!("not traced: {}", escape(why, 80))
        } else if let Some(p) = &e.problem {
            format!("problem: {}", escape(p, 120))
        } else if let Some(w) = &e.window {
            w.clone()
        } else {
            "running (no summary yet)".into()
        };
        writeln!(
            out,
            "{:<12}  {:<24}  {:<20}  {:<20}  {:<7}  {:<10}  {:>7}  {status}",
            e.short_id,
            name,
            when(e.started_unix),
            when(e.ended_unix),
            e.mode.as_deref().unwrap_or("-"),
            complete,
            allowed
        )?;
    }
    Ok(())
}

/// A merge: where it went and how many inputs saw each call.
#[derive(Debug, Serialize)]
pub struct MergeReport<'a> {
    /// Where the profile was written (`None`: printed).
    pub profile: Option<String>,
    pub counts: Option<String>,
    #[serde(flatten)]
    pub info: &'a Info,
}

pub fn write_merge<W: Write>(out: &mut W, r: &MergeReport, format: Format) -> io::Result<()> {
    if format == Format::Json {
        return json(out, r);
    }
    let n = r.info.inputs.len();
    writeln!(out, "merged {n} profile{} ({} calls allowed)", if n == 1 { "" } else { "s" }, r.info.seen_by.len())?;
    for i in &r.info.inputs {
        let note = if r.info.incomplete_inputs.contains(i) { "  (INCOMPLETE)" } else { "" };
        writeln!(out, "  {}{note}", escape(i, 200))?;
    }
    if let Some(p) = &r.profile {
        writeln!(out, "profile  {}", escape(p, 400))?;
    }
    if let Some(c) = &r.counts {
        writeln!(out, "counts   {}", escape(c, 400))?;
    }
    let width = r.info.seen_by.keys().map(String::len).max().unwrap_or(7).max(7);
    writeln!(out, "{:<width$}  SEEN BY", "SYSCALL")?;
    for (name, k) in &r.info.seen_by {
        writeln!(out, "{name:<width$}  {k} of {n}")?;
    }
    Ok(())
}

/// `collector diff A B`.
#[derive(Debug, Serialize)]
pub struct DiffReport<'a> {
    pub a: String,
    pub b: String,
    #[serde(flatten)]
    pub diff: &'a Diff,
}

pub fn write_diff<W: Write>(out: &mut W, r: &DiffReport, format: Format) -> io::Result<()> {
    if format == Format::Json {
        return json(out, r);
    }
    writeln!(out, "--- {}", escape(&r.a, 400))?;
    writeln!(out, "+++ {}", escape(&r.b, 400))?;
    writeln!(out, "{} added, {} removed, {} in both", r.diff.added.len(), r.diff.removed.len(), r.diff.common)?;
    for n in &r.diff.added {
        writeln!(out, "+ {n}")?;
    }
    for n in &r.diff.removed {
        writeln!(out, "- {n}")?;
    }
    if let Some((a, b)) = r.diff.default_errno {
        let show = |e: Option<u32>| e.map(|e| e.to_string()).unwrap_or_else(|| "unset".into());
        writeln!(out, "default errno: {} → {}", show(a), show(b))?;
    }
    Ok(())
}

/// `collector diff A --against DEFAULT`.
#[derive(Debug, Serialize)]
pub struct AgainstReport<'a> {
    pub profile: String,
    pub default: String,
    #[serde(flatten)]
    pub against: &'a Against,
}

pub fn write_against<W: Write>(out: &mut W, r: &AgainstReport, format: Format) -> io::Result<()> {
    if format == Format::Json {
        return json(out, r);
    }
    let a = r.against;
    writeln!(out, "profile  {} ({} calls allowed)", escape(&r.profile, 400), a.profile_allowed)?;
    writeln!(
        out,
        "default  {} ({} calls allowed, {} more under conditions)",
        escape(&r.default, 400),
        a.default_allowed,
        a.default_conditional
    )?;
    writeln!(
        out,
        "removes {} of the {} calls the default allows ({} kept); and {} of its {} conditional ones",
        a.removed.len(),
        a.default_allowed,
        a.kept,
        a.removed_conditional.len(),
        a.default_conditional
    )?;
    if !a.denied_by_default.is_empty() {
        writeln!(
            out,
            "WARNING: allows {} call{} the default denies: {}",
            a.denied_by_default.len(),
            if a.denied_by_default.len() == 1 { "" } else { "s" },
            join(&a.denied_by_default)
        )?;
    }
    for (name, why) in &a.conditional_in_default {
        writeln!(out, "WARNING: allows {name} always; the default only {why}")?;
    }
    writeln!(out)?;
    writeln!(out, "removed ({}):", a.removed.len())?;
    wrap(out, &a.removed)?;
    if !a.removed_conditional.is_empty() {
        writeln!(out, "removed, conditional in the default ({}):", a.removed_conditional.len())?;
        wrap(out, &a.removed_conditional)?;
    }
    Ok(())
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

fn wrap<W: Write>(out: &mut W, set: &BTreeSet<String>) -> io::Result<()> {
    let mut line = String::from(" ");
    for n in set {
        if line.len() + n.len() + 1 > 100 {
            writeln!(out, "{line}")?;
            line = String::from(" ");
        }
        line.push(' ');
        line.push_str(n);
    }
    if line.trim().is_empty() {
        return Ok(());
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            id: "a".repeat(64),
            short_id: "a".repeat(12),
            name: Some("evil\u{1b}[2Jname".into()),
            pod: None,
            namespace: None,
            container: None,
            started_unix: Some(0),
            ended_unix: Some(60),
            mode: Some("profile".into()),
            complete: Some(false),
            allowed: Some(42),
            window: Some("after the filter install".into()),
            traced: true,
            not_traced: None,
            problem: None,
        }
    }

    #[test]
    fn list_escapes_container_strings() {
        let mut buf = Vec::new();
        write_list(&mut buf, &[entry()], Format::Table).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("evil\\u{1b}[2Jname"), "{text}");
        assert!(text.contains("1970-01-01 00:01:00") && text.contains(" NO ") && text.contains(" 42 "), "{text}");
        let mut buf = Vec::new();
        write_list(&mut buf, &[entry()], Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v[0]["allowed"], 42);
    }

    #[test]
    fn against_warns_loudly() {
        let a = Against {
            default_allowed: 3,
            default_conditional: 1,
            profile_allowed: 2,
            removed: ["ptrace".to_string()].into_iter().collect(),
            removed_conditional: BTreeSet::new(),
            kept: 2,
            denied_by_default: ["kexec_load".to_string()].into_iter().collect(),
            conditional_in_default: [("mount".to_string(), "with CAP_SYS_ADMIN".to_string())].into_iter().collect(),
        };
        let r = AgainstReport { profile: "p".into(), default: "d".into(), against: &a };
        let mut buf = Vec::new();
        write_against(&mut buf, &r, Format::Table).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("removes 1 of the 3 calls the default allows (2 kept)"), "{text}");
        assert!(text.contains("WARNING: allows 1 call the default denies: kexec_load"), "{text}");
        assert!(text.contains("WARNING: allows mount always; the default only with CAP_SYS_ADMIN"), "{text}");
        let mut buf = Vec::new();
        write_against(&mut buf, &r, Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["removed"], serde_json::json!(["ptrace"]));
        assert_eq!(v["default_allowed"], 3);
    }
}
