//! `checkpoint files`, `maps` and `memsearch --map/--perm/--range` on the
//! committed Podman fixture (see tests/fixtures/make-checkpoints.sh): the
//! busybox workload wrote /data/written.txt ("checkpoint fixture data"),
//! deleted /etc/motd and keeps "ofsa-marker-42-in-memory" in PID 1's heap.

use std::path::{Path, PathBuf};
use std::process::Command;

use collector::checkpoint::maps::{self, MapFilter, MapSel};
use collector::checkpoint::{self, files, memory, LoadOptions};

const MARKER: &str = "ofsa-marker-42-in-memory";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoints/podman-export.tar.zst")
}

fn collector(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_collector")).args(args).output().expect("run collector");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_line_error(code: i32, err: &str, want: &str) {
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(want), "expected {want:?} in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn files_lists_changed_and_deleted_and_prints_one() {
    let f = fixture();
    let a = f.to_str().unwrap();
    let (code, out, err) = collector(&["checkpoint", "files", a]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("file     24    /data/written.txt"), "{out}");
    assert!(out.contains("deleted  -     /etc/motd"), "{out}");
    let (code, out, err) = collector(&["checkpoint", "files", a, "/data/written.txt"]);
    assert_eq!((code, out.as_str()), (0, "checkpoint fixture data\n"), "{err}");
    let (code, out, _) = collector(&["checkpoint", "files", a, "data/written.txt", "--format", "json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["content"], "checkpoint fixture data\n");
    assert_eq!(j["size"], 24);
    let (code, out, _) = collector(&["checkpoint", "files", a, "--format", "json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["deleted"][0], "/etc/motd");
    assert_eq!(j["changed"][0]["path"], "data/written.txt");

    let (code, _, err) = collector(&["checkpoint", "files", a, "/etc/motd"]);
    one_line_error(code, &err, "deleted.files");
    let (code, _, err) = collector(&["checkpoint", "files", a, "/etc/passwd"]);
    one_line_error(code, &err, "not in rootfs-diff.tar");
    let (code, _, err) = collector(&["checkpoint", "files", a, "/../../etc/shadow"]);
    one_line_error(code, &err, "climbs");
    // The byte cap.
    let (code, out, _) = collector(&["checkpoint", "files", a, "/data/written.txt", "--max-bytes", "5"]);
    assert_eq!((code, out.as_str()), (0, "check"));
}

#[test]
fn files_library_never_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let mut buf = Vec::new();
    let got = files::cat(&fixture(), "/var/log/messages", 1 << 20, &[], &mut buf).unwrap();
    assert_eq!(got.size, buf.len() as u64);
    assert!(String::from_utf8_lossy(&buf).contains("syslogd"), "{}", String::from_utf8_lossy(&buf));
    assert_eq!(before.len(), std::fs::read_dir(dir.path()).unwrap().count());
}

#[test]
fn maps_show_kinds_and_dumped_pages() {
    let c = checkpoint::load(&fixture(), &LoadOptions::default()).unwrap();
    let m = maps::maps(&c, 1).unwrap();
    let kinds: Vec<&str> = m.vmas.iter().map(|v| v.kind).collect();
    for k in ["file", "heap", "stack", "vdso", "anon"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let heap = m.vmas.iter().find(|v| v.kind == "heap").unwrap();
    assert_eq!(heap.perms, "rw-p");
    assert!(heap.dumped_pages > 0 && heap.dumped_pages <= heap.pages);
    let text = m.vmas.iter().find(|v| v.perms == "r-xp" && v.kind == "file").unwrap();
    assert_eq!(text.what, "/bin/busybox");
    assert_eq!(m.dumped_pages, m.vmas.iter().map(|v| v.dumped_pages).sum::<u64>());
    let (code, out, err) = collector(&["checkpoint", "maps", fixture().to_str().unwrap(), "--pid", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[heap]") && out.contains("/bin/busybox") && out.contains("DUMPED"), "{out}");
    let (code, _, err) = collector(&["checkpoint", "maps", fixture().to_str().unwrap(), "--pid", "77"]);
    one_line_error(code, &err, "no process with PID 77");
}

#[test]
fn memsearch_filters_restrict_where_it_looks() {
    let c = checkpoint::load(&fixture(), &LoadOptions::default()).unwrap();
    let pat = memory::Pattern::Literal(MARKER.into());
    let f = |map, perm, range| MapFilter { map, perm, range };
    let heap = memory::search(&c, 1, &pat, 0, &f(Some(MapSel::Heap), Some(3), None)).unwrap();
    assert_eq!(heap.len(), 1);
    let addr = heap[0].address;
    assert!(memory::search(&c, 1, &pat, 0, &f(Some(MapSel::Stack), None, None)).unwrap().is_empty());
    assert!(memory::search(&c, 1, &pat, 0, &f(None, Some(4), None)).unwrap().is_empty());
    // A range around the hit finds it; one that ends just before it does not.
    assert_eq!(memory::search(&c, 1, &pat, 0, &f(None, None, Some((addr - 16, addr + 64)))).unwrap().len(), 1);
    assert!(memory::search(&c, 1, &pat, 0, &f(None, None, Some((addr - 4096, addr)))).unwrap().is_empty());
    let err = memory::search(&c, 1, &pat, 0, &f(Some(MapSel::Path("/nope".into())), None, None)).unwrap_err();
    assert!(err.to_string().contains("no mapping that matches --map /nope"), "{err}");

    let a = fixture();
    let a = a.to_str().unwrap();
    let (code, out, err) = collector(&["checkpoint", "memsearch", a, "--pid", "1", "--string", MARKER, "--map", "heap", "--perm", "rw"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[heap]"), "{out}");
    let (code, _, _) = collector(&["checkpoint", "memsearch", a, "--pid", "1", "--string", MARKER, "--map", "file"]);
    assert_eq!(code, 1, "no match in file mappings");
    let (code, _, err) = collector(&["checkpoint", "memsearch", a, "--pid", "1", "--string", "x", "--range", "9-1"]);
    one_line_error(code, &err, "--range \"9-1\": START must be below END");
    let (code, _, err) = collector(&["checkpoint", "memsearch", a, "--pid", "1", "--string", "x", "--perm", "rwz"]);
    one_line_error(code, &err, "--perm");
    let (code, _, err) = collector(&["checkpoint", "memsearch", a, "--pid", "1", "--string", "x", "--map", "bogus"]);
    one_line_error(code, &err, "--map \"bogus\"");
}
