//! The tokenization run: JSONL in, one Megatron dataset per JSON key out.
//!
//! Threads: one reader cuts the input into batches of whole lines (about 1 MiB), `workers`
//! threads parse and encode batches, and the calling thread writes results strictly in batch
//! order, so the output does not depend on the number of workers. Channels are bounded, so
//! memory is a few batches per worker plus each worker's piece cache, whatever the input size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::error::{Error, Result};
use crate::indexed::{DType, DatasetSummary, DatasetWriter};
use crate::input::{self, Batch, DEFAULT_MAX_LINE_BYTES, MAX_LINE_BYTES_LIMIT, Shard};
use crate::json::{self, Field};
use crate::lock::{LockOptions, OutputLock};
use crate::tokenizer::{Engine, Mode, Tokenizer};

/// What to tokenize and how.
#[derive(Debug, Clone)]
pub struct TokenizeConfig {
    /// Files, directories or globs; expanded and taken in sorted order. Plain, `.gz` or `.zst`.
    pub inputs: Vec<String>,
    /// Outputs are `{output_prefix}_{key}_document.{bin,idx}`.
    pub output_prefix: PathBuf,
    /// The JSON keys to tokenize, each into its own dataset.
    pub json_keys: Vec<String>,
    /// NeMo or Megatron semantics.
    pub mode: Mode,
    /// Append the EOS id to every non-empty document.
    pub append_eod: bool,
    /// Encoding threads (at least 1).
    pub workers: usize,
    /// Which part of the input this run takes.
    pub shard: Shard,
    /// Skip (and count) malformed lines instead of stopping.
    pub skip_bad_lines: bool,
    /// The longest line accepted, in bytes (at most [`MAX_LINE_BYTES_LIMIT`]); a longer one
    /// stops the run with its file and line. Default: [`DEFAULT_MAX_LINE_BYTES`].
    pub max_line_bytes: usize,
    /// How to take the locks of the output datasets.
    pub lock: LockOptions,
}

impl TokenizeConfig {
    /// A configuration with the blueprint's defaults: key `text`, NeMo mode, EOD appended,
    /// one worker per available core, the whole input, stop on the first bad line.
    pub fn new(inputs: Vec<String>, output_prefix: PathBuf) -> Self {
        TokenizeConfig {
            inputs,
            output_prefix,
            json_keys: vec!["text".into()],
            mode: Mode::Nemo,
            append_eod: true,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shard: Shard::ALL,
            skip_bad_lines: false,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            lock: LockOptions::default(),
        }
    }
}

/// The dataset prefix written for `key`: `{output_prefix}_{key}_document`.
pub fn output_prefix_for_key(output_prefix: &Path, key: &str) -> PathBuf {
    crate::indexed::with_suffix(output_prefix, &format!("_{key}_document"))
}

/// Counters reported while a run progresses.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressUpdate {
    /// Input lines handled so far.
    pub lines: u64,
    /// Documents written so far (over all keys: counted once per line).
    pub documents: u64,
    /// Tokens written so far (all keys).
    pub tokens: u64,
    /// Decompressed input bytes handled so far.
    pub bytes: u64,
    /// On-disk size of the input this run reads (exact progress for uncompressed input).
    pub total_bytes: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// Receives progress; implement it to draw a progress bar or to cancel a run.
pub trait Progress: Sync {
    /// Called after each batch is written. Return `false` to cancel the run (no output is left).
    fn update(&self, update: &ProgressUpdate) -> bool;
}

/// A [`Progress`] that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _: &ProgressUpdate) -> bool {
        true
    }
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenizeReport {
    /// The input files, in the order read.
    pub files: Vec<PathBuf>,
    /// The shard.
    pub shard: Shard,
    /// Lines read (good and bad).
    pub lines: u64,
    /// Documents written per key (empty NeMo documents are not written).
    pub documents: u64,
    /// Documents skipped because they produced no tokens (NeMo mode).
    pub skipped_empty: u64,
    /// Malformed lines skipped with `skip_bad_lines`.
    pub bad_lines: u64,
    /// The first few skipped lines' messages (`file:line:column: message`).
    pub bad_line_samples: Vec<String>,
    /// Tokens written, all keys.
    pub tokens: u64,
    /// Decompressed input bytes read.
    pub bytes: u64,
    /// Wall time; serialized as `elapsed_seconds`, a number of seconds.
    #[serde(rename = "elapsed_seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
    /// The encoder used.
    pub engine: Engine,
    /// One dataset per key.
    pub outputs: Vec<DatasetSummary>,
}

/// A duration as a number of seconds (not serde's `{"secs", "nanos"}`).
fn seconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

const BATCH_BYTES: usize = 1 << 20;
const MAX_BAD_SAMPLES: usize = 20;

/// Per-key output of one batch.
#[derive(Default)]
struct KeyOutput {
    tokens: Vec<u32>,
    sequence_lengths: Vec<u32>,
    /// Sequences per written document (0: a zero-length Megatron document).
    document_sequences: Vec<u32>,
}

struct BatchOutput {
    seq: u64,
    keys: Vec<KeyOutput>,
    lines: u64,
    documents: u64,
    skipped_empty: u64,
    bad: Vec<String>,
    bytes: u64,
}

/// Tokenizes `config.inputs` into Megatron datasets with `tokenizer`.
pub fn tokenize(
    config: &TokenizeConfig,
    tokenizer: &Tokenizer,
    progress: &dyn Progress,
) -> Result<TokenizeReport> {
    let start = Instant::now();
    if config.json_keys.is_empty() {
        return Err(Error::Config("no JSON key given".into()));
    }
    if config.append_eod && tokenizer.eos_id().is_none() {
        return Err(Error::Config(
            "--append-eod needs an EOS token, and the tokenizer has none (eos_token in tokenizer_config.json)".into(),
        ));
    }
    if config.shard.count == 0 || config.shard.index >= config.shard.count {
        return Err(Error::Config(format!(
            "shard {} is out of range",
            config.shard
        )));
    }
    if config.max_line_bytes == 0 || config.max_line_bytes > MAX_LINE_BYTES_LIMIT {
        return Err(Error::Config(format!(
            "max_line_bytes {} is out of range: give 1 to {MAX_LINE_BYTES_LIMIT} bytes",
            config.max_line_bytes
        )));
    }
    let files = input::expand_inputs(&config.inputs)?;
    let sizes = input::input_sizes(&files)?;
    let plan = input::plan_shard(&files, &sizes, config.shard);
    let total_bytes: u64 = plan
        .ranges
        .iter()
        .zip(&sizes)
        .map(|(r, &s)| r.map_or(0, |(a, b)| b.min(s) - a.min(s)))
        .sum();
    let dtype = DType::for_vocab_size(tokenizer.vocab_size());
    let prefixes: Vec<PathBuf> = config
        .json_keys
        .iter()
        .map(|key| output_prefix_for_key(&config.output_prefix, key))
        .collect();
    let mut locks = OutputLock::acquire_all(&prefixes, &config.lock)?;
    let mut writers = prefixes
        .iter()
        .map(|prefix| {
            let at = locks
                .iter()
                .position(|lock| lock.target() == prefix)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "JSON key listed twice: {} would be written twice",
                        prefix.display()
                    ))
                })?;
            DatasetWriter::create_locked(prefix, dtype, locks.swap_remove(at))
        })
        .collect::<Result<Vec<_>>>()?;
    tracing::info!(
        files = files.len(),
        shard = %config.shard,
        engine = ?tokenizer.engine(),
        dtype = dtype.name(),
        workers = config.workers,
        "tokenizing"
    );

    let workers = config.workers.max(1);
    let (batch_tx, batch_rx) = bounded::<Batch>(workers * 2);
    let (out_tx, out_rx) = bounded::<Result<BatchOutput>>(workers * 2);
    let mut totals = ProgressUpdate {
        total_bytes,
        ..ProgressUpdate::default()
    };
    let mut skipped_empty = 0;
    let mut bad_lines = 0;
    let mut bad_line_samples = Vec::new();

    let outcome: Result<()> = std::thread::scope(|scope| {
        let reader = {
            let files = &files;
            let plan = &plan;
            scope.spawn(move || -> Result<()> {
                input::read_all(
                    files,
                    plan,
                    BATCH_BYTES,
                    (config.max_line_bytes, config.skip_bad_lines),
                    |batch| Ok(batch_tx.send(batch).is_ok()),
                    |_, _| {},
                )
            })
        };
        for _ in 0..workers {
            let batch_rx = batch_rx.clone();
            let out_tx = out_tx.clone();
            let files = &files;
            let encoder = tokenizer.encoder();
            scope.spawn(move || worker(config, files, encoder, batch_rx, out_tx));
        }
        drop(batch_rx);
        drop(out_tx);

        // Write in order.
        let write = (|| -> Result<()> {
            let mut pending: BTreeMap<u64, BatchOutput> = BTreeMap::new();
            let mut next = 0u64;
            for result in out_rx.iter() {
                let output = result?;
                pending.insert(output.seq, output);
                while let Some(output) = pending.remove(&next) {
                    next += 1;
                    for (writer, key) in writers.iter_mut().zip(&output.keys) {
                        writer.add_batch(
                            &key.tokens,
                            &key.sequence_lengths,
                            &key.document_sequences,
                        )?;
                        totals.tokens += key.tokens.len() as u64;
                    }
                    totals.lines += output.lines;
                    totals.documents += output.documents;
                    totals.bytes += output.bytes;
                    skipped_empty += output.skipped_empty;
                    bad_lines += output.bad.len() as u64;
                    for message in output.bad {
                        if bad_line_samples.len() < MAX_BAD_SAMPLES {
                            bad_line_samples.push(message);
                        }
                    }
                    totals.elapsed = start.elapsed();
                    if !progress.update(&totals) {
                        return Err(Error::Cancelled);
                    }
                }
            }
            if !pending.is_empty() {
                return Err(Error::Worker("a batch result is missing".into()));
            }
            Ok(())
        })();
        drop(out_rx);
        let read = reader
            .join()
            .map_err(|_| Error::Worker("the reader thread panicked".into()))?;
        // A write error is the root cause when both fail (the reader stops when writing stops).
        write?;
        read
    });
    outcome?;

    if totals.lines == 0 && config.shard.count == 1 {
        return Err(Error::EmptyInput {
            inputs: config.inputs.join(", "),
        });
    }
    if totals.documents == 0
        && totals.lines > 0
        && config.shard.count == 1
        && bad_lines == totals.lines
    {
        return Err(Error::Config(format!(
            "every one of the {bad_lines} lines was malformed and skipped; first: {}",
            bad_line_samples.first().map_or("", String::as_str)
        )));
    }
    let outputs = writers
        .into_iter()
        .map(DatasetWriter::finish)
        .collect::<Result<Vec<_>>>()?;
    Ok(TokenizeReport {
        files,
        shard: config.shard,
        lines: totals.lines,
        documents: outputs.first().map_or(0, |o| o.documents),
        skipped_empty,
        bad_lines,
        bad_line_samples,
        tokens: totals.tokens,
        bytes: totals.bytes,
        elapsed: start.elapsed(),
        engine: tokenizer.engine(),
        outputs,
    })
}

fn worker(
    config: &TokenizeConfig,
    files: &[PathBuf],
    mut encoder: crate::tokenizer::Encoder,
    batches: Receiver<Batch>,
    results: Sender<Result<BatchOutput>>,
) {
    for batch in batches.iter() {
        let result = encode_batch(config, files, &mut encoder, batch);
        let failed = result.is_err();
        if results.send(result).is_err() || failed {
            return;
        }
    }
}

fn encode_batch(
    config: &TokenizeConfig,
    files: &[PathBuf],
    encoder: &mut crate::tokenizer::Encoder,
    batch: Batch,
) -> Result<BatchOutput> {
    let file = &files[batch.file];
    let mode = config.mode;
    let eos = encoder.tokenizer().eos_id();
    let mut output = BatchOutput {
        seq: batch.seq,
        keys: config
            .json_keys
            .iter()
            .map(|_| KeyOutput::default())
            .collect(),
        lines: batch.lines.len() as u64 + batch.skipped.len() as u64,
        documents: 0,
        skipped_empty: 0,
        bad: Vec::new(),
        bytes: batch.data.len() as u64,
    };
    // Over-long lines the reader skipped (only with `skip_bad_lines`): before this batch's lines.
    for skipped in &batch.skipped {
        output.bytes += skipped.bytes;
        output.bad.push(format!(
            "{}:{}: the line has {} bytes, more than --max-line-bytes {}",
            file.display(),
            skipped.line,
            skipped.bytes,
            config.max_line_bytes
        ));
    }
    let mut fields_ok: Vec<Vec<std::borrow::Cow<'_, str>>> =
        Vec::with_capacity(config.json_keys.len());
    for (i, &(start, end)) in batch.lines.iter().enumerate() {
        let line_no = batch.first_line + i as u64;
        let bad = |column: u64, message: String| Error::BadLine {
            file: file.clone(),
            line: line_no,
            column,
            message,
        };
        let checked = (|| -> Result<Vec<Vec<std::borrow::Cow<'_, str>>>> {
            let bytes = &batch.data[start as usize..end as usize];
            let line = std::str::from_utf8(bytes).map_err(|e| {
                let at = e.valid_up_to();
                bad(
                    at as u64 + 1,
                    format!(
                        "invalid UTF-8 (byte 0x{:02x} at byte column {})",
                        bytes[at],
                        at + 1
                    ),
                )
            })?;
            let fields = json::extract_fields(line, &config.json_keys)
                .map_err(|e| bad(e.column(line), e.message))?;
            let mut out = Vec::with_capacity(fields.len());
            for (field, key) in fields.into_iter().zip(&config.json_keys) {
                out.push(match field {
                    Field::Text(text) => vec![text],
                    Field::List(items) if mode == Mode::Megatron => items,
                    Field::List(_) => {
                        return Err(bad(1, format!(
                            "key {key:?} holds a list; NeMo tokenizes strings only (use --mode megatron to take lists as pre-split sentences)"
                        )));
                    }
                    Field::Missing => return Err(bad(1, format!("no key {key:?} in this line"))),
                    Field::Other(kind) => return Err(bad(1, format!("key {key:?} holds a {kind}, not a string"))),
                });
            }
            Ok(out)
        })();
        fields_ok.clear();
        match checked {
            Ok(fields) => fields_ok.extend(fields),
            Err(error) if config.skip_bad_lines => {
                output.bad.push(match error {
                    Error::BadLine {
                        file,
                        line,
                        column,
                        message,
                    } => {
                        format!("{}:{line}:{column}: {message}", file.display())
                    }
                    other => other.to_string(),
                });
                continue;
            }
            Err(error) => return Err(error),
        }
        let mut written = false;
        for (key_out, sentences) in output.keys.iter_mut().zip(&fields_ok) {
            let doc_start = key_out.tokens.len();
            let mut sequences = 0u32;
            for sentence in sentences {
                let before = key_out.tokens.len();
                encoder
                    .encode(sentence, &mut key_out.tokens)
                    .map_err(|source| Error::Encode {
                        file: file.clone(),
                        line: line_no,
                        source,
                    })?;
                let len = (key_out.tokens.len() - before) as u32;
                if len > 0 {
                    key_out.sequence_lengths.push(len);
                    sequences += 1;
                }
            }
            if config.append_eod && key_out.tokens.len() > doc_start {
                key_out.tokens.push(eos.expect("checked before the run"));
                *key_out
                    .sequence_lengths
                    .last_mut()
                    .expect("a non-empty document has a sequence") += 1;
            }
            if sequences == 0 && mode == Mode::Nemo {
                output.skipped_empty += 1;
                continue;
            }
            key_out.document_sequences.push(sequences);
            written = true;
        }
        if written {
            output.documents += 1;
        }
    }
    Ok(output)
}
