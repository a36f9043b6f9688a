//! Checkpoint episodes end to end: a traced container checkpointed twice
//! with `podman container checkpoint --leave-running` (once plain, once
//! with `--export`) gets the profile of the same workload never
//! checkpointed; its summary and report list both episodes.

use std::path::Path;
use std::time::Duration;

use e2e::*;

/// Sleeps and a little file I/O, until the test creates /stop in the rootfs.
const LOOP: &str = "while [ ! -e /stop ]; do echo x > /tmp/f; cat /tmp/f > /dev/null; sleep 0.2; done";

/// Calls only CRIU's parasite and injected code made in the capture of
/// this loop (collector/tests/data/episodes-6.18); the loop never does.
const PARASITE_ONLY: &[&str] = &["vmsplice", "recvmsg", "sendmsg", "socket", "connect", "memfd_create"];

fn checkpoint(id: &str, extra: &[&str]) {
    let out = podman()
        .args(["container", "checkpoint", "--leave-running"])
        .args(extra)
        .arg(id)
        .output()
        .expect("run podman container checkpoint");
    assert!(out.status.success(), "checkpoint {extra:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Lets the loop run for `before`, checkpoints it, stops it and waits for
/// the recorder's summary.
fn run_loop(env: &Env, before: Duration, checkpoints: &[&[&str]]) -> (String, serde_json::Value) {
    let stop = env.rootfs().join("stop");
    let _ = std::fs::remove_file(&stop);
    let container = env.start_traced(LOOP);
    let id = container.0.clone();
    std::thread::sleep(before);
    for extra in checkpoints {
        checkpoint(&id, extra);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::fs::write(&stop, b"").expect("create /stop in the rootfs");
    let out = podman().args(["wait", &id]).output().expect("podman wait");
    assert!(out.status.success(), "podman wait: {}", String::from_utf8_lossy(&out.stderr));
    let summary = env.container_dir(&id).join("summary.json");
    let done = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&summary)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|s| s["finished_by"] == "recorder")
    });
    assert!(done, "no summary from the recorder for {id}");
    let _ = std::fs::remove_file(&stop);
    drop(container);
    (id.clone(), read_json(&summary))
}

fn profile(env: &Env, id: &str) -> std::collections::BTreeSet<String> {
    allowed(&read_json(&env.container_dir(id).join("seccomp.json")))
}

fn report(env: &Env, id: &str, json: bool) -> String {
    let mut cmd = std::process::Command::new(collector_bin());
    cmd.arg("report").arg(id).arg("--state-dir").arg(env.state_dir());
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run collector report");
    assert!(out.status.success(), "collector report: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn checkpointed_container_gets_the_profile_of_an_uncheckpointed_one() {
    if !checkpoint_prerequisites() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let (plain_id, plain) = run_loop(&env, Duration::from_millis(2500), &[]);
    env.assert_no_instances("after the plain run");
    let export = env.dir.path().join("export.tar.zst");
    let export_arg = format!("--export={}", export.display());
    let (id, s) = run_loop(&env, Duration::from_millis(1500), &[&[], &[export_arg.as_str()]]);
    env.assert_no_instances("after the checkpointed run");
    assert!(Path::new(&export).is_file(), "no export archive");

    // Two episodes, each by its own CRIU, on the container's tasks.
    assert_eq!(plain["analysis"].get("episodes"), None, "{:#}", plain["analysis"]);
    let episodes = s["analysis"]["episodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(episodes.len(), 2, "{:#}", s["analysis"]);
    assert_ne!(episodes[0]["tracer_pid"], episodes[1]["tracer_pid"]);
    let host_pid = s["host_pid"].as_i64().expect("host pid");
    for e in &episodes {
        assert_eq!(e["tracer_comm"], "criu");
        assert!(e["start_ns"].as_u64() < e["end_ns"].as_u64(), "{e:#}");
        let tasks = e["tasks"].as_array().cloned().unwrap_or_default();
        assert!(tasks.iter().any(|t| t["pid"].as_i64() == Some(host_pid)), "init not stopped: {e:#}");
        assert!(e["excluded_calls"].as_u64().unwrap_or(0) > 0, "{e:#}");
        for name in PARASITE_ONLY {
            assert!(e["excluded"].get(name).is_some(), "{name} not excluded: {e:#}");
        }
    }
    assert_eq!(s["complete"], true, "{}", s["incomplete_reasons"]);

    // The same profile, but for calls the interruption made a task issue
    // when it resumed, which the summary names.
    let (ckpt, base) = (profile(&env, &id), profile(&env, &plain_id));
    let resumed_new: std::collections::BTreeSet<String> = episodes
        .iter()
        .flat_map(|e| e["resumed"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["new"] == true)
        .filter_map(|r| r["syscall"].as_str().map(String::from))
        .collect();
    let missing: Vec<&String> = base.difference(&ckpt).collect();
    assert!(missing.is_empty(), "workload calls lost: {missing:?}");
    let extra: Vec<&String> = ckpt.difference(&base).filter(|n| !resumed_new.contains(*n)).collect();
    assert!(extra.is_empty(), "calls only the checkpointed run allows, unexplained: {extra:?}");
    for name in PARASITE_ONLY {
        assert!(!ckpt.contains(*name), "{name} in the profile");
    }

    // The report lists both.
    let table = report(&env, &id, false);
    assert!(table.contains("checkpoints 2 episodes"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("  1  ") && l.contains("criu pid")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("  2  ") && l.contains("criu pid")), "{table}");
    assert!(table.contains("excluded  "), "{table}");
    let json: serde_json::Value = serde_json::from_str(&report(&env, &id, true)).expect("report --json");
    assert_eq!(json["analysis"]["episodes"].as_array().map(Vec::len), Some(2));
    env.assert_no_instances("at the end");
}
