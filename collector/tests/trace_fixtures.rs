//! The parser and the window rule on traces captured from real runs on this
//! kernel: `podman --runtime runc run … sh -c 'echo hi; ls /; cat /etc/passwd'`
//! once confined (Podman's default profile) and once with
//! `--security-opt seccomp=unconfined`, recorded by an instance armed at
//! prestart with raw_syscalls:sys_enter and the sched process events.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;

use collector::profile::{analyze, analyze_runtime, Rule};
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

// crun 1.21 under podman 5.4 on Debian 13 (kernel 6.12, cgroup v2), same
// workload, recorded the same way (vm/capture/runtime-trace.sh in a test
// VM). crun installs its filter with seccomp(SECCOMP_SET_MODE_FILTER); the
// init task's comm at prestart was "crun".
const CRUN_CONFINED_INIT: i32 = 687;
const CRUN_UNCONFINED_INIT: i32 = 728;

#[test]
fn crun_fixtures_parse_without_loss() {
    for name in ["crun-confined.trace", "crun-unconfined.trace"] {
        let parsed = load(name);
        assert_eq!(parsed.malformed, 0, "{name}: {:?}", parsed.errors);
        assert!(parsed.records.len() > 300, "{name}");
    }
}

#[test]
fn crun_confined_run_opens_at_seccomp_install() {
    let parsed = load("crun-confined.trace");
    for comm in [None, Some("crun")] {
        let (window, analysis) = analyze_runtime(&parsed.records, CRUN_CONFINED_INIT, comm);
        assert!(
            matches!(&window.rule, Rule::FilterInstall { call, pid: CRUN_CONFINED_INIT, .. } if call.starts_with("seccomp(")),
            "{:?}",
            window.rule
        );
        for name in ["execve", "read", "write", "exit_group", "capset", "prctl"] {
            assert!(analysis.syscalls.contains_key(name), "missing {name}");
        }
        for name in ["mount", "pivot_root", "sethostname", "umask", "seccomp"] {
            assert!(!analysis.syscalls.contains_key(name), "{name} must stay out");
        }
    }
}

#[test]
fn crun_unconfined_run_gives_the_same_set_via_crun_marker() {
    let (_, confined) = analyze_runtime(&load("crun-confined.trace").records, CRUN_CONFINED_INIT, Some("crun"));
    let a: BTreeSet<_> = confined.syscalls.keys().cloned().collect();
    // With the runtime known from the comm, and without it (any row; the
    // last marker before the exec wins).
    for comm in [Some("crun"), None] {
        let (uw, unconfined) = analyze_runtime(&load("crun-unconfined.trace").records, CRUN_UNCONFINED_INIT, comm);
        assert!(
            matches!(&uw.rule, Rule::RuntimeMarker { runtime, call, pid: CRUN_UNCONFINED_INIT, .. } if runtime == "crun" && call == "umask"),
            "{comm:?}: {:?}",
            uw.rule
        );
        let b: BTreeSet<_> = unconfined.syscalls.keys().cloned().collect();
        assert_eq!(a, b, "{comm:?}");
    }
}

#[test]
fn runc_marker_wins_over_its_earlier_umask() {
    // runc calls umask before prctl(PR_GET_PDEATHSIG): with or without its
    // comm, the window opens at runc's own marker.
    let parsed = load("runc-unconfined.trace");
    for comm in [Some("runc:[2:INIT]"), None] {
        let (w, _) = analyze_runtime(&parsed.records, UNCONFINED_INIT, comm);
        assert!(matches!(&w.rule, Rule::RuntimeMarker { runtime, call, .. } if runtime == "runc" && call.starts_with("prctl")), "{:?}", w.rule);
    }
}
