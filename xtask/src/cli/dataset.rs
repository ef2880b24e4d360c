//! `cargo xtask dataset` (and `trnkit-stage dataset`): inspect and merge Megatron indexed
//! datasets (`PREFIX.bin` + `PREFIX.idx`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use pipeline::IndexReader;

use super::Global;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print the header, counts and token statistics of a dataset, and verify it: file sizes,
    /// pointers against lengths, and a document index that starts at 0 and ends at the sequence
    /// count. Exits non-zero when the dataset is inconsistent.
    ///
    /// Example: `cargo xtask dataset inspect /shared/data/redpajama_sample_text_document -o json`
    Inspect {
        /// The dataset prefix (without .bin/.idx), e.g. /shared/data/redpajama_sample_text_document.
        prefix: PathBuf,
        /// `-o json|yaml`: one document with `prefix`, `version`, `dtype`, `dtype_code`,
        /// `sequences`, `documents`, `idx_bytes` and `report` (`tokens`, `bin_len`,
        /// `empty_documents`, `min_document_tokens`, `max_document_tokens`, `problems`).
        #[command(flatten)]
        output: super::output::OutputArgs,
    },
    /// Merge datasets into one, in the order given (shards: 0..N-1); the result equals a single
    /// run over the concatenated inputs. The parts are checked first, and files are compared by
    /// identity: an output that is one of the parts (however spelled) is refused. The output
    /// and the parts are locked ({prefix}.lock) while the merge runs.
    ///
    /// Example: `cargo xtask dataset merge --output data/corpus_text_document
    /// data/corpus.shard-0-of-2_text_document data/corpus.shard-1-of-2_text_document`
    Merge {
        /// The output prefix.
        #[arg(long, value_name = "PREFIX")]
        output: PathBuf,
        /// The dataset prefixes to merge, in order.
        #[arg(required = true, value_name = "PREFIX")]
        parts: Vec<PathBuf>,
        /// Delete the parts' .bin and .idx once the merged dataset is complete and verified
        /// against the parts' counts (deploy's merge Job does, so the shards do not double the
        /// space the dataset takes on FSx).
        #[arg(long)]
        remove_parts: bool,
        /// When another run holds the output's or a part's lock, wait for it to end instead of
        /// failing at once.
        #[arg(long)]
        wait: bool,
    },
    /// Print one JSON line `{"datasets":[{"prefix", "idx_sha256", "bin_bytes", "documents",
    /// "tokens"}, ...], "tokenizer": {file: sha256}, "checkout_commit": "..."}` for the given
    /// datasets (after verifying each), the tokenizer directory's files and the training-code
    /// checkout's commit; exits non-zero when one is missing or inconsistent. Deploy's
    /// dataset-check Job runs it to decide whether what staging left on the shared file system
    /// is still there, unchanged.
    ///
    /// Example: `cargo xtask dataset fingerprint /shared/data/redpajama_sample_text_document`
    Fingerprint {
        /// The tokenizer directory: each file's SHA-256 is printed too.
        #[arg(long, value_name = "DIR")]
        tokenizer: Option<PathBuf>,
        /// The training code's git checkout: its commit (HEAD) is printed too.
        #[arg(long, value_name = "DIR")]
        checkout: Option<PathBuf>,
        /// The dataset prefixes.
        #[arg(required = true, value_name = "PREFIX")]
        prefixes: Vec<PathBuf>,
    },
}

pub async fn run(command: Command, _global: &Global) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(command))
        .await
        .context("the dataset thread failed")?
}

fn run_blocking(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Inspect { prefix, output } => {
            let index = IndexReader::open(&prefix)
                .with_context(|| format!("opening {}", prefix.display()))?;
            let report = index
                .verify()
                .with_context(|| format!("reading {}", prefix.display()))?;
            let documents = index.doc_entries.saturating_sub(1);
            let document = serde_json::json!({
                "prefix": prefix,
                "version": pipeline::indexed::VERSION,
                "dtype": index.dtype.name(),
                "dtype_code": index.dtype.code(),
                "sequences": index.sequences,
                "documents": documents,
                "idx_bytes": index.idx_len,
                "report": report,
            });
            super::output::emit(output.format(), &document, || {
                out!("dataset      {}", prefix.display());
                out!(
                    "format       MMIDIDX version {}",
                    pipeline::indexed::VERSION
                );
                out!(
                    "dtype        {} (code {})",
                    index.dtype.name(),
                    index.dtype.code()
                );
                out!("sequences    {}", index.sequences);
                out!(
                    "documents    {} ({} empty)",
                    documents,
                    report.empty_documents
                );
                out!("tokens       {}", report.tokens);
                if documents > 0 {
                    out!(
                        "per document min {} / mean {:.1} / max {} tokens",
                        report.min_document_tokens,
                        report.tokens as f64 / documents as f64,
                        report.max_document_tokens
                    );
                }
                out!(
                    "files        .idx {} bytes, .bin {} bytes",
                    index.idx_len,
                    report.bin_len
                );
                if report.problems.is_empty() {
                    out!("consistent   yes");
                }
            })?;
            if !report.problems.is_empty() {
                for problem in &report.problems {
                    eprintln!("problem: {problem}");
                }
                bail!(
                    "{} is inconsistent ({} problem(s))",
                    prefix.display(),
                    report.problems.len()
                );
            }
            Ok(())
        }
        Command::Fingerprint {
            tokenizer,
            checkout,
            prefixes,
        } => {
            let fingerprints = crate::checks::fingerprint_staging(
                &prefixes,
                tokenizer.as_deref(),
                checkout.as_deref(),
            )?;
            println!("{}", serde_json::to_string(&fingerprints)?);
            Ok(())
        }
        Command::Merge {
            output,
            parts,
            remove_parts,
            wait,
        } => {
            let options = pipeline::MergeOptions {
                remove_parts,
                lock: super::tokenize::lock_options(wait),
            };
            let report = pipeline::merge_with(&parts, &output, &options)
                .with_context(|| format!("merging into {}", output.display()))?;
            let summary = &report.summary;
            eprintln!(
                "merged {} dataset(s) into {}: {} documents, {} sequences, {} tokens ({})",
                parts.len(),
                output.display(),
                summary.documents,
                summary.sequences,
                summary.tokens,
                summary.dtype.name()
            );
            if remove_parts {
                eprintln!(
                    "removed the {} merged part(s) after verifying the result",
                    report.removed.len()
                );
            }
            Ok(())
        }
    }
}
