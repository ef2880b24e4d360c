//! Pruning: remove what the caller selects, and nothing a running compilation needs.
//!
//! [`plan`] is pure: from a [`CacheReport`] and [`PruneOptions`] it lists what would be removed
//! and why. [`prune`] inspects, plans, and then, for each planned item, checks the entry again
//! right before touching it:
//!
//! - `--failed`: the entry's folder is removed if it is still failed and unlocked;
//! - `--stale-locks --older-than D`: each lock file is removed if it is still older than `D`
//!   (a lock younger than the threshold is never removed); the entry stays, so the next run
//!   compiles it again;
//! - `--keep-version V`: entries of every other compiler version are removed (complete ones
//!   included — this is the only way a complete entry is removed), except locked ones; emptied
//!   version folders are removed too.
//!
//! A folder is removed by renaming it to `.trnkit-removing-…` in the same version folder (one
//! atomic step: readers see the whole entry or none) and then deleting it; if the process dies
//! in between, the next prune finishes the job. Removal never follows symbolic links.
//!
//! What remains racy: a compile could lock a failed entry (with `--retry_failed_compilation`)
//! between the re-check and the rename, a window of microseconds. The Neuron documentation asks
//! that nothing use the cache during `clear-locks`/`clean`; trnkit narrows, but cannot close,
//! that window.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::model::{CacheReport, Entry, State};
use crate::scan::{self, Candidate, InspectOptions, REMOVING_PREFIX};
use crate::{Error, Result};

/// What to prune. At least one of `failed`, `stale_locks_older_than` or `keep_version`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Remove failed entries, so the next run compiles them again.
    pub failed: bool,
    /// Remove lock files older than this.
    pub stale_locks_older_than: Option<Duration>,
    /// Remove entries of every compiler version but this one (e.g. `2.21.33363.0+82129205`).
    pub keep_version: Option<String>,
    /// Only report what would be removed.
    pub dry_run: bool,
}

/// What happens to an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Remove the whole entry folder.
    RemoveEntry,
    /// Remove the entry's stale lock files only.
    RemoveLocks,
    /// Finish removing a folder an interrupted prune left.
    FinishRemoval,
}

/// One item of a prune, with the entry's fields flattened in (so `--json` has the same shape as
/// `inspect`: `path`, `compiler_version`, `state`, `bytes`, …) plus `action`, `reason`, `done`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// The entry as inspected (for leftovers: a stand-in with state `incomplete`).
    #[serde(flatten)]
    pub entry: Entry,
    /// What is (or would be) done.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// Whether it was done (`false` in a dry run, or when the re-check found the entry changed).
    pub done: bool,
    /// Bytes freed (an estimate for lock files: their size).
    pub bytes_freed: u64,
}

/// The result of [`prune`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The root.
    pub root: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Every planned item, in path order.
    pub entries: Vec<Pruned>,
    /// Total bytes freed (or that would be freed).
    pub bytes_freed: u64,
}

/// Lists what `options` would remove from the inspected cache. Pure.
pub fn plan(report: &CacheReport, options: &PruneOptions) -> Result<Vec<Pruned>> {
    if !options.failed && options.stale_locks_older_than.is_none() && options.keep_version.is_none()
    {
        return Err(Error::InvalidPrune {
            reason: "choose what to prune: --failed, --stale-locks --older-than DURATION, or --keep-version VERSION"
                .to_owned(),
        });
    }
    if let Some(keep) = &options.keep_version {
        let present: std::collections::BTreeSet<&str> = report
            .entries
            .iter()
            .map(|entry| entry.compiler_version.as_str())
            .collect();
        if !present.is_empty() && !present.contains(keep.as_str()) {
            return Err(Error::InvalidPrune {
                reason: format!(
                    "the cache has no neuronxcc-{keep}, so --keep-version would remove every entry; versions present: {}",
                    present.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    let mut planned = Vec::new();
    for entry in &report.entries {
        let other_version = options
            .keep_version
            .as_ref()
            .is_some_and(|keep| keep != &entry.compiler_version);
        let stale_lock = options.stale_locks_older_than.is_some_and(|older_than| {
            !entry.files.locks.is_empty()
                && entry
                    .lock_age_seconds
                    .is_some_and(|age| age >= older_than.as_secs())
        });
        let item = |action, reason: String, bytes_freed| Pruned {
            entry: entry.clone(),
            action,
            reason,
            done: false,
            bytes_freed,
        };
        if other_version && entry.state != State::Locked {
            planned.push(item(
                Action::RemoveEntry,
                format!(
                    "compiler version {} is not the one kept",
                    entry.compiler_version
                ),
                entry.bytes,
            ));
        } else if options.failed && entry.state == State::Failed {
            planned.push(item(
                Action::RemoveEntry,
                "cached compilation failure".to_owned(),
                entry.bytes,
            ));
        } else if stale_lock {
            planned.push(item(
                Action::RemoveLocks,
                format!("lock {} s old", entry.lock_age_seconds.unwrap_or_default()),
                0,
            ));
        }
    }
    for skipped in &report.skipped {
        let name = skipped.path.rsplit('/').next().unwrap_or_default();
        if name.starts_with(REMOVING_PREFIX) {
            let version = skipped.path.split('/').next().unwrap_or_default();
            planned.push(Pruned {
                entry: Entry {
                    path: skipped.path.clone(),
                    compiler_version: version
                        .strip_prefix(scan::VERSION_PREFIX)
                        .unwrap_or(version)
                        .to_owned(),
                    graph_key: String::new(),
                    flags_key: String::new(),
                    state: State::Incomplete,
                    bytes: 0,
                    naming: crate::model::Naming::Unknown,
                    lock_age_seconds: None,
                    files: Default::default(),
                    detail: skipped.reason.clone(),
                },
                action: Action::FinishRemoval,
                reason: "left by an interrupted prune".to_owned(),
                done: false,
                bytes_freed: 0,
            });
        }
    }
    planned.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    Ok(planned)
}

/// Inspects `root`, plans, and (unless `options.dry_run`) removes, re-checking each entry just
/// before touching it. Every item is in the report, done or not.
pub fn prune(root: &Path, options: &PruneOptions, inspect: &InspectOptions) -> Result<PruneReport> {
    let report = scan::inspect(root, inspect)?;
    let mut planned = plan(&report, options)?;
    if !options.dry_run {
        for item in &mut planned {
            execute(root, item, options, inspect)?;
        }
        if options.keep_version.is_some() {
            remove_empty_version_folders(root, &planned);
        }
    }
    let bytes_freed = planned
        .iter()
        .filter(|item| item.done || options.dry_run)
        .map(|item| item.bytes_freed)
        .sum();
    Ok(PruneReport {
        root: root.display().to_string(),
        dry_run: options.dry_run,
        entries: planned,
        bytes_freed,
    })
}

fn execute(
    root: &Path,
    item: &mut Pruned,
    options: &PruneOptions,
    inspect: &InspectOptions,
) -> Result<()> {
    let path = root.join(&item.entry.path);
    if item.action == Action::FinishRemoval {
        remove_tree(&path)?;
        item.done = true;
        tracing::info!(path = %path.display(), "finished an interrupted removal");
        return Ok(());
    }
    // Re-check: the entry may have changed since the inspection.
    let candidate = Candidate {
        path: path.clone(),
        relative: item.entry.path.clone(),
        compiler_version: item.entry.compiler_version.clone(),
        graph_key: item.entry.graph_key.clone(),
        flags_key: item.entry.flags_key.clone(),
    };
    let now = InspectOptions {
        now: std::time::SystemTime::now(),
        ..inspect.clone()
    };
    let Ok(fresh) = scan::classify(&candidate, &now) else {
        item.reason
            .push_str("; skipped: the entry can no longer be read");
        return Ok(());
    };
    match item.action {
        Action::RemoveEntry => {
            let other_version = options
                .keep_version
                .as_ref()
                .is_some_and(|keep| keep != &item.entry.compiler_version);
            let still_wanted = if other_version {
                fresh.state != State::Locked
            } else {
                fresh.state == State::Failed
            };
            if !still_wanted {
                item.reason
                    .push_str(&format!("; skipped: the entry is now {}", fresh.state));
                return Ok(());
            }
            if is_symlink(&path) {
                item.reason
                    .push_str("; skipped: the entry became a symbolic link");
                return Ok(());
            }
            let parent = path.parent().expect("an entry path has a version folder");
            let name = path
                .file_name()
                .expect("an entry path has a name")
                .to_string_lossy();
            let parked = parent.join(format!("{REMOVING_PREFIX}{name}-{}", std::process::id()));
            fs_err::rename(&path, &parked).map_err(|source| Error::Remove {
                path: path.clone(),
                source,
            })?;
            remove_tree(&parked)?;
            item.done = true;
            tracing::info!(path = %path.display(), reason = %item.reason, "removed cache entry");
        }
        Action::RemoveLocks => {
            let older_than = options
                .stale_locks_older_than
                .expect("planned only with a threshold");
            let mut removed = Vec::new();
            for lock in &fresh.files.locks {
                let lock_path = path.join(lock);
                let Ok(metadata) = std::fs::symlink_metadata(&lock_path) else {
                    continue;
                };
                let age = metadata
                    .modified()
                    .ok()
                    .and_then(|modified| now.now.duration_since(modified).ok())
                    .unwrap_or(Duration::ZERO);
                if !metadata.is_file() || age < older_than {
                    continue;
                }
                fs_err::remove_file(&lock_path).map_err(|source| Error::Remove {
                    path: lock_path.clone(),
                    source,
                })?;
                item.bytes_freed += metadata.len();
                removed.push(lock.clone());
            }
            if removed.is_empty() {
                item.reason
                    .push_str("; skipped: no lock is that old any more");
            } else {
                item.done = true;
                item.reason
                    .push_str(&format!("; removed {}", removed.join(", ")));
                tracing::info!(path = %path.display(), locks = ?removed, "removed stale locks");
            }
        }
        Action::FinishRemoval => unreachable!("handled above"),
    }
    Ok(())
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_symlink())
}

/// Removes a folder tree without following symbolic links (std's `remove_dir_all` unlinks links
/// instead of descending into them).
fn remove_tree(path: &PathBuf) -> Result<()> {
    match fs_err::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Remove {
            path: path.clone(),
            source,
        }),
    }
}

fn remove_empty_version_folders(root: &Path, planned: &[Pruned]) {
    let mut versions: Vec<&str> = planned
        .iter()
        .filter(|item| item.done)
        .filter_map(|item| item.entry.path.split('/').next())
        .collect();
    versions.sort_unstable();
    versions.dedup();
    for version in versions {
        // `remove_dir` only removes an empty folder; a non-empty one stays, which is what we want.
        if std::fs::remove_dir(root.join(version)).is_ok() {
            tracing::info!(version, "removed the emptied compiler-version folder");
        }
    }
}
