//! Checkpoint forensics end to end, on checkpoints made here with Podman +
//! runc + CRIU: `checkpoint diff` of two checkpoints of one container taken
//! seconds apart, `checkpoint files` on the changed file, and
//! `checkpoint coredump` loaded by gdb.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::*;

/// Removes the container (and image) on every path.
struct Guard {
    container: String,
    image: Option<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.container]).output();
        if let Some(i) = &self.image {
            let _ = podman().args(["rmi", "-f", i]).output();
        }
    }
}

fn collector(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(collector_bin()).args(args).output().expect("run collector");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn checkpoint(name: &str, to: &Path) {
    let out = podman()
        .args(["container", "checkpoint", "--leave-running"])
        .arg(format!("--export={}", to.display()))
        .arg(name)
        .output()
        .expect("podman container checkpoint");
    assert!(out.status.success(), "checkpoint: {}", String::from_utf8_lossy(&out.stderr));
}

fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{t}", std::process::id())
}

/// PID 1 reads one command line at a time from the FIFO /ctl and runs it;
/// between reads it sits blocked opening the FIFO, so nothing else moves.
const CONTROLLED: &str = "mkdir -p /data; echo old > /data/f; mkfifo /ctl; while :; do read cmd < /ctl; eval \"$cmd\"; done";

#[test]
fn diff_of_two_checkpoints_shows_the_changed_file_and_the_new_process() {
    if !checkpoint_prerequisites() {
        return;
    }
    let _g = serial();
    let dir = tempfile::Builder::new().prefix("ofsa-forensics").tempdir().expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    make_rootfs(&rootfs);
    // An image, not --rootfs: only then does the archive carry rootfs-diff.tar.
    let tarball = dir.path().join("rootfs.tar");
    let st = Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg(".").status().expect("tar");
    assert!(st.success());
    let image = format!("localhost/{}:e2e", unique("ofsa-forensics"));
    let out = podman().arg("import").arg(&tarball).arg(&image).output().expect("podman import");
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let name = unique("ofsa-diff");
    let _guard = Guard { container: name.clone(), image: Some(image.clone()) };
    let out = podman()
        .args(["run", "-d", "--name", &name, "--network", "none"])
        .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"])
        .args([&image, "/bin/sh", "-c", CONTROLLED])
        .output()
        .expect("podman run");
    assert!(out.status.success(), "run: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(1500));
    let a = dir.path().join("a.tar.zst");
    let b = dir.path().join("b.tar.zst");
    checkpoint(&name, &a);
    // Between the two: change /data/f and start a process.
    let out = podman()
        .args(["exec", &name, "sh", "-c", "echo 'echo changed-content-xyz > /data/f; sleep 100000 &' > /ctl"])
        .output()
        .expect("podman exec");
    assert!(out.status.success(), "exec: {}", String::from_utf8_lossy(&out.stderr));
    // A second passes, so the file's time stamp differs as well.
    std::thread::sleep(Duration::from_millis(1500));
    checkpoint(&name, &b);

    let (ok, out, err) = collector(&["checkpoint", "diff", a.to_str().unwrap(), b.to_str().unwrap(), "--format", "json"]);
    assert!(ok, "{err}");
    let d: serde_json::Value = serde_json::from_str(&out).expect("diff JSON");
    let added = d["processes_added"].as_array().cloned().unwrap_or_default();
    assert_eq!(added.len(), 1, "{d:#}");
    assert_eq!(added[0]["comm"], "sleep", "{d:#}");
    assert_eq!(added[0]["ppid"], 1, "{d:#}");
    assert_eq!(added[0]["cmdline"], serde_json::json!(["sleep", "100000"]), "{d:#}");
    assert_eq!(added[0]["blocked"], "clock_nanosleep", "{d:#}");
    assert_eq!(d["processes_gone"], serde_json::json!([]), "{d:#}");
    assert_eq!(d["processes_changed"], serde_json::json!([]), "{d:#}");
    assert_eq!(d["namespaces"], serde_json::json!([]), "{d:#}");
    let files = &d["files"];
    let changed: Vec<&str> = files["changed"].as_array().into_iter().flatten().filter_map(|c| c["path"].as_str()).collect();
    assert_eq!(changed, ["data/f"], "{d:#}");
    assert_eq!(files["changed"][0]["a"]["size"], 4, "{d:#}");
    assert_eq!(files["changed"][0]["b"]["size"], 20, "{d:#}");
    for k in ["added", "removed", "deleted_added", "deleted_removed"] {
        assert_eq!(files[k], serde_json::json!([]), "{k}: {d:#}");
    }
    let fields: Vec<&str> = d["container"].as_array().into_iter().flatten().filter_map(|c| c["field"].as_str()).collect();
    assert!(fields.iter().all(|f| *f == "checkpointed"), "{d:#}");

    // The tree says the same.
    let (ok, tree, err) = collector(&["checkpoint", "diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(tree.contains("+ [") && tree.contains("sleep (alive, in clock_nanosleep): sleep 100000"), "{tree}");
    assert!(tree.contains("~ /data/f (4 B) -> /data/f (20 B)"), "{tree}");

    // `files` prints the changed file's contents from each checkpoint.
    let (ok, out, err) = collector(&["checkpoint", "files", b.to_str().unwrap(), "/data/f"]);
    assert!(ok, "{err}");
    assert_eq!(out, "changed-content-xyz\n");
    let (ok, out, _) = collector(&["checkpoint", "files", a.to_str().unwrap(), "/data/f"]);
    assert!(ok);
    assert_eq!(out, "old\n");
}

#[allow(dead_code)]
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
