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

#[test]
fn diff_of_one_dump_in_two_packagings_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.tar");
    let raw = zstd::decode_all(std::fs::File::open(fixture()).unwrap()).unwrap();
    std::fs::write(&plain, raw).unwrap();
    let opts = LoadOptions { memory: true, ..Default::default() };
    let a = checkpoint::load(&fixture(), &opts).unwrap();
    let b = checkpoint::load(&plain, &opts).unwrap();
    let d = checkpoint::diff::diff(&a, &b);
    assert!(d.is_empty(), "{d:#?}");
    let (code, out, err) = collector(&["checkpoint", "diff", fixture().to_str().unwrap(), plain.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("processes\n│   └── (no change)"), "{out}");
}

#[test]
fn coredump_of_the_fixture_holds_the_marker_where_memsearch_found_it() {
    let c = checkpoint::load(&fixture(), &LoadOptions { memory: true, ..Default::default() }).unwrap();
    let hit = memory::search(&c, 1, &memory::Pattern::Literal(MARKER.into()), 0, &MapFilter::default()).unwrap();
    let addr = hit[0].address;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cores");
    let cores = checkpoint::coredump::write_cores(
        &c,
        &checkpoint::coredump::Options { pid: None, out_dir: out.clone(), rootfs: None },
    )
    .unwrap();
    assert_eq!(cores.iter().map(|c| c.pid).collect::<Vec<_>>(), vec![1, 7, 8, 9]);
    // No temporary files are left behind.
    let mut names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["core.1", "core.7", "core.8", "core.9"]);
    let core = std::fs::read(out.join("core.1")).unwrap();
    assert_eq!(&core[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([core[16], core[17]]), 4, "ET_CORE");
    // Find the PT_LOAD that holds the address and read the marker there.
    let phoff = u64::from_le_bytes(core[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes([core[56], core[57]]) as usize;
    let mut found = false;
    for i in 0..phnum {
        let ph = &core[phoff + 56 * i..phoff + 56 * (i + 1)];
        let word = |at: usize| u64::from_le_bytes(ph[at..at + 8].try_into().unwrap());
        let (kind, offset, vaddr, filesz) = (u32::from_le_bytes(ph[0..4].try_into().unwrap()), word(8), word(16), word(32));
        if kind == 1 && vaddr <= addr && addr < vaddr + filesz {
            let at = (offset + addr - vaddr) as usize;
            assert_eq!(&core[at..at + MARKER.len()], MARKER.as_bytes());
            found = true;
        }
    }
    assert!(found, "no PT_LOAD with bytes for {addr:#x}");
    // Without --rootfs, busybox's undumped pages are listed as left out.
    assert!(cores[0].missing.iter().any(|m| m.what == "/bin/busybox" && m.why.contains("--rootfs")), "{:?}", cores[0].missing);
    // An unknown PID is a clear error, and nothing is written.
    let err = checkpoint::coredump::write_cores(
        &c,
        &checkpoint::coredump::Options { pid: Some(42), out_dir: dir.path().join("none"), rootfs: None },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no process with PID 42"), "{err}");
    assert!(!dir.path().join("none").exists());
}
