//! The local profile's sample data: a small RedPajama-shaped corpus and a tokenizer trained on
//! it, so the real pipeline runs end to end with nothing downloaded.
//!
//! Deterministic: the same seed gives byte-identical files, so re-runs find them up to date.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "model",
    "training",
    "neuron",
    "cluster",
    "compile",
    "graph",
    "tensor",
    "parallel",
    "gradient",
    "optimizer",
    "dataset",
    "token",
    "sequence",
    "batch",
    "learning",
    "rate",
    "layer",
    "attention",
    "memory",
    "device",
    "node",
    "river",
    "mountain",
    "history",
    "village",
    "music",
    "science",
    "language",
    "market",
    "winter",
    "garden",
    "question",
    "answer",
    "theorem",
    "proof",
    "function",
    "variable",
    "energy",
    "network",
    "protocol",
    "system",
];
const SETS: &[&str] = &[
    "common_crawl",
    "c4",
    "github",
    "wikipedia",
    "book",
    "arxiv",
    "stackexchange",
];

/// A small deterministic generator (SplitMix64), so the sample needs no RNG dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn document(rng: &mut SplitMix) -> String {
    let sentences = 1 + rng.below(12);
    let mut text = String::new();
    for index in 0..sentences {
        if index > 0 {
            text.push_str(if rng.below(5) == 0 { "\n\n" } else { " " });
        }
        let words = 4 + rng.below(16);
        for word_index in 0..words {
            let word = WORDS[rng.below(WORDS.len())];
            if word_index == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    text.extend(first.to_uppercase());
                    text.push_str(chars.as_str());
                }
            } else {
                text.push(' ');
                text.push_str(word);
            }
            if rng.below(40) == 0 {
                text.push_str(&format!(" {}", rng.below(10_000)));
            }
        }
        text.push(if rng.below(6) == 0 { '?' } else { '.' });
    }
    if rng.below(50) == 0 {
        text.push_str(" Unicode: naïve café, 東京, emoji 🚀, math ∑x².");
    }
    text
}

/// Writes `files` JSONL files of `documents_per_file` documents each into `dir`
/// (`sample_<i>.jsonl`, each written to a temporary name and renamed), shaped like
/// RedPajama-Data-1T-Sample: `{"text": ..., "meta": {...}}`. One document is empty, as real
/// corpora have some. Returns the files in order.
pub fn write_corpus(
    dir: &Path,
    files: usize,
    documents_per_file: usize,
    seed: u64,
) -> anyhow::Result<Vec<PathBuf>> {
    fs_err::create_dir_all(dir)?;
    let mut rng = SplitMix(seed);
    let mut paths = Vec::new();
    for file in 0..files {
        let path = dir.join(format!("sample_{file}.jsonl"));
        let mut text = String::new();
        for index in 0..documents_per_file {
            let body = if file == 0 && index == 3 {
                String::new()
            } else {
                document(&mut rng)
            };
            let line = serde_json::json!({
                "text": body,
                "meta": { "redpajama_set_name": SETS[rng.below(SETS.len())], "source": "trnkit-sample", "index": index },
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        crate::files::write_atomic(&path, text)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Trains a small Llama-style BPE tokenizer (metaspace, `<unk>`/`<s>`/`</s>`, BOS added by the
/// post-processor) on `corpus` and saves it as `dir/tokenizer.json` plus a
/// `tokenizer_config.json`, the two files `save_pretrained` would write.
pub fn train_tokenizer(corpus: &[PathBuf], dir: &Path, vocab_size: usize) -> anyhow::Result<()> {
    fs_err::create_dir_all(dir)?;
    let special = ["<unk>", "<s>", "</s>"];
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            special
                .iter()
                .map(|token| AddedToken::from(*token, true))
                .collect(),
        )
        .build();
    let model = BPE::builder()
        .unk_token("<unk>".to_owned())
        .build()
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, true)));
    tokenizer.with_decoder(Some(tokenizers::decoders::metaspace::Metaspace::new(
        '▁',
        PrependScheme::First,
        true,
    )));
    let files: Vec<String> = corpus
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    // The trainer reads the files as plain text; the JSON punctuation it sees is harmless for a
    // demo vocabulary.
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer
        .train_from_files(&mut trainer, files)
        .map_err(|error| anyhow::anyhow!("training the sample tokenizer failed: {error}"))?;
    let bos = tokenizer
        .token_to_id("<s>")
        .context("the trained vocabulary has no <s>")?;
    let processor = TemplateProcessing::builder()
        .try_single("<s> $A")
        .map_err(|error| anyhow::anyhow!("{error}"))?
        .special_tokens(vec![("<s>", bos)])
        .build()
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    tokenizer.with_post_processor(Some(processor));
    let path = dir.join("tokenizer.json");
    let temporary = dir.join("tokenizer.json.tmp");
    tokenizer
        .save(&temporary, true)
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", temporary.display()))?;
    fs_err::rename(&temporary, &path)?;
    let config = serde_json::json!({
        "tokenizer_class": "LlamaTokenizerFast",
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": true, "add_eos_token": false,
        "model_max_length": 4096,
    });
    fs_err::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    Ok(())
}
