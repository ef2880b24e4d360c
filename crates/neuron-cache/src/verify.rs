//! Verification and flag coverage: is what the cache says true, and does it hold what a job
//! needs?
//!
//! - [`verify`] reads the small files of complete entries: the NEFF is not empty, the input
//!   graph is there, and the flags file matches the folder's flags key (in either the current
//!   or the old form). It reports problems; it changes nothing.
//! - [`coverage`] counts the entries for one flags key, so the composition root can tell
//!   whether the configured `NEURON_CC_FLAGS` already have complete entries. That is necessary,
//!   not sufficient, for skipping the compile job: the cache cannot say which graphs a run will
//!   trace, only whether any compiled ones exist for these flags and compiler.

use std::path::Path;

use serde::Serialize;

use crate::flags::{flags_key, legacy_flags_key};
use crate::model::{CacheReport, Entry, Naming, State};

/// One problem found by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The entry's path, relative to the root.
    pub path: String,
    /// What is wrong and what it means.
    pub problem: String,
}

/// Checks the complete entries of `report` (found under `root`). Reads one small file per
/// entry; never follows symbolic links; changes nothing.
pub fn verify(root: &Path, report: &CacheReport) -> Vec<Problem> {
    let mut problems = Vec::new();
    for entry in report
        .entries
        .iter()
        .filter(|entry| entry.state == State::Complete)
    {
        let mut problem = |text: String| {
            problems.push(Problem {
                path: entry.path.clone(),
                problem: text,
            })
        };
        if entry.files.neff_bytes == Some(0) {
            problem("model.neff is empty although the entry is marked done: runs would load an empty NEFF; remove the entry".to_owned());
        }
        if entry.files.hlo.is_none() {
            problem("no input graph (model.hlo_module.pb or model.hlo.pb)".to_owned());
        }
        if !entry.files.symlinks.is_empty() {
            problem(format!(
                "contains symbolic links ({}), which the Neuron runtime would follow",
                entry.files.symlinks.join(", ")
            ));
        }
        match &entry.files.flags_file {
            None if entry.naming == Naming::Current => problem("no compile_flags.json".to_owned()),
            None => {}
            Some(name) => {
                if let Some(text) = check_flags_file(&root.join(&entry.path).join(name), entry) {
                    problem(text);
                }
            }
        }
    }
    problems
}

/// The largest flags file read (a real one is a few hundred bytes).
const MAX_FLAGS_FILE: u64 = 1 << 20;

/// Parses the bytes of an entry's flags file: `compile_flags.json` (a JSON list of strings, as
/// `json.dumps` writes it) or, for any other name, the old `compile_flags.txt` (flags separated
/// by white space). `Err` says what is wrong; never panics, whatever the bytes.
pub fn parse_flags_file(name: &str, bytes: &[u8]) -> Result<Vec<String>, String> {
    if bytes.len() as u64 > MAX_FLAGS_FILE {
        return Err(format!(
            "{name} is {} bytes, too large for a flags file",
            bytes.len()
        ));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|error| format!("{name} is not UTF-8 text: {error}"))?;
    if name.ends_with(".json") {
        serde_json::from_str(text.trim())
            .map_err(|error| format!("{name} is not a JSON list of strings: {error}"))
    } else {
        Ok(text.split_whitespace().map(str::to_owned).collect())
    }
}

/// Reads a flags file; `Some(problem)` when it cannot be read or does not match the folder's
/// flags key.
fn check_flags_file(path: &Path, entry: &Entry) -> Option<String> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    if !metadata.is_file() {
        return Some(format!("{} is not a regular file", path.display()));
    }
    if metadata.len() > MAX_FLAGS_FILE {
        return Some(format!(
            "{} is {} bytes, too large for a flags file",
            path.display(),
            metadata.len()
        ));
    }
    let mut bytes = Vec::new();
    let read = fs_err::File::open(path).and_then(|file| {
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_FLAGS_FILE + 1),
            &mut bytes,
        )
    });
    if let Err(error) = read {
        return Some(format!("cannot read the flags file: {error}"));
    }
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    let flags = match parse_flags_file(&name, &bytes) {
        Ok(flags) => flags,
        Err(problem) => return Some(problem),
    };
    let (current, legacy) = (flags_key(&flags), legacy_flags_key(&flags));
    if entry.flags_key != current && entry.flags_key != legacy {
        return Some(format!(
            "the flags file gives key {current} (or {legacy} in the old form), but the folder says {}: the entry \
             was renamed or its flags file overwritten",
            entry.flags_key
        ));
    }
    None
}

/// The entries for one flags key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Coverage {
    /// The flags keys looked for (current and old form).
    pub flags_keys: Vec<String>,
    /// The compiler version looked at, if one was given.
    pub compiler_version: Option<String>,
    /// Complete entries.
    pub complete: usize,
    /// Failed entries: runs with these flags replay the failure.
    pub failed: usize,
    /// Locked entries (fresh locks).
    pub locked: usize,
    /// Entries with stale locks: runs wait on them forever.
    pub stale_lock: usize,
    /// Incomplete entries.
    pub incomplete: usize,
}

impl Coverage {
    /// Whether the flags have complete entries and nothing that would block or fail a run:
    /// the compile job can probably be skipped.
    pub fn is_ready(&self) -> bool {
        self.complete > 0
            && self.failed == 0
            && self.locked == 0
            && self.stale_lock == 0
            && self.incomplete == 0
    }

    /// One sentence on what the numbers mean for the compile job.
    pub fn verdict(&self) -> String {
        let key = self.flags_keys.first().map_or("?", String::as_str);
        let counts = [
            self.complete,
            self.failed,
            self.locked,
            self.stale_lock,
            self.incomplete,
        ];
        if counts.iter().all(|count| *count == 0) {
            return format!("no entries for flags key {key}: the compile job is needed");
        }
        if self.is_ready() {
            return format!(
                "{} complete entries for flags key {key} and nothing failed or pending: the compile job can probably be skipped",
                self.complete
            );
        }
        let mut parts = Vec::new();
        if self.failed > 0 {
            parts.push(format!("{} failed (prune them with `cache prune --failed`, or training replays the failure)", self.failed));
        }
        if self.stale_lock > 0 {
            parts.push(format!(
                "{} with stale locks (runs would wait forever; `cache prune --stale-locks`)",
                self.stale_lock
            ));
        }
        if self.locked > 0 {
            parts.push(format!("{} being compiled now", self.locked));
        }
        if self.incomplete > 0 {
            parts.push(format!("{} never compiled", self.incomplete));
        }
        format!(
            "flags key {key}: {} complete, {}: run the compile job",
            self.complete,
            parts.join(", ")
        )
    }
}

/// Whether the compiler version of a `neuronxcc-<version>` folder is `wanted`: the same
/// version, or `wanted` followed by a build suffix (`2.16.345.0` matches the folder version
/// `2.16.345.0+8b9c8a7e`, as pip's `neuronx-cc==2.16.345.0` installs it; `2.16.34` matches
/// neither `2.16.345.0` nor `2.16.34.1`).
pub fn compiler_version_matches(folder_version: &str, wanted: &str) -> bool {
    match folder_version.strip_prefix(wanted) {
        Some(rest) => !wanted.is_empty() && (rest.is_empty() || rest.starts_with('+')),
        None => false,
    }
}

/// Counts the entries whose flags key is `flags_key` or `legacy_key`, under `compiler_version`
/// when given (the same flags under another compiler are a different cache; see
/// [`compiler_version_matches`]).
pub fn coverage(
    report: &CacheReport,
    flags_key: &str,
    legacy_key: &str,
    compiler_version: Option<&str>,
) -> Coverage {
    let mut coverage = Coverage {
        flags_keys: vec![flags_key.to_owned(), legacy_key.to_owned()],
        compiler_version: compiler_version.map(str::to_owned),
        ..Coverage::default()
    };
    for entry in &report.entries {
        if (entry.flags_key != flags_key && entry.flags_key != legacy_key)
            || compiler_version
                .is_some_and(|version| !compiler_version_matches(&entry.compiler_version, version))
        {
            continue;
        }
        match entry.state {
            State::Complete => coverage.complete += 1,
            State::Failed => coverage.failed += 1,
            State::Locked => coverage.locked += 1,
            State::StaleLock => coverage.stale_lock += 1,
            State::Incomplete => coverage.incomplete += 1,
        }
    }
    coverage
}
