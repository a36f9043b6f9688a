//! Checkpoint episodes on traces of real checkpoints, captured on this
//! kernel by `tests/data/capture-checkpoint.sh`: a busybox loop of sleeps
//! and small file I/O, traced from its first instruction, once
//! checkpointed twice with `podman container checkpoint --leave-running`
//! (plain, then `--export`) and once not. CRIU's parasite calls must stay
//! out, and the two profiles must be the same.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::str::FromStr;

use collector::profile::{analyze_runtime, Aggregator, Analysis, Rule};
use collector::trace::{parse_text, Decoder, Event, Parsed, Record};

mod common;

/// runc's init task comm at prestart (picks runc's window marker).
const RUNC: Option<&str> = Some("runc:[2:INIT]");

/// What CRIU's parasite and injected code called in these runs, none of
/// which the loop ever calls.
const PARASITE_ONLY: &[&str] =
    &["vmsplice", "sendto", "recvfrom", "recvmsg", "sendmsg", "socket", "connect", "memfd_create", "sigaltstack"];

fn dir(run: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/episodes-6.18").join(run)
}

fn init_pid(run: &str) -> i32 {
    fs::read_to_string(dir(run).join("pid")).expect("pid").trim().parse().expect("a pid")
}

/// The binary pages of both CPUs, decoded and merged by time.
fn binary(run: &str) -> Vec<Record> {
    let (header, formats) = common::formats_in(&dir(run));
    let dec = Decoder::new(header, &formats);
    let mut parsed = Parsed::default();
    for cpu in 0..2u32 {
        let bytes = fs::read(dir(run).join(format!("cpu{cpu}.raw"))).expect("pages");
        let read = dec.decode_pages(cpu, &bytes, &mut parsed);
        assert_eq!(read.missed_pages, 0, "{run}: cpu{cpu} lost events");
    }
    assert_eq!(parsed.malformed, 0, "{run}");
    parsed.records.sort_by_key(|r| (r.ts_ns, r.cpu));
    parsed.records
}

/// The text trace of the same buffer.
fn text(run: &str) -> Vec<Record> {
    let bytes = zstd::decode_all(fs::File::open(dir(run).join("trace.txt.zst")).expect("trace")).expect("zstd");
    let parsed = parse_text(bytes.as_slice()).expect("text");
    assert_eq!(parsed.malformed, 0, "{:?}", parsed.errors);
    parsed.records
}

fn profile(a: &Analysis) -> BTreeSet<&str> {
    a.syscalls.keys().map(String::as_str).collect()
}

/// Uptime (s) before and after each checkpoint, from the capture's info.
fn checkpoint_times() -> Vec<(f64, f64)> {
    let info = fs::read_to_string(dir("ckpt").join("info")).expect("info");
    let at = |key: &str| -> f64 {
        info.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok()).unwrap_or_else(|| panic!("{key} in info"))
    };
    vec![(at("plain-start"), at("plain-end")), (at("export-start"), at("export-end"))]
}

#[test]
fn checkpointed_and_plain_runs_give_the_same_profile() {
    let (cw, ckpt) = analyze_runtime(&binary("ckpt"), init_pid("ckpt"), RUNC);
    let (pw, plain) = analyze_runtime(&binary("plain"), init_pid("plain"), RUNC);
    assert!(matches!(cw.rule, Rule::FilterInstall { .. }), "{:?}", cw.rule);
    assert!(matches!(pw.rule, Rule::FilterInstall { .. }), "{:?}", pw.rule);
    assert!(plain.episodes.is_empty());
    assert_eq!(profile(&ckpt), profile(&plain));
    for name in PARASITE_ONLY {
        assert!(!ckpt.syscalls.contains_key(*name), "{name} is in the profile");
    }
    // The loop's own calls are all there.
    for name in ["wait4", "clock_nanosleep", "execve", "clone", "openat", "write", "sendfile", "newfstatat"] {
        assert!(ckpt.syscalls.contains_key(name), "{name} is missing: {:?}", profile(&ckpt));
    }
}

#[test]
fn without_the_episode_rule_the_profile_would_allow_criu_calls() {
    // The defect this guards against: drop the stop events and CRIU's calls
    // are the workload's.
    let blind: Vec<Record> =
        binary("ckpt").into_iter().filter(|r| !matches!(r.event, Event::Signal { .. })).collect();
    let (_, a) = analyze_runtime(&blind, init_pid("ckpt"), RUNC);
    for name in PARASITE_ONLY {
        assert!(a.syscalls.contains_key(*name), "{name} not in the blind profile");
    }
}

#[test]
fn two_episodes_are_reported_with_time_tasks_and_exclusions() {
    let pid = init_pid("ckpt");
    let (_, a) = analyze_runtime(&binary("ckpt"), pid, RUNC);
    assert_eq!(a.episodes.len(), 2, "{:#?}", a.episodes);
    let times = checkpoint_times();
    for (e, (start, end)) in a.episodes.iter().zip(&times) {
        assert_eq!(e.tracer_comm, "criu");
        // The trace clock (local) runs with /proc/uptime: each episode lies
        // inside the podman command that made it.
        let (s, t) = (e.start_ns as f64 / 1e9, e.end_ns as f64 / 1e9);
        assert!(*start <= s && s < t && t <= *end, "episode {s}..{t} outside podman's {start}..{end}");
        assert!(e.stops >= 10, "{} stops", e.stops);
        // The shell and the sleep it was waiting for.
        assert_eq!(e.tasks.len(), 2, "{:?}", e.tasks);
        assert!(e.tasks.iter().any(|t| t.pid == pid && t.comm == "sh"), "{:?}", e.tasks);
        assert!(e.tasks.iter().any(|t| t.comm == "sleep"), "{:?}", e.tasks);
        assert_eq!(e.tasks.iter().map(|t| t.stops).sum::<u64>(), e.stops);
        assert_eq!(e.tasks.iter().map(|t| t.excluded).sum::<u64>(), e.excluded_calls);
        for name in PARASITE_ONLY {
            assert!(e.excluded.contains_key(*name), "{name} not excluded: {:?}", e.excluded);
        }
        assert_eq!(e.late_stops, 0);
    }
    assert_ne!(a.episodes[0].tracer_pid, a.episodes[1].tracer_pid, "one CRIU per checkpoint");
    assert_eq!(a.events.excluded, a.episodes.iter().map(|e| e.excluded_calls).sum::<u64>());
    // Every task resumed with a call the loop makes anyway (busybox retries
    // the sleep CRIU turned into EINTR; wait4 is restarted): nothing new.
    let resumed: Vec<(&str, bool)> =
        a.episodes.iter().flat_map(|e| e.resumed.iter().map(|r| (r.syscall.as_str(), r.new))).collect();
    assert!(!resumed.is_empty());
    assert!(resumed.iter().all(|(_, new)| !new), "{resumed:?}");
    assert!(resumed.iter().all(|(s, _)| ["wait4", "clock_nanosleep"].contains(s)), "{resumed:?}");
}

#[test]
fn text_and_binary_traces_agree_on_episodes() {
    let pid = init_pid("ckpt");
    let (_, bin) = analyze_runtime(&binary("ckpt"), pid, RUNC);
    let (_, txt) = analyze_runtime(&text("ckpt"), pid, RUNC);
    assert_eq!(profile(&bin), profile(&txt));
    // Text prints microseconds, rounded.
    let key = |a: &Analysis| -> Vec<(i32, u64, u64, u64)> {
        a.episodes.iter().map(|e| (e.tracer_pid, (e.start_ns + 500) / 1000, e.stops, e.excluded_calls)).collect()
    };
    assert_eq!(key(&bin), key(&txt));
}

/// Profile mode, simulated at its strictest: a number's entries stop being
/// recorded the moment the aggregator asks for its event to go off, and
/// come back the moment it asks for it on again. Returns the analysis and
/// the numbers switched back on.
fn quenched(run: &str) -> (Analysis, BTreeSet<i64>) {
    let mut agg = Aggregator::new(init_pid(run)).with_runtime(RUNC);
    let mut off = BTreeSet::new();
    let mut restored = BTreeSet::new();
    for r in binary(run) {
        if matches!(r.event, Event::SysEnter { nr, .. } if off.contains(&nr)) {
            continue;
        }
        agg.push(&r);
        off.extend(agg.take_new());
        for nr in agg.take_restored() {
            off.remove(&nr);
            restored.insert(nr);
        }
    }
    (agg.finish().1, restored)
}

#[test]
fn quenching_neither_counts_criu_calls_nor_loses_later_workload_calls() {
    let (ckpt, restored) = quenched("ckpt");
    let (plain, none) = quenched("plain");
    assert!(none.is_empty());
    assert_eq!(profile(&ckpt), profile(&plain));
    let (_, full) = analyze_runtime(&binary("plain"), init_pid("plain"), RUNC);
    assert_eq!(profile(&plain), profile(&full), "quenching loses nothing");
    // CRIU's numbers were switched off while held and on again after.
    for name in PARASITE_ONLY {
        let nr = syscalls::Sysno::from_str(name).map(|s| i64::from(s.id())).expect("a syscall");
        assert!(restored.contains(&nr), "{name} was not switched back on");
    }
    assert_eq!(ckpt.episodes.len(), 2);
}
