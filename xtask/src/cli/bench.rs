//! `cargo xtask bench`: benchmarks that print figures.
//!
//! `bench tokenize` runs the real tokenization of a JSONL file into a temporary directory and
//! prints MB/s, tokens/s and the peak resident memory of this process (`VmHWM`). Build in release
//! for meaningful numbers: `cargo run --release -p xtask --bin xtask -- bench tokenize ...`.

use std::path::PathBuf;

use anyhow::Context;
use pipeline::{Engine, Mode, NoProgress, TokenizeConfig, Tokenizer};

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tokenize a JSONL file and print MB/s, tokens/s and peak memory.
    ///
    /// Corpus: shared/bench/make-corpus --size-mb 100 --seed 1234 --out FILE.
    /// Tokenizer: shared/bench/get-llama2-tokenizer DIR.
    Tokenize {
        /// The JSONL file (or glob).
        #[arg(long, value_name = "FILE")]
        input: String,
        /// The tokenizer directory.
        #[arg(long, value_name = "DIR")]
        tokenizer: PathBuf,
        /// Encoding threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// megatron or nemo semantics (nemo adds `<pad>` as the blueprint's --need-pad-id does).
        #[arg(long, value_enum, default_value = "nemo")]
        mode: super::tokenize::ModeArg,
        /// Use the `tokenizers` crate's encoder instead of the fast path (for comparison).
        #[arg(long)]
        reference: bool,
        /// Also check, document by document, that the fast path's ids equal the reference's
        /// (single-threaded; slow).
        #[arg(long)]
        verify: bool,
    },
}

fn peak_memory_kib() -> Option<u64> {
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(command: Command, _global: &Global) -> anyhow::Result<()> {
    let Command::Tokenize {
        input,
        tokenizer,
        workers,
        mode,
        reference,
        verify,
    } = command;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mode = match mode {
            super::tokenize::ModeArg::Nemo => Mode::Nemo,
            super::tokenize::ModeArg::Megatron => Mode::Megatron,
        };
        let load = std::time::Instant::now();
        let mut tok = Tokenizer::from_path(&tokenizer, mode, mode == Mode::Nemo)
            .with_context(|| format!("loading {}", tokenizer.display()))?;
        let load = load.elapsed();
        if reference {
            tok.force_reference();
        }
        if verify {
            verify_ids(&input, &tok)?;
        }
        let out = std::env::temp_dir().join(format!("trnkit-bench-{}", std::process::id()));
        let mut config = TokenizeConfig::new(vec![input.clone()], out.join("bench"));
        config.workers = workers;
        config.mode = mode;
        config.append_eod = true;
        let report = pipeline::tokenize(&config, &tok, &NoProgress).context("tokenizing");
        let _ = fs_err::remove_dir_all(&out);
        let report = report?;
        let secs = report.elapsed.as_secs_f64();
        println!("input        {input} ({:.1} MB)", report.bytes as f64 / 1e6);
        println!(
            "tokenizer    {} (loaded in {:.2}s), {mode} mode, {:?} encoder",
            tokenizer.display(),
            load.as_secs_f64(),
            report.engine
        );
        if let Some(reason) = tok
            .fallback_reason()
            .filter(|_| report.engine == Engine::Reference)
        {
            println!("             reference because: {reason}");
        }
        println!("workers      {workers}");
        println!("documents    {}", report.documents);
        println!("tokens       {}", report.tokens);
        println!("time         {secs:.2}s");
        println!(
            "throughput   {:.1} MB/s, {:.0} tokens/s",
            report.bytes as f64 / 1e6 / secs,
            report.tokens as f64 / secs
        );
        match peak_memory_kib() {
            Some(kib) => println!("peak memory  {:.0} MB (VmHWM)", kib as f64 / 1024.0),
            None => println!("peak memory  unknown (no /proc/self/status)"),
        }
        Ok(())
    })
    .await
    .context("the bench thread failed")?
}

fn verify_ids(input: &str, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    let text = fs_err::read_to_string(input)?;
    let mut encoder = tokenizer.encoder();
    let keys = ["text".to_owned()];
    let mut documents = 0u64;
    for (number, line) in text.lines().enumerate() {
        let fields = pipeline::json::extract_fields(line, &keys).map_err(|e| {
            anyhow::anyhow!("{input}:{}:{}: {}", number + 1, e.column(line), e.message)
        })?;
        let pipeline::json::Field::Text(doc) = &fields[0] else {
            continue;
        };
        let mut ids = Vec::new();
        encoder
            .encode(doc, &mut ids)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let expected = tokenizer
            .encode_reference(doc)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            ids == expected,
            "line {}: the fast ids differ from the reference",
            number + 1
        );
        documents += 1;
    }
    println!("verify       {documents} documents: fast ids == reference ids");
    Ok(())
}
