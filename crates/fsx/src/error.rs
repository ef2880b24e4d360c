//! The crate's one error type.
//!
//! Variants are named by the operation that failed and carry its context (file-system id, name,
//! path). `Display` never repeats the source error; print the chain to see it.

/// Everything that can go wrong in `fsx`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name that would become a path component (or a shell word) is unsafe.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        /// What the name is for, e.g. `launcher pod uid`.
        what: &'static str,
        /// The rejected name, with control characters escaped.
        name: String,
        /// Why it was rejected and what to use instead.
        reason: String,
    },
}

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
