//! Checkpoint correlation end to end: a traced container whose annotation
//! names a checkpoint directory is checkpointed there while it runs; at
//! poststop the hook finds its archive (not another container's that lies
//! beside it), joins it with the trace and writes correlation.json, which
//! `collector report` then shows.

use std::time::Duration;

use e2e::*;

/// PID 1 waits for a shell that waits for a sleep, until /stop appears.
const WORKLOAD: &str = "sh -c 'sleep 100000; :' & while [ ! -e /stop ]; do sleep 0.2; done; kill %1";

#[test]
fn poststop_correlates_the_containers_own_checkpoint() {
    if !checkpoint_prerequisites() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let ckpts = env.checkpoints_dir();
    std::fs::create_dir_all(&ckpts).expect("checkpoint dir");
    // Another container's archive, newer than ours will be: must not be used.
    let decoy = ckpts.join("zz-other.tar.zst");
    let stop = env.rootfs().join("stop");
    let _ = std::fs::remove_file(&stop);
    let annotation = format!("oci-ftrace-syscall-analyzer/checkpoint-dir={}", ckpts.display());
    // Full mode: every call is recorded, so each process's list is whole
    // (profile mode lists a call under the process that made it first).
    let container = env.start_traced_with(&[annotation.as_str(), "oci-ftrace-syscall-analyzer/mode=full"], WORKLOAD);
    let id = container.0.clone();
    std::thread::sleep(Duration::from_millis(1500));
    let out = podman()
        .args(["container", "checkpoint", "--leave-running"])
        .arg(format!("--export={}", ckpts.join("mine.tar.zst").display()))
        .arg(&id)
        .output()
        .expect("podman container checkpoint");
    assert!(out.status.success(), "checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/tests/data/checkpoints/podman-export.tar.zst");
    std::fs::copy(&fixture, &decoy).expect("copy the decoy archive");
    std::fs::write(&stop, b"").expect("create /stop");
    let out = podman().args(["wait", &id]).output().expect("podman wait");
    assert!(out.status.success(), "podman wait: {}", String::from_utf8_lossy(&out.stderr));
    drop(container); // podman rm: poststop runs (if it has not already)

    let dir = env.container_dir(&id);
    assert!(wait_until(Duration::from_secs(20), || dir.join("correlation.json").is_file()), "no correlation.json");
    let summary = read_json(&dir.join("summary.json"));
    let c = read_json(&dir.join("correlation.json"));
    assert_eq!(c["container"], id.as_str());
    assert!(c["archive"].as_str().is_some_and(|a| a.ends_with("mine.tar.zst")), "{c:#}");
    let spans: Vec<String> = c["episodes"].as_array().into_iter().flatten().map(|e| format!("{}..{}", e["start_ns"], e["end_ns"])).collect();
    assert_eq!(c["episode"], 1, "checkpointed {}, trace clock zero {}, episodes {spans:?}", c["checkpointed"], summary["trace_clock_unix"]);
    let procs = c["processes"].as_array().cloned().unwrap_or_default();
    let pid = |n: u64| procs.iter().find(|p| p["pid"] == n).cloned().unwrap_or_default();
    assert_eq!(pid(1)["host_pid"], summary["host_pid"], "{c:#}");
    let waiter = procs.iter().find(|p| p["comm"] == "sh" && p["pid"] != 1).cloned().unwrap_or_default();
    assert_eq!(waiter["blocked"][0]["syscall"], "wait4", "{c:#}");
    assert!(waiter["syscalls"].get("wait4").is_some(), "{waiter:#}");
    assert!(waiter["host_pid"].as_i64().is_some_and(|h| h != summary["host_pid"].as_i64().unwrap_or(0)));
    assert!(c["surface"][0]["unused_allowed"].as_array().is_some_and(|u| u.len() > 100), "{c:#}");

    // The report shows it without being told where the archive is.
    let out = std::process::Command::new(collector_bin())
        .arg("report")
        .arg(&id)
        .arg("--state-dir")
        .arg(env.state_dir())
        .output()
        .expect("collector report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("mine.tar.zst of container"), "{text}");
    assert!(text.contains("blocked in wait4"), "{text}");
    env.assert_no_instances("after the correlated run");
}
