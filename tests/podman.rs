//! End to end with real `podman --runtime runc`, the project's hooks.d and
//! a busybox rootfs: record a workload, then run it again under the
//! profile it produced.

use e2e::*;

const WORKLOAD: &str = "echo hi; ls /; cat /etc/passwd";

/// Records WORKLOAD (confined or not) and returns (id, profile, summary).
fn record(env: &Env, seccomp: Option<&str>) -> (String, serde_json::Value, serde_json::Value) {
    let run = env.run(true, seccomp, WORKLOAD);
    assert!(run.ok(), "traced run failed: {}", run.stderr());
    assert!(run.stdout().starts_with("hi\n"), "{}", run.stdout());
    assert!(!run.id.is_empty(), "no container id");
    let dir = env.container_dir(&run.id);
    let profile = read_json(&dir.join("seccomp.json"));
    let summary = read_json(&dir.join("summary.json"));
    (run.id, profile, summary)
}

#[test]
fn profile_allows_the_workload_and_denies_the_rest() {
    if !prerequisites(true) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let (id, profile, summary) = record(&env, None);
    env.assert_no_instances("after the traced run");

    // The profile has what the workload needs and not the runtime's setup.
    let names = allowed(&profile);
    for n in ["execve", "read", "write", "exit_group"] {
        assert!(names.contains(n), "profile lacks {n}: {names:?}");
    }
    for n in ["mount", "pivot_root", "ptrace", "reboot"] {
        assert!(!names.contains(n), "profile allows {n}");
    }
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(profile["defaultErrnoRet"], 1);
    assert_eq!(profile["architectures"], serde_json::json!(["SCMP_ARCH_X86_64"]));

    // The summary says how the window was found and that nothing was lost.
    assert_eq!(summary["id"], id.as_str());
    assert_eq!(summary["rule"]["kind"], "filter-install");
    assert_eq!(summary["complete"], true, "{summary:#}");
    assert_eq!(summary["lost_events"], 0);
    let comms: Vec<&str> = summary["analysis"]["processes"]
        .as_object()
        .expect("processes")
        .values()
        .filter_map(|p| p["comm"].as_str())
        .collect();
    assert!(comms.contains(&"ls"), "{comms:?}");

    // Sufficiency: the same workload under the profile, same output.
    let path = env.container_dir(&id).join("seccomp.json");
    let rerun = env.run(false, Some(path.to_str().expect("utf-8 path")), WORKLOAD);
    assert!(rerun.ok(), "re-run under the profile failed: {}", rerun.stderr());
    let first = env.run(false, None, WORKLOAD);
    assert_eq!(rerun.stdout(), first.stdout());

    // Minimality: a call the recording never saw is denied.
    let variant = env.run(false, Some(path.to_str().expect("utf-8 path")), &format!("{WORKLOAD}; mkdir /tmp/x"));
    assert!(!variant.ok(), "mkdir should have been denied");
    assert!(variant.stderr().contains("Operation not permitted"), "{}", variant.stderr());
    env.assert_no_instances("after the re-runs");

    // The report names the rule, the profile and the calls.
    let out = std::process::Command::new(collector_bin())
        .args(["report", &id[..12], "--state-dir"])
        .arg(env.state_dir())
        .output()
        .expect("collector report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("filter install"), "{text}");
    assert!(text.contains(path.to_str().unwrap_or_default()));
    assert!(text.lines().any(|l| l.starts_with("execve ")), "{text}");
    let json = std::process::Command::new(collector_bin())
        .args(["report", &id, "--json", "--state-dir"])
        .arg(env.state_dir())
        .output()
        .expect("collector report --json");
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("report JSON");
    assert_eq!(value["analysis"]["syscalls"], summary["analysis"]["syscalls"]);
}

#[test]
fn unconfined_recording_gives_the_same_profile() {
    if !prerequisites(true) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let (_, confined, cs) = record(&env, None);
    let (_, unconfined, us) = record(&env, Some("unconfined"));
    assert_eq!(cs["rule"]["kind"], "filter-install");
    assert_eq!(us["rule"]["kind"], "runtime-marker");
    assert_eq!(us["rule"]["runtime"], runtime().as_str());
    assert_eq!(allowed(&confined), allowed(&unconfined));
    assert_eq!(confined, unconfined, "the profile files should be identical");
    // The event layouts are cached for this boot (by the first recorder,
    // here or in an earlier test); the second run decoded with the cache,
    // to the same profile.
    assert!(cs["recorder"]["layouts_cached"].is_boolean(), "{cs:#}");
    assert_eq!(us["recorder"]["layouts_cached"], true, "{us:#}");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot_id");
    let cache = std::path::Path::new("/run/oci-ftrace-syscall-analyzer/layouts").join(format!("{}.json", boot.trim()));
    assert!(cache.is_file(), "no layout cache at {}", cache.display());
    env.assert_no_instances("after confined and unconfined runs");
}

#[test]
fn unannotated_container_is_not_traced() {
    if !prerequisites(true) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    // Look while it runs: no instance may exist at any point.
    let run = env.run(false, None, "sleep 0.3; ls /sys/kernel/tracing/instances 2>/dev/null; true");
    assert!(run.ok(), "{}", run.stderr());
    assert!(!run.id.is_empty());
    assert!(!env.container_dir(&run.id).exists(), "state dir written for an unannotated container");
    env.assert_no_instances("after an unannotated run");

    // And while it is still running, seen from the host.
    let cid = env.dir.path().join("cid-bg");
    let mut cmd = podman();
    cmd.arg("--hooks-dir").arg(env.hooks_dir()).args(["run", "-d", "--rm", "--network", "none"]);
    cmd.args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--cidfile"]).arg(&cid);
    cmd.arg("--rootfs").arg(env.rootfs()).args(["sleep", "5"]);
    let out = cmd.output().expect("podman run -d");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = std::fs::read_to_string(&cid).unwrap_or_default().trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let seen = recording_instance(&id, &env.state_dir());
    let _ = podman().args(["rm", "-f", "-t", "0", &id]).output();
    assert!(!id.is_empty());
    assert!(seen.is_none(), "instance for an unannotated container: {seen:?}");
    env.assert_no_instances("after the background run");
}
