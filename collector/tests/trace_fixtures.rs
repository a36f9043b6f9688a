//! The parser and the window rule on traces captured from real runs on this
//! kernel: `podman --runtime runc run … sh -c 'echo hi; ls /; cat /etc/passwd'`
//! once confined (Podman's default profile) and once with
//! `--security-opt seccomp=unconfined`, recorded by an instance armed at
//! prestart with raw_syscalls:sys_enter and the sched process events.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;

use collector::profile::{analyze, Rule};
use collector::trace::{parse_text, Event};

fn load(name: &str) -> collector::trace::Parsed {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    parse_text(BufReader::new(File::open(&path).expect("fixture"))).expect("readable fixture")
}

// Host pids of the init tasks in the captured runs.
const CONFINED_INIT: i32 = 6509;
const UNCONFINED_INIT: i32 = 7119;

#[test]
fn fixtures_parse_without_loss() {
    for name in ["runc-confined.trace", "runc-unconfined.trace"] {
        let parsed = load(name);
        assert_eq!(parsed.malformed, 0, "{name}: {:?}", parsed.errors);
        assert!(parsed.records.len() > 300, "{name}");
        let execs = parsed.records.iter().filter(|r| matches!(r.event, Event::Exec { .. })).count();
        let forks = parsed.records.iter().filter(|r| matches!(r.event, Event::Fork { .. })).count();
        assert_eq!((execs, forks), (2, 1), "{name}: sh, then cat exec'd in place; ls forked");
    }
}

#[test]
fn confined_run_opens_at_filter_install() {
    let parsed = load("runc-confined.trace");
    let (window, analysis) = analyze(&parsed.records, CONFINED_INIT);
    assert!(matches!(&window.rule, Rule::FilterInstall { call, pid: CONFINED_INIT, .. } if call.starts_with("prctl(PR_SET_SECCOMP")));
    for name in ["execve", "read", "write", "exit_group", "capset", "setgroups", "prctl"] {
        assert!(analysis.syscalls.contains_key(name), "missing {name}");
    }
    for name in ["mount", "pivot_root", "umount2", "sethostname", "ptrace", "reboot"] {
        assert!(!analysis.syscalls.contains_key(name), "{name} must stay out");
    }
    assert!(analysis.unnamed.is_empty());
}

#[test]
fn unconfined_run_gives_the_same_set_via_runc_marker() {
    let (cw, confined) = analyze(&load("runc-confined.trace").records, CONFINED_INIT);
    let (uw, unconfined) = analyze(&load("runc-unconfined.trace").records, UNCONFINED_INIT);
    assert!(matches!(cw.rule, Rule::FilterInstall { .. }));
    assert!(matches!(&uw.rule, Rule::RuntimeMarker { runtime, .. } if runtime == "runc"));
    let a: BTreeSet<_> = confined.syscalls.keys().collect();
    let b: BTreeSet<_> = unconfined.syscalls.keys().collect();
    assert_eq!(a, b);

    // Cutting at the first event instead drags the runtime's setup in.
    let all: BTreeSet<String> = load("runc-unconfined.trace")
        .records
        .iter()
        .filter_map(|r| match r.event {
            Event::SysEnter { nr, .. } => collector::profile::names::name_of(nr).map(String::from),
            _ => None,
        })
        .collect();
    for name in ["mount", "pivot_root", "umount2", "sethostname"] {
        assert!(all.contains(name) && !b.contains(&name.to_string()), "{name}");
    }
}

#[test]
fn processes_are_named_from_exec() {
    let (_, analysis) = analyze(&load("runc-confined.trace").records, CONFINED_INIT);
    let comms: BTreeSet<&str> = analysis.processes.values().map(|p| p.comm.as_str()).collect();
    assert_eq!(comms, BTreeSet::from(["cat", "ls"]));
    let init = &analysis.processes[&CONFINED_INIT];
    assert_eq!(init.exe.as_deref(), Some("/proc/self/exe"));
}
