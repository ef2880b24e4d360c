//! Unit tests: the indexed format byte for byte, Python JSON semantics, universal newlines,
//! sharding, the fast encoder against the `tokenizers` reference on adversarial text, and whole
//! runs (modes, bad input, cancellation).
//!
//! Tokenizers are trained in-process (no network): a Llama-shaped tokenizer (Prepend/Replace
//! normalizer, no pre-tokenizer, byte-fallback BPE, `<unk>`/`<s>`/`</s>`, BOS template).
//! With `TRNKIT_TEST_LLAMA2_TOKENIZER` set to a directory from
//! `scripts/get-llama2-tokenizer` (which `scripts/test` runs), the real Llama-2 tokenizer is compared as well.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::{AddedToken, Trainer};

use crate::indexed::{self, DType, DatasetWriter, IndexReader};
use crate::input::{self, LineReader, Shard};
use crate::json::{Field, extract_fields};
use crate::{
    Engine, Error, Mode, NoProgress, Progress, ProgressUpdate, TokenizeConfig, Tokenizer, tokenize,
};

mod robustness;

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// A small deterministic generator (xorshift64*), so the adversarial text is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const TRAINING_TEXT: &str = "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away \
    into the forest, and the forest is quiet again. Tokenizers split text into pieces: words, \
    subwords and bytes. Llama uses SentencePiece with byte fallback, so every character can be \
    encoded. fn main() { println!(\"hello, world\"); } // code is text too.\n\
    Émile a mangé une pomme à Paris, über straße naïve café — 東京 日本語 テキスト 😀 🎉 ∑ ∫.";

/// Trains a Llama-shaped tokenizer and writes `tokenizer.json` + `tokenizer_config.json`.
/// With `break_property`, a merge producing a token with `▁` after a letter is added, so the
/// fast path must refuse it.
fn llama_like(dir: &Path, vocab_size: usize, break_property: bool) -> PathBuf {
    let mut special: Vec<AddedToken> = ["<unk>", "<s>", "</s>"]
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    special.extend((0..=255u8).map(|b| AddedToken::from(format!("<0x{b:02X}>"), true)));
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(special)
        .initial_alphabet(HashSet::from(['▁']))
        .build();
    let lines: Vec<String> = TRAINING_TEXT.lines().map(str::to_owned).collect();
    trainer
        .feed(lines.iter(), |line| {
            let normalized = format!("▁{}", line.replace(' ', "▁"));
            // Words are runs of ▁ followed by other characters, so no merge spans a word start.
            let mut words = Vec::new();
            let mut current = String::new();
            let mut previous_meta = false;
            for c in normalized.chars() {
                if c == '▁' && !previous_meta && !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
                previous_meta = c == '▁';
                current.push(c);
            }
            words.push(current);
            Ok(words)
        })
        .expect("feed");
    let mut model = BPE::default();
    trainer.train(&mut model).expect("train");
    let mut model_json = serde_json::to_value(&model).expect("serialize model");
    model_json["type"] = json!("BPE");
    model_json["byte_fallback"] = json!(true);
    model_json["fuse_unk"] = json!(true);
    model_json["unk_token"] = json!("<unk>");
    if break_property {
        let vocab = model_json["vocab"].as_object_mut().expect("vocab");
        let next = vocab.len();
        for (i, token) in ["e▁", "e▁t"].iter().enumerate() {
            vocab.insert((*token).into(), json!(next + i));
        }
        let merges = model_json["merges"].as_array_mut().expect("merges");
        merges.insert(0, json!(["e", "▁"]));
        merges.insert(1, json!(["e▁", "t"]));
    }
    let added: Vec<_> = ["<unk>", "<s>", "</s>"]
        .iter()
        .enumerate()
        .map(|(id, content)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": null,
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": null,
        "model": model_json,
    });
    fs_err::create_dir_all(dir).expect("dir");
    fs_err::write(
        dir.join("tokenizer.json"),
        serde_json::to_vec_pretty(&tokenizer).expect("json"),
    )
    .expect("write");
    fs_err::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_vec(&json!({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": null}))
            .expect("json"),
    )
    .expect("write");
    dir.to_owned()
}

/// Adversarial documents: every Unicode plane, whitespace runs, special-token strings (whole
/// and broken), byte-fallback characters, ▁ itself, very long words, empty and huge documents.
fn adversarial_docs(seed: u64, count: usize) -> Vec<String> {
    let mut rng = Rng(seed | 1);
    let atoms: &[&str] = &[
        "the",
        "The",
        "fox",
        "forest",
        "quiet",
        "tokenizers",
        " ",
        "  ",
        "   ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "\u{b}",
        "\u{c}",
        "\u{85}",
        "\u{a0}",
        "\u{2028}",
        "\u{3000}",
        "▁",
        "▁▁",
        "_",
        "<s>",
        "</s>",
        "<unk>",
        "<pad>",
        "<s",
        "</",
        "s>",
        "<<s>>",
        "</s></s>",
        "<0x41>",
        "\0",
        "\u{7f}",
        "é",
        "e\u{301}",
        "東京",
        "😀",
        "🎉",
        "\u{10FFFF}",
        "\u{E000}",
        "\u{FEFF}",
        "\u{FFFD}",
        "𝔘𝔫𝔦",
        "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",
        "ﬁ",
        "İ",
        "ß",
        "١٢٣",
        "0",
        "42",
        "3.14",
        "{",
        "}",
        "(",
        ")",
        ";",
        "\"",
        "\\",
        "'",
        "e▁t",
        "the▁fox",
    ];
    let mut docs = vec![
        String::new(),
        " ".into(),
        "▁".into(),
        "<s>".into(),
        "</s>".into(),
        " </s> ".into(),
        "a".repeat(5000),
        "ab".repeat(3000),
        " ".repeat(1000),
        "▁".repeat(300),
        "\n".repeat(100),
        "😀".repeat(500),
    ];
    while docs.len() < count {
        let mut doc = String::new();
        let words = match rng.below(10) {
            0 => 0,
            1 => 2000 + rng.below(3000),
            _ => rng.below(80),
        };
        for _ in 0..words {
            match rng.below(8) {
                0 => {
                    // A random scalar value from any plane.
                    let plane = rng.below(17) as u32;
                    let c = char::from_u32((plane << 16) | rng.below(0x10000) as u32)
                        .unwrap_or('\u{FFFD}');
                    doc.push(c);
                }
                1 => {
                    let c = char::from_u32(rng.below(0x80) as u32).expect("ascii");
                    doc.push(c);
                }
                _ => doc.push_str(rng.pick::<&str>(atoms)),
            }
            if rng.below(3) == 0 {
                doc.push(' ');
            }
        }
        docs.push(doc);
    }
    docs
}

fn jsonl(docs: &[String]) -> String {
    docs.iter()
        .map(|d| {
            serde_json::to_string(&json!({ "text": d, "meta": {"n": 1} })).expect("json") + "\n"
        })
        .collect()
}

fn read_dataset_bytes(prefix: &Path) -> (Vec<u8>, Vec<u8>) {
    let (bin, idx) = indexed::dataset_paths(prefix);
    (
        fs_err::read(bin).expect("bin"),
        fs_err::read(idx).expect("idx"),
    )
}

fn config(inputs: Vec<String>, prefix: PathBuf, mode: Mode, workers: usize) -> TokenizeConfig {
    let mut config = TokenizeConfig::new(inputs, prefix);
    config.mode = mode;
    config.workers = workers;
    config
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Indexed dataset.

#[test]
fn writer_reproduces_the_worked_example_byte_for_byte() {
    // formats.md A.4: lengths 20, 2, 21, 12, uint16, 4 documents.
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("ex");
    let mut writer = DatasetWriter::create(&prefix, DType::U16).expect("create");
    for len in [20u32, 2, 21, 12] {
        let tokens: Vec<u32> = (0..len).collect();
        writer.add_document(&tokens, &[len]).expect("add");
    }
    let summary = writer.finish().expect("finish");
    assert_eq!(
        (summary.sequences, summary.documents, summary.tokens),
        (4, 4, 55)
    );
    let (bin, idx) = read_dataset_bytes(&prefix);
    let expected: Vec<u8> = [
        &b"MMIDIDX\0\0"[..],
        &1u64.to_le_bytes(),
        &[8],
        &4u64.to_le_bytes(),
        &5u64.to_le_bytes(),
        &[20i32, 2, 21, 12]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
        &[0i64, 40, 44, 86]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
        &[0i64, 1, 2, 3, 4]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    ]
    .concat();
    assert_eq!(idx.len(), 122);
    assert_eq!(idx, expected);
    assert_eq!(bin.len(), 110);
    assert_eq!(&bin[40..44], &[0, 0, 1, 0]);
    // No partial files remain.
    let names: Vec<_> = fs_err::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn dtype_follows_the_65500_threshold() {
    assert_eq!(DType::for_vocab_size(32000), DType::U16);
    assert_eq!(DType::for_vocab_size(65499), DType::U16);
    assert_eq!(DType::for_vocab_size(65500), DType::I32);
    assert_eq!(DType::for_vocab_size(128256), DType::I32);
    for code in 1..=8 {
        assert_eq!(DType::from_code(code).expect("code").code(), code);
    }
    assert!(DType::from_code(9).is_none());
}

#[test]
fn empty_documents_and_sentences_shape_the_document_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("d");
    let mut writer = DatasetWriter::create(&prefix, DType::I32).expect("create");
    writer.add_document(&[5, 6, 7], &[3]).expect("add");
    writer.add_document(&[], &[]).expect("empty");
    writer
        .add_document(&[1, 2, 3, 4], &[1, 3])
        .expect("sentences");
    writer.finish().expect("finish");
    let index = IndexReader::open(&prefix).expect("open");
    assert_eq!(index.dtype, DType::I32);
    assert_eq!(
        index
            .read_i64_section(indexed::Section::DocIdx)
            .expect("docs"),
        vec![0, 1, 1, 3]
    );
    assert_eq!(index.read_sizes().expect("sizes"), vec![3, 1, 3]);
    assert_eq!(
        index
            .read_i64_section(indexed::Section::Pointers)
            .expect("ptrs"),
        vec![0, 12, 16]
    );
    let report = index.verify().expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        (
            report.tokens,
            report.empty_documents,
            report.max_document_tokens
        ),
        (7, 1, 4)
    );
    assert_eq!(
        indexed::read_sequences(&prefix).expect("read"),
        vec![vec![5, 6, 7], vec![1], vec![2, 3, 4]]
    );
}

#[test]
fn token_ids_that_do_not_fit_the_dtype_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = DatasetWriter::create(&dir.path().join("x"), DType::U16).expect("create");
    let error = writer.add_document(&[70000], &[1]).expect_err("too big");
    assert!(
        matches!(error, Error::TokenOutOfRange { id: 70000, .. }),
        "{error}"
    );
}

#[test]
fn verify_reports_each_inconsistency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("v");
    let mut writer = DatasetWriter::create(&prefix, DType::U16).expect("create");
    writer.add_document(&[1, 2, 3], &[3]).expect("add");
    writer.add_document(&[4, 5], &[2]).expect("add");
    writer.finish().expect("finish");
    let (bin_path, idx_path) = indexed::dataset_paths(&prefix);
    let good_idx = fs_err::read(&idx_path).expect("idx");
    let good_bin = fs_err::read(&bin_path).expect("bin");
    let problems = |idx: &[u8], bin: &[u8]| -> Vec<String> {
        fs_err::write(&idx_path, idx).expect("write");
        fs_err::write(&bin_path, bin).expect("write");
        match IndexReader::open(&prefix) {
            Ok(index) => index.verify().expect("verify").problems,
            Err(error) => vec![error.to_string()],
        }
    };
    assert!(problems(&good_idx, &good_bin).is_empty());
    assert!(problems(&good_idx, &good_bin[..6])[0].contains(".bin is truncated"));
    assert!(problems(&good_idx[..good_idx.len() - 3], &good_bin)[0].contains(".idx is truncated"));
    let mut bad_pointer = good_idx.clone();
    bad_pointer[34 + 8 + 8] = 7; // Second pointer.
    assert!(problems(&bad_pointer, &good_bin)[0].contains("pointer 1 is 7"));
    let mut bad_end = good_idx.clone();
    let last = bad_end.len() - 8;
    bad_end[last] = 1;
    assert!(
        problems(&bad_end, &good_bin)
            .iter()
            .any(|p| p.contains("ends at 1 but there are 2 sequences"))
    );
    let mut bad_magic = good_idx.clone();
    bad_magic[0] = b'X';
    assert!(problems(&bad_magic, &good_bin)[0].contains("magic"));
    let mut bad_version = good_idx;
    bad_version[9] = 2;
    assert!(problems(&bad_version, &good_bin)[0].contains("version 2"));
}

#[test]
fn merge_shifts_the_document_index_and_concatenates_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let docs: Vec<(Vec<u32>, Vec<u32>)> = vec![
        (vec![1, 2], vec![2]),
        (vec![], vec![]),
        (vec![3, 4, 5], vec![1, 2]),
        (vec![6], vec![1]),
        (vec![], vec![]),
    ];
    let mut whole = DatasetWriter::create(&dir.path().join("whole"), DType::U16).expect("create");
    for (tokens, lengths) in &docs {
        whole.add_document(tokens, lengths).expect("add");
    }
    whole.finish().expect("finish");
    let mut parts = Vec::new();
    for (i, chunk) in docs.chunks(2).enumerate() {
        let prefix = dir.path().join(format!("part{i}"));
        let mut writer = DatasetWriter::create(&prefix, DType::U16).expect("create");
        for (tokens, lengths) in chunk {
            writer.add_document(tokens, lengths).expect("add");
        }
        writer.finish().expect("finish");
        parts.push(prefix);
    }
    let merged = indexed::merge(&parts, &dir.path().join("merged")).expect("merge");
    assert_eq!(
        (merged.documents, merged.sequences, merged.tokens),
        (5, 4, 6)
    );
    assert_eq!(
        read_dataset_bytes(&dir.path().join("merged")),
        read_dataset_bytes(&dir.path().join("whole"))
    );
}

// ---------------------------------------------------------------------------------------------
// JSON with Python's semantics.

fn text_of(line: &str) -> Result<Field<'_>, String> {
    extract_fields(line, &["text".to_owned()])
        .map(|mut f| f.remove(0))
        .map_err(|e| format!("{}: {}", e.column(line), e.message))
}

#[test]
fn piece_cache_answers_what_was_inserted_through_growth_and_restarts() {
    // Short keys (inline, with and without spilled ids), long keys, and budgets small enough
    // that the cache starts over many times: a hit must always be the ids inserted last.
    let mut rng = Rng(0x5eed);
    let alphabet = ["a", "b", "é", "▁", " ", "€", "z"];
    for budget in [1 << 18, 1 << 20, 40 << 20] {
        let mut cache = crate::cache::PieceCache::new(budget);
        let mut inserted = std::collections::HashMap::new();
        let mut hits = 0;
        for _ in 0..30_000 {
            let chars = 1 + rng.below(24) as usize;
            let key: String = (0..chars).map(|_| *rng.pick(&alphabet)).collect();
            let hash = crate::cache::PieceCache::hash(&key);
            match cache.get(hash, &key) {
                Some(ids) => {
                    assert_eq!(Some(&ids.to_vec()), inserted.get(&key), "{key:?}");
                    hits += 1;
                }
                None => {
                    let ids: Vec<u32> = (0..rng.below(7)).map(|_| rng.next() as u32).collect();
                    cache.insert(hash, &key, &ids);
                    inserted.insert(key, ids);
                }
            }
        }
        assert!(hits > 1000, "budget {budget}: only {hits} hits");
    }
}

#[test]
fn json_strings_stop_at_every_offset() {
    // The string scan reads eight bytes at a time: put quotes, escapes and control characters
    // at every offset of a word, after ASCII and after multi-byte characters.
    for filler in ["a", "é", "€"] {
        for before in 0..20 {
            let prefix = filler.repeat(before);
            let text = |s: &str| Field::Text(s.to_owned().into());
            assert_eq!(
                text_of(&format!(r#"{{"text": "{prefix}"}}"#)),
                Ok(text(&prefix))
            );
            assert_eq!(
                text_of(&format!(r#"{{"text": "{prefix}\n{prefix}\\"}}"#)),
                Ok(text(&format!("{prefix}\n{prefix}\\")))
            );
            assert_eq!(
                text_of(&format!(r#"{{"text": "{prefix}\"x"}}"#)),
                Ok(text(&format!("{prefix}\"x")))
            );
            let column = 11 + before;
            for control in ['\u{0}', '\u{1f}', '\t'] {
                assert_eq!(
                    text_of(&format!("{{\"text\": \"{prefix}{control}\"}}")),
                    Err(format!("{column}: Invalid control character at")),
                );
            }
            // Bytes at 0x20 and just above (space, `!`, `#`) and DEL are ordinary.
            assert_eq!(
                text_of(&format!("{{\"text\": \"{prefix} !#\x7f\"}}")),
                Ok(text(&format!("{prefix} !#\x7f")))
            );
        }
    }
}

#[test]
fn json_follows_python() {
    let text = |s: &str| Field::Text(s.to_owned().into());
    assert_eq!(
        text_of(r#"{"text": "a\nb\u00e9\ud83d\ude00\/"}"#),
        Ok(text("a\nbé😀/"))
    );
    assert_eq!(
        text_of(
            r#"{"text": "x", "n": NaN, "i": -Infinity, "big": 1e400, "int": 123456789012345678901234567890}"#
        ),
        Ok(text("x"))
    );
    assert_eq!(
        text_of(r#"{"text": "first", "text": "last"}"#),
        Ok(text("last"))
    );
    assert_eq!(
        text_of("{\"text\": \"line\u{2028}sep\u{85}\"}"),
        Ok(text("line\u{2028}sep\u{85}"))
    );
    assert_eq!(
        text_of(r#" {"other": "\ud800"} "#),
        Ok(Field::Missing),
        "a lone surrogate elsewhere is fine"
    );
    assert_eq!(
        text_of(r#"{"text": ["a", "b"]}"#),
        Ok(Field::List(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        text_of(r#"{"text": ["a", 1]}"#),
        Ok(Field::Other("list with non-string items"))
    );
    assert_eq!(text_of(r#"{"text": null}"#), Ok(Field::Other("null")));
    assert_eq!(
        text_of(r#"{"text": {"a": [1, 2.5e-3, true, false, null]}}"#),
        Ok(Field::Other("object"))
    );
    // Errors, with Python's messages and 1-based character columns.
    assert_eq!(text_of(""), Err("1: Expecting value".into()));
    assert_eq!(
        text_of(r#"{"text": "x",}"#),
        Err("14: Expecting property name enclosed in double quotes".into())
    );
    assert_eq!(
        text_of(r#"{"text": "é" "#),
        Err("14: Expecting ',' delimiter".into())
    );
    assert_eq!(text_of(r#"{"text": "x"} {}"#), Err("15: Extra data".into()));
    assert_eq!(
        text_of("{\"text\": \"a\tb\"}"),
        Err("12: Invalid control character at".into())
    );
    assert_eq!(
        text_of(r#"{"text": "abc"#),
        Err("10: Unterminated string starting at".into())
    );
    assert_eq!(
        text_of(r#"{"text": "\x"}"#),
        Err("11: Invalid \\escape".into())
    );
    assert_eq!(
        text_of(r#"{"text": "\u12"}"#),
        Err("12: Invalid \\uXXXX escape".into())
    );
    assert_eq!(
        text_of(r#"{"text": 01}"#),
        Err("11: Expecting ',' delimiter".into())
    );
    assert_eq!(
        text_of(r#"{"text" "x"}"#),
        Err("9: Expecting ':' delimiter".into())
    );
    assert!(
        text_of(r#"{"text": "\udc00"}"#)
            .expect_err("lone")
            .contains("lone surrogate")
    );
    assert!(
        text_of("\u{feff}{\"text\": \"x\"}")
            .expect_err("bom")
            .contains("BOM")
    );
    assert!(
        text_of(r#"["text"]"#)
            .expect_err("list")
            .contains("not an object")
    );
    let deep = format!("{{\"a\": {}{}}}", "[".repeat(2000), "]".repeat(2000));
    assert!(text_of(&deep).expect_err("deep").contains("recursion"));
}

// ---------------------------------------------------------------------------------------------
// Input: universal newlines, shards.

/// `(line, text)` of each line handed out, and `(line, bytes)` of each line skipped.
type LinesAndSkipped = (Vec<(u64, String)>, Vec<(u64, u64)>);

/// Every line a reader of `data` with a `max_line` bound hands out or (with `skip`) skips.
fn read_lines(
    data: &[u8],
    target: usize,
    range: (u64, u64),
    (max_line, skip): (usize, bool),
) -> LinesAndSkipped {
    let reader = Box::new(std::io::Cursor::new(data.to_vec()));
    let mut reader = LineReader::with_reader(reader, Path::new("t"), range, target, max_line)
        .skip_too_long(skip);
    let (mut lines, mut skipped) = (Vec::new(), Vec::new());
    loop {
        let batch = reader.next_batch().expect("batch");
        skipped.extend(reader.take_skipped().iter().map(|s| (s.line, s.bytes)));
        let Some((bytes, ranges, first)) = batch else {
            break;
        };
        for (i, (s, e)) in ranges.iter().enumerate() {
            lines.push((
                first + i as u64,
                String::from_utf8_lossy(&bytes[*s as usize..*e as usize]).into_owned(),
            ));
        }
    }
    (lines, skipped)
}

/// Every line of `data`, read in batches of about `target` bytes.
fn all_lines(data: &[u8], target: usize) -> Vec<(u64, String)> {
    read_lines(
        data,
        target,
        (0, u64::MAX),
        (crate::DEFAULT_MAX_LINE_BYTES, false),
    )
    .0
}

/// Every line a reader with `max_line` 4 hands out or skips.
fn lines_and_skipped(data: &[u8], target: usize, range: (u64, u64)) -> LinesAndSkipped {
    read_lines(data, target, range, (4, true))
}

#[test]
fn lines_split_like_python_universal_newlines() {
    let data = b"a\r\nb\rc\nd\x0be\xe2\x80\xa8f\n\nlast";
    let expected: Vec<(u64, String)> = vec![
        (1, "a".into()),
        (2, "b".into()),
        (3, "c".into()),
        (4, "d\u{b}e\u{2028}f".into()),
        (5, String::new()),
        (6, "last".into()),
    ];
    for target in [1, 2, 3, 5, 64 * 1024] {
        assert_eq!(all_lines(data, target), expected, "target {target}");
    }
    assert_eq!(all_lines(b"x\r", 1), vec![(1, "x".to_owned())]);
    assert_eq!(all_lines(b"", 16), vec![]);
}

#[test]
fn over_long_lines_are_skipped_with_their_numbers_whatever_the_read_size() {
    let data = b"ab\r\nlonglong\r\ncd\rtoolong\rx\n\nlast-too-long";
    let expected_lines: Vec<(u64, String)> = vec![
        (1, "ab".into()),
        (3, "cd".into()),
        (5, "x".into()),
        (6, String::new()),
    ];
    for target in [1, 2, 3, 5, 7, 64 * 1024] {
        let (lines, skipped) = lines_and_skipped(data, target, (0, u64::MAX));
        assert_eq!(lines, expected_lines, "target {target}");
        assert_eq!(skipped, vec![(2, 8), (4, 7), (7, 13)], "target {target}");
    }
    // A long line ending in "\r" at the end of the input, and one of only "\r\n" after it.
    assert_eq!(
        lines_and_skipped(b"12345\r", 3, (0, u64::MAX)),
        (vec![], vec![(1, 5)])
    );
    assert_eq!(
        lines_and_skipped(b"12345\r\nok", 2, (0, u64::MAX)),
        (vec![(2, "ok".to_owned())], vec![(1, 5)])
    );
    // Reads end every 64 KiB: a "\r\n" split by one, and a line over several reads.
    let mut data = vec![b'x'; 65_535];
    data.extend_from_slice(b"\r\nok\n");
    data.extend(std::iter::repeat_n(b'y', 200_000));
    data.extend_from_slice(b"\nend");
    assert_eq!(
        lines_and_skipped(&data, 16, (0, u64::MAX)),
        (
            vec![(2, "ok".to_owned()), (4, "end".to_owned())],
            vec![(1, 65_535), (3, 200_000)]
        )
    );
    // A line belongs to the range it starts in: a long line starting before the range is read
    // past but not recorded; one starting inside is recorded although it ends outside.
    let data = b"a\nlonglong\nb\nlonglong\nc\n";
    assert_eq!(
        lines_and_skipped(data, 3, (4, 16)),
        (vec![(3, "b".to_owned())], vec![(4, 8)])
    );
    // Without skipping, the first long line ends the read, naming it.
    let reader = Box::new(std::io::Cursor::new(b"ok\nlonglong\n".to_vec()));
    let mut reader = LineReader::with_reader(reader, Path::new("t"), (0, u64::MAX), 3, 4);
    let mut error = None;
    while error.is_none() {
        match reader.next_batch() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => error = Some(e),
        }
    }
    assert!(
        matches!(
            error,
            Some(crate::Error::LineTooLong {
                line: 2,
                limit: 4,
                ..
            })
        ),
        "{error:?}"
    );
}

#[test]
fn shard_plans_cover_every_line_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    let mut expected = Vec::new();
    for f in 0..4 {
        let path = dir
            .path()
            .join(format!("f{f}.jsonl{}", if f == 2 { ".gz" } else { "" }));
        let mut content = String::new();
        for l in 0..(3 + f * 5) {
            let line = format!("file {f} line {l} {}", "x".repeat((l * 7) % 13));
            content.push_str(&line);
            content.push_str(if l % 3 == 0 { "\r\n" } else { "\n" });
            expected.push(line);
        }
        if f == 2 {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(content.as_bytes()).expect("gz");
            fs_err::write(&path, encoder.finish().expect("gz")).expect("write");
        } else {
            fs_err::write(&path, content).expect("write");
        }
        files.push(path);
    }
    let sizes = input::input_sizes(&files).expect("sizes");
    for count in [1u32, 2, 3, 7, 50] {
        let mut seen = Vec::new();
        for index in 0..count {
            let plan = input::plan_shard(&files, &sizes, Shard { index, count });
            input::read_all(
                &files,
                &plan,
                7,
                (crate::DEFAULT_MAX_LINE_BYTES, false),
                |batch| {
                    for (s, e) in &batch.lines {
                        seen.push(
                            String::from_utf8(batch.data[*s as usize..*e as usize].to_vec())
                                .expect("utf8"),
                        );
                    }
                    Ok(true)
                },
                |_, _| {},
            )
            .expect("read");
        }
        assert_eq!(seen, expected, "{count} shards");
    }
    assert_eq!("3/8".parse::<Shard>(), Ok(Shard { index: 3, count: 8 }));
    assert!("8/8".parse::<Shard>().is_err());
    assert!("1/0".parse::<Shard>().is_err());
}

// ---------------------------------------------------------------------------------------------
// The fast encoder against the reference.

fn assert_fast_equals_reference(tokenizer: &Tokenizer, docs: &[String]) {
    assert_eq!(
        tokenizer.engine(),
        Engine::Fast,
        "{:?}",
        tokenizer.fallback_reason()
    );
    let mut encoder = tokenizer.encoder();
    for (i, doc) in docs.iter().enumerate() {
        let mut fast = Vec::new();
        encoder.encode(doc, &mut fast).expect("fast");
        let reference = tokenizer.encode_reference(doc).expect("reference");
        assert_eq!(fast, reference, "document {i}: {doc:?}");
    }
}

#[test]
fn fast_path_equals_reference_on_adversarial_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok_dir = llama_like(&dir.path().join("tok"), 600, false);
    let docs = adversarial_docs(7, 400);
    for (mode, pad) in [
        (Mode::Nemo, false),
        (Mode::Nemo, true),
        (Mode::Megatron, false),
    ] {
        let tokenizer = Tokenizer::from_path(&tok_dir, mode, pad).expect("load");
        assert_fast_equals_reference(&tokenizer, &docs);
    }
    // transformers 5's LlamaTokenizer pipeline (Metaspace), for each prepend scheme.
    for (legacy, add_prefix_space) in [(true, true), (false, true), (true, false)] {
        fs_err::write(
            tok_dir.join("tokenizer_config.json"),
            serde_json::to_vec(
                &json!({"tokenizer_class": "LlamaTokenizer", "legacy": legacy,
                "add_prefix_space": add_prefix_space, "bos_token": "<s>", "eos_token": "</s>"}),
            )
            .expect("json"),
        )
        .expect("write");
        let tokenizer = Tokenizer::from_path(&tok_dir, Mode::Megatron, false).expect("load");
        assert_fast_equals_reference(&tokenizer, &docs);
        let nemo = Tokenizer::from_path(&tok_dir, Mode::Nemo, false).expect("load");
        assert_fast_equals_reference(&nemo, &docs);
    }
    let tokenizer = Tokenizer::from_path(&tok_dir, Mode::Megatron, false).expect("load");
    let mut encoder = tokenizer.encoder();
    let mut ids = Vec::new();
    encoder.encode("", &mut ids).expect("encode");
    assert_eq!(ids, vec![1], "megatron mode adds BOS even to an empty text");
}

#[test]
fn need_pad_id_adds_pad_like_nemo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok_dir = llama_like(&dir.path().join("tok"), 600, false);
    let plain = Tokenizer::from_path(&tok_dir, Mode::Nemo, false).expect("load");
    let padded = Tokenizer::from_path(&tok_dir, Mode::Nemo, true).expect("load");
    assert_eq!(padded.vocab_size(), plain.vocab_size() + 1);
    let pad = padded.token_to_id("<pad>").expect("pad added");
    assert_eq!(pad as usize, plain.vocab_size());
    let mut ids = Vec::new();
    padded
        .encoder()
        .encode("a<pad>b", &mut ids)
        .expect("encode");
    assert!(ids.contains(&pad), "{ids:?}");
    let mut ids = Vec::new();
    plain.encoder().encode("a<pad>b", &mut ids).expect("encode");
    assert!(!ids.contains(&pad));
}

#[test]
fn a_vocabulary_without_the_property_falls_back_to_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok_dir = llama_like(&dir.path().join("tok"), 400, true);
    let tokenizer = Tokenizer::from_path(&tok_dir, Mode::Nemo, false).expect("load");
    assert_eq!(tokenizer.engine(), Engine::Reference);
    assert!(
        tokenizer
            .fallback_reason()
            .expect("reason")
            .contains("▁ after another character")
    );
    // The reference path is used, so "e t" merges across the word start as upstream does.
    let mut ids = Vec::new();
    tokenizer
        .encoder()
        .encode("the tree", &mut ids)
        .expect("encode");
    assert_eq!(
        ids,
        tokenizer.encode_reference("the tree").expect("reference")
    );
    assert!(
        ids.contains(&tokenizer.token_to_id("e▁t").expect("token")),
        "{ids:?}"
    );
}

#[test]
fn llama2_tokenizer_matches_the_reference_when_available() {
    let Some(dir) = std::env::var_os("TRNKIT_TEST_LLAMA2_TOKENIZER") else {
        test_support::services::missing(
            "the Llama-2 tokenizer",
            "set TRNKIT_TEST_LLAMA2_TOKENIZER to a directory made by scripts/get-llama2-tokenizer (scripts/test does)",
        );
        return;
    };
    let docs = adversarial_docs(11, 300);
    for mode in [Mode::Nemo, Mode::Megatron] {
        let tokenizer =
            Tokenizer::from_path(Path::new(&dir), mode, mode == Mode::Nemo).expect("load");
        assert_fast_equals_reference(&tokenizer, &docs);
        let mut ids = Vec::new();
        tokenizer
            .encoder()
            .encode("Hello world!", &mut ids)
            .expect("encode");
        let expected: &[u32] = if mode == Mode::Megatron {
            &[1, 15043, 3186, 29991]
        } else {
            &[15043, 3186, 29991]
        };
        assert_eq!(ids, expected);
    }
    // Ids observed with Python transformers 5.24 (`tokenizer(text).input_ids`), the stack of
    // Megatron-LM's preprocess_data.py, and with Python `tokenizers` on tokenizer.json as written,
    // which is also what transformers 4.57 (NeMo's stack) gives for
    // `convert_tokens_to_ids(tokenize(text))`.
    let megatron = Tokenizer::from_path(Path::new(&dir), Mode::Megatron, false).expect("load");
    let nemo = Tokenizer::from_path(Path::new(&dir), Mode::Nemo, false).expect("load");
    let cases: &[(&str, &[u32], &[u32])] = &[
        (
            "a</s>b <s> c",
            &[1, 263, 2, 289, 29871, 1, 274],
            &[263, 2, 289, 29871, 1, 29871, 274],
        ),
        (" a", &[1, 263], &[29871, 263]),
        ("\u{2581}a", &[1, 263], &[29871, 263]),
        ("  x", &[1, 29871, 921], &[259, 921]),
        ("", &[1], &[]),
        (" ", &[1, 29871], &[259]),
    ];
    for (text, transformers5, legacy) in cases {
        let mut ids = Vec::new();
        megatron.encoder().encode(text, &mut ids).expect("encode");
        assert_eq!(&ids, transformers5, "megatron {text:?}");
        let mut ids = Vec::new();
        nemo.encoder().encode(text, &mut ids).expect("encode");
        assert_eq!(&ids, legacy, "nemo {text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Whole runs.

fn trained(dir: &Path) -> PathBuf {
    llama_like(&dir.join("tok"), 500, false)
}

#[test]
fn output_is_identical_for_any_worker_count_and_matches_the_reference_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok_dir = trained(dir.path());
    let docs = adversarial_docs(3, 300);
    let input = dir.path().join("in.jsonl");
    fs_err::write(&input, jsonl(&docs)).expect("write");
    for mode in [Mode::Nemo, Mode::Megatron] {
        let tokenizer = Tokenizer::from_path(&tok_dir, mode, false).expect("load");
        let mut outputs = Vec::new();
        for workers in [1, 3] {
            let prefix = dir.path().join(format!("{mode}-{workers}"));
            let report = tokenize(
                &config(vec![path_str(&input)], prefix.clone(), mode, workers),
                &tokenizer,
                &NoProgress,
            )
            .expect("tokenize");
            assert_eq!(report.lines, docs.len() as u64);
            outputs.push(read_dataset_bytes(&crate::output_prefix_for_key(
                &prefix, "text",
            )));
        }
        assert_eq!(
            outputs[0], outputs[1],
            "{mode}: workers must not change the output"
        );
        // Expected sequences straight from the reference encoder.
        let mut expected = Vec::new();
        for doc in &docs {
            let mut ids = tokenizer.encode_reference(doc).expect("reference");
            if !ids.is_empty() {
                ids.push(2);
                expected.push(ids);
            } else if mode == Mode::Megatron {
                unreachable!("megatron mode adds BOS");
            }
        }
        let prefix = crate::output_prefix_for_key(&dir.path().join(format!("{mode}-1")), "text");
        assert_eq!(
            indexed::read_sequences(&prefix).expect("read"),
            expected,
            "{mode}"
        );
        let index = IndexReader::open(&prefix).expect("open");
        assert!(index.verify().expect("verify").problems.is_empty());
        assert_eq!(index.dtype, DType::U16);
    }
}

#[test]
fn nemo_skips_empty_documents_and_megatron_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok_dir = trained(dir.path());
    let input = dir.path().join("in.jsonl");
    fs_err::write(
        &input,
        "{\"text\": \"a b\"}\n{\"text\": \"\"}\n{\"text\": [\"x\", \"\", \"y z\"]}\n",
    )
    .expect("write");
    // NeMo: the list is an error; without it, the empty document is skipped.
    let nemo = Tokenizer::from_path(&tok_dir, Mode::Nemo, false).expect("load");
    let error = tokenize(
        &config(vec![path_str(&input)], dir.path().join("n"), Mode::Nemo, 2),
        &nemo,
        &NoProgress,
    )
    .expect_err("list in nemo mode");
    assert!(
        error
            .to_string()
            .contains("in.jsonl:3:1: key \"text\" holds a list"),
        "{error}"
    );
    let input2 = dir.path().join("in2.jsonl");
    fs_err::write(
        &input2,
        "{\"text\": \"a b\"}\n{\"text\": \"\"}\n{\"text\": \"c\"}\n",
    )
    .expect("write");
    let report = tokenize(
        &config(vec![path_str(&input2)], dir.path().join("n"), Mode::Nemo, 2),
        &nemo,
        &NoProgress,
    )
    .expect("nemo");
    assert_eq!((report.documents, report.skipped_empty), (2, 1));
    // Megatron: BOS per sentence, the empty sentence dropped, EOS on the last sentence.
    let megatron = Tokenizer::from_path(&tok_dir, Mode::Megatron, false).expect("load");
    let report = tokenize(
        &config(
            vec![path_str(&input)],
            dir.path().join("m"),
            Mode::Megatron,
            2,
        ),
        &megatron,
        &NoProgress,
    )
    .expect("megatron");
    assert_eq!(report.documents, 3);
    let prefix = crate::output_prefix_for_key(&dir.path().join("m"), "text");
    let index = IndexReader::open(&prefix).expect("open");
    assert_eq!(
        index
            .read_i64_section(indexed::Section::DocIdx)
            .expect("docs"),
        vec![0, 1, 2, 5]
    );
    let sequences = indexed::read_sequences(&prefix).expect("read");
    assert_eq!(sequences[1], vec![1, 2], "the empty text is BOS + EOD");
    assert_eq!(sequences[2][0], 1);
    assert_eq!(sequences[3], vec![1], "an empty sentence is BOS alone");
    assert_eq!(*sequences[4].last().expect("eod"), 2);
}

#[test]
fn each_json_key_gets_its_own_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = Tokenizer::from_path(&trained(dir.path()), Mode::Nemo, false).expect("load");
    let input = dir.path().join("in.jsonl");
    fs_err::write(
        &input,
        "{\"text\": \"the fox\", \"title\": \"quiet\"}\n{\"title\": \"dog\", \"text\": \"\"}\n",
    )
    .expect("write");
    let mut cfg = config(vec![path_str(&input)], dir.path().join("k"), Mode::Nemo, 1);
    cfg.json_keys = vec!["text".into(), "title".into()];
    let report = tokenize(&cfg, &tokenizer, &NoProgress).expect("tokenize");
    assert_eq!(report.outputs.len(), 2);
    assert_eq!(
        (report.outputs[0].documents, report.outputs[1].documents),
        (1, 2)
    );
    assert!(report.outputs[1].prefix.ends_with("k_title_document"));
}

#[test]
fn sharded_runs_merged_equal_the_single_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer =
        Tokenizer::from_path(&trained(dir.path()), Mode::Megatron, false).expect("load");
    let docs = adversarial_docs(5, 200);
    let mut inputs = Vec::new();
    for (i, chunk) in docs.chunks(37).enumerate() {
        let content = jsonl(chunk);
        let path = dir
            .path()
            .join(format!("part-{i:02}.jsonl{}", ["", ".gz", ".zst"][i % 3]));
        match i % 3 {
            1 => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(content.as_bytes()).expect("gz");
                fs_err::write(&path, encoder.finish().expect("gz")).expect("write");
            }
            2 => fs_err::write(
                &path,
                zstd::encode_all(content.as_bytes(), 3).expect("zstd"),
            )
            .expect("write"),
            _ => fs_err::write(&path, content).expect("write"),
        }
        inputs.push(path);
    }
    let glob = format!("{}/part-*", dir.path().display());
    tokenize(
        &config(
            vec![glob.clone()],
            dir.path().join("single"),
            Mode::Megatron,
            2,
        ),
        &tokenizer,
        &NoProgress,
    )
    .expect("single");
    let single = read_dataset_bytes(&crate::output_prefix_for_key(
        &dir.path().join("single"),
        "text",
    ));
    for count in [2u32, 5] {
        let mut parts = Vec::new();
        for index in 0..count {
            let prefix = dir.path().join(format!("s{count}-{index}"));
            let mut cfg = config(vec![glob.clone()], prefix.clone(), Mode::Megatron, 2);
            cfg.shard = Shard { index, count };
            tokenize(&cfg, &tokenizer, &NoProgress).expect("shard");
            parts.push(crate::output_prefix_for_key(&prefix, "text"));
        }
        let merged = dir.path().join(format!("merged{count}"));
        indexed::merge(&parts, &merged).expect("merge");
        assert_eq!(read_dataset_bytes(&merged), single, "{count} shards");
    }
}

#[test]
fn bad_lines_stop_the_run_with_their_location_or_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = Tokenizer::from_path(&trained(dir.path()), Mode::Nemo, false).expect("load");
    let input = dir.path().join("bad.jsonl");
    let mut content =
        b"{\"text\": \"ok\"}\n{\"text\": \"x\",}\n{\"title\": \"no text\"}\n{\"text\": 5}\n"
            .to_vec();
    content.extend_from_slice(b"{\"text\": \"caf\xe9\"}\n\n{\"text\": \"fine\"}\n");
    fs_err::write(&input, &content).expect("write");
    let prefix = dir.path().join("out");
    let error = tokenize(
        &config(vec![path_str(&input)], prefix.clone(), Mode::Nemo, 2),
        &tokenizer,
        &NoProgress,
    )
    .expect_err("bad line");
    let message = error.to_string();
    assert!(
        message.contains("bad.jsonl:2:14: Expecting property name enclosed in double quotes"),
        "{message}"
    );
    assert!(message.contains("--skip-bad-lines"), "{message}");
    // Nothing that looks finished, nor partial files.
    let names: Vec<_> = fs_err::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        !names.iter().any(|n| n.to_string_lossy().starts_with("out")),
        "{names:?}"
    );

    let mut cfg = config(vec![path_str(&input)], prefix.clone(), Mode::Nemo, 2);
    cfg.skip_bad_lines = true;
    let report = tokenize(&cfg, &tokenizer, &NoProgress).expect("skip");
    assert_eq!(
        (report.lines, report.bad_lines, report.documents),
        (7, 5, 2)
    );
    let samples = report.bad_line_samples.join("\n");
    assert!(
        samples.contains(":3:1: no key \"text\" in this line"),
        "{samples}"
    );
    assert!(
        samples.contains(":4:1: key \"text\" holds a number, not a string"),
        "{samples}"
    );
    assert!(
        samples.contains(":5:14: invalid UTF-8 (byte 0xe9 at byte column 14)"),
        "{samples}"
    );
    assert!(samples.contains(":6:1: Expecting value"), "{samples}");
}

#[test]
fn empty_input_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = Tokenizer::from_path(&trained(dir.path()), Mode::Nemo, false).expect("load");
    let input = dir.path().join("empty.jsonl");
    fs_err::write(&input, "").expect("write");
    let error = tokenize(
        &config(vec![path_str(&input)], dir.path().join("o"), Mode::Nemo, 1),
        &tokenizer,
        &NoProgress,
    )
    .expect_err("empty");
    assert!(matches!(error, Error::EmptyInput { .. }), "{error}");
    let error = tokenize(
        &config(
            vec![format!("{}/nothing-*.jsonl", dir.path().display())],
            dir.path().join("o"),
            Mode::Nemo,
            1,
        ),
        &tokenizer,
        &NoProgress,
    )
    .expect_err("no match");
    assert!(matches!(error, Error::NoInput { .. }), "{error}");
}

struct CancelAfter(u64);

impl Progress for CancelAfter {
    fn update(&self, update: &ProgressUpdate) -> bool {
        update.lines < self.0
    }
}

#[test]
fn a_cancelled_run_leaves_nothing_and_a_rerun_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = Tokenizer::from_path(&trained(dir.path()), Mode::Nemo, false).expect("load");
    let input = dir.path().join("in.jsonl");
    // Enough text for several batches.
    let docs: Vec<String> = (0..3000)
        .map(|i| format!("document {i} {}", "the quick fox ".repeat(40)))
        .collect();
    fs_err::write(&input, jsonl(&docs)).expect("write");
    let prefix = dir.path().join("out");
    // A previous complete output exists: a cancelled rerun must not leave a mixed pair.
    tokenize(
        &config(vec![path_str(&input)], prefix.clone(), Mode::Nemo, 2),
        &tokenizer,
        &NoProgress,
    )
    .expect("first");
    let before = read_dataset_bytes(&crate::output_prefix_for_key(&prefix, "text"));
    let error = tokenize(
        &config(vec![path_str(&input)], prefix.clone(), Mode::Nemo, 2),
        &tokenizer,
        &CancelAfter(1),
    )
    .expect_err("cancelled");
    assert!(matches!(error, Error::Cancelled));
    let names: Vec<String> = fs_err::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("out"))
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
    assert_eq!(
        read_dataset_bytes(&crate::output_prefix_for_key(&prefix, "text")),
        before
    );
    let report = tokenize(
        &config(vec![path_str(&input)], prefix.clone(), Mode::Nemo, 2),
        &tokenizer,
        &NoProgress,
    )
    .expect("rerun");
    assert_eq!(report.documents, 3000);
}

// ---------------------------------------------------------------------------------------------
// Staging: local directories and a local server speaking the Hub protocol.

/// A tiny HTTP/1.1 server: `routes` maps a path to (status, body); honours `Range: bytes=N-`
/// and records the requests' `Authorization` headers. Serves until the test ends.
fn hub_server(
    routes: Vec<(String, u16, Vec<u8>)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut range_from = 0usize;
            let mut auth = String::from("-");
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range_from = v.trim().trim_end_matches('-').parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = header.trim().to_owned();
                }
            }
            log.lock()
                .expect("lock")
                .push(format!("{path} {auth} range={range_from}"));
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, b"not found".to_vec()));
            let (status, body) = if status == 200 && range_from > 0 && range_from <= body.len() {
                (206, body[range_from..].to_vec())
            } else {
                (status, body)
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (address, seen)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn staging_from_the_hub_resumes_verifies_and_reports_gated_repositories() {
    use crate::stage::{Hub, Source, stage_dataset, stage_tokenizer};
    let dir = tempfile::tempdir().expect("tempdir");
    let tok_dir = trained(dir.path());
    let tokenizer_json = fs_err::read(tok_dir.join("tokenizer.json")).expect("read");
    let part_a = jsonl(&["alpha".into(), "beta".into()]).into_bytes();
    let part_b = jsonl(&["gamma".into()]).into_bytes();
    let tree = serde_json::to_vec(&json!([
        {"type": "directory", "path": "sub"},
        {"type": "file", "path": "README.md", "size": 3},
        {"type": "file", "path": "sub/b.jsonl", "size": part_b.len(), "lfs": {"oid": sha256_hex(&part_b), "size": part_b.len()}},
        {"type": "file", "path": "a.jsonl", "size": part_a.len(), "lfs": {"oid": sha256_hex(&part_a), "size": part_a.len()}},
    ]))
    .expect("json");
    let (endpoint, seen) = hub_server(vec![
        (
            "/org/tok/resolve/main/tokenizer.json".into(),
            200,
            tokenizer_json.clone(),
        ),
        (
            "/org/gated/resolve/main/tokenizer.json".into(),
            403,
            b"gated".to_vec(),
        ),
        (
            "/api/datasets/org/data/tree/main?recursive=true".into(),
            200,
            tree,
        ),
        (
            "/datasets/org/data/resolve/main/a.jsonl".into(),
            200,
            part_a.clone(),
        ),
        (
            "/datasets/org/data/resolve/main/sub/b.jsonl".into(),
            200,
            part_b.clone(),
        ),
    ]);
    let hub = Hub {
        endpoint,
        token: Some("hf_secret_token".into()),
    };
    assert!(
        !format!("{hub:?}").contains("hf_secret"),
        "the token must not be in Debug output"
    );

    let staged = stage_tokenizer(
        &Source::Hub {
            repo: "org/tok".into(),
            revision: "main".into(),
        },
        &hub,
        &dir.path().join("t"),
        &crate::LockOptions::default(),
    )
    .expect("tokenizer");
    assert_eq!(
        fs_err::read(dir.path().join("t/tokenizer.json")).expect("read"),
        tokenizer_json
    );
    assert_eq!(staged.files.len(), 1);
    assert_eq!(staged.files[0].sha256, sha256_hex(&tokenizer_json));

    let error = stage_tokenizer(
        &Source::Hub {
            repo: "org/gated".into(),
            revision: "main".into(),
        },
        &hub,
        &dir.path().join("g"),
        &crate::LockOptions::default(),
    )
    .expect_err("gated");
    let message = error.to_string();
    assert!(
        message.contains("gated") && message.contains("accept its license"),
        "{message}"
    );
    assert!(!message.contains("hf_secret"), "{message}");

    // A partial download from an earlier run is resumed with a Range request.
    let data = dir.path().join("data");
    fs_err::create_dir_all(&data).expect("mkdir");
    fs_err::write(data.join("a.jsonl.partial"), &part_a[..5]).expect("write");
    let source = Source::Hub {
        repo: "org/data".into(),
        revision: "main".into(),
    };
    let report =
        stage_dataset(&source, &hub, &data, &crate::LockOptions::default()).expect("dataset");
    assert_eq!(fs_err::read(data.join("a.jsonl")).expect("a"), part_a);
    assert_eq!(fs_err::read(data.join("sub/b.jsonl")).expect("b"), part_b);
    assert_eq!(report.files.len(), 2);
    assert_eq!(report.transferred, (part_a.len() - 5 + part_b.len()) as u64);
    let log = seen.lock().expect("lock").clone();
    assert!(
        log.iter().any(|l| l.starts_with(
            "/datasets/org/data/resolve/main/a.jsonl authorization: Bearer hf_secret_token range=5"
        )),
        "{log:?}"
    );
    // A rerun downloads nothing.
    let again = stage_dataset(&source, &hub, &data, &crate::LockOptions::default()).expect("rerun");
    assert_eq!((again.skipped, again.transferred), (2, 0));
    // The staged files tokenize as the blueprint's merged copy does.
    let merged = dir.path().join("merged.jsonl");
    let files = crate::input::expand_inputs(&[path_str(&data)]).expect("expand");
    crate::stage::merge_jsonl(&files, &merged).expect("merge");
    assert_eq!(
        fs_err::read(&merged).expect("merged"),
        [part_a.clone(), part_b.clone()].concat()
    );
}

#[test]
fn staging_detects_a_corrupted_download() {
    use crate::stage::{Hub, Source, stage_dataset};
    let dir = tempfile::tempdir().expect("tempdir");
    let body = b"{\"text\": \"x\"}\n".to_vec();
    let tree = serde_json::to_vec(&json!([
        {"type": "file", "path": "a.jsonl", "size": body.len(), "lfs": {"oid": sha256_hex(b"other"), "size": body.len()}},
    ]))
    .expect("json");
    let (endpoint, _) = hub_server(vec![
        ("/api/datasets/o/d/tree/v1?recursive=true".into(), 200, tree),
        ("/datasets/o/d/resolve/v1/a.jsonl".into(), 200, body),
    ]);
    let error = stage_dataset(
        &Source::Hub {
            repo: "o/d".into(),
            revision: "v1".into(),
        },
        &Hub {
            endpoint,
            token: None,
        },
        dir.path(),
        &crate::LockOptions::default(),
    )
    .expect_err("checksum");
    assert!(
        matches!(error, Error::Checksum { what: "sha256", .. }),
        "{error}"
    );
    assert!(!dir.path().join("a.jsonl").exists());
}

#[test]
fn staging_from_local_directories_copies_and_records_checksums() {
    use crate::stage::{Hub, Source, stage_dataset, stage_tokenizer};
    let dir = tempfile::tempdir().expect("tempdir");
    let tok_dir = trained(dir.path());
    let hub = Hub {
        endpoint: "http://127.0.0.1:9".into(),
        token: None,
    };
    let target = dir.path().join("shared/llama7b_tokenizer");
    let report = stage_tokenizer(
        &Source::Local(vec![path_str(&tok_dir)]),
        &hub,
        &target,
        &crate::LockOptions::default(),
    )
    .expect("stage");
    assert_eq!(
        report.files.len(),
        2,
        "tokenizer.json and tokenizer_config.json"
    );
    let again = stage_tokenizer(
        &Source::Local(vec![path_str(&tok_dir)]),
        &hub,
        &target,
        &crate::LockOptions::default(),
    )
    .expect("again");
    assert_eq!((again.skipped, again.transferred), (2, 0));
    assert!(Tokenizer::from_path(&target, Mode::Nemo, true).is_ok());
    let src = dir.path().join("src");
    fs_err::create_dir_all(&src).expect("mkdir");
    fs_err::write(src.join("b.jsonl"), "{\"text\": \"b\"}\n").expect("write");
    fs_err::write(src.join("a.jsonl"), "{\"text\": \"a\"}\n").expect("write");
    let data = dir.path().join("shared/data/sample");
    let report = stage_dataset(
        &Source::Local(vec![path_str(&src)]),
        &hub,
        &data,
        &crate::LockOptions::default(),
    )
    .expect("data");
    assert_eq!(
        report
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        ["a.jsonl", "b.jsonl"]
    );
    assert_eq!(report.files[0].sha256, sha256_hex(b"{\"text\": \"a\"}\n"));
}
