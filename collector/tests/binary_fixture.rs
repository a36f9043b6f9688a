//! The binary page decoder against the text trace of the same ring buffer,
//! captured on this kernel by `tests/data/capture-raw.sh`: every record the
//! kernel printed as text must come out of the raw pages the same.

use std::fs;

use collector::trace::{parse_text, Decoder, Event, EventFormat, HeaderPage, Parsed, Record};

mod common;

fn dir() -> std::path::PathBuf {
    common::raw_fixture()
}

fn formats() -> (HeaderPage, Vec<EventFormat>) {
    let (header, list) = common::raw_formats();
    assert_eq!(list.len(), 7);
    (header, list)
}

fn decoder() -> Decoder {
    let (header, list) = formats();
    Decoder::new(header, &list)
}

fn decode_with(dec: &Decoder) -> Parsed {
    let mut parsed = Parsed::default();
    for cpu in 0..2u32 {
        let bytes = fs::read(dir().join(format!("cpu{cpu}.raw"))).unwrap();
        let read = dec.decode_pages(cpu, &bytes, &mut parsed);
        assert_eq!(read.missed_pages, 0);
    }
    // Merge CPUs by time, as the text trace does.
    parsed.records.sort_by_key(|r| (r.ts_ns, r.cpu));
    parsed
}

fn binary() -> Parsed {
    let parsed = decode_with(&decoder());
    assert_eq!(parsed.malformed, 0);
    parsed
}

/// Thread, time as text prints it (microseconds, rounded) and the event.
fn key(r: &Record) -> (i32, u64, String) {
    (r.pid, (r.ts_ns + 500) / 1000, format!("{:?}", r.event))
}

#[test]
fn binary_pages_decode_to_what_the_text_trace_says() {
    let text = parse_text(fs::read(dir().join("trace.txt")).unwrap().as_slice()).unwrap();
    assert_eq!(text.malformed, 0);
    // Text names the per-syscall and task events but does not model them;
    // a decoder without their formats must skip exactly as many.
    let (header, list) = formats();
    let modelled: Vec<EventFormat> =
        list.into_iter().filter(|f| f.system == "raw_syscalls" || f.system == "sched").collect();
    let bin = decode_with(&Decoder::new(header, &modelled));
    let unmodelled = text.records.iter().filter(|r| matches!(r.event, Event::Other { .. })).count();
    assert!(unmodelled >= 6, "{unmodelled}");
    assert_eq!(bin.malformed as usize, unmodelled);
    let text_keys: Vec<_> =
        text.records.iter().filter(|r| !matches!(r.event, Event::Other { .. })).map(key).collect();
    let bin_keys: Vec<_> = bin.records.iter().map(key).collect();
    assert_eq!(text_keys.len(), bin_keys.len());
    for (t, b) in text_keys.iter().zip(&bin_keys) {
        assert_eq!(t, b);
    }
}

#[test]
fn binary_records_carry_numbers_strings_and_clone_flags() {
    let bin = binary();
    let pid: i32 = fs::read_to_string(dir().join("pid")).unwrap().trim().parse().unwrap();
    let execs: Vec<&str> = bin
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Exec { filename, .. } => Some(filename.as_str()),
            _ => None,
        })
        .collect();
    // bash's subshell execs busybox sh, which runs ls and cat.
    assert_eq!(execs, ["/bin/busybox"; 3]);
    let forks: Vec<(i32, String)> = bin
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Fork { parent_pid, child_comm, .. } => Some((*parent_pid, child_comm.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(forks.len(), 2);
    assert!(forks.iter().all(|(p, c)| *p == pid && c == "busybox"), "{forks:?}");
    // task_newtask says these were processes, not threads (no CLONE_THREAD).
    let flags: Vec<u64> = bin
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::NewTask { clone_flags, .. } => Some(*clone_flags),
            _ => None,
        })
        .collect();
    assert_eq!(flags.len(), 2);
    assert!(flags.iter().all(|f| f & 0x10000 == 0));
    // The per-syscall event decodes the same number as raw_syscalls.
    let openat_enter = bin.records.iter().filter(|r| matches!(r.event, Event::SysEnter { nr: 257, .. })).count();
    assert!(openat_enter >= 4, "{openat_enter}");
    let exits = bin.records.iter().filter(|r| matches!(r.event, Event::SysExit { nr: 257, .. })).count();
    assert_eq!(exits * 2, openat_enter, "one per-syscall exit per openat, plus the raw enter");
    let exit = bin.records.iter().find_map(|r| match &r.event {
        Event::Exit { pid: p, comm, group_dead } if *p == pid => Some((comm.clone(), *group_dead)),
        _ => None,
    });
    assert_eq!(exit, Some(("busybox".to_string(), Some(true))));
}

#[test]
fn truncated_and_corrupt_pages_never_panic() {
    let dec = decoder();
    let bytes = fs::read(dir().join("cpu0.raw")).unwrap();
    for cut in [0, 1, 15, 16, 17, 100, 4095, 4097, bytes.len() - 1] {
        let mut parsed = Parsed::default();
        dec.decode_pages(0, &bytes[..cut.min(bytes.len())], &mut parsed);
    }
    // Flip bytes all over the first page.
    let mut state = 0x1234_5678u32;
    for _ in 0..2000 {
        let mut page = bytes[..4096].to_vec();
        for _ in 0..8 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let i = (state as usize >> 8) % page.len();
            page[i] = (state >> 3) as u8;
        }
        let mut parsed = Parsed::default();
        dec.decode_pages(0, &page, &mut parsed);
    }
}
