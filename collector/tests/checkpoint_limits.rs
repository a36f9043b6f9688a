//! Hostile archives against the reader's limits (issue 14, defect 4): a
//! small zstd archive that decompresses to gigabytes, a sparse tar with a
//! huge member, many large `core-N.img` members, and a truncated zstd
//! stream. Each must end quickly in one clear line, never in a stall, a
//! multi-gigabyte peak or an abort.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use collector::checkpoint::{self, Error, LoadOptions, Limits};

fn header(name: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// A tar.zst of `count` members `checkpoint/core-N.img` of `size` zero
/// bytes each, built from reused zstd frames: a few KiB on disk.
fn zstd_bomb(dir: &Path, count: u32, size: u64) -> PathBuf {
    let body = zstd::encode_all(std::io::Read::take(std::io::repeat(0), size), 3).unwrap();
    let pad = (512 - size % 512) % 512;
    let mut out = Vec::new();
    for i in 1..=count {
        let block = header(&format!("checkpoint/core-{i}.img"), size);
        out.extend(zstd::encode_all(&block.as_bytes()[..], 3).unwrap());
        out.extend(&body);
        if pad > 0 {
            out.extend(zstd::encode_all(&vec![0u8; pad as usize][..], 3).unwrap());
        }
    }
    out.extend(zstd::encode_all(&[0u8; 1024][..], 3).unwrap());
    let p = dir.join("bomb.tar.zst");
    std::fs::write(&p, out).unwrap();
    p
}

/// A plain tar whose first member claims `size` bytes that are a hole in
/// the file, followed by a `config.dump` naming container `id`.
fn sparse_tar(dir: &Path, size: u64, id: &str) -> PathBuf {
    let p = dir.join("sparse.tar");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(header("checkpoint/pages-1.img", size).as_bytes()).unwrap();
    f.seek(SeekFrom::Current(size as i64)).unwrap();
    let cfg = format!("{{\"id\":\"{id}\"}}");
    f.write_all(header("config.dump", cfg.len() as u64).as_bytes()).unwrap();
    let mut data = cfg.into_bytes();
    data.resize(data.len().div_ceil(512) * 512, 0);
    f.write_all(&data).unwrap();
    f.write_all(&[0u8; 1024]).unwrap();
    p
}

/// `collector ARGS` with its address space capped at `limit` bytes.
fn collector_capped(args: &[&str], limit: u64) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_collector"));
    cmd.args(args);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, limit, limit)
                .map_err(std::io::Error::from)
        });
    }
    cmd.output().unwrap()
}

fn assert_one_line(out: &std::process::Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "status {:?}: {err}", out.status);
    assert!(err.contains(want), "expected {want:?} in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
}

#[test]
fn many_large_core_images_end_in_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    // 120 × 60 MB, the hostile tester's archive: about 7 GB decompressed.
    let p = zstd_bomb(dir.path(), 120, 60_000_000);
    assert!(std::fs::metadata(&p).unwrap().len() < 2 << 20);
    let t = Instant::now();
    let out = collector_capped(&["checkpoint", "show", p.to_str().unwrap()], 1 << 30);
    assert_one_line(&out, "CRIU images hold more than 256 MiB");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
}

#[test]
fn discovery_reads_at_most_its_byte_limit_of_a_zstd_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let p = zstd_bomb(dir.path(), 40, 60_000_000);
    let t = Instant::now();
    match checkpoint::container_id(&p, &Limits::DISCOVERY) {
        Err(e @ Error::ByteLimit { .. }) => assert!(e.to_string().contains("256 MiB"), "{e}"),
        other => panic!("expected the byte limit, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn a_sparse_huge_member_is_seeked_over_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = sparse_tar(dir.path(), 64 << 30, "0123abcd");
    let t = Instant::now();
    assert_eq!(checkpoint::container_id(&p, &Limits::DISCOVERY).unwrap().as_deref(), Some("0123abcd"));
    // A full load skips the pages member the same way.
    let e = checkpoint::load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, Error::NotCheckpoint { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn a_member_count_limit_stops_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("many.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
    for i in 0..50 {
        b.append(&header(&format!("junk-{i}"), 0), &[][..]).unwrap();
    }
    b.finish().unwrap();
    drop(b);
    let limits = Limits { members: 10, ..Limits::DISCOVERY };
    let e = checkpoint::container_id(&p, &limits).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: more than 10 members, the limit here; stopped", p.display()));
}

#[test]
fn a_truncated_zstd_archive_is_called_that() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoints/podman-export.tar.zst"),
    )
    .unwrap();
    for cut in [64, whole.len() / 2, whole.len() - 16] {
        let p = dir.path().join(format!("cut-{cut}.tar.zst"));
        std::fs::write(&p, &whole[..cut]).unwrap();
        let e = checkpoint::load(&p, &LoadOptions::default()).unwrap_err();
        let line = e.to_line();
        assert!(matches!(e, Error::Stream { .. }), "cut at {cut}: {line}");
        assert!(line.contains("corrupt or truncated zstd stream"), "{line}");
        assert!(!line.contains("not a tar archive"), "{line}");
    }
}
