//! A whole dataset, `.idx` and `.bin`, as `dataset inspect`, `fingerprint` and `merge` read it:
//! the input's first two bytes give the `.idx` length, the rest is split there. Verifying and
//! reading the tokens must never panic; a dataset that verifies must merge into one that
//! verifies with the same counts.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pipeline::indexed::read_sequences;
use pipeline::{IndexReader, MergeOptions, merge_with};

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes(*split)).min(rest.len());
    let (idx, bin) = rest.split_at(at);
    let prefix = dir().path().join("part");
    std::fs::write(prefix.with_extension("idx"), idx).expect("write the .idx");
    std::fs::write(prefix.with_extension("bin"), bin).expect("write the .bin");
    let Ok(index) = IndexReader::open(&prefix) else {
        return;
    };
    let Ok(report) = index.verify() else {
        return;
    };
    let _ = read_sequences(&prefix);
    if !report.problems.is_empty() {
        return;
    }
    let output = dir().path().join("merged");
    let merged = merge_with(
        &[prefix.clone(), prefix.clone()],
        &output,
        &MergeOptions::default(),
    );
    // Supported dtypes only are written; others are refused with an error.
    if let Ok(merged) = merged {
        assert_eq!(merged.summary.sequences, 2 * index.sequences);
        assert_eq!(merged.summary.tokens, 2 * report.tokens);
    }
});
