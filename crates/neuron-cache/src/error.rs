//! The crate's one error type.
//!
//! Problems inside the cache tree (an unreadable folder, a garbage name, a symbolic link) are
//! not errors: they are reported in the inspection's `skipped` list, and inspection goes on.
//! Errors are what stops an operation: a missing root, a failed removal, unusable arguments.

use std::path::PathBuf;

/// Everything that can go wrong in `neuron-cache`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cache root cannot be read.
    #[error("cannot read the compile cache root {}; check the path (NEURON_COMPILE_CACHE_URL) and that the file system is mounted", .path.display())]
    InspectRoot {
        /// The root.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The cache root is not a directory.
    #[error("the compile cache root {} is not a directory", .path.display())]
    RootNotADirectory {
        /// The root.
        path: PathBuf,
    },
    /// A `NEURON_CC_FLAGS` value cannot be split into words.
    #[error("cannot parse NEURON_CC_FLAGS `{value}`: {reason}")]
    ParseFlags {
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The synthetic sample cache could not be written.
    #[error("cannot write the sample compile cache at {}", .path.display())]
    WriteSample {
        /// The file or folder.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// `prune` was asked for nothing, or for something unsafe.
    #[error("invalid prune request: {reason}")]
    InvalidPrune {
        /// What to change.
        reason: String,
    },
}

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
