//! The worst case on purpose: a container busy from its first instant while
//! the recorder gets no CPU, stopped outright (SIGSTOP right after it says
//! ready) or crowded out by busy loops on every CPU. The in-kernel quench
//! must keep the ring buffer from overflowing: nothing lost, the profile
//! complete, the late call in it, and the container runs under it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// 3 M one-byte copies (6 M syscalls) from the first instant, then a call
/// made nowhere else.
const BUSY: &str = "dd if=/dev/zero of=/dev/null bs=1 count=3000000 2>/dev/null; mkdir /tmp/late-$$ && rmdir /tmp/late-$$ && echo done";

fn summary(env: &Env, id: &str) -> serde_json::Value {
    let path = env.container_dir(id).join("summary.json");
    if !path.exists() {
        let log = std::fs::read_to_string(env.state_dir().join("hook.log")).unwrap_or_default();
        panic!("no summary for {id}; hook.log:\n{log}");
    }
    read_json(&path)
}

/// A stand-in for the collector binary that runs the real one and, for
/// `record`, stops the recorder the moment it says "ready", before prestart
/// hears it, then lets it go `hold` later. The container thus runs from its
/// first instant with its recorder stopped.
fn stopping_collector(dir: &Path, hold: Duration) -> PathBuf {
    let path = dir.join("collector-stopped-at-ready");
    let script = format!(
        r#"#!/bin/bash
# Test stand-in: see tests/starved.rs.
real={real}
[ "$1" = record ] || exec "$real" "$@"
exec 5>&3
fifo=$(mktemp -u); mkfifo "$fifo"
"$real" "$@" 3>"$fifo" 5>&- &
pid=$!
exec 6<"$fifo"; rm -f "$fifo"
IFS= read -r line <&6
kill -STOP $pid
echo "$pid" > {dir}/stopped.pid
printf '%s\n' "$line" >&5
exec 5>&- 6<&-
sleep {secs}
kill -CONT $pid
wait $pid
"#,
        real = collector_bin().display(),
        dir = dir.display(),
        secs = hold.as_secs_f64(),
    );
    std::fs::write(&path, script).expect("write the stand-in");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    path
}

/// A test env whose hook starts its recorder through [`stopping_collector`]
/// (stopped for `hold` at "ready"); the scratch dir holds the stand-in and
/// its `stopped.pid`.
fn stopped_recorder_env(hold: Duration) -> (Env, tempfile::TempDir) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let stand_in = stopping_collector(scratch.path(), hold);
    (Env::with_hook_args(&[&format!("--collector={}", stand_in.display())]), scratch)
}

/// Busy loops on every CPU until dropped (or `limit`, enforced by
/// `timeout`, which passes our SIGTERM on to its loop), each in its own
/// process so the scheduler treats them as the recorder's peers.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn start(limit: Duration) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let secs = limit.as_secs().max(1).to_string();
        // Two per CPU: the recorder competes with more than one.
        let hogs = (0..cpus * 2)
            .map(|_| {
                std::process::Command::new("timeout")
                    .args([&secs, "sh", "-c", "while :; do :; done"])
                    .spawn()
                    .expect("start a busy loop")
            })
            .collect();
        Hogs(hogs)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for h in &mut self.0 {
            let _ = kill(Pid::from_raw(h.id() as i32), Signal::SIGTERM);
            let _ = h.wait();
        }
    }
}

/// What a user checks: nothing lost, complete, the late call there, and the
/// workload runs again under its own profile.
fn assert_whole_and_usable(env: &Env, run: &Run) {
    assert_whole(env, run, BUSY, &["read", "write", "mkdir", "rmdir"]);
}

/// [`assert_whole_and_usable`] for any workload `script` and the calls it
/// must have made.
fn assert_whole(env: &Env, run: &Run, script: &str, calls: &[&str]) {
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(run.stdout(), "done\n");
    let s = summary(env, &run.id);
    assert_eq!(s["mode"], "profile");
    assert_eq!(s["lost_events"], 0, "{s:#}");
    assert_eq!(s["complete"], true, "{}", s["incomplete_reasons"]);
    // Bounded by construction: a few records per call, not millions.
    let records = s["recorder"]["records"].as_u64().unwrap_or(u64::MAX);
    assert!(records < 20_000, "profile mode recorded {records} events");
    let profile = env.container_dir(&run.id).join("seccomp.json");
    let names = allowed(&read_json(&profile));
    for call in calls {
        assert!(names.contains(*call), "{call} is missing: {names:?}");
    }
    env.assert_no_instances("after the starved run");
    let rerun = env.run(false, Some(profile.to_str().expect("utf-8")), script);
    assert!(rerun.ok(), "re-run under the profile failed: {}", rerun.stderr());
    assert_eq!(rerun.stdout(), "done\n");
}

#[test]
fn a_stopped_recorder_loses_nothing_of_a_container_busy_from_its_first_instant() {
    if !prerequisites(true) {
        return;
    }
    let _g = serial();
    let hold = Duration::from_secs(3);
    let (env, scratch) = stopped_recorder_env(hold);
    let t0 = Instant::now();
    let run = env.run(true, None, BUSY);
    assert!(scratch.path().join("stopped.pid").exists(), "the recorder was never stopped");
    // The stop covered the run: the container waited for the recorder's
    // summary at poststop, which came only after SIGCONT.
    assert!(t0.elapsed() >= hold, "{:?}", t0.elapsed());
    assert_whole_and_usable(&env, &run);
}

#[test]
fn busy_loops_on_every_cpu_cost_the_recording_nothing() {
    if !prerequisites(true) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let run = {
        let _hogs = Hogs::start(Duration::from_secs(60));
        env.run(true, None, BUSY)
    };
    assert_whole_and_usable(&env, &run);
}

/// Calls outside any short "hot" list, from the first instant, with the
/// recorder stopped: the quench must cover every syscall, not a chosen few.
#[test]
fn a_stopped_recorder_loses_nothing_of_a_flood_of_rare_calls() {
    if !prerequisites(true) || !have_static_gcc() {
        return;
    }
    let _g = serial();
    let (env, scratch) = stopped_recorder_env(Duration::from_secs(3));
    build_fixture("flood", &env.rootfs().join("bin/flood"), &[]);
    let script = "/bin/flood 1000000";
    let run = env.run(true, None, script);
    assert!(scratch.path().join("stopped.pid").exists(), "the recorder was never stopped");
    assert_whole(&env, &run, script, &["getppid", "umask", "getpgrp", "getcwd", "mkdir", "rmdir"]);
}

/// Full mode records every event, so a container busy from its first
/// instant overflows its buffer while the recorder is stopped. The counts
/// are then short, and say so; the allowlist must not be: the quenched
/// companion slot saw every call.
#[test]
fn full_mode_loses_counts_but_no_call_when_starved() {
    if !prerequisites(true) {
        return;
    }
    let _g = serial();
    let (env, _scratch) = stopped_recorder_env(Duration::from_secs(3));
    let run = env.run_traced(&["oci-ftrace-syscall-analyzer/mode=full"], BUSY);
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(run.stdout(), "done\n");
    let s = summary(&env, &run.id);
    assert_eq!(s["mode"], "full");
    assert!(s["lost_events"].as_u64().unwrap_or(0) > 0, "the full record kept up; nothing was tested: {s:#}");
    assert_eq!(s["counts_exact"], false);
    assert_eq!(s["complete"], true, "{}", s["incomplete_reasons"]);
    let profile = env.container_dir(&run.id).join("seccomp.json");
    let names = allowed(&read_json(&profile));
    for call in ["read", "write", "mkdir", "rmdir"] {
        assert!(names.contains(call), "{call} is missing: {names:?}");
    }
    env.assert_no_instances("after the starved full-mode run");
    let rerun = env.run(false, Some(profile.to_str().expect("utf-8")), BUSY);
    assert!(rerun.ok(), "re-run under the profile failed: {}", rerun.stderr());
    assert_eq!(rerun.stdout(), "done\n");
}
