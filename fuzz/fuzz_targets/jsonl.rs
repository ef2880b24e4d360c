//! The JSONL reader: universal-newline line batching with a line-length bound (failing or,
//! as with `--skip-bad-lines`, skipping longer lines), then each
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
    let skip = data.get(1).is_some_and(|b| b & 1 == 1);
    let mut lines =
        LineReader::with_reader(reader, Path::new("fuzz.jsonl"), (0, u64::MAX), target, 2048)
            .skip_too_long(skip);
    let mut read = 0usize;
    let mut next_line = 1u64;
    loop {
        let batch = lines.next_batch();
        for skipped in lines.take_skipped() {
            assert!(skip, "a line was skipped without skip_too_long");
            assert!(skipped.line >= next_line && skipped.bytes > 2048);
            next_line = skipped.line + 1;
            read += usize::try_from(skipped.bytes).expect("fits");
        }
        let batch = match batch {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(error) => {
                assert!(!skip, "with skip_too_long the only errors are reads: {error}");
                let _ = error.to_string();
                break;
            }
        };
        let (bytes, ranges, first_line) = batch;
        assert!(first_line >= next_line);
        next_line = first_line + ranges.len() as u64;
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
