//! The JSONL reader: universal-newline line batching with a line-length bound, then each
//! line's UTF-8 check and Python-semantics JSON field extraction, as a tokenizer worker does.
//! Nothing may panic; every line range must lie inside its batch.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipeline::input::LineReader;
use pipeline::json::extract_fields;

fuzz_target!(|data: &[u8]| {
    let keys = ["text".to_owned(), "meta".to_owned()];
    // Small batches and a small line bound, so both limits are reached on small inputs.
    let target = 1 + usize::from(data.first().copied().unwrap_or(0)) * 16;
    let reader = Box::new(std::io::Cursor::new(data.to_vec()));
    let mut lines =
        LineReader::with_reader(reader, Path::new("fuzz.jsonl"), (0, u64::MAX), target, 2048);
    let mut read = 0usize;
    loop {
        let batch = match lines.next_batch() {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(error) => {
                let _ = error.to_string();
                break;
            }
        };
        let (bytes, ranges, first_line) = batch;
        assert!(first_line >= 1);
        read += bytes.len();
        assert!(
            read <= data.len(),
            "the reader handed out more bytes than it read"
        );
        for (start, end) in ranges {
            let (start, end) = (start as usize, end as usize);
            assert!(
                start <= end && end <= bytes.len(),
                "line range outside its batch"
            );
            let Ok(line) = std::str::from_utf8(&bytes[start..end]) else {
                continue;
            };
            match extract_fields(line, &keys) {
                Ok(fields) => assert_eq!(fields.len(), keys.len()),
                Err(error) => {
                    let column = error.column(line);
                    assert!(column >= 1 && column <= line.chars().count() as u64 + 1);
                }
            }
        }
    }
});
