//! `collector report <id> --checkpoint` on a real checkpoint of a traced
//! container and that container's trace (made by
//! tests/fixtures/make-correlation.sh): each checkpointed process is
//! named, joined with the right traced process, and shown with what it
//! was blocked in, its sockets and its syscalls; the filter's allowed set
//! is compared with the calls used; another container's archive is refused.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn id() -> String {
    std::fs::read_to_string(data().join("correlation/ID")).expect("fixture ID").trim().to_string()
}

fn report(archive: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_collector"))
        .arg("report")
        .arg(id())
        .arg("--state-dir")
        .arg(data().join("correlation/state"))
        .arg("--checkpoint")
        .arg(data().join(archive))
        .args(extra)
        .output()
        .expect("run collector");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn each_checkpointed_process_is_joined_with_its_traced_self() {
    let (code, out, err) = report("correlation/export.tar.zst", &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    let c = &v["correlation"];
    let traced = v["analysis"]["processes"].as_object().expect("traced processes");
    let procs = c["processes"].as_array().expect("processes");
    let by_pid = |pid: u64| procs.iter().find(|p| p["pid"] == pid).unwrap_or_else(|| panic!("no pid {pid}: {c:#}"));

    // Every checkpointed process found its traced self, each a different
    // one, and the trace agrees on its container pid and name.
    let mut hosts = BTreeSet::new();
    for p in procs {
        assert_eq!(p["matched_by"], "container-pid", "{p:#}");
        let host = p["host_pid"].as_i64().expect("host pid");
        assert!(hosts.insert(host), "two processes joined with host pid {host}");
        let t = &traced[&host.to_string()];
        assert_eq!(t["ns_pid"], p["pid"], "{t:#}");
        assert_eq!(t["comm"], p["comm"], "{t:#}");
        assert_eq!(names(&p["syscalls"]), names(&t["syscalls"]));
    }
    assert_eq!(procs.len(), 4);
    // PID 1 is the init task the hook armed.
    assert_eq!(by_pid(1)["host_pid"], v["host_pid"]);

    // The shell that waits for its sleep: blocked in wait4, and the trace
    // saw it fork and wait.
    let sh = by_pid(7);
    assert_eq!(sh["comm"], "sh");
    assert_eq!(sh["blocked"][0]["syscall"], "wait4", "{sh:#}");
    assert!(names(&sh["syscalls"]).is_superset(&["clone", "wait4"].map(String::from).into()), "{sh:#}");
    assert_eq!(sh["cmdline"], serde_json::json!(["sh", "-c", "sleep 100000; :"]));

    // The listener: its socket, blocked in accept, and its own calls only.
    let l = by_pid(6);
    assert_eq!(l["comm"], "unix-listen");
    assert_eq!(l["blocked"][0]["syscall"], "accept", "{l:#}");
    let sock = &l["sockets"][0];
    assert_eq!((sock["kind"].as_str(), sock["path"].as_str(), sock["state"].as_str()), (Some("unix"), Some("/run/app.sock"), Some("LISTEN")), "{l:#}");
    assert!(names(&l["syscalls"]).is_superset(&["socket", "bind", "listen", "accept"].map(String::from).into()), "{l:#}");
    for p in procs.iter().filter(|p| p["pid"] != 6) {
        assert!(!names(&p["syscalls"]).contains("listen"), "listen under the wrong process: {p:#}");
        assert!(p["sockets"].as_array().is_none_or(|s| s.is_empty()), "{p:#}");
    }

    // The sleep, in its sleep.
    let sleep = by_pid(8);
    assert_eq!(sleep["blocked"][0]["syscall"], "clock_nanosleep");
    assert!(names(&sleep["syscalls"]).contains("clock_nanosleep"));

    // The dump is the trace's one checkpoint episode.
    assert_eq!(c["episode"], 1, "{c:#}");
    assert_eq!(c["episodes"].as_array().map(Vec::len), Some(1));

    // Allowed against used: one filter for all four; what it allows and
    // the workload never used, and nothing used among it.
    let s = &c["surface"][0];
    assert_eq!(s["pids"], serde_json::json!([1, 6, 7, 8]));
    let used = names(&v["analysis"]["syscalls"]);
    let unused: BTreeSet<String> =
        s["unused_allowed"].as_array().expect("list").iter().filter_map(|x| x.as_str().map(String::from)).collect();
    assert_eq!(s["used"].as_u64(), Some(used.len() as u64));
    assert!(unused.is_disjoint(&used));
    assert!(unused.len() > 200, "Podman's default profile allows far more than {} unused calls", unused.len());
    // Allowed by Podman's default profile, never made by this workload.
    for n in ["mount", "ptrace", "setns", "unshare", "connect"] {
        assert!(unused.contains(n), "{n} not listed as allowed and unused");
    }
    // CRIU's parasite calls were kept out of the trace's used set.
    for n in ["vmsplice", "sendto", "recvfrom"] {
        assert!(!used.contains(n), "{n} counted as used");
    }
    assert_eq!(s["used_but_denied"], serde_json::json!([]));
}

#[test]
fn the_table_shows_the_tree() {
    let (code, out, err) = report("correlation/export.tar.zst", &[]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "[7] sh (alive; host pid",
        "blocked in wait4 (thread 7)",
        "unix stream /run/app.sock LISTEN",
        "blocked in accept (thread 6)",
        "this dump is episode 1",
        "allowed, never used (the generated profile removes them)",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}

#[test]
fn another_containers_checkpoint_is_refused_in_one_line() {
    let (code, out, err) = report("checkpoints/podman-export.tar.zst", &[]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("is of container 7fa2eb8686f5"), "{err}");
    assert!(err.contains(&format!("not {}", id())), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
