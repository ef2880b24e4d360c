//! Pruning: remove what the caller selects, and nothing a running compilation needs.
//!
//! [`plan`] is pure: from a [`CacheReport`] and [`PruneOptions`] it lists what would be removed
//! and why. [`prune`] inspects, plans, and then (unless `dry_run`, the preview) goes through every
//! planned item, re-checking each entry right before touching it:
//!
//! - `--failed`: the entry's folder is removed if it is still failed;
//! - `--stale-locks --older-than D`: each lock file still older than `D` is removed, but only
//!   after this process took it itself (`flock(LOCK_EX | LOCK_NB)`): a lock some process holds
//!   stays, whatever its age; the entry stays, so the next run compiles it again;
//! - `--keep-version V`: entries of every other compiler version are removed (complete ones
//!   included — this is the only way a complete entry is removed), except those with a lock
//!   younger than the lock age (`--older-than`, else 2 hours) or held by a process; emptied
//!   version folders are removed too.
//!
//! `D` may not be below [`MIN_LOCK_AGE`].
//!
//! An entry is removed all-or-nothing as the cache's readers see it: first checked (no mount
//! point or other device anywhere inside, every lock file taken), then renamed to
//! `.trnkit-removing-…` in the same version folder (one atomic step: readers see the whole entry
//! or none), then deleted. Deletion never follows a symbolic link and never enters a folder on
//! another mount or device than the root. If deletion fails half-way, or the process dies, the
//! next prune finishes it. One item's failure does not stop the others: the report says, per
//! item, what was removed, what was kept and why, and what failed.
//!
//! What remains racy: a compiler that marks an entry busy by creating a lock file without
//! `flock` could lock a failed entry (with `--retry_failed_compilation`) between the re-check
//! and the rename, a window of microseconds. The Neuron documentation asks that nothing use the
//! cache during `clear-locks`/`clean`; trnkit narrows, but cannot close, that window.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::model::{CacheReport, Entry, State};
use crate::remove::{self, Failure, FsId};
use crate::scan::{self, Candidate, InspectOptions, REMOVING_PREFIX, is_lock_name, lock_age};
use crate::{Error, Result};

/// The shortest `--older-than` accepted: a lock younger than this belongs to a compilation that
/// has barely started.
pub const MIN_LOCK_AGE: Duration = Duration::from_secs(10 * 60);

/// The lock age from which a lock counts as stale when `--older-than` is not given (the
/// default of `inspect`).
pub const DEFAULT_LOCK_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// What to prune. At least one of `failed`, `stale_locks_older_than` or `keep_version`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Remove failed entries, so the next run compiles them again.
    pub failed: bool,
    /// Remove lock files older than this (at least [`MIN_LOCK_AGE`]) that no process holds.
    pub stale_locks_older_than: Option<Duration>,
    /// Remove entries of every compiler version but this one (e.g. `2.21.33363.0+82129205`).
    pub keep_version: Option<String>,
    /// Only report what would be removed (the preview).
    pub dry_run: bool,
}

impl PruneOptions {
    /// The age below which a lock is young and never touched: `stale_locks_older_than`, else
    /// [`DEFAULT_LOCK_AGE`].
    pub fn lock_age(&self) -> Duration {
        self.stale_locks_older_than.unwrap_or(DEFAULT_LOCK_AGE)
    }
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

/// What came of one planned item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A preview: it would be removed.
    WouldRemove,
    /// Removed (for `remove_locks`: at least one lock file; `locks_kept` lists any other).
    Removed,
    /// Left as it is, on purpose: the re-check found it changed, or a process holds its lock.
    Kept,
    /// Not (entirely) removed because something went wrong; `message` says what, and what state
    /// the entry was left in.
    Failed,
}

/// One item of a prune, with the entry's fields flattened in (so `--json` has the same shape as
/// `inspect`: `path`, `compiler_version`, `state`, `bytes`, …) plus `action`, `reason`,
/// `outcome`, `done` and, when there is more to say, `message`, `locks_removed`, `locks_kept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// The entry as inspected (for leftovers: a stand-in with state `incomplete`).
    #[serde(flatten)]
    pub entry: Entry,
    /// What is (or would be) done.
    pub action: Action,
    /// Why it was planned, in words.
    pub reason: String,
    /// What came of it.
    pub outcome: Outcome,
    /// Whether it was done (`outcome == removed`).
    pub done: bool,
    /// What happened, when it was not simply removed (or for locks, which ones were kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Bytes freed, or that would be freed (for lock files: their size).
    pub bytes_freed: u64,
    /// Lock files removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks_removed: Vec<String>,
    /// Old lock files left in place, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks_kept: Vec<String>,
}

impl Pruned {
    fn finish(&mut self, outcome: Outcome, message: Option<String>) {
        self.outcome = outcome;
        self.done = outcome == Outcome::Removed;
        self.message = message;
        if !self.done {
            self.bytes_freed = 0;
        }
    }
}

/// The result of [`prune`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The root.
    pub root: String,
    /// Whether this was a preview (nothing changed).
    pub dry_run: bool,
    /// Every planned item, in path order.
    pub entries: Vec<Pruned>,
    /// Total bytes freed (or that would be freed).
    pub bytes_freed: u64,
    /// Items removed.
    pub removed: usize,
    /// Items kept on purpose (changed since the inspection, or locked by a process).
    pub kept: usize,
    /// Items that failed; see each one's `message`.
    pub failed: usize,
}

/// Refuses options that select nothing or a lock age below [`MIN_LOCK_AGE`].
pub fn check_options(options: &PruneOptions) -> Result<()> {
    if !options.failed && options.stale_locks_older_than.is_none() && options.keep_version.is_none()
    {
        return Err(Error::InvalidPrune {
            reason: "choose what to prune: --failed, --stale-locks --older-than DURATION, or --keep-version VERSION"
                .to_owned(),
        });
    }
    if let Some(older_than) = options.stale_locks_older_than
        && older_than < MIN_LOCK_AGE
    {
        return Err(Error::InvalidPrune {
            reason: format!(
                "--older-than {} is below the minimum of {}: a lock that young belongs to a compilation that has \
                 barely started; choose the longest time a compilation may take, such as 2h",
                humantime::format_duration(older_than),
                humantime::format_duration(MIN_LOCK_AGE)
            ),
        });
    }
    Ok(())
}

/// Lists what `options` would remove from the inspected cache. Pure.
///
/// Locks are judged by their age in the report (`lock_age_seconds`) against
/// [`PruneOptions::lock_age`], whatever staleness threshold the report was made with.
pub fn plan(report: &CacheReport, options: &PruneOptions) -> Result<Vec<Pruned>> {
    check_options(options)?;
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
    let threshold = options.lock_age().as_secs();
    let mut planned = Vec::new();
    for entry in &report.entries {
        let other_version = options
            .keep_version
            .as_ref()
            .is_some_and(|keep| keep != &entry.compiler_version);
        let young_lock = entry.lock_age_seconds.is_some_and(|age| age < threshold);
        let stale_lock = options.stale_locks_older_than.is_some()
            && !entry.files.locks.is_empty()
            && !young_lock;
        let item = |action, reason: String, bytes_freed| Pruned {
            entry: entry.clone(),
            action,
            reason,
            outcome: Outcome::WouldRemove,
            done: false,
            message: None,
            bytes_freed,
            locks_removed: Vec::new(),
            locks_kept: Vec::new(),
        };
        if other_version && !young_lock {
            planned.push(item(
                Action::RemoveEntry,
                format!(
                    "compiler version {} is not the one kept",
                    entry.compiler_version
                ),
                entry.bytes,
            ));
        } else if options.failed && entry.state == State::Failed && !young_lock {
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
        let Some((version, name)) = skipped.path.split_once('/') else {
            continue;
        };
        if name.starts_with(REMOVING_PREFIX) && !name.contains('/') {
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
                outcome: Outcome::WouldRemove,
                done: false,
                message: None,
                bytes_freed: 0,
                locks_removed: Vec::new(),
                locks_kept: Vec::new(),
            });
        }
    }
    planned.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    Ok(planned)
}

/// Inspects `root`, plans, and (unless `options.dry_run`) removes, re-checking each entry just
/// before touching it. Every item is in the report, with its outcome; one item's failure does
/// not stop the others. Fails only when the root cannot be read or the options are unusable.
///
/// Locks are classified with [`PruneOptions::lock_age`] (not `inspect.stale_after`), so that
/// the plan and the re-check agree on what is young.
pub fn prune(root: &Path, options: &PruneOptions, inspect: &InspectOptions) -> Result<PruneReport> {
    check_options(options)?;
    let inspect = InspectOptions {
        stale_after: options.lock_age(),
        ..inspect.clone()
    };
    let report = scan::inspect(root, &inspect)?;
    let mut planned = plan(&report, options)?;
    if !options.dry_run {
        let root_fd = remove::open_root(root).map_err(|source| Error::InspectRoot {
            path: root.to_owned(),
            source,
        })?;
        let root_id = remove::fs_id(&root_fd).map_err(|source| Error::InspectRoot {
            path: root.to_owned(),
            source,
        })?;
        let fence = Fence {
            root,
            root_fd: &root_fd,
            root_id,
        };
        for item in &mut planned {
            execute(&fence, item, options, &inspect);
            match item.outcome {
                Outcome::Removed => {
                    tracing::info!(path = %item.entry.path, action = ?item.action, reason = %item.reason, "pruned")
                }
                Outcome::Kept => {
                    tracing::info!(path = %item.entry.path, message = item.message.as_deref().unwrap_or_default(), "kept")
                }
                Outcome::Failed => {
                    tracing::warn!(path = %item.entry.path, message = item.message.as_deref().unwrap_or_default(), "not pruned")
                }
                Outcome::WouldRemove => {}
            }
        }
        if options.keep_version.is_some() {
            remove_empty_version_folders(&fence, &planned);
        }
    }
    let count = |outcome| {
        planned
            .iter()
            .filter(|item| item.outcome == outcome)
            .count()
    };
    let bytes_freed = planned
        .iter()
        .filter(|item| item.done || options.dry_run)
        .fold(0u64, |sum, item| sum.saturating_add(item.bytes_freed));
    Ok(PruneReport {
        root: root.display().to_string(),
        dry_run: options.dry_run,
        bytes_freed,
        removed: count(Outcome::Removed),
        kept: count(Outcome::Kept),
        failed: count(Outcome::Failed),
        entries: planned,
    })
}

/// The root, open, and what every folder removed must share with it.
struct Fence<'a> {
    root: &'a Path,
    root_fd: &'a OwnedFd,
    root_id: FsId,
}

fn execute(fence: &Fence<'_>, item: &mut Pruned, options: &PruneOptions, inspect: &InspectOptions) {
    let relative = item.entry.path.clone();
    let Some((version, name)) = relative.split_once('/') else {
        item.finish(
            Outcome::Failed,
            Some(format!(
                "{relative} is not a <version>/<entry> path; nothing was changed"
            )),
        );
        return;
    };
    let path = fence.root.join(&relative);
    let version_fd = match remove::open_checked(
        fence.root_fd,
        OsStr::new(version),
        &fence.root.join(version),
        fence.root_id,
    ) {
        Ok(fd) => fd,
        Err(failure) => {
            item.finish(
                Outcome::Failed,
                Some(format!("{failure}; nothing was changed")),
            );
            return;
        }
    };
    let name = OsStr::new(name);
    match item.action {
        Action::FinishRemoval => finish_removal(fence, &version_fd, name, &path, item),
        Action::RemoveEntry => {
            remove_entry(fence, &version_fd, name, &path, item, options, inspect)
        }
        Action::RemoveLocks => remove_locks(fence, &version_fd, name, &path, item, options),
    }
}

/// Re-reads the entry; `None` (and the item kept) when it can no longer be read.
fn recheck(path: &Path, item: &mut Pruned, inspect: &InspectOptions) -> Option<Entry> {
    let candidate = Candidate {
        path: path.to_owned(),
        relative: item.entry.path.clone(),
        compiler_version: item.entry.compiler_version.clone(),
        graph_key: item.entry.graph_key.clone(),
        flags_key: item.entry.flags_key.clone(),
        at: None,
    };
    let now = InspectOptions {
        now: SystemTime::now(),
        ..inspect.clone()
    };
    match scan::classify(&candidate, &now) {
        Ok(fresh) => Some(fresh),
        Err(skipped) => {
            item.finish(
                Outcome::Kept,
                Some(format!(
                    "the entry can no longer be read ({}); nothing was changed",
                    skipped.reason
                )),
            );
            None
        }
    }
}

fn finish_removal(
    fence: &Fence<'_>,
    version_fd: &OwnedFd,
    name: &OsStr,
    path: &Path,
    item: &mut Pruned,
) {
    let result = remove::open_checked(version_fd, name, path, fence.root_id)
        .and_then(|dir| remove::remove_contents(&dir, path, fence.root_id, 0))
        .and_then(|()| remove::remove_dir_at(version_fd, name, path));
    match result {
        Ok(()) => item.finish(Outcome::Removed, None),
        Err(Failure::Io(_, error)) if error.kind() == std::io::ErrorKind::NotFound => {
            item.finish(Outcome::Removed, Some("already gone".to_owned()));
        }
        Err(failure) => item.finish(
            Outcome::Failed,
            Some(format!(
                "the leftover is not an entry, but was not entirely removed: {failure}; the next `cache prune` tries again"
            )),
        ),
    }
}

fn remove_entry(
    fence: &Fence<'_>,
    version_fd: &OwnedFd,
    name: &OsStr,
    path: &Path,
    item: &mut Pruned,
    options: &PruneOptions,
    inspect: &InspectOptions,
) {
    let Some(fresh) = recheck(path, item, inspect) else {
        return;
    };
    let young_lock = fresh
        .lock_age_seconds
        .is_some_and(|age| age < options.lock_age().as_secs());
    let other_version = options
        .keep_version
        .as_ref()
        .is_some_and(|keep| keep != &item.entry.compiler_version);
    let still_wanted = !young_lock && (other_version || fresh.state == State::Failed);
    if !still_wanted {
        item.finish(
            Outcome::Kept,
            Some(format!(
                "the entry is now {}: {}; nothing was changed",
                fresh.state, fresh.detail
            )),
        );
        return;
    }
    let unchanged = |failure: Failure| format!("{failure}; nothing was changed");
    // Open it without following a link, and check that nothing inside crosses a mount point,
    // before anything changes.
    let entry_fd = match remove::open_checked(version_fd, name, path, fence.root_id) {
        Ok(fd) => fd,
        Err(Failure::Io(_, error))
            if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
                || error.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            item.finish(
                Outcome::Kept,
                Some("the entry became a symbolic link or a file; nothing was changed".to_owned()),
            );
            return;
        }
        Err(failure) => {
            item.finish(Outcome::Failed, Some(unchanged(failure)));
            return;
        }
    };
    if let Err(failure) = remove::check_tree(&entry_fd, path, fence.root_id, 0) {
        item.finish(Outcome::Failed, Some(unchanged(failure)));
        return;
    }
    // Every lock file is taken first, and held until the entry is gone.
    let mut held = Vec::new();
    for lock in &fresh.files.locks {
        match remove::take_lock(&entry_fd, OsStr::new(lock), &path.join(lock)) {
            Ok(lock) => held.push(lock),
            Err(failure @ Failure::LockHeld(_)) => {
                item.finish(Outcome::Kept, Some(unchanged(failure)));
                return;
            }
            Err(failure) => {
                item.finish(Outcome::Failed, Some(unchanged(failure)));
                return;
            }
        }
    }
    let trash = trash_name(name);
    let trash_path = path.with_file_name(&trash);
    if let Err(failure) = remove::rename_in(version_fd, name, &trash, path) {
        item.finish(
            Outcome::Failed,
            Some(format!(
                "could not rename it out of the way: {failure}; nothing was changed"
            )),
        );
        return;
    }
    let result = remove::remove_contents(&entry_fd, &trash_path, fence.root_id, 0)
        .and_then(|()| remove::remove_dir_at(version_fd, &trash, &trash_path));
    drop(held);
    match result {
        Ok(()) => item.finish(Outcome::Removed, None),
        Err(failure) => item.finish(
            Outcome::Failed,
            Some(format!(
                "the entry was renamed to {} (so it is no longer an entry and no job reads it) but not entirely \
                 removed: {failure}; the next `cache prune` finishes the removal",
                trash_path.display()
            )),
        ),
    }
}

fn remove_locks(
    fence: &Fence<'_>,
    version_fd: &OwnedFd,
    name: &OsStr,
    path: &Path,
    item: &mut Pruned,
    options: &PruneOptions,
) {
    let older_than = options.lock_age();
    let entry_fd = match remove::open_checked(version_fd, name, path, fence.root_id) {
        Ok(fd) => fd,
        Err(failure) => {
            item.finish(
                Outcome::Failed,
                Some(format!("{failure}; nothing was changed")),
            );
            return;
        }
    };
    let Ok(listing) = fs_err::read_dir(path) else {
        item.finish(
            Outcome::Kept,
            Some("the entry can no longer be read; nothing was changed".to_owned()),
        );
        return;
    };
    let mut locks: Vec<String> = listing
        .filter_map(|child| child.ok())
        .filter_map(|child| child.file_name().into_string().ok())
        .filter(|name| is_lock_name(name.as_bytes()))
        .collect();
    locks.sort();
    let now = SystemTime::now();
    let mut failures = Vec::new();
    let mut freed = 0u64;
    for lock in locks {
        let lock_path = path.join(&lock);
        let Ok(metadata) = std::fs::symlink_metadata(&lock_path) else {
            continue;
        };
        let age = metadata
            .modified()
            .map_or(Duration::ZERO, |modified| lock_age(now, modified));
        if !metadata.is_file() || age < older_than {
            continue;
        }
        let removed =
            remove::take_lock(&entry_fd, OsStr::new(&lock), &lock_path).and_then(|held| {
                remove::remove_held_lock(&entry_fd, OsStr::new(&lock), &lock_path, &held)
            });
        match removed {
            Ok(()) => {
                freed = freed.saturating_add(metadata.len());
                item.locks_removed.push(lock);
            }
            Err(Failure::LockHeld(_)) => item
                .locks_kept
                .push(format!("{lock}: held by a running process")),
            Err(failure) => {
                item.locks_kept.push(format!("{lock}: {failure}"));
                failures.push(failure.to_string());
            }
        }
    }
    item.bytes_freed = freed;
    let kept =
        (!item.locks_kept.is_empty()).then(|| format!("kept {}", item.locks_kept.join("; ")));
    if !failures.is_empty() {
        let removed = if item.locks_removed.is_empty() {
            "no lock was removed".to_owned()
        } else {
            format!("removed {}", item.locks_removed.join(", "))
        };
        item.finish(
            Outcome::Failed,
            Some(format!("{removed}; {}", kept.unwrap_or_default())),
        );
        item.bytes_freed = freed;
    } else if !item.locks_removed.is_empty() {
        let message = kept;
        item.finish(Outcome::Removed, message);
        item.bytes_freed = freed;
    } else if let Some(kept) = kept {
        item.finish(Outcome::Kept, Some(kept));
    } else {
        item.finish(
            Outcome::Kept,
            Some("no lock is that old any more; nothing was changed".to_owned()),
        );
    }
}

/// A fresh name for a folder being removed, in the same version folder, never an entry name.
fn trash_name(name: &OsStr) -> std::ffi::OsString {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let mut trash = std::ffi::OsString::from(REMOVING_PREFIX);
    trash.push(name);
    trash.push(format!(
        "-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    trash
}

fn remove_empty_version_folders(fence: &Fence<'_>, planned: &[Pruned]) {
    let mut versions: Vec<&str> = planned
        .iter()
        .filter(|item| item.done)
        .filter_map(|item| item.entry.path.split('/').next())
        .collect();
    versions.sort_unstable();
    versions.dedup();
    for version in versions {
        // Only an empty folder can be removed; a non-empty one stays, which is what we want.
        let path = fence.root.join(version);
        if remove::remove_dir_at(fence.root_fd, OsStr::new(version), &path).is_ok() {
            tracing::info!(version, "removed the emptied compiler-version folder");
        }
    }
}
