//! Property tests (fuzzing) for the ring-buffer page parser, the hook's
//! state parser and the archive reader's discovery pass: arbitrary and
//! mutated input gives a value or an error, never a panic, a hang or an
//! unbounded allocation. (CRIU images and whole archives:
//! `checkpoint_fuzz.rs`.) `make test` runs each property with proptest's
//! default case count; run longer with e.g.
//! `PROPTEST_CASES=100000 cargo test -p collector --release --test parser_fuzz`.

mod common;

use std::sync::OnceLock;

use collector::checkpoint::{self, Limits};
use collector::container::{input::MAX_STATE_BYTES, parse_state};
use collector::trace::{page, Decoder};
use proptest::prelude::*;

fn decoder() -> &'static Decoder {
    static D: OnceLock<Decoder> = OnceLock::new();
    D.get_or_init(|| {
        let (header, formats) = common::raw_formats();
        Decoder::new(header, &formats)
    })
}

/// The first pages of the captured per-CPU data, to mutate.
fn real_pages() -> &'static Vec<u8> {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let raw = std::fs::read(common::raw_fixture().join("cpu0.raw")).expect("cpu0.raw");
        raw[..raw.len().min(4 * 4096)].to_vec()
    })
}

/// Decodes `bytes` both ways; each problem must be one line.
fn decode(bytes: &[u8]) {
    let d = decoder();
    for p in bytes.chunks(d.header().page_size().max(1)) {
        let _ = page::for_each_event(d.header(), p, |_| {});
    }
    let mut parsed = Default::default();
    let read = d.decode_pages(0, bytes, &mut parsed);
    for p in &read.problems {
        assert_eq!(p.lines().count(), 1, "{p:?}");
    }
}

const VALID_STATE: &str = r#"{"ociVersion":"1.0.2","id":"abc123","status":"creating","pid":42,"bundle":"/b","annotations":{"oci-ftrace-syscall-analyzer/trace":"true"}}"#;

proptest! {
    #[test]
    fn arbitrary_pages_never_panic(data in proptest::collection::vec(any::<u8>(), 0..8192)) {
        decode(&data);
    }

    #[test]
    fn mutated_real_pages_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..32),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = real_pages().clone();
        for (at, b) in flips {
            let i = at.index(data.len());
            data[i] ^= b;
        }
        data.truncate(cut.index(data.len() + 1));
        decode(&data);
    }

    #[test]
    fn arbitrary_hook_state_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(e) = parse_state(&data) {
            prop_assert_eq!(e.to_string().lines().count(), 1);
        }
    }

    #[test]
    fn mutated_hook_state_gives_a_valid_id_or_an_error(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = VALID_STATE.as_bytes().to_vec();
        for (at, b) in flips {
            let i = at.index(data.len());
            data[i] ^= b;
        }
        data.truncate(cut.index(data.len() + 1));
        match parse_state(&data) {
            // What the hook goes on with is a safe path component.
            Ok(s) => prop_assert!(collector::container::validate_id(s.id()).is_ok() && !s.id().contains('/')),
            Err(e) => prop_assert_eq!(e.to_string().lines().count(), 1),
        }
    }

    #[test]
    fn arbitrary_strings_as_the_id(id in ".{0,200}") {
        let state = serde_json::json!({"ociVersion": "1.0.2", "id": id, "status": "creating", "bundle": "/"});
        if let Ok(s) = parse_state(state.to_string().as_bytes()) {
            prop_assert!(s.id().bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)));
            prop_assert!(s.id() != "." && s.id() != "..");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn mutated_archives_end_within_the_discovery_limits(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        zstd in any::<bool>(),
    ) {
        let name = if zstd { "podman-export.tar.zst" } else { "checkpoint-ofsa-pod_ofsa-ns-workload-2026-11-22T175828Z.tar.gz" };
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoints").join(name);
        let mut data = std::fs::read(path).unwrap();
        for (at, b) in flips {
            let i = at.index(data.len());
            data[i] ^= b;
        }
        data.truncate(cut.index(data.len() + 1));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(if zstd { "x.tar.zst" } else { "x.tar.gz" });
        std::fs::write(&p, &data).unwrap();
        let start = std::time::Instant::now();
        if let Err(e) = checkpoint::container_id(&p, &Limits::DISCOVERY) {
            prop_assert_eq!(e.to_line().lines().count(), 1);
        }
        prop_assert!(start.elapsed() < std::time::Duration::from_secs(6));
    }

    #[test]
    fn oversized_state_is_refused_before_parsing(extra in 1usize..64) {
        let big = vec![b' '; MAX_STATE_BYTES + extra];
        prop_assert!(parse_state(&big).is_err());
    }
}
