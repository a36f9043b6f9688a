//! Bad input to the `collector` CLI: one clear line on stderr, a failing
//! exit code, never a panic.

use std::process::Command;

fn collector(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_collector")).args(args).output().expect("run collector");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_line(code: i32, err: &str, want: &str) {
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(want), "expected {want:?} in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn text_and_random_files_are_not_archives() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("passwd");
    std::fs::write(&text, "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\n".repeat(20)).unwrap();
    let random = dir.path().join("random.bin");
    let mut x = 0x2545_f491_u32;
    let bytes: Vec<u8> = (0..50_000).map(|_| { x ^= x << 13; x ^= x >> 17; x ^= x << 5; x as u8 }).collect();
    std::fs::write(&random, bytes).unwrap();
    for f in [&text, &random] {
        let (code, err) = collector(&["checkpoint", "inspect", f.to_str().unwrap()]);
        assert_one_line(code, &err, "not a tar archive");
    }
}

#[test]
fn report_names_the_missing_container() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = collector(&["report", "abc", "--state-dir", dir.path().to_str().unwrap()]);
    assert_one_line(code, &err, "no recorded container matches \"abc\"");
    let (code, err) = collector(&["report", "../etc", "--state-dir", dir.path().to_str().unwrap()]);
    assert_one_line(code, &err, "no recorded container matches");
}

#[test]
fn a_corrupt_summary_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("abc123")).unwrap();
    std::fs::write(dir.path().join("abc123/summary.json"), "{\"id\": ").unwrap();
    let (code, err) = collector(&["report", "abc", "--state-dir", dir.path().to_str().unwrap()]);
    assert_one_line(code, &err, "abc123/summary.json is not valid");
}
