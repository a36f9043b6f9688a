//! The smaller defects a hostile tester found in the CLI (issue 14): escape
//! sequences from a container reaching the terminal, a FIFO in place of a
//! state file, corrupt `state.json` and `correlation.json`, and EPIPE. Each
//! test failed before its fix. (An id that looks like an option: the unit
//! test of the recorder's argv in `lifecycle`.)

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HOSTILE: &str = "\u{1b}]0;PWN\u{7}\u{1b}[2J";

fn fixture_state() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/correlation/state")
}

/// A copy of the correlation fixture's state dir; returns it and the id.
fn state_copy(tmp: &Path) -> (PathBuf, String) {
    let src = std::fs::read_dir(fixture_state()).unwrap().next().unwrap().unwrap().path();
    let id = src.file_name().unwrap().to_string_lossy().into_owned();
    let dst = tmp.join("state").join(&id);
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["state.json", "summary.json", "seccomp.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    (tmp.join("state"), id)
}

fn collector(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_collector"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Nothing may hang: a FIFO once did.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("collector {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn escape_sequences_from_a_container_never_reach_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, id) = state_copy(tmp.path());
    let path = state.join(&id).join("summary.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for p in v["analysis"]["processes"].as_object_mut().unwrap().values_mut() {
        p["comm"] = format!("x{HOSTILE}").into();
        p["exe"] = format!("/tmp/{HOSTILE}\nforged line").into();
    }
    std::fs::write(&path, v.to_string()).unwrap();
    for args in [vec!["report", &id[..6]], vec!["report", &id[..6], "--json"], vec!["list"]] {
        let mut args = args.clone();
        args.extend(["--state-dir", state.to_str().unwrap()]);
        let out = collector(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!out.stdout.iter().any(|&b| b == 0x1b || b == 0x07), "{args:?}: raw escape in output");
        if args.contains(&"--json") {
            let back: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let first = back["analysis"]["processes"].as_object().unwrap().values().next().unwrap().clone();
            assert_eq!(first["comm"], format!("x{HOSTILE}"), "JSON keeps the value");
        } else if args[0] == "report" {
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(text.contains("x\\u{1b}]0;PWN\\u{7}\\u{1b}[2J"), "{text}");
            assert!(!text.lines().any(|l| l.starts_with("forged line")), "{text}");
        }
    }
}

#[test]
fn a_fifo_in_place_of_a_state_file_is_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, id) = state_copy(tmp.path());
    for file in ["summary.json", "state.json", "seccomp.json"] {
        let (state, id) = (state.clone(), id.clone());
        let path = state.join(&id).join(file);
        let saved = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for cmd in ["report", "list"] {
            let args: Vec<&str> = if cmd == "report" { vec!["report", &id[..8]] } else { vec!["list"] };
            let mut args = args;
            args.extend(["--state-dir", state.to_str().unwrap()]);
            let out = collector(&args);
            let err = stderr(&out);
            if file == "summary.json" && cmd == "report" {
                assert_eq!(out.status.code(), Some(1), "{err}");
                assert!(err.contains("summary.json") && err.contains("not a regular file but a FIFO"), "{err}");
                assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            }
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, saved).unwrap();
    }
}

#[test]
fn a_corrupt_state_json_is_called_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, id) = state_copy(tmp.path());
    std::fs::remove_file(state.join(&id).join("summary.json")).unwrap();
    std::fs::write(state.join(&id).join("state.json"), "{\"id\": 4").unwrap();
    let out = collector(&["report", &id[..8], "--state-dir", state.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("state.json is not valid"), "{err}");
    assert!(!err.contains("no summary yet"), "{err}");
    // Without a state.json either, "no summary yet" is the truth.
    std::fs::remove_file(state.join(&id).join("state.json")).unwrap();
    let err = stderr(&collector(&["report", &id[..8], "--state-dir", state.to_str().unwrap()]));
    assert!(err.contains("no summary yet"), "{err}");
}

#[test]
fn a_corrupt_correlation_json_is_named_and_the_report_still_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, id) = state_copy(tmp.path());
    std::fs::write(state.join(&id).join("correlation.json"), "{\"container\": [").unwrap();
    let out = collector(&["report", &id[..8], "--state-dir", state.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("correlation.json is not valid"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SYSCALL"));
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let ckpt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoints/podman-export.tar.zst");
    let mut child = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["checkpoint", "inspect", "--all", ckpt.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -0`: the reader goes away before anything is written.
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("Broken pipe"), "{err}");
    assert!(err.is_empty(), "{err}");
    assert!(status.success(), "{status:?}");
}
