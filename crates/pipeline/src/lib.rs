//! Dataset staging for trnkit: the tokenizer and the dataset, from local directories or the
//! HuggingFace Hub, tokenized into Megatron's indexed dataset format.
//!
//! What it does:
//! - [`indexed`]: Megatron's "mmap" indexed dataset (`MMIDIDX` v1): a streaming
//!   [`DatasetWriter`], a checking [`IndexReader`], and [`merge`].
//! - [`tokenize()`]: JSONL (plain, `.gz`, `.zst`; files, directories, globs) into one dataset per
//!   JSON key, byte-identical to NeMo's `preprocess_data_for_megatron.py` ([`Mode::Nemo`], the
//!   blueprint's tool) or Megatron-LM's `tools/preprocess_data.py` ([`Mode::Megatron`]), in
//!   parallel with ordered output, optionally one shard `I/N` of the input. Each mode follows
//!   its tool's own stack: NeMo's pins transformers 4 (tokenizer.json as written), Megatron-LM's
//!   runs transformers 5 (which rebuilds a Llama tokenizer's pre-tokenizer); both checked
//!   byte for byte with `bench/reference_preprocess.py`.
//! - [`Tokenizer`]: a HuggingFace `tokenizer.json` with the `tokenizers` crate as the reference,
//!   plus an exact fast path for Llama-style tokenizers, checked when the tokenizer loads.
//! - [`stage`]: copies or downloads (HuggingFace Hub protocol, resumable, checksummed) the
//!   tokenizer and the dataset into a directory laid out like the blueprint's `/shared`.
//! - [`lock`]: exclusive locks on outputs (`{prefix}.lock`), so two runs never write one dataset.
//!
//! Features (both default): `tokenize` (the tokenizer and the run; the `tokenizers` crate) and
//! `stage` (staging from the Hub; HTTP). Without them the crate is the dataset format, the
//! JSONL reader and the locks, which is what the fuzz targets build.
//!
//! What it does not do: build or talk to Kubernetes objects or AWS, read environment variables, print, or parse
//! command lines (the `xtask` crate does those). It knows nothing of MPIJobs or images.
//!
//! ```no_run
//! use pipeline::{Mode, NoProgress, TokenizeConfig, Tokenizer, tokenize};
//!
//! # fn main() -> pipeline::Result<()> {
//! let tokenizer = Tokenizer::from_path("/shared/llama7b_tokenizer".as_ref(), Mode::Nemo, true)?;
//! let config = TokenizeConfig::new(
//!     vec!["/shared/data/RedPajama-Data-1T-Sample/*.jsonl".into()],
//!     "/shared/data/redpajama_sample".into(),
//! );
//! let report = tokenize(&config, &tokenizer, &NoProgress)?;
//! assert_eq!(report.outputs[0].prefix, std::path::Path::new("/shared/data/redpajama_sample_text_document"));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

#[cfg(feature = "tokenize")]
mod bpe;
#[cfg(feature = "tokenize")]
mod cache;
mod error;
pub mod indexed;
pub mod input;
pub mod json;
pub mod lock;
#[cfg(feature = "stage")]
pub mod stage;
#[cfg(feature = "tokenize")]
mod tokenize;
#[cfg(feature = "tokenize")]
pub mod tokenizer;

#[cfg(all(test, feature = "tokenize", feature = "stage"))]
mod tests;

pub use error::{Error, Result};
pub use indexed::{
    DType, DatasetSummary, DatasetWriter, IndexReader, MergeOptions, MergeReport, VerifyReport,
    merge, merge_with,
};
pub use input::{DEFAULT_MAX_LINE_BYTES, MAX_LINE_BYTES_LIMIT, Shard};
pub use lock::{LockOptions, OutputLock};
#[cfg(feature = "tokenize")]
pub use tokenize::{
    NoProgress, Progress, ProgressUpdate, TokenizeConfig, TokenizeReport, output_prefix_for_key,
    tokenize,
};
#[cfg(feature = "tokenize")]
pub use tokenizer::{Encoder, Engine, Mode, Tokenizer};
