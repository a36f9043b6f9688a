//! The recorder's stream over captured pages: a fake tracefs tree holds
//! the fixture's format files and per-CPU pages, so the merge across CPUs
//! can be checked without root. However the reads are cut into rounds,
//! records must come out once each, in time order.

use std::fs;

use collector::record::stream::Stream;
use collector::trace::{Decoder, Parsed, Record};
use collector::tracefs::TraceFs;

const NAME: &str = "oci_ftrace_fixture";

mod common;

fn fixture() -> std::path::PathBuf {
    common::raw_fixture()
}

/// instances/<NAME>/{events/..., per_cpu/cpuN/trace_pipe_raw} from the fixture.
fn fake_tracefs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = dir.path().join("instances").join(NAME);
    let formats = fixture().join("formats");
    fs::create_dir_all(inst.join("events")).unwrap();
    fs::copy(formats.join("header_page"), inst.join("events/header_page")).unwrap();
    for system in fs::read_dir(&formats).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for f in fs::read_dir(system.path()).unwrap().flatten() {
            let event = f.file_name().into_string().unwrap().trim_end_matches(".format").to_string();
            let target = inst.join("events").join(system.file_name()).join(&event);
            fs::create_dir_all(&target).unwrap();
            fs::copy(f.path(), target.join("format")).unwrap();
        }
    }
    for cpu in 0..2 {
        let d = inst.join(format!("per_cpu/cpu{cpu}"));
        fs::create_dir_all(&d).unwrap();
        fs::copy(fixture().join(format!("cpu{cpu}.raw")), d.join("trace_pipe_raw")).unwrap();
    }
    dir
}

/// All records, decoded page by page and sorted: the reference.
fn reference() -> Vec<(u64, i32)> {
    let (header, list) = common::raw_formats();
    let dec = Decoder::new(header, &list);
    let mut parsed = Parsed::default();
    for cpu in 0..2u32 {
        dec.decode_pages(cpu, &fs::read(fixture().join(format!("cpu{cpu}.raw"))).unwrap(), &mut parsed);
    }
    let mut v: Vec<(u64, i32)> = parsed.records.iter().map(|r| (r.ts_ns, r.pid)).collect();
    v.sort();
    v
}

fn stream(dir: &tempfile::TempDir) -> Stream {
    let tfs = TraceFs::at(dir.path());
    let inst = tfs.open_instance(NAME).unwrap().expect("fake instance");
    Stream::open(&inst, &["raw_syscalls", "syscalls", "sched", "task"]).expect("stream")
}

#[test]
fn rounds_of_one_page_merge_cpus_in_time_order() {
    let dir = fake_tracefs();
    let mut s = stream(&dir);
    let mut out: Vec<Record> = Vec::new();
    // cpu0 has three pages and cpu1 one: one page per round leaves cpu0
    // cut short twice, and nothing newer than its cut may be released.
    let mut rounds = 0;
    while s.round(false, 1, |r| out.push(r.clone())).unwrap() {
        rounds += 1;
        assert!(rounds < 100);
    }
    let before_final = out.len();
    while s.round(true, 1, |r| out.push(r.clone())).unwrap() {}
    assert!(before_final < out.len(), "the newest 10 ms wait for the final round");
    let got: Vec<(u64, i32)> = out.iter().map(|r| (r.ts_ns, r.pid)).collect();
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "records out of order");
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, reference());
    assert_eq!(s.stats().pages, 4);
    assert_eq!(s.stats().malformed, 0);
    assert_eq!(s.stats().records as usize, out.len());
}

#[test]
fn one_final_round_gives_everything_sorted() {
    let dir = fake_tracefs();
    let mut s = stream(&dir);
    let mut out = Vec::new();
    while s.round(true, 64, |r| out.push((r.ts_ns, r.pid))).unwrap() {}
    let mut sorted = out.clone();
    sorted.sort();
    assert_eq!(out.len(), sorted.len());
    assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(sorted, reference());
    // The per-syscall enter events seen are known by number for quenching.
    assert_eq!(s.enter_event_for(257).map(|e| e.name.as_str()), Some("sys_enter_openat"));
}
