//! The `.idx` reader: the input is an index file (with an empty `.bin`); opening, verifying and
//! reading its sections must never panic, overflow or allocate from an unchecked count.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pipeline::IndexReader;
use pipeline::indexed::Section;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

fuzz_target!(|data: &[u8]| {
    let prefix = dir().path().join("fuzz");
    std::fs::write(prefix.with_extension("idx"), data).expect("write the .idx");
    std::fs::write(prefix.with_extension("bin"), b"").expect("write the .bin");
    let Ok(index) = IndexReader::open(&prefix) else {
        return;
    };
    let _ = index.expected_len();
    if let Ok(report) = index.verify() {
        if report.problems.is_empty() {
            assert_eq!(index.expected_len(), index.idx_len);
        }
    }
    let _ = index.read_sizes();
    let _ = index.read_i64_section(Section::Pointers);
    let _ = index.read_i64_section(Section::DocIdx);
});
