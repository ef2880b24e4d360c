//! The crate's one error type: each variant names the operation that failed and carries the
//! path, line or name it concerns. `Display` never repeats the source error; print the chain.

use std::path::PathBuf;

/// Everything that can go wrong in `pipeline`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be created, read, written or renamed.
    #[error("could not {action} {path}")]
    Io {
        /// What was being done ("read", "create", "rename to ...").
        action: String,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An index file (`.idx`) is not a Megatron indexed dataset index, or disagrees with itself
    /// or with its `.bin`.
    #[error("{path}: {problem}")]
    InvalidDataset {
        /// The `.idx` or `.bin` file.
        path: PathBuf,
        /// What is wrong, with the numbers.
        problem: String,
    },

    /// A token id does not fit the dataset's dtype.
    #[error(
        "token id {id} does not fit the dataset dtype {dtype}; the vocabulary is larger than the dtype allows"
    )]
    TokenOutOfRange {
        /// The token id.
        id: u32,
        /// The dtype name.
        dtype: &'static str,
    },

    /// A tokenizer directory or `tokenizer.json` could not be loaded.
    #[error("could not load the tokenizer from {path}: {reason}")]
    LoadTokenizer {
        /// The directory or file.
        path: PathBuf,
        /// What was wrong (the source, if any, follows in the chain).
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The tokenizer library failed on a document.
    #[error("the tokenizer failed on {file}:{line}")]
    Encode {
        /// The input file.
        file: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The tokenizer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A line of the input is not what the run needs (bad JSON, missing key, invalid UTF-8...).
    #[error(
        "{file}:{line}:{column}: {message}; fix the line or pass --skip-bad-lines to skip and count such lines"
    )]
    BadLine {
        /// The input file.
        file: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The 1-based column (in characters for JSON errors, bytes for invalid UTF-8).
        column: u64,
        /// What is wrong.
        message: String,
    },

    /// A line of the input is longer than the run allows (`max_line_bytes`).
    #[error(
        "{file}:{line}: the line is longer than {limit} bytes (--max-line-bytes); raise the limit if such documents are expected, or pass --skip-bad-lines to skip and count such lines"
    )]
    LineTooLong {
        /// The input file.
        file: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },

    /// Another run holds the lock of an output.
    #[error(
        "{path} is held by {holder}: another run is writing the same output; wait for it to end, or pass --wait to wait for it"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it (pid, host, command, start time), as its record says.
        holder: String,
    },

    /// The inputs held no document at all.
    #[error("the input has no documents ({inputs}); check the paths and globs")]
    EmptyInput {
        /// The inputs as given.
        inputs: String,
    },

    /// A glob or input list matched nothing or was malformed.
    #[error("input {pattern:?} matched no file")]
    NoInput {
        /// The pattern as given.
        pattern: String,
    },

    /// The configuration of a run is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A worker thread panicked or a channel closed early.
    #[error("a tokenizer worker stopped unexpectedly: {0}")]
    Worker(String),

    /// The run was cancelled by its progress callback.
    #[error("the run was cancelled")]
    Cancelled,

    /// An HTTP request to the HuggingFace Hub (or a mirror) failed.
    #[error("could not download {url}: {reason}")]
    Download {
        /// The URL (never with credentials).
        url: String,
        /// What happened, and what to do.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A downloaded file does not match its recorded checksum or size.
    #[error(
        "{path} does not match its expected {what}: expected {expected}, got {actual}; delete it and rerun"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// "sha256" or "size".
        what: &'static str,
        /// The expected value.
        expected: String,
        /// The actual value.
        actual: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an IO error with the action and path.
    pub(crate) fn io(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::InvalidDataset {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
