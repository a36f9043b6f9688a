//! Fixture helpers shared by the integration tests.

// Each test crate uses only some of them.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use collector::trace::{EventFormat, HeaderPage};

/// Captured per-CPU pages and format files (`tests/data/capture-raw.sh`).
pub fn raw_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/raw-6.18")
}

/// The fixture's header page and every event format, with its system.
pub fn raw_formats() -> (HeaderPage, Vec<EventFormat>) {
    formats_in(&raw_fixture())
}

/// `dir/formats/header_page` and every `dir/formats/<system>/<event>.format`.
pub fn formats_in(dir: &Path) -> (HeaderPage, Vec<EventFormat>) {
    let formats = dir.join("formats");
    let header = HeaderPage::parse(&fs::read_to_string(formats.join("header_page")).expect("header_page"))
        .expect("header_page parses");
    let mut list = Vec::new();
    for system in fs::read_dir(&formats).expect("formats dir").flatten().filter(|e| e.path().is_dir()) {
        let sys = system.file_name().into_string().expect("utf-8 name");
        for f in fs::read_dir(system.path()).expect("system dir").flatten() {
            let text = fs::read_to_string(f.path()).expect("format file");
            list.push(EventFormat::parse(&sys, &text).expect("format parses"));
        }
    }
    (header, list)
}
