//! FSx for Lustre for trnkit: the shared file system, its Kubernetes objects, and its layout.
//!
//! Every step of the blueprint meets on one FSx for Lustre file system mounted at `/shared`.
//! This crate models it:
//!
//! - [`layout`]: [`SharedLayout`], the typed directory tree of `/shared` — the only place in the
//!   workspace where a `/shared` path is spelled.
//!
//! It does not read the environment, print, or depend on any other trnkit crate.
//!
//! ```
//! let layout = fsx::SharedLayout::in_cluster();
//! assert_eq!(layout.rank_log("0f1e", 0)?.to_str(), Some("/shared/nemo_experiments/0f1e/0/log"));
//! # Ok::<(), fsx::Error>(())
//! ```

#![warn(missing_docs)]

mod error;
pub mod layout;

pub use error::{Error, Result};
pub use layout::{SharedLayout, validate_component};

#[cfg(test)]
mod tests;
