//! Concurrent runs on one output (locks, per-run temporary names), merges whose output is one
//! of its parts, and outside bytes that must never panic (crafted `.idx` headers, huge lines).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use super::{config, jsonl, path_str, read_dataset_bytes, trained};
use crate::indexed::{self, DType, DatasetWriter, IndexReader};
use crate::lock::{LockOptions, OutputLock};
use crate::{
    Error, MergeOptions, Mode, NoProgress, Progress, ProgressUpdate, Tokenizer, merge_with,
    output_prefix_for_key, tokenize,
};

fn write_dataset(prefix: &Path, docs: &[&[u32]]) {
    let mut writer = DatasetWriter::create(prefix, DType::U16).expect("create");
    for tokens in docs {
        let lengths: Vec<u32> = if tokens.is_empty() {
            vec![]
        } else {
            vec![tokens.len() as u32]
        };
        writer.add_document(tokens, &lengths).expect("add");
    }
    writer.finish().expect("finish");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn options(command: &str, wait: bool) -> LockOptions {
    LockOptions {
        wait,
        command: command.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Locks and temporary names.

#[test]
fn a_second_lock_fails_at_once_naming_the_holder_or_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("out_text_document");
    let first = OutputLock::acquire(&target, &options("tokenize --first", false)).expect("first");
    let record = fs_err::read_to_string(first.path()).expect("record");
    assert!(record.contains("tokenize --first"), "{record}");

    let error = OutputLock::acquire(&target, &options("tokenize --second", false))
        .expect_err("held by the first");
    let message = error.to_string();
    assert!(matches!(error, Error::Locked { .. }), "{message}");
    for expected in [
        format!("pid {}", std::process::id()),
        "tokenize --first".to_owned(),
        "out_text_document.lock".to_owned(),
        "--wait".to_owned(),
    ] {
        assert!(message.contains(&expected), "{expected:?} not in {message}");
    }

    // With `wait`, the second run takes the lock once the first releases it.
    let (taken, took) = mpsc::channel();
    let waiter = {
        let target = target.clone();
        std::thread::spawn(move || {
            let lock = OutputLock::acquire(&target, &options("tokenize --second", true));
            taken.send(()).expect("send");
            lock.map(|lock| fs_err::read_to_string(lock.path()).expect("record"))
        })
    };
    assert!(
        took.recv_timeout(Duration::from_millis(300)).is_err(),
        "the waiter took a held lock"
    );
    drop(first);
    let record = waiter.join().expect("join").expect("the waiter's lock");
    assert!(record.contains("tokenize --second"), "{record}");
    // Released and removed: nothing is left beside the outputs.
    assert!(
        names_in(dir.path()).is_empty(),
        "{:?}",
        names_in(dir.path())
    );
}

/// Holds a run at its first batch until told to go on.
struct Gate {
    reached: std::sync::Mutex<Option<mpsc::Sender<()>>>,
    go: std::sync::Mutex<mpsc::Receiver<()>>,
}

impl Progress for Gate {
    fn update(&self, _: &ProgressUpdate) -> bool {
        if let Some(reached) = self.reached.lock().expect("lock").take() {
            reached.send(()).expect("send");
            self.go.lock().expect("lock").recv().expect("go");
        }
        true
    }
}

#[test]
fn two_concurrent_runs_on_one_prefix_never_mix_their_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = Tokenizer::from_path(&trained(dir.path()), Mode::Nemo, false).expect("load");
    let docs: Vec<String> = (0..2000)
        .map(|i| format!("document {i} {}", "the quick fox ".repeat(30)))
        .collect();
    let first_input = dir.path().join("first.jsonl");
    let second_input = dir.path().join("second.jsonl");
    fs_err::write(&first_input, jsonl(&docs)).expect("write");
    fs_err::write(&second_input, jsonl(&docs[..500])).expect("write");
    let prefix = dir.path().join("out");

    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let gate = Gate {
        reached: std::sync::Mutex::new(Some(reached_tx)),
        go: std::sync::Mutex::new(go_rx),
    };
    std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            let mut first = config(vec![path_str(&first_input)], prefix.clone(), Mode::Nemo, 2);
            first.lock = options("tokenize first.jsonl", false);
            tokenize(&first, &tokenizer, &gate)
        });
        reached.recv().expect("the first run started writing");
        // The first run is mid-way: a second run on the same prefix fails at once...
        let mut second = config(vec![path_str(&second_input)], prefix.clone(), Mode::Nemo, 2);
        second.lock = options("tokenize second.jsonl", false);
        let error = tokenize(&second, &tokenizer, &NoProgress).expect_err("locked");
        assert!(
            matches!(&error, Error::Locked { holder, .. } if holder.contains("tokenize first.jsonl")),
            "{error}"
        );
        // ...or, with `wait`, runs after it.
        let waiting = scope.spawn(|| {
            let mut second = config(vec![path_str(&second_input)], prefix.clone(), Mode::Nemo, 2);
            second.lock = options("tokenize second.jsonl", true);
            tokenize(&second, &tokenizer, &NoProgress)
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!waiting.is_finished(), "the second run did not wait");
        go.send(()).expect("go");
        let first = first.join().expect("join").expect("first run");
        assert_eq!(first.documents, 2000);
        let second = waiting.join().expect("join").expect("second run");
        assert_eq!(second.documents, 500);
    });
    // The last run's dataset, whole and consistent; no temporary or lock file left.
    let text = output_prefix_for_key(&prefix, "text");
    let index = IndexReader::open(&text).expect("open");
    let report = index.verify().expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(index.doc_entries, 501);
    let names = names_in(dir.path());
    assert!(
        names
            .iter()
            .all(|n| !n.contains("partial") && !n.ends_with(".lock")),
        "{names:?}"
    );
}

#[test]
fn temporary_names_are_unique_per_run_and_stale_ones_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("d");
    // What a killed run left, old-style and new-style; and a neighbour's file, kept.
    for name in [
        "d.bin.partial",
        "d.idx.123-00ff.partial",
        "d.docs.9-abc.partial",
        "d2.bin.1-1.partial",
        "d.bin.notarun.partial",
    ] {
        fs_err::write(dir.path().join(name), b"stale").expect("write");
    }
    let first = DatasetWriter::create(&prefix, DType::U16).expect("create");
    let during = names_in(dir.path());
    assert!(
        !during.contains(&"d.bin.partial".to_owned())
            && !during.contains(&"d.idx.123-00ff.partial".to_owned())
            && !during.contains(&"d.docs.9-abc.partial".to_owned()),
        "{during:?}"
    );
    let ours: Vec<&String> = during
        .iter()
        .filter(|n| n.starts_with(&format!("d.bin.{}-", std::process::id())))
        .collect();
    assert_eq!(ours.len(), 1, "{during:?}");
    drop(first);
    let mut writer = DatasetWriter::create(&prefix, DType::U16).expect("again");
    writer.add_document(&[1, 2], &[2]).expect("add");
    let second_names = names_in(dir.path());
    assert!(!second_names.contains(ours[0]), "a run reused a name");
    writer.finish().expect("finish");
    assert_eq!(
        names_in(dir.path()),
        [
            "d.bin",
            "d.bin.notarun.partial",
            "d.idx",
            "d2.bin.1-1.partial"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Merges whose output is one of the parts.

fn two_parts(dir: &Path) -> Vec<PathBuf> {
    let s0 = dir.join("s0_text_document");
    let s1 = dir.join("s1_text_document");
    write_dataset(&s0, &[&[1, 2, 3], &[]]);
    write_dataset(&s1, &[&[4, 5]]);
    vec![s0, s1]
}

#[test]
fn merge_refuses_an_output_that_is_a_part_however_spelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = two_parts(dir.path());
    let before: Vec<_> = parts.iter().map(|p| read_dataset_bytes(p)).collect();
    let remove = MergeOptions {
        remove_parts: true,
        ..MergeOptions::default()
    };
    // `./s0_text_document` against `s0_text_document` (issue 12.3), a `..` detour, and a
    // hard-linked copy of the part's files under another name.
    let dotted = dir.path().join(".").join("s0_text_document");
    let detour = dir.path().join("sub").join("..").join("s0_text_document");
    fs_err::create_dir(dir.path().join("sub")).expect("mkdir");
    let linked = dir.path().join("alias");
    for ext in ["bin", "idx"] {
        fs_err::hard_link(
            dir.path().join(format!("s0_text_document.{ext}")),
            dir.path().join(format!("alias.{ext}")),
        )
        .expect("link");
    }
    for output in [&dotted, &detour, &linked, &parts[1]] {
        for options in [&remove, &MergeOptions::default()] {
            let error = merge_with(&parts, output, options).expect_err("refused");
            let message = error.to_string();
            assert!(
                message.contains("is the part") && message.contains("choose another output"),
                "{message}"
            );
        }
    }
    let after: Vec<_> = parts.iter().map(|p| read_dataset_bytes(p)).collect();
    assert!(before == after, "a part changed");

    // A part listed twice (in two spellings) cannot be removed twice.
    let twice = vec![parts[0].clone(), dotted.clone()];
    let error = merge_with(&twice, &dir.path().join("m"), &remove).expect_err("twice");
    assert!(error.to_string().contains("same dataset"), "{error}");
}

#[test]
fn merge_removes_the_parts_only_after_verifying_the_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = two_parts(dir.path());
    let output = dir.path().join("merged_text_document");
    let report = merge_with(
        &parts,
        &output,
        &MergeOptions {
            remove_parts: true,
            ..MergeOptions::default()
        },
    )
    .expect("merge");
    assert_eq!(report.removed, parts);
    assert_eq!(
        (
            report.summary.documents,
            report.summary.sequences,
            report.summary.tokens
        ),
        (3, 2, 5)
    );
    assert_eq!(
        indexed::read_sequences(&output).expect("read"),
        [vec![1, 2, 3], vec![4, 5]]
    );
    assert_eq!(
        names_in(dir.path()),
        ["merged_text_document.bin", "merged_text_document.idx"]
    );

    // A part held by another run: the merge fails at once and removes nothing.
    let parts = two_parts(dir.path());
    let held =
        OutputLock::acquire(&parts[1], &options("tokenize --shard 1/2", false)).expect("lock");
    let error = merge_with(
        &parts,
        &dir.path().join("again"),
        &MergeOptions {
            remove_parts: true,
            ..MergeOptions::default()
        },
    )
    .expect_err("locked");
    assert!(
        error.to_string().contains("tokenize --shard 1/2"),
        "{error}"
    );
    drop(held);
    assert!(parts.iter().all(|p| IndexReader::open(p).is_ok()));
}

// ---------------------------------------------------------------------------------------------
// Outside bytes.

fn worked_example(dir: &Path) -> (PathBuf, Vec<u8>) {
    let prefix = dir.join("x");
    let mut writer = DatasetWriter::create(&prefix, DType::U16).expect("create");
    for len in [20u32, 2, 21, 12] {
        let tokens: Vec<u32> = (0..len).collect();
        writer.add_document(&tokens, &[len]).expect("add");
    }
    writer.finish().expect("finish");
    let idx = fs_err::read(indexed::dataset_paths(&prefix).1).expect("idx");
    (prefix, idx)
}

#[test]
fn crafted_index_headers_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (prefix, good) = worked_example(dir.path());
    let idx_path = indexed::dataset_paths(&prefix).1;
    let with_counts = |sequences: u64, doc_entries: u64| {
        let mut idx = good.clone();
        idx[18..26].copy_from_slice(&sequences.to_le_bytes());
        idx[26..34].copy_from_slice(&doc_entries.to_le_bytes());
        fs_err::write(&idx_path, idx).expect("write");
    };
    // 12 * 2^62 wraps to 0 in u64: with unchecked arithmetic the length check passed.
    for (sequences, doc_entries) in [
        (1u64 << 62, 5u64),
        (u64::MAX, 1),
        (4, u64::MAX),
        (1 << 61, 1 << 61),
    ] {
        with_counts(sequences, doc_entries);
        let error = IndexReader::open(&prefix).expect_err("refused");
        assert!(
            error.to_string().contains("more than any file can hold"),
            "{error}"
        );
    }
    // Counts that do not overflow but that the file does not back: no allocation, an error.
    with_counts(1 << 40, 5);
    let index = IndexReader::open(&prefix).expect("open");
    assert!(index.read_sizes().is_err());
    assert!(index.read_i64_section(indexed::Section::DocIdx).is_err());
    assert!(index.verify().expect("verify").problems[0].contains("truncated"));
    assert!(indexed::read_sequences(&prefix).is_err());

    // A document index that starts below 0 and climbs back (sliced the sizes with a negative
    // start before).
    let mut idx = good.clone();
    let doc_idx = idx.len() - 5 * 8;
    idx[doc_idx..doc_idx + 8].copy_from_slice(&(-3i64).to_le_bytes());
    fs_err::write(&idx_path, &idx).expect("write");
    let report = IndexReader::open(&prefix)
        .expect("open")
        .verify()
        .expect("verify");
    assert!(
        report.problems[0].contains("starts at -3"),
        "{:?}",
        report.problems
    );

    // A sequence length of i32::MAX: a bounded allocation and an error, not 8 GiB.
    let mut idx = good;
    idx[34..38].copy_from_slice(&i32::MAX.to_le_bytes());
    fs_err::write(&idx_path, &idx).expect("write");
    assert!(indexed::read_sequences(&prefix).is_err());
}

/// A 300,000-byte JSON line.
fn long_line() -> String {
    format!("{{\"text\": \"{}\"}}", "a".repeat(300_000))
}

/// A trained tokenizer and a run over `dir/in.jsonl` (holding `content`) with lines bounded at
/// 100,000 bytes.
fn bounded_run(dir: &Path, content: &str) -> (Tokenizer, crate::TokenizeConfig, PathBuf) {
    let tokenizer = Tokenizer::from_path(&trained(dir), Mode::Nemo, false).expect("load");
    let input = dir.join("in.jsonl");
    fs_err::write(&input, content).expect("write");
    let mut run = config(vec![path_str(&input)], dir.join("o"), Mode::Nemo, 2);
    run.max_line_bytes = 100_000;
    (tokenizer, run, input)
}

#[test]
fn a_line_longer_than_the_limit_stops_the_run_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = long_line();
    let (tokenizer, mut run, input) = bounded_run(
        dir.path(),
        &format!("{{\"text\": \"short\"}}\n{long}\n{{\"text\": \"after\"}}\n"),
    );
    let error = tokenize(&run, &tokenizer, &NoProgress).expect_err("too long");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            Error::LineTooLong {
                line: 2,
                limit: 100_000,
                ..
            }
        ) && message.contains("in.jsonl:2:")
            && message.contains("--max-line-bytes"),
        "{message}"
    );
    // The same line as the last, unterminated one.
    fs_err::write(&input, format!("{{\"text\": \"short\"}}\n{long}")).expect("write");
    let error = tokenize(&run, &tokenizer, &NoProgress).expect_err("too long");
    assert!(
        matches!(error, Error::LineTooLong { line: 2, .. }),
        "{error}"
    );
    // Within the limit it tokenizes.
    run.max_line_bytes = 400_000;
    let report = tokenize(&run, &tokenizer, &NoProgress).expect("fits");
    assert_eq!(report.documents, 2);
    run.max_line_bytes = 0;
    assert!(matches!(
        tokenize(&run, &tokenizer, &NoProgress),
        Err(Error::Config(_))
    ));
}

#[test]
fn skip_bad_lines_also_skips_and_counts_lines_over_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = long_line();
    // A long line in the middle (CRLF), one malformed line, and a long unterminated last line.
    let (tokenizer, mut run, _) = bounded_run(
        dir.path(),
        &format!("{{\"text\": \"short\"}}\r\n{long}\r\n{{\"text\": \"after\"}}\nnot json\n{long}"),
    );
    run.skip_bad_lines = true;
    let report = tokenize(&run, &tokenizer, &NoProgress).expect("skips");
    assert_eq!(report.documents, 2, "{report:?}");
    assert_eq!(report.lines, 5, "{report:?}");
    assert_eq!(report.bad_lines, 3, "{report:?}");
    let samples = report.bad_line_samples.join("\n");
    for needle in [
        format!("in.jsonl:2: the line has {} bytes", long.len()),
        "in.jsonl:4:".to_owned(),
        format!("in.jsonl:5: the line has {} bytes", long.len()),
    ] {
        assert!(samples.contains(&needle), "{needle} not in {samples}");
    }
    // The documents written are the two short ones, exactly as without the long lines.
    let reference = dir.path().join("ref.jsonl");
    fs_err::write(&reference, "{\"text\": \"short\"}\n{\"text\": \"after\"}\n").expect("write");
    let mut plain = config(
        vec![path_str(&reference)],
        dir.path().join("r"),
        Mode::Nemo,
        2,
    );
    plain.max_line_bytes = 100_000;
    let expected = tokenize(&plain, &tokenizer, &NoProgress).expect("reference");
    assert_eq!(
        read_dataset_bytes(&report.outputs[0].prefix),
        read_dataset_bytes(&expected.outputs[0].prefix)
    );
}
