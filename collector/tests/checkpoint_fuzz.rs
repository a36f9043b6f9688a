//! Property tests (fuzzing) for the CRIU image decoder, the seccomp BPF
//! evaluator and the archive walker: arbitrary and mutated input must give
//! a value or an error, never a panic or an unbounded allocation.
//! Run longer with e.g. `PROPTEST_CASES=200000 cargo test -p collector
//! --release --test checkpoint_fuzz`.

use std::io::Read;
use std::sync::OnceLock;

use collector::checkpoint::{self, image, proto, seccomp, LoadOptions};
use proptest::prelude::*;

/// Real images from the kubelet fixture, to mutate.
fn real_images() -> &'static Vec<(String, Vec<u8>)> {
    static IMAGES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoints");
        let gz = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .unwrap();
        let mut out = Vec::new();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(gz).unwrap(),
        ));
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name.starts_with("checkpoint/") && name.ends_with(".img") && !name.contains("pages-")
            {
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                out.push((name, d));
            }
        }
        out
    })
}

/// Decodes `data` as every image kind we know; only checks it returns.
fn decode_everything(data: &[u8]) {
    use image::Header::*;
    let _ = image::decode_one::<proto::InventoryEntry>("inventory.img", data, Inventory);
    let _ =
        image::decode_all::<proto::PstreeEntry>("pstree.img", data, Common(image::PSTREE_MAGIC));
    let _ = image::decode_one::<proto::CoreEntry>("core.img", data, Common(image::CORE_MAGIC));
    let _ = image::decode_all::<proto::FileEntry>("files.img", data, Common(image::FILES_MAGIC));
    let _ =
        image::decode_all::<proto::FdinfoEntry>("fdinfo.img", data, Common(image::FDINFO_MAGIC));
    let _ = image::decode_one::<proto::MmEntry>("mm.img", data, Common(image::MM_MAGIC));
    let _ =
        image::decode_all::<proto::PagemapEntry>("pagemap.img", data, Common(image::PAGEMAP_MAGIC));
    let _ = image::decode_one::<proto::UtsnsEntry>("utsns.img", data, Common(image::UTSNS_MAGIC));
    let _ = checkpoint::decode_stats("stats-dump", data);
    if let Ok(s) =
        image::decode_one::<proto::SeccompEntry>("seccomp.img", data, Common(image::SECCOMP_MAGIC))
    {
        for (i, f) in s.seccomp_filters.iter().enumerate() {
            if let Ok(insns) =
                seccomp::parse_filter("seccomp.img", i, f.filter.as_deref().unwrap_or_default())
            {
                let _ = seccomp::run(&insns, 0, seccomp::AUDIT_ARCH_X86_64);
            }
        }
    }
    // Also as whatever image the header claims to be.
    let mut img = match data.get(4..8) {
        Some(m) => {
            let magic = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            match image::Image::open("any.img", data, Common(magic)) {
                Ok(i) => i,
                Err(_) => return,
            }
        }
        None => return,
    };
    while let Ok(Some(_)) = img.next_raw() {}
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode_everything(&data);
    }

    #[test]
    fn headers_with_arbitrary_entries(
        magic_idx in 0usize..4,
        len in any::<u32>(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let magic = [image::CORE_MAGIC, image::PSTREE_MAGIC, image::FILES_MAGIC, image::MM_MAGIC][magic_idx];
        let mut data = image::IMG_COMMON_MAGIC.to_le_bytes().to_vec();
        data.extend_from_slice(&magic.to_le_bytes());
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(&body);
        decode_everything(&data);
    }

    #[test]
    fn mutated_real_images_never_panic(
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let images = real_images();
        let (_, orig) = &images[which.index(images.len())];
        let mut data = orig.clone();
        for (at, b) in flips {
            let i = at.index(data.len());
            data[i] ^= b;
        }
        if do_cut {
            data.truncate(cut.index(data.len() + 1));
        }
        decode_everything(&data);
    }

    #[test]
    fn arbitrary_bpf_programs_terminate(
        insns in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>(), any::<u32>()), 1..64),
        nr in 0u32..512,
    ) {
        let prog: Vec<seccomp::Insn> = insns.into_iter().map(|(code, jt, jf, k)| seccomp::Insn { code, jt, jf, k }).collect();
        let _ = seccomp::run(&prog, nr, seccomp::AUDIT_ARCH_X86_64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_archives_never_panic(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fuzz.tar");
        std::fs::write(&p, &data).unwrap();
        let _ = checkpoint::load(&p, &LoadOptions { memory: true, ..Default::default() });
    }
}
