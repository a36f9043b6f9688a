//! End to end through CRI-O, as on a Kubernetes node: crictl sends real
//! pod and container configs to a CRI-O (started by scripts/crio.sh, see
//! tests/support) whose hooks_dir holds the project's hooks.d. CRI-O runs
//! prestart at `crictl create` and poststop only at `crictl rm`, and merges
//! the pod's annotations into each container's.
//!
//! Not here yet: `crictl exec` during a recording (issue 17, item 3) waits
//! for exec sessions to be traced (issue 8).

use std::path::Path;
use std::time::Duration;

use e2e::*;

const TRACE: (&str, &str) = ("oci-ftrace-syscall-analyzer/trace", "true");
const WORKLOAD: &str = "echo hi; ls /; cat /etc/passwd";

/// Runs WORKLOAD in a traced pod to its end and removes it (poststop);
/// returns its id and the profile path.
fn record(crio: &Crio, pod_name: &str) -> (String, std::path::PathBuf) {
    let pod = crio.run_pod(&PodSpec { name: pod_name, namespace: "e2e", annotations: &[TRACE] });
    let id = pod.create("app", WORKLOAD, Seccomp::Default);
    let dir = crio.container_dir(&id);
    // Prestart ran at `crictl create`.
    assert!(dir.join("state.json").is_file(), "no state.json after crictl create");
    crio.crictl_ok(&["start", &id]);
    assert_eq!(crio.wait_exited(&id, Duration::from_secs(30)), 0, "{}", crio.logs(&id));
    assert!(crio.logs(&id).starts_with("hi\n"), "{}", crio.logs(&id));
    // The recorder wrote the profile when the container exited; poststop
    // (its "done" line in the hook log) waits for `crictl rm`.
    assert!(wait_until(Duration::from_secs(20), || dir.join("summary.json").is_file()), "no summary.json after the exit");
    let poststop_done = || {
        let log = std::fs::read_to_string(crio.state_dir.join("hook.log")).unwrap_or_default();
        log.lines().any(|l| l.contains(" done ") && l.contains(&format!("id={id}")))
    };
    assert!(!poststop_done(), "poststop ran before crictl rm");
    crio.crictl_ok(&["rm", &id]);
    assert!(wait_until(Duration::from_secs(20), poststop_done), "no poststop at crictl rm");
    crio.assert_no_instance(&id, "after crictl rm");
    drop(pod);
    (id.clone(), dir.join("seccomp.json"))
}

#[test]
fn traced_pod_is_recorded_and_an_unannotated_pod_is_not() {
    let Some(crio) = crio_prerequisites(false) else { return };
    let _g = serial();

    let (id, profile_path) = record(&crio, "traced");
    let dir = crio.container_dir(&id);
    let state = read_json(&dir.join("state.json"));
    // The annotation was on the pod only; CRI-O merged it into the container's.
    assert_eq!(state["annotations"]["oci-ftrace-syscall-analyzer/trace"], "true", "{state:#}");
    assert_eq!(state["annotations"]["io.kubernetes.pod.name"], "traced", "{state:#}");
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["complete"], true, "{summary:#}");
    // A Pod without a seccomp profile runs unconfined (the Kubernetes
    // default): the window opens at runc's marker.
    assert_eq!(summary["rule"]["kind"], "runtime-marker", "{summary:#}");
    assert_eq!(summary["rule"]["runtime"], "runc", "{summary:#}");
    let profile = read_json(&profile_path);
    let names = allowed(&profile);
    for n in ["execve", "read", "write", "exit_group"] {
        assert!(names.contains(n), "profile lacks {n}: {names:?}");
    }
    for n in ["mount", "pivot_root", "ptrace", "reboot"] {
        assert!(!names.contains(n), "profile allows {n}");
    }

    // A pod without the annotation: no state, no instance, even while it runs.
    let pod = crio.run_pod(&PodSpec { name: "plain", namespace: "e2e", annotations: &[] });
    let plain = pod.run("app", "sleep 2", Seccomp::Default);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(crio.status(&plain)["state"], "CONTAINER_RUNNING");
    assert!(!crio.has_instance(&plain), "an instance for an unannotated pod");
    assert!(!crio.container_dir(&plain).exists(), "state written for an unannotated pod");
    assert_eq!(crio.wait_exited(&plain, Duration::from_secs(20)), 0);
    crio.crictl_ok(&["rm", &plain]);
    assert!(!crio.container_dir(&plain).exists(), "state written at poststop of an unannotated pod");
}

#[test]
fn profile_works_as_a_localhost_seccomp_profile() {
    let Some(crio) = crio_prerequisites(false) else { return };
    let _g = serial();
    let (_, profile_path) = record(&crio, "web");

    // Installed the way the README tells Kubernetes users: under the
    // kubelet's seccomp root, which the kubelet resolves to an absolute
    // path in the container's CRI config.
    let root = crio.dir.path().join("kubelet/seccomp");
    let installed = root.join("profiles/web.json");
    std::fs::create_dir_all(installed.parent().expect("parent")).expect("mkdir seccomp root");
    std::fs::copy(&profile_path, &installed).expect("install the profile");

    let pod = crio.run_pod(&PodSpec { name: "web-confined", namespace: "e2e", annotations: &[] });
    let ok = pod.run("app", WORKLOAD, Seccomp::Localhost(&installed));
    assert_eq!(crio.wait_exited(&ok, Duration::from_secs(30)), 0, "the workload failed under its profile: {}", crio.logs(&ok));
    let logs = crio.logs(&ok);
    assert!(logs.starts_with("hi\n") && logs.contains("root:x:0:0"), "{logs}");
    // CRI-O did apply it: the spec runc got carries the profile's rules.
    let info = crio.crictl_ok(&["inspect", "-o", "json", &ok]);
    let info: serde_json::Value = serde_json::from_str(&info).expect("inspect JSON");
    let seccomp = &info["info"]["runtimeSpec"]["linux"]["seccomp"];
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO", "{seccomp:#}");
    assert_eq!(seccomp["defaultErrnoRet"], 1, "{seccomp:#}");

    // A call the recording never saw is denied.
    let denied = pod.run("mkdir", &format!("{WORKLOAD}; mkdir /tmp/x"), Seccomp::Localhost(&installed));
    assert_ne!(crio.wait_exited(&denied, Duration::from_secs(30)), 0, "mkdir should have been denied");
    assert!(crio.logs(&denied).contains("Operation not permitted"), "{}", crio.logs(&denied));
}

/// The kubelet's checkpoint directory, created for the test if absent and
/// removed again (with our archive) when dropped.
struct KubeletCheckpoints {
    archive: std::path::PathBuf,
    created: Vec<std::path::PathBuf>,
}

impl KubeletCheckpoints {
    fn new(file: &str) -> Self {
        let dir = Path::new("/var/lib/kubelet/checkpoints");
        let created: Vec<_> = [Path::new("/var/lib/kubelet"), dir].into_iter().filter(|d| !d.exists()).map(Path::to_path_buf).collect();
        std::fs::create_dir_all(dir).expect("mkdir /var/lib/kubelet/checkpoints");
        KubeletCheckpoints { archive: dir.join(file), created }
    }
}

impl Drop for KubeletCheckpoints {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.archive);
        for d in self.created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn poststop_finds_the_kubelet_checkpoint_of_a_traced_container() {
    let Some(crio) = crio_prerequisites(true) else { return };
    let _g = serial();
    let pod_name = format!("ckpt-{}", std::process::id());
    let pod = crio.run_pod(&PodSpec { name: &pod_name, namespace: "e2e", annotations: &[TRACE] });
    // PID 1 waits for a shell that waits for a sleep.
    let id = pod.run("app", "sh -c 'sleep 100000; :' & while :; do sleep 0.2; done", Seccomp::Default);
    std::thread::sleep(Duration::from_millis(1500));

    // Named as the kubelet names them: checkpoint-<pod>_<namespace>-<container>-<time>.tar
    let ckpts = KubeletCheckpoints::new(&format!("checkpoint-{pod_name}_e2e-app-2026-01-01T00:00:00Z.tar"));
    crio.crictl_ok(&["checkpoint", &format!("--export={}", ckpts.archive.display()), &id]);
    assert!(ckpts.archive.is_file(), "no archive at {}", ckpts.archive.display());
    assert_eq!(crio.status(&id)["state"], "CONTAINER_RUNNING", "the container should still run after the checkpoint");

    crio.crictl_ok(&["stop", "--timeout", "0", &id]);
    crio.crictl_ok(&["rm", &id]); // poststop
    let dir = crio.container_dir(&id);
    assert!(wait_until(Duration::from_secs(20), || dir.join("correlation.json").is_file()), "no correlation.json");
    let c = read_json(&dir.join("correlation.json"));
    assert_eq!(c["container"], id.as_str());
    assert_eq!(c["archive"], ckpts.archive.to_str().expect("utf-8 path"), "{c:#}");
    let summary = read_json(&dir.join("summary.json"));
    let procs = c["processes"].as_array().cloned().unwrap_or_default();
    let pid1 = procs.iter().find(|p| p["pid"] == 1).cloned().unwrap_or_default();
    assert_eq!(pid1["host_pid"], summary["host_pid"], "{c:#}");
    assert_eq!(c["episode"], 1, "the dump is not among the trace's checkpoint episodes: {c:#}");

    let out = std::process::Command::new(collector_bin())
        .arg("report")
        .arg(&id)
        .arg("--state-dir")
        .arg(&crio.state_dir)
        .output()
        .expect("collector report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = ckpts.archive.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    assert!(text.contains(&format!("{file} of container")), "{text}");
    crio.assert_no_instance(&id, "after crictl rm");
}

#[test]
fn no_instance_is_left_after_crictl_rmp() {
    let Some(crio) = crio_prerequisites(false) else { return };
    let _g = serial();
    let pod = crio.run_pod(&PodSpec { name: "rmp", namespace: "e2e", annotations: &[TRACE] });
    // PID 1 of its pid namespace: SIGTERM needs a handler, or the pod's
    // stop waits out its grace period.
    let id = pod.run("app", "trap 'exit 0' TERM; while :; do sleep 0.2; done", Seccomp::Default);
    assert!(wait_until(Duration::from_secs(5), || crio.has_instance(&id)), "no instance while the traced container runs");
    // The pod goes with its running container: stop, then poststop at removal.
    crio.crictl_ok(&["rmp", "--force", &pod.id]);
    crio.assert_no_instance(&id, "after crictl rmp");
    let summary = read_json(&crio.container_dir(&id).join("summary.json"));
    assert_eq!(summary["id"], id.as_str());
    let out = crio.crictl(&["inspect", &id]);
    assert!(!out.status.success(), "the container outlived crictl rmp");
}
