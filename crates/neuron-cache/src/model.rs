//! The cache as data: [`Entry`], its [`State`], and the [`CacheReport`] of one inspection.
//!
//! These types are the `--json` output of `cargo xtask cache inspect`, and their shape is
//! stable: one object with `root`, `entries`, `skipped` and `summary`; every entry has at least
//! `path` (relative to the root, `/`-separated), `compiler_version`, `state` (one of
//! `complete`, `failed`, `locked`, `stale_lock`, `incomplete`) and `bytes`. New fields may be
//! added; existing ones keep their name and meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state of one cache entry (`MODULE_<graph key>+<flags key>/`).
///
/// Classification, first match wins (optimum-neuron's `cleanup.py` uses the same rules):
///
/// 1. a `*.lock` file is present: [`State::Locked`] if the youngest lock is younger than the
///    staleness threshold, else [`State::StaleLock`];
/// 2. `model.neff` and `model.done`: [`State::Complete`];
/// 3. `model.log` and no `model.neff`: [`State::Failed`] (a cached failure, replayed on every
///    run until removed or `--retry_failed_compilation`);
/// 4. `model.neff` without `model.done`, in an entry with the old file names (`model.hlo.pb`,
///    `compile_flags.txt`; SDK 2.12 and older, which wrote no done marker): [`State::Complete`];
/// 5. anything else: [`State::Incomplete`] — the graph was collected but never compiled, or the
///    results are half-written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// A compiled NEFF and its done marker: a cache hit.
    Complete,
    /// A cached compilation failure.
    Failed,
    /// A lock younger than the threshold: some process is (probably) compiling it now.
    Locked,
    /// A lock older than the threshold: probably left by a killed compile; later runs wait on it
    /// forever.
    StaleLock,
    /// Neither compiled nor failed nor locked.
    Incomplete,
}

impl State {
    /// Every state, in report order.
    pub const ALL: [State; 5] = [
        State::Complete,
        State::Failed,
        State::Locked,
        State::StaleLock,
        State::Incomplete,
    ];

    /// The JSON spelling, e.g. `stale_lock`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Locked => "locked",
            Self::StaleLock => "stale_lock",
            Self::Incomplete => "incomplete",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which generation of file names an entry uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Naming {
    /// `model.hlo_module.pb`, `compile_flags.json`, `model.done` (SDK 2.15+, 2024 on).
    Current,
    /// `model.hlo.pb`, `compile_flags.txt` (SDK 2.12 and older).
    Legacy,
    /// Neither input graph nor flags file is present.
    Unknown,
}

/// The well-known files found in an entry (regular files only; symbolic links do not count).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFiles {
    /// `model.hlo_module.pb` or `model.hlo.pb`: the input graph.
    pub hlo: Option<String>,
    /// `model.neff` is present.
    pub neff: bool,
    /// The size of `model.neff`, when present and sizes were measured.
    pub neff_bytes: Option<u64>,
    /// `model.done`.
    pub done: bool,
    /// `model.log`: the failure record.
    pub log: bool,
    /// `compile_flags.json` or `compile_flags.txt`.
    pub flags_file: Option<String>,
    /// `*.lock` files, by name.
    pub locks: Vec<String>,
    /// Symbolic links inside the entry (never followed).
    pub symlinks: Vec<String>,
}

/// One cache entry: `<root>/neuronxcc-<compiler version>/MODULE_<graph key>+<flags key>/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's path relative to the root, `/`-separated.
    pub path: String,
    /// The compiler version from the `neuronxcc-<version>` folder, e.g. `2.21.33363.0+82129205`.
    pub compiler_version: String,
    /// The graph key: 20 hex digits, or a decimal uint64 from torch-xla's training path.
    pub graph_key: String,
    /// The flags key: 8 hex digits (see `flags_key`).
    pub flags_key: String,
    /// The state.
    pub state: State,
    /// Bytes of the regular files in the entry (symbolic links count their own size only).
    pub bytes: u64,
    /// Old or new file names.
    pub naming: Naming,
    /// Age in seconds of the youngest lock file, when the entry is locked.
    pub lock_age_seconds: Option<u64>,
    /// The well-known files present.
    pub files: EntryFiles,
    /// Why the entry has its state, in words.
    pub detail: String,
}

/// Something in the tree that is not an entry, and was left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Path relative to the root.
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Counts and bytes per state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of entries.
    pub entries: usize,
    /// Bytes of all entries.
    pub bytes: u64,
    /// Entries per state (`complete`, `failed`, …); every state is present.
    pub states: BTreeMap<State, usize>,
    /// Entries per compiler version.
    pub compiler_versions: BTreeMap<String, usize>,
}

/// The result of inspecting a cache root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    /// The root inspected, as given.
    pub root: String,
    /// The lock age above which a lock counts as stale, in seconds.
    pub stale_after_seconds: u64,
    /// Whether sizes were measured; when not, every `bytes` is 0.
    pub sizes_measured: bool,
    /// The entries, sorted by path.
    pub entries: Vec<Entry>,
    /// What was not inspected, sorted by path: garbage names, symbolic links, unreadable
    /// folders, leftovers of an interrupted prune.
    pub skipped: Vec<Skipped>,
    /// Counts.
    pub summary: Summary,
    /// Hints about the tree as a whole (for example, the older `neuron-compile-cache/` level).
    pub notes: Vec<String>,
}

impl Summary {
    /// Counts `entries`.
    pub fn of(entries: &[Entry]) -> Self {
        let mut summary = Summary {
            entries: entries.len(),
            ..Summary::default()
        };
        for state in State::ALL {
            summary.states.insert(state, 0);
        }
        for entry in entries {
            summary.bytes = summary.bytes.saturating_add(entry.bytes);
            *summary.states.entry(entry.state).or_default() += 1;
            *summary
                .compiler_versions
                .entry(entry.compiler_version.clone())
                .or_default() += 1;
        }
        summary
    }

    /// The number of entries in `state`.
    pub fn count(&self, state: State) -> usize {
        self.states.get(&state).copied().unwrap_or(0)
    }
}
