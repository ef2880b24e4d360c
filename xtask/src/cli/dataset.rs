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
    Inspect {
        /// The dataset prefix (without .bin/.idx), e.g. /shared/data/redpajama_sample_text_document.
        prefix: PathBuf,
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Merge datasets into one, in the order given (shards: 0..N-1); the result equals a single
    /// run over the concatenated inputs. The parts are checked first, and files are compared by
    /// identity: an output that is one of the parts (however spelled) is refused. The output
    /// and the parts are locked ({prefix}.lock) while the merge runs.
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
    /// "tokens"}, ...]}` for the given datasets, after verifying each; exits non-zero when one is
    /// missing or inconsistent. Deploy's dataset-check Job runs it to decide whether the
    /// tokenized data on the shared file system is still what staging recorded.
    Fingerprint {
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
        Command::Inspect { prefix, json } => {
            let index = IndexReader::open(&prefix)
                .with_context(|| format!("opening {}", prefix.display()))?;
            let report = index
                .verify()
                .with_context(|| format!("reading {}", prefix.display()))?;
            let documents = index.doc_entries.saturating_sub(1);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "prefix": prefix,
                        "version": pipeline::indexed::VERSION,
                        "dtype": index.dtype.name(),
                        "dtype_code": index.dtype.code(),
                        "sequences": index.sequences,
                        "documents": documents,
                        "idx_bytes": index.idx_len,
                        "report": report,
                    }))?
                );
            } else {
                println!("dataset      {}", prefix.display());
                println!(
                    "format       MMIDIDX version {}",
                    pipeline::indexed::VERSION
                );
                println!(
                    "dtype        {} (code {})",
                    index.dtype.name(),
                    index.dtype.code()
                );
                println!("sequences    {}", index.sequences);
                println!(
                    "documents    {} ({} empty)",
                    documents, report.empty_documents
                );
                println!("tokens       {}", report.tokens);
                if documents > 0 {
                    println!(
                        "per document min {} / mean {:.1} / max {} tokens",
                        report.min_document_tokens,
                        report.tokens as f64 / documents as f64,
                        report.max_document_tokens
                    );
                }
                println!(
                    "files        .idx {} bytes, .bin {} bytes",
                    index.idx_len, report.bin_len
                );
                if report.problems.is_empty() {
                    println!("consistent   yes");
                }
            }
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
        Command::Fingerprint { prefixes } => {
            let datasets = prefixes
                .iter()
                .map(|prefix| crate::checks::fingerprint(prefix))
                .collect::<anyhow::Result<Vec<_>>>()?;
            println!(
                "{}",
                serde_json::to_string(&crate::checks::Fingerprints { datasets })?
            );
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
