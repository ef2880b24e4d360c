//! `cargo bench -p pipeline --bench tokenize -- INPUT TOKENIZER_DIR [WORKERS] [nemo|megatron]`:
//! tokenizes a JSONL file and prints MB/s, tokens/s and peak memory (VmHWM). Without arguments
//! it prints how to get the bench corpus and tokenizer, and exits.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use pipeline::{Mode, NoProgress, TokenizeConfig, Tokenizer, tokenize};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 2 {
        println!(
            "usage: cargo bench -p pipeline --bench tokenize -- INPUT TOKENIZER_DIR [WORKERS] [nemo|megatron]\n\
             corpus: /work/shared/bench/make-corpus --size-mb 100 --seed 1234 --out FILE\n\
             tokenizer: /work/shared/bench/get-llama2-tokenizer DIR"
        );
        return;
    }
    if args.get(2).map(String::as_str) == Some("verify") {
        verify(
            &args[0],
            &args[1],
            args.get(3).map(String::as_str) == Some("megatron"),
        );
        return;
    }
    let workers = args.get(2).and_then(|w| w.parse().ok()).unwrap_or(2);
    let mode = match args.get(3).map(String::as_str) {
        Some("megatron") => Mode::Megatron,
        _ => Mode::Nemo,
    };
    let tokenizer =
        Tokenizer::from_path(args[1].as_ref(), mode, mode == Mode::Nemo).expect("tokenizer");
    let out = std::env::temp_dir().join(format!("trnkit-bench-{}", std::process::id()));
    let mut config = TokenizeConfig::new(vec![args[0].clone()], out.join("bench"));
    config.workers = workers;
    config.mode = mode;
    let start = Instant::now();
    let report = tokenize(&config, &tokenizer, &NoProgress).expect("tokenize");
    let secs = start.elapsed().as_secs_f64();
    let status = fs_err::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?")
        .to_owned();
    println!(
        "engine={:?} workers={workers} mode={mode} docs={} tokens={} bytes={} secs={secs:.2} MB/s={:.1} tokens/s={:.0} {hwm}",
        report.engine,
        report.documents,
        report.tokens,
        report.bytes,
        report.bytes as f64 / 1e6 / secs,
        report.tokens as f64 / secs
    );
    let _ = fs_err::remove_dir_all(&out);
}

/// Compares the fast encoder with the reference on every document of a JSONL file.
fn verify(input: &str, tokenizer_dir: &str, megatron: bool) {
    let mode = if megatron { Mode::Megatron } else { Mode::Nemo };
    let tokenizer =
        Tokenizer::from_path(tokenizer_dir.as_ref(), mode, !megatron).expect("tokenizer");
    assert_eq!(
        tokenizer.engine(),
        pipeline::Engine::Fast,
        "{:?}",
        tokenizer.fallback_reason()
    );
    let mut encoder = tokenizer.encoder();
    let text = fs_err::read_to_string(input).expect("input");
    let (mut docs, mut fast_secs, mut reference_secs) = (0, 0.0, 0.0);
    for line in text.lines() {
        let fields = pipeline::json::extract_fields(line, &["text".to_owned()]).expect("json");
        let pipeline::json::Field::Text(doc) = &fields[0] else {
            panic!("no text")
        };
        let t = Instant::now();
        let mut fast = Vec::new();
        encoder.encode(doc, &mut fast).expect("fast");
        fast_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let reference = tokenizer.encode_reference(doc).expect("reference");
        reference_secs += t.elapsed().as_secs_f64();
        assert_eq!(fast, reference, "document {docs} differs");
        docs += 1;
    }
    println!(
        "verified {docs} documents: identical ids; fast {fast_secs:.2}s, reference {reference_secs:.2}s (one thread)"
    );
}
