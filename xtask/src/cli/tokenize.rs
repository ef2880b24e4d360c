//! `cargo xtask tokenize` (and `trnkit-stage tokenize`): JSONL into Megatron's indexed dataset
//! format, accepting the flag names of Megatron-LM's `tools/preprocess_data.py` and NeMo's
//! `preprocess_data_for_megatron.py`, so that an existing command can be pasted.
//!
//! The argument types here are shared with the standalone `trnkit-stage` binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::{
    LockOptions, Mode, Progress, ProgressUpdate, Shard, TokenizeConfig, TokenizeReport, Tokenizer,
};

use super::Global;

/// Semantics to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// NeMo's preprocess_data_for_megatron.py (the blueprint's tool): no BOS, empty documents
    /// skipped.
    Nemo,
    /// Megatron-LM's tools/preprocess_data.py: BOS from the tokenizer's post-processor, empty
    /// documents kept, list values as pre-split sentences.
    Megatron,
}

/// Tokenize JSONL into Megatron's indexed dataset format (`{prefix}_{key}_document.bin/.idx`).
///
/// Accepts Megatron-LM's and NeMo's flag names. Output is byte-identical to the reference tool of
/// the chosen `--mode`, whatever `--workers` is, and is written under temporary names that are
/// renamed only when complete.
///
/// Examples:
///   cargo xtask tokenize --input=/shared/redpajama_sample.jsonl --json-keys=text
///     --tokenizer-library=huggingface --tokenizer-type=/shared/llama7b_tokenizer --dataset-impl=mmap
///     --output-prefix=/shared/data/redpajama_sample --append-eod --need-pad-id --workers=32
///   cargo xtask tokenize --input 'data/*.jsonl.zst' --tokenizer-type HuggingFaceTokenizer
///     --tokenizer-model tok/ --output-prefix out/corpus --append-eod --workers 2
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Input JSONL: files, directories or globs (repeat the flag or give several). Taken in sorted
    /// order; plain, .gz or .zst.
    #[arg(long, required = true, num_args = 1.., value_name = "PATH")]
    pub input: Vec<String>,
    /// Output prefix: writes {prefix}_{key}_document.bin and .idx for each key.
    #[arg(long, value_name = "PREFIX")]
    pub output_prefix: PathBuf,
    /// JSON keys to tokenize, each into its own dataset.
    #[arg(long, num_args = 1.., default_value = "text", value_name = "KEY")]
    pub json_keys: Vec<String>,
    /// nemo (default) or megatron semantics. Inferred as megatron when --tokenizer-type is
    /// HuggingFaceTokenizer (Megatron's spelling), nemo otherwise.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Append the tokenizer's EOS id to every non-empty document.
    #[arg(long)]
    pub append_eod: bool,
    /// NeMo: add a `<pad>` special token when the tokenizer has none (the vocabulary grows by one;
    /// literal `<pad>` in text becomes that token).
    #[arg(long)]
    pub need_pad_id: bool,
    /// Encoding threads; the output does not depend on it. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// The tokenizer directory (holding tokenizer.json). Same as NeMo's --tokenizer-type DIR or
    /// Megatron's --tokenizer-model DIR.
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<PathBuf>,
    /// NeMo: the tokenizer directory. Megatron: `HuggingFaceTokenizer` (the directory is then
    /// --tokenizer-model).
    #[arg(long, value_name = "DIR|TYPE")]
    pub tokenizer_type: Option<String>,
    /// Megatron: the tokenizer directory.
    #[arg(long, value_name = "DIR")]
    pub tokenizer_model: Option<PathBuf>,
    /// NeMo: only `huggingface` is supported.
    #[arg(long, value_name = "LIBRARY")]
    pub tokenizer_library: Option<String>,
    /// Only `mmap` (the format training reads) is supported.
    #[arg(long, value_name = "IMPL")]
    pub dataset_impl: Option<String>,
    /// Megatron: accepted for compatibility; progress is shown as a bar instead.
    #[arg(long, value_name = "N", hide = true)]
    pub log_interval: Option<u64>,
    /// Megatron: only 1 is supported (more partitions reorder documents).
    #[arg(long, value_name = "P", hide = true)]
    pub partitions: Option<u32>,
    /// Not supported (sentence splitting needs NLTK's punkt data).
    #[arg(long, hide = true)]
    pub split_sentences: bool,
    /// Tokenize only part I (0-based) of N equal byte ranges of the input, for parallel pods;
    /// join the parts with `dataset merge` in order 0..N-1.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Skip malformed lines (bad JSON, missing key, invalid UTF-8) and lines over
    /// --max-line-bytes, count and report them, instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// The longest input line accepted, in bytes (default 64 MiB, well above the longest
    /// documents of the blueprint's corpora); a longer line stops the run with its file and line
    /// number (or, with --skip-bad-lines, is read past and counted), so a corrupt file cannot
    /// exhaust memory.
    #[arg(long, value_name = "BYTES", default_value_t = pipeline::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// When another run writes the same output ({prefix}_{key}_document.lock is held), wait for
    /// it to end instead of failing at once.
    #[arg(long)]
    pub wait: bool,
    /// `-o json|yaml` prints the report on stdout as one document: `files`, `shard`, `lines`,
    /// `documents`, `skipped_empty`, `bad_lines`, `bad_line_samples`, `tokens`, `bytes`,
    /// `elapsed_seconds`, `engine` and `outputs` (one per key: `prefix`, `documents`,
    /// `sequences`, `tokens`, `dtype`). The summary for people goes to stderr either way.
    #[command(flatten)]
    pub output: super::output::OutputArgs,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// The tokenizer directory and mode resolved from Megatron's or NeMo's flags.
pub fn resolve(args: &Args) -> anyhow::Result<(PathBuf, Mode)> {
    if let Some(library) = &args.tokenizer_library
        && !library.eq_ignore_ascii_case("huggingface")
    {
        bail!("--tokenizer-library {library}: only `huggingface` is supported");
    }
    if let Some(dataset_impl) = &args.dataset_impl
        && dataset_impl != "mmap"
    {
        bail!(
            "--dataset-impl {dataset_impl}: only `mmap` is supported (it is what training reads)"
        );
    }
    if args.split_sentences {
        bail!("--split-sentences is not supported; tokenize whole documents (the blueprint does)");
    }
    if args.partitions.is_some_and(|p| p != 1) {
        bail!(
            "--partitions other than 1 reorders documents and is not supported; use --shard I/N and `dataset merge`"
        );
    }
    let megatron_type = args.tokenizer_type.as_deref() == Some("HuggingFaceTokenizer");
    let dir = match (&args.tokenizer, &args.tokenizer_type, &args.tokenizer_model) {
        (Some(dir), _, _) => dir.clone(),
        (None, _, Some(model)) => model.clone(),
        (None, Some(ty), None) if !megatron_type => PathBuf::from(ty),
        _ => bail!(
            "give the tokenizer directory: --tokenizer DIR (or NeMo's --tokenizer-type DIR, or Megatron's --tokenizer-model DIR)"
        ),
    };
    let mode = match args.mode {
        Some(ModeArg::Nemo) => Mode::Nemo,
        Some(ModeArg::Megatron) => Mode::Megatron,
        None if megatron_type => {
            tracing::info!(
                "--tokenizer-type HuggingFaceTokenizer: using Megatron's semantics (--mode megatron)"
            );
            Mode::Megatron
        }
        None => Mode::Nemo,
    };
    Ok((dir, mode))
}

/// Builds the library configuration.
pub fn config(args: &Args, mode: Mode) -> TokenizeConfig {
    let mut config = TokenizeConfig::new(args.input.clone(), args.output_prefix.clone());
    config.json_keys = args.json_keys.clone();
    config.mode = mode;
    config.append_eod = args.append_eod;
    if let Some(workers) = args.workers {
        config.workers = workers.max(1);
    }
    config.shard = args.shard.unwrap_or(Shard::ALL);
    config.skip_bad_lines = args.skip_bad_lines;
    config.max_line_bytes = args.max_line_bytes;
    config.lock = lock_options(args.wait);
    config
}

/// How this process takes output locks: its command line names it to other runs.
pub fn lock_options(wait: bool) -> LockOptions {
    LockOptions {
        wait,
        command: std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A progress bar: bytes, documents, MB/s and ETA.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar on stderr, hidden when `hidden`.
    pub fn new(hidden: bool) -> Self {
        let bar = if hidden {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn update(&self, update: &ProgressUpdate) -> bool {
        if self.0.length() != Some(update.total_bytes) {
            self.0.set_length(update.total_bytes);
        }
        self.0
            .set_position(update.bytes.min(update.total_bytes.max(update.bytes)));
        self.0.set_message(format!(
            "{} docs, {} tokens",
            update.documents, update.tokens
        ));
        true
    }
}

/// Prints the human summary of a report on stderr.
pub fn print_report(report: &TokenizeReport) {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "tokenized {} lines ({} documents, {} empty skipped) from {} file(s), shard {}: {} tokens, {:.1} MB in {:.1}s = {:.1} MB/s, {:.0} tokens/s ({:?} encoder)",
        report.lines,
        report.documents,
        report.skipped_empty,
        report.files.len(),
        report.shard,
        report.tokens,
        report.bytes as f64 / 1e6,
        secs,
        report.bytes as f64 / 1e6 / secs,
        report.tokens as f64 / secs,
        report.engine,
    );
    if report.bad_lines > 0 {
        eprintln!(
            "skipped {} malformed line(s); the first ones:",
            report.bad_lines
        );
        for sample in &report.bad_line_samples {
            eprintln!("  {sample}");
        }
    }
    for output in &report.outputs {
        eprintln!(
            "wrote {}.bin/.idx: {} documents, {} sequences, {} tokens ({})",
            output.prefix.display(),
            output.documents,
            output.sequences,
            output.tokens,
            output.dtype.name()
        );
    }
}

/// Loads the tokenizer and runs the tokenization on a blocking thread.
pub async fn tokenize(args: Args) -> anyhow::Result<TokenizeReport> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<TokenizeReport> {
        let (dir, mode) = resolve(&args)?;
        let tokenizer = Tokenizer::from_path(&dir, mode, args.need_pad_id)
            .with_context(|| format!("loading the tokenizer from {}", dir.display()))?;
        if let Some(reason) = tokenizer.fallback_reason() {
            tracing::warn!("using the reference encoder (slower): {reason}");
        }
        let config = config(&args, mode);
        let bar = Bar::new(args.no_progress);
        let report = pipeline::tokenize(&config, &tokenizer, &bar);
        bar.finish();
        report.with_context(|| format!("tokenizing {}", args.input.join(" ")))
    })
    .await
    .context("the tokenizer thread failed")?
}

pub async fn run(args: Args, _global: &Global) -> anyhow::Result<()> {
    let format = args.output.format();
    let report = tokenize(args).await?;
    print_report(&report);
    super::output::emit(format, &report, || {})
}

/// Stage the tokenizer and the dataset into a directory laid out like the blueprint's `/shared`:
/// `{target}/llama7b_tokenizer/`, `{target}/data/{dataset}/`, and optionally the merged
/// `{target}/{merged}` (the blueprint's `cat *.jsonl`). Downloads resume and are checksummed;
/// a rerun skips what is complete.
#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// The directory to stage into (the shared volume's mount, e.g. /shared).
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// The tokenizer: a local directory, or a Hub model repository `owner/name`
    /// (e.g. meta-llama/Llama-2-7b-hf, a gated repository: accept its license first).
    #[arg(long, value_name = "DIR|REPO")]
    pub tokenizer: Option<String>,
    /// Revision of the tokenizer repository.
    #[arg(long, default_value = "main")]
    pub tokenizer_revision: String,
    /// Directory name of the staged tokenizer under the target.
    #[arg(long, default_value = "llama7b_tokenizer")]
    pub tokenizer_dir_name: String,
    /// The dataset: local files, directories or globs, or a Hub dataset repository `owner/name`
    /// (e.g. togethercomputer/RedPajama-Data-1T-Sample).
    #[arg(long, num_args = 1.., value_name = "PATH|REPO")]
    pub dataset: Vec<String>,
    /// Revision of the dataset repository.
    #[arg(long, default_value = "main")]
    pub dataset_revision: String,
    /// Also write the concatenation of the dataset's files, in sorted order, to this file
    /// under the target (the blueprint writes redpajama_sample.jsonl). Tokenizing the staged
    /// files directly gives the same result without the copy.
    #[arg(long, value_name = "FILE")]
    pub merge_to: Option<PathBuf>,
    /// The Hub endpoint.
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub hf_endpoint: String,
    /// When another run stages into the same directory or file (its `.lock` is held), wait for
    /// it to end instead of failing at once.
    #[arg(long)]
    pub wait: bool,
}

fn looks_like_repo(value: &str) -> bool {
    !std::path::Path::new(value).exists()
        && value.split('/').count() == 2
        && !value.starts_with('.')
        && !value.contains('*')
}

/// The HF token from `HF_TOKEN`, or the file `huggingface-cli login` writes.
fn hf_token() -> Option<String> {
    if let Ok(token) = std::env::var("HF_TOKEN")
        && !token.trim().is_empty()
    {
        return Some(token.trim().to_owned());
    }
    let path = match std::env::var_os("HF_TOKEN_PATH") {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HF_HOME").map(PathBuf::from).or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface"))
            })?;
            home.join("token")
        }
    };
    fs_err::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Runs the staging steps.
pub async fn stage(args: StageArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use pipeline::stage::{Hub, Source};
        let hub = Hub {
            endpoint: args.hf_endpoint.trim_end_matches('/').to_owned(),
            token: hf_token(),
        };
        let lock = lock_options(args.wait);
        if let Some(tokenizer) = &args.tokenizer {
            let source = if looks_like_repo(tokenizer) {
                Source::Hub {
                    repo: tokenizer.clone(),
                    revision: args.tokenizer_revision.clone(),
                }
            } else {
                Source::Local(vec![tokenizer.clone()])
            };
            let dir = args.target.join(&args.tokenizer_dir_name);
            let report = pipeline::stage::stage_tokenizer(&source, &hub, &dir, &lock)
                .with_context(|| format!("staging the tokenizer {tokenizer}"))?;
            eprintln!(
                "tokenizer: {} file(s) in {} ({} already complete, {} bytes transferred)",
                report.files.len(),
                dir.display(),
                report.skipped,
                report.transferred
            );
        }
        if !args.dataset.is_empty() {
            let (source, name) = match args.dataset.as_slice() {
                [one] if looks_like_repo(one) => (
                    Source::Hub {
                        repo: one.clone(),
                        revision: args.dataset_revision.clone(),
                    },
                    one.rsplit('/').next().unwrap_or(one).to_owned(),
                ),
                many => (Source::Local(many.to_vec()), "local".to_owned()),
            };
            let dir = args.target.join("data").join(&name);
            let report = pipeline::stage::stage_dataset(&source, &hub, &dir, &lock)
                .with_context(|| format!("staging the dataset {}", args.dataset.join(" ")))?;
            eprintln!(
                "dataset: {} file(s) in {} ({} already complete, {} bytes transferred)",
                report.files.len(),
                dir.display(),
                report.skipped,
                report.transferred
            );
            if let Some(merge_to) = &args.merge_to {
                let files = pipeline::input::expand_inputs(&[dir.to_string_lossy().into_owned()])?;
                let output = args.target.join(merge_to);
                let bytes = pipeline::stage::merge_jsonl_with(&files, &output, &lock)
                    .with_context(|| format!("merging into {}", output.display()))?;
                eprintln!(
                    "merged {} file(s) into {} ({bytes} bytes)",
                    files.len(),
                    output.display()
                );
            }
        }
        Ok(())
    })
    .await
    .context("the staging thread failed")?
}
