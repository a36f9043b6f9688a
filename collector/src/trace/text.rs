//! The text trace format (`instances/<name>/trace`).
//!
//! A line looks like
//! `             cat-6509    (   6509) [000] .....   183.633634: sys_enter: NR 202 (c5dd38, 81, 1, 0, 0, 0)`
//! The comm is free text (it may hold spaces, dashes and brackets), so the
//! header is anchored on the `[cpu]` field rather than split on spaces.

use std::io::BufRead;

use super::{Event, Parsed, Record};

/// How many parse errors are kept verbatim (the rest are only counted).
const KEPT_ERRORS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trace line {line}: {reason}: {text:?}")]
pub struct ParseError {
    pub line: u64,
    pub reason: &'static str,
    pub text: String,
}

/// Parses a whole text trace. Comment lines (`#`) and blank lines are
/// skipped; malformed lines are counted.
pub fn parse_text<R: BufRead>(mut input: R) -> std::io::Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lineno += 1;
        // Comms are bytes, not necessarily UTF-8.
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(record) => parsed.records.push(record),
            Err(reason) => {
                parsed.malformed += 1;
                if parsed.errors.len() < KEPT_ERRORS {
                    let text: String = line.chars().take(200).collect();
                    parsed.errors.push(ParseError { line: lineno, reason, text });
                }
            }
        }
    }
    Ok(parsed)
}

/// Parses one record line. The error says which part was wrong.
pub fn parse_line(line: &str) -> Result<Record, &'static str> {
    let (head, cpu, rest) = split_at_cpu(line).ok_or("no [cpu] field")?;
    let (comm, pid, tgid) = parse_task(head)?;

    // rest: " .....   183.633634: sys_enter: NR 202 (...)"
    let rest = rest.trim_start();
    let (flags_and_ts, after_ts) = rest.split_once(": ").ok_or("no timestamp")?;
    let ts_text = flags_and_ts.rsplit(' ').next().ok_or("no timestamp")?;
    let ts_ns = parse_timestamp(ts_text).ok_or("bad timestamp")?;
    let (name, payload) = match after_ts.split_once(": ") {
        Some((name, payload)) => (name, payload),
        None => (after_ts.trim_end_matches(':'), ""),
    };
    // Per-syscall events print as `sys_openat(dfd: …)` or `sys_openat -> 0x3`.
    let name = name.split(['(', ' ']).next().unwrap_or(name);
    let event = parse_event(name.trim(), payload)?;
    Ok(Record { pid, tgid, comm: comm.to_string(), cpu, ts_ns, event })
}

/// Finds the first `[NNN]` field that is followed by a space.
fn split_at_cpu(line: &str) -> Option<(&str, u32, &str)> {
    let bytes = line.as_bytes();
    let mut search = 0;
    while let Some(off) = line[search..].find('[') {
        let open = search + off;
        let digits = bytes[open + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        let close = open + 1 + digits;
        if digits > 0 && bytes.get(close) == Some(&b']') && bytes.get(close + 1) == Some(&b' ') {
            let cpu = line[open + 1..close].parse().ok()?;
            return Some((&line[..open], cpu, &line[close + 1..]));
        }
        search = open + 1;
    }
    None
}

/// `"   comm-with-dash-123    (   456) "` → (comm, pid, tgid).
fn parse_task(head: &str) -> Result<(&str, i32, Option<i32>), &'static str> {
    let mut head = head.trim();
    let mut tgid = None;
    if let Some(stripped) = head.strip_suffix(')') {
        let open = stripped.rfind('(').ok_or("unbalanced tgid field")?;
        let inner = stripped[open + 1..].trim();
        // "(-------)" means the tgid was not known.
        tgid = inner.parse::<i32>().ok();
        head = stripped[..open].trim_end();
    }
    let (comm, pid) = head.rsplit_once('-').ok_or("no comm-pid field")?;
    let pid = pid.parse::<i32>().map_err(|_| "bad pid")?;
    Ok((comm.trim_start(), pid, tgid))
}

/// `183.633634` → nanoseconds (any number of fraction digits up to 9).
fn parse_timestamp(text: &str) -> Option<u64> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut frac_ns: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    for _ in frac.len()..9 {
        frac_ns *= 10;
    }
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

fn parse_event(name: &str, payload: &str) -> Result<Event, &'static str> {
    match name {
        "sys_enter" => parse_sys_enter(payload),
        "sched_process_fork" => {
            let parent_pid = field(payload, "pid").ok_or("fork without pid")?;
            let child_pid = field(payload, "child_pid").ok_or("fork without child_pid")?;
            let child_comm = text_field(payload, "child_comm=", " child_pid=").unwrap_or_default();
            Ok(Event::Fork {
                parent_pid: parent_pid.parse().map_err(|_| "bad fork pid")?,
                child_pid: child_pid.parse().map_err(|_| "bad fork child_pid")?,
                child_comm: child_comm.to_string(),
            })
        }
        "sched_process_exec" => {
            // The file name may hold spaces: it runs up to the last " pid=".
            let body = payload.strip_prefix("filename=").ok_or("exec without filename")?;
            let cut = body.rfind(" pid=").ok_or("exec without pid")?;
            let tail = &body[cut..];
            Ok(Event::Exec {
                filename: body[..cut].to_string(),
                pid: field(tail, "pid").and_then(|p| p.parse().ok()).ok_or("bad exec pid")?,
                old_pid: field(tail, "old_pid").and_then(|p| p.parse().ok()).ok_or("bad exec old_pid")?,
            })
        }
        "sched_process_exit" => {
            let pid = field(payload, "pid").and_then(|p| p.parse().ok()).ok_or("bad exit pid")?;
            let comm = text_field(payload, "comm=", " pid=").unwrap_or_default();
            let group_dead = field(payload, "group_dead").map(|v| v == "true" || v == "1");
            Ok(Event::Exit { pid, comm: comm.to_string(), group_dead })
        }
        "signal_generate" => {
            // The comm may hold spaces: it runs up to the last " pid=".
            let cut = payload.rfind(" pid=").ok_or("signal without pid")?;
            let (head, tail) = payload.split_at(cut);
            let comm = head.find("comm=").map(|from| &head[from + 5..]).ok_or("signal without comm")?;
            let number = |text: &str, key: &str, bad: &'static str| -> Result<i32, &'static str> {
                field(text, key).and_then(|v| v.parse().ok()).ok_or(bad)
            };
            Ok(Event::Signal {
                sig: number(head, "sig", "bad signal number")?,
                code: number(head, "code", "bad signal code")?,
                pid: number(tail.trim_start(), "pid", "bad signal pid")?,
                comm: comm.to_string(),
            })
        }
        "" => Err("no event name"),
        other => Ok(Event::Other { name: other.to_string() }),
    }
}

/// `NR 202 (c5dd38, 81, 1, 0, 0, 0)`
fn parse_sys_enter(payload: &str) -> Result<Event, &'static str> {
    let rest = payload.strip_prefix("NR ").ok_or("sys_enter without NR")?;
    let (nr, args_text) = rest.split_once(' ').ok_or("sys_enter without arguments")?;
    let nr: i64 = nr.parse().map_err(|_| "bad syscall number")?;
    let inner = args_text
        .trim()
        .strip_prefix('(')
        .and_then(|a| a.strip_suffix(')'))
        .ok_or("sys_enter arguments not in parentheses")?;
    let mut args = [0u64; 6];
    let mut n = 0;
    for part in inner.split(',') {
        let slot = args.get_mut(n).ok_or("more than six arguments")?;
        *slot = u64::from_str_radix(part.trim(), 16).map_err(|_| "bad argument")?;
        n += 1;
    }
    if n != 6 {
        return Err("fewer than six arguments");
    }
    Ok(Event::SysEnter { nr, args })
}

/// The whitespace-delimited value of `key=` (matched at a word start).
fn field<'a>(payload: &'a str, key: &str) -> Option<&'a str> {
    payload.split(' ').find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// The text between `start` and `end`, for values that may hold spaces.
fn text_field<'a>(payload: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = payload.find(start)? + start.len();
    let to = payload[from..].find(end).map(|i| from + i).unwrap_or(payload.len());
    Some(&payload[from..to])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sys_enter_with_tgid() {
        let r = parse_line(
            "             cat-6509    (   6509) [000] .....   183.633634: sys_enter: NR 202 (c5dd38, 81, 1, 0, 0, 0)",
        )
        .unwrap();
        assert_eq!(r.comm, "cat");
        assert_eq!((r.pid, r.tgid, r.cpu, r.ts_ns), (6509, Some(6509), 0, 183_633_634_000));
        assert_eq!(r.event, Event::SysEnter { nr: 202, args: [0xc5dd38, 0x81, 1, 0, 0, 0] });
    }

    #[test]
    fn parses_awkward_comms_and_unknown_tgid() {
        let r = parse_line("  my-odd [x] comm-42    (-------) [011] d..1.  9.5: sys_enter: NR -1 (0, 0, 0, 0, 0, ffffffffffffffff)")
            .unwrap();
        assert_eq!(r.comm, "my-odd [x] comm");
        assert_eq!((r.pid, r.tgid, r.cpu, r.ts_ns), (42, None, 11, 9_500_000_000));
        assert_eq!(r.event, Event::SysEnter { nr: -1, args: [0, 0, 0, 0, 0, u64::MAX] });
        // Without record-tgid there is no parenthesised field at all.
        let r = parse_line("sh-7 [001] ..... 1.000001: sched_process_exit: comm=sh pid=7 prio=120 group_dead=true").unwrap();
        assert_eq!(r.event, Event::Exit { pid: 7, comm: "sh".into(), group_dead: Some(true) });
    }

    #[test]
    fn parses_sched_events() {
        let r = parse_line("cat-6509 ( 6509) [000] ..... 183.666196: sched_process_exec: filename=/bin/my prog pid=6509 old_pid=6509").unwrap();
        assert_eq!(r.event, Event::Exec { filename: "/bin/my prog".into(), pid: 6509, old_pid: 6509 });
        let r = parse_line("cat-6509 ( 6509) [000] ..... 183.666496: sched_process_fork: comm=sh pid=6509 child_comm=sh child_pid=6540").unwrap();
        assert_eq!(r.event, Event::Fork { parent_pid: 6509, child_pid: 6540, child_comm: "sh".into() });
        let r = parse_line("sh-21933 ( 21933) [001] d..2. 9477.501628: signal_generate: sig=17 errno=0 code=5 comm=criu pid=21999 grp=1 res=1").unwrap();
        assert_eq!(r.event, Event::Signal { sig: 17, code: 5, pid: 21999, comm: "criu".into() });
        let r = parse_line("sh-1 ( 1) [001] d..2. 1.0: signal_generate: sig=9 errno=0 code=0 comm=my pid=x pid=7 grp=1 res=0").unwrap();
        assert_eq!(r.event, Event::Signal { sig: 9, code: 0, pid: 7, comm: "my pid=x".into() });
        assert_eq!(parse_line("x-1 [000] ..... 1.0: signal_generate: sig=17 code=4 pid=2"), Err("signal without comm"));
        let r = parse_line("cat-6509 ( 6509) [000] ..... 183.0: sched_switch: prev_comm=x").unwrap();
        assert_eq!(r.event, Event::Other { name: "sched_switch".into() });
        let r = parse_line("sh-1 [000] ..... 1.0: sys_openat(dfd: ffffff9c, filename: 5b0498, flags: 0, mode: 0)").unwrap();
        assert_eq!(r.event, Event::Other { name: "sys_openat".into() });
        let r = parse_line("sh-1 [000] ..... 1.0: sys_openat -> 0x3").unwrap();
        assert_eq!(r.event, Event::Other { name: "sys_openat".into() });
    }

    #[test]
    fn rejects_malformed_lines_with_reasons() {
        for (line, reason) in [
            ("no cpu here", "no [cpu] field"),
            ("x-1 [000] ..... abc: sys_enter: NR 1 (0, 0, 0, 0, 0, 0)", "bad timestamp"),
            ("x-1 [000] ..... 1.0: sys_enter: NR 1 (0, 0, 0)", "fewer than six arguments"),
            ("x-1 [000] ..... 1.0: sys_enter: NR 1 (0, 0, 0, 0, 0, 0, 0)", "more than six arguments"),
            ("x-1 [000] ..... 1.0: sys_enter: NR one (0, 0, 0, 0, 0, 0)", "bad syscall number"),
            ("x-1 [000] ..... 1.0: sys_enter: NR 1 (zz, 0, 0, 0, 0, 0)", "bad argument"),
            ("x-y [000] ..... 1.0: sys_enter: NR 1 (0, 0, 0, 0, 0, 0)", "bad pid"),
            ("x-1 [000] ..... 1.0: sched_process_exec: pid=1", "exec without filename"),
        ] {
            assert_eq!(parse_line(line), Err(reason), "{line}");
        }
    }

    #[test]
    fn counts_malformed_and_keeps_going() {
        let text = "# tracer: nop\n\nx-1 [000] ..... 1.0: sys_enter: NR 1 (0, 0, 0, 0, 0, 0)\ngarbage\n\
                    x-1 [000] ..... 1.1: sys_enter: NR 2 (0, 0, 0, 0, 0, 0)\n";
        let parsed = parse_text(text.as_bytes()).unwrap();
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.malformed, 1);
        assert_eq!(parsed.errors[0].line, 4);
    }
}
