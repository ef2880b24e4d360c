//! The AWS Neuron persistent compile cache, seen from outside: entries, states, flags keys,
//! inspection, verification and safe pruning.
//!
//! The compile job of the blueprint fills `/shared/neuron_cache` with one folder per (graph,
//! compiler flags) under one folder per compiler version
//! (`neuronxcc-<version>/MODULE_<graph key>+<flags key>/`, `formats.md` Part B); the train job
//! then reads it. Nobody can see into it: stale locks hang later runs, failed compilations are
//! cached and replayed, and a flag spelled differently silently misses the cache.
//!
//! # What it does
//!
//! - [`inspect`] walks a cache root and classifies every entry as `complete`, `failed`,
//!   `locked`, `stale_lock` or `incomplete` ([`State`]), with sizes, compiler versions, old and
//!   new file names, and everything it skipped (garbage names, symbolic links, unreadable
//!   folders). It never follows a symbolic link and only reads.
//! - [`flags_key`], [`legacy_flags_key`] and [`parse_neuron_cc_flags`] compute the flags key
//!   the way the Neuron compiler wrapper does; [`compare`] explains why the compile and train
//!   jobs' `NEURON_CC_FLAGS` would use different entries; [`coverage`] says whether the configured
//!   flags already have complete entries.
//! - [`prune`] removes failed entries, stale lock files, or other compiler versions — only what
//!   is asked, re-checking each entry before touching it, never a fresh lock or one a process
//!   holds, never across a mount point, each entry all or nothing — and [`plan`] says what it
//!   would do (the preview).
//! - [`verify`] checks complete entries against their flags files.
//!
//! # What it does not do
//!
//! It does not compile, read environment variables (the caller passes `NEURON_CC_FLAGS` and the
//! root), print, or know where the cache lives in the cluster (the `fsx` crate's layout does;
//! the composition root passes the path). It handles the local-filesystem cache only, not
//! `s3://` cache URLs.
//!
//! # Example
//!
//! ```
//! use neuron_cache::{InspectOptions, State};
//!
//! let root = tempfile::tempdir()?;
//! let entry = root.path().join("neuronxcc-2.21.33363.0+82129205/MODULE_9219523464496887986+725887e1");
//! fs_err::create_dir_all(&entry)?;
//! for file in ["model.hlo_module.pb", "compile_flags.json", "model.neff", "model.done"] {
//!     fs_err::write(entry.join(file), b"x")?;
//! }
//! let report = neuron_cache::inspect(root.path(), &InspectOptions::default())?;
//! assert_eq!(report.entries[0].state, State::Complete);
//!
//! let flags = neuron_cache::parse_neuron_cc_flags(
//!     "--model-type transformer --distribution-strategy=llm-training --enable-mixed-precision-accumulation",
//! )?;
//! let coverage = neuron_cache::coverage(&report, &flags.key(), &flags.legacy_key(), None);
//! assert!(coverage.is_ready());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod error;
pub mod flags;
pub mod model;
pub mod prune;
mod remove;
pub mod sample;
pub mod scan;
pub mod verify;

pub use error::{Error, Result};
pub use flags::{
    FlagsMismatch, NeuronCcFlags, compare, flags_key, legacy_flags_key, parse_neuron_cc_flags,
};
pub use model::{CacheReport, Entry, EntryFiles, Naming, Skipped, State, Summary};
pub use prune::{
    Action, DEFAULT_LOCK_AGE, MIN_LOCK_AGE, Outcome, PruneOptions, PruneReport, Pruned, plan, prune,
};
pub use remove::FsId;
pub use scan::{
    InspectOptions, inspect, is_lock_name, lock_age, parse_entry_name, parse_version_folder,
};
pub use verify::{Coverage, Problem, compiler_version_matches, coverage, parse_flags_file, verify};

#[cfg(test)]
mod tests;
