//! Inspection: walk a cache root and classify every entry, without following symbolic links.
//!
//! The walk is two levels deep (`neuronxcc-*/MODULE_*`) plus one `read_dir` per entry. It never
//! follows a symbolic link: links at the version or entry level are skipped and reported, links
//! inside an entry are listed but do not count as the file they are named after. File types and
//! sizes come from `lstat` (`DirEntry::file_type`/`metadata`, which do not follow links).
//! The root itself is taken as given, so a root that is a link (say `/shared/neuron_cache` ->
//! elsewhere) is followed once; nothing below it is.
//! Unreadable folders are reported in `skipped` and the walk goes on; note that a process
//! running as root reads folders whatever their permission bits.
//!
//! Entries are classified on all cores (`std::thread::scope`); inspecting 100,000 entries is
//! measured by `cargo bench -p neuron-cache`.
//!
//! Inspection only reads. It is safe while compilations run: an entry that changes during the
//! walk is reported as it was when its folder was read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::model::{CacheReport, Entry, EntryFiles, Naming, Skipped, State, Summary};
use crate::{Error, Result};

/// The prefix of compiler-version folders.
pub const VERSION_PREFIX: &str = "neuronxcc-";
/// The prefix of entry folders.
pub const ENTRY_PREFIX: &str = "MODULE_";
/// The prefix of an entry being removed by `prune` (renamed first, then deleted), so that a
/// killed prune leaves nothing that looks like an entry; the next prune finishes the removal.
pub const REMOVING_PREFIX: &str = ".trnkit-removing-";

/// Options of [`inspect`].
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// A lock older than this is stale. Default: 2 hours (a single Llama-2 7B graph compiles in
    /// minutes to about an hour on trn1).
    pub stale_after: Duration,
    /// The time lock ages are measured against (now, except in tests).
    pub now: SystemTime,
    /// Worker threads; 0 means one per core, and at least 8 (on Lustre every `stat` is a round
    /// trip to a server, so more requests in flight pay off even on few cores).
    pub threads: usize,
    /// Measure sizes (`bytes`, `neff_bytes`): one `lstat` per file. Without it, inspection only
    /// reads folder listings (file types come with them) plus one `lstat` per lock file for its
    /// age — about half the system calls locally, far fewer round trips on Lustre — and every
    /// `bytes` is 0.
    pub sizes: bool,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(2 * 60 * 60),
            now: SystemTime::now(),
            threads: 0,
            sizes: true,
        }
    }
}

/// Inspects the cache under `root` (the folder `NEURON_COMPILE_CACHE_URL` names).
///
/// Fails only when `root` itself cannot be read; everything below it that cannot be read or is
/// not an entry goes to [`CacheReport::skipped`].
pub fn inspect(root: &Path, options: &InspectOptions) -> Result<CacheReport> {
    let metadata = std::fs::metadata(root).map_err(|source| Error::InspectRoot {
        path: root.to_owned(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(Error::RootNotADirectory {
            path: root.to_owned(),
        });
    }
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let top = std::fs::read_dir(root).map_err(|source| Error::InspectRoot {
        path: root.to_owned(),
        source,
    })?;
    for child in top {
        let child = match child {
            Ok(child) => child,
            Err(error) => {
                skipped.push(Skipped {
                    path: ".".to_owned(),
                    reason: format!("could not list the root: {error}"),
                });
                continue;
            }
        };
        let name = child.file_name().to_string_lossy().into_owned();
        let file_type = match child.file_type() {
            Ok(file_type) => file_type,
            Err(error) => {
                skipped.push(Skipped {
                    path: name,
                    reason: format!("unreadable: {error}"),
                });
                continue;
            }
        };
        let Some(version) = parse_version_folder(&name) else {
            if name == "neuron-compile-cache" && file_type.is_dir() {
                notes.push(format!(
                    "{}/neuron-compile-cache looks like the extra level older neuron_parallel_compile versions \
                     created; inspect it with --root {}",
                    root.display(),
                    root.join("neuron-compile-cache").display()
                ));
            }
            skipped.push(Skipped {
                path: name,
                reason: "not a neuronxcc-<version> folder".to_owned(),
            });
            continue;
        };
        if file_type.is_symlink() {
            skipped.push(Skipped {
                path: name,
                reason: "symbolic link (not followed)".to_owned(),
            });
            continue;
        }
        if !file_type.is_dir() {
            skipped.push(Skipped {
                path: name,
                reason: "not a folder".to_owned(),
            });
            continue;
        }
        let version = version.to_owned();
        let version_dir = child.path();
        let listing = match std::fs::read_dir(&version_dir) {
            Ok(listing) => listing,
            Err(error) => {
                skipped.push(Skipped {
                    path: name,
                    reason: format!("unreadable folder: {error}"),
                });
                continue;
            }
        };
        for entry in listing {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    skipped.push(Skipped {
                        path: name.clone(),
                        reason: format!("listing stopped: {error}"),
                    });
                    break;
                }
            };
            let entry_name = entry.file_name().to_string_lossy().into_owned();
            let relative = format!("{name}/{entry_name}");
            if entry_name.starts_with(REMOVING_PREFIX) {
                skipped.push(Skipped {
                    path: relative,
                    reason: "left by an interrupted prune; the next `cache prune` removes it"
                        .to_owned(),
                });
                continue;
            }
            let Some((graph_key, flags_key)) = parse_entry_name(&entry_name) else {
                skipped.push(Skipped {
                    path: relative,
                    reason: "not a MODULE_<graph key>+<flags key> name".to_owned(),
                });
                continue;
            };
            match entry.file_type() {
                Ok(file_type) if file_type.is_symlink() => {
                    skipped.push(Skipped {
                        path: relative,
                        reason: "symbolic link (not followed)".to_owned(),
                    });
                }
                Ok(file_type) if file_type.is_dir() => candidates.push(Candidate {
                    path: entry.path(),
                    relative,
                    compiler_version: version.clone(),
                    graph_key: graph_key.to_owned(),
                    flags_key: flags_key.to_owned(),
                }),
                Ok(_) => skipped.push(Skipped {
                    path: relative,
                    reason: "not a folder".to_owned(),
                }),
                Err(error) => skipped.push(Skipped {
                    path: relative,
                    reason: format!("unreadable: {error}"),
                }),
            }
        }
    }

    let results = classify_all(candidates, options);
    let mut entries = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(entry) => entries.push(entry),
            Err(skip) => skipped.push(skip),
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(CacheReport {
        root: root.display().to_string(),
        stale_after_seconds: options.stale_after.as_secs(),
        sizes_measured: options.sizes,
        summary: Summary::of(&entries),
        entries,
        skipped,
        notes,
    })
}

/// The compiler version of a `neuronxcc-<version>` folder name; `None` for any other name or an
/// empty version.
pub fn parse_version_folder(name: &str) -> Option<&str> {
    name.strip_prefix(VERSION_PREFIX)
        .filter(|version| !version.is_empty())
}

/// Whether a file name is a lock file's (`*.lock`, as `model.hlo_module.pb.lock`).
pub fn is_lock_name(name: &[u8]) -> bool {
    name.ends_with(b".lock")
}

/// The age of a file modified at `modified`, seen at `now`; zero for a time in the future
/// (another node's clock is ahead): a lock of unknown age counts as young.
pub fn lock_age(now: SystemTime, modified: SystemTime) -> Duration {
    now.duration_since(modified).unwrap_or(Duration::ZERO)
}

/// Splits `MODULE_<graph key>+<flags key>`; `None` unless the graph key is hex or decimal
/// (1 to 64 characters) and the flags key is 8 hex digits.
pub fn parse_entry_name(name: &str) -> Option<(&str, &str)> {
    let (graph_key, flags_key) = name.strip_prefix(ENTRY_PREFIX)?.split_once('+')?;
    let graph_ok =
        (1..=64).contains(&graph_key.len()) && graph_key.bytes().all(|b| b.is_ascii_hexdigit());
    let flags_ok = flags_key.len() == 8 && flags_key.bytes().all(|b| b.is_ascii_hexdigit());
    (graph_ok && flags_ok).then_some((graph_key, flags_key))
}

/// An entry folder found by the walk, before classification.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) path: PathBuf,
    pub(crate) relative: String,
    pub(crate) compiler_version: String,
    pub(crate) graph_key: String,
    pub(crate) flags_key: String,
}

fn classify_all(
    candidates: Vec<Candidate>,
    options: &InspectOptions,
) -> Vec<Result<Entry, Skipped>> {
    let threads = match options.threads {
        0 => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .max(8),
        threads => threads,
    };
    if threads <= 1 || candidates.len() < 256 {
        return candidates
            .iter()
            .map(|candidate| classify(candidate, options))
            .collect();
    }
    // Work is handed out in small batches from a shared counter, so one slow folder (a remote
    // server's hiccup) does not hold up a whole pre-assigned share.
    const BATCH: usize = 64;
    let next = AtomicUsize::new(0);
    let candidates = &candidates;
    let mut results: Vec<(usize, Result<Entry, Skipped>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(BATCH, Ordering::Relaxed);
                        if start >= candidates.len() {
                            break done;
                        }
                        let end = (start + BATCH).min(candidates.len());
                        for (offset, candidate) in candidates[start..end].iter().enumerate() {
                            done.push((start + offset, classify(candidate, options)));
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("classification does not panic"))
            .collect()
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Reads one entry folder and classifies it; `Err` when the folder cannot be read.
pub(crate) fn classify(candidate: &Candidate, options: &InspectOptions) -> Result<Entry, Skipped> {
    let listing = std::fs::read_dir(&candidate.path).map_err(|error| Skipped {
        path: candidate.relative.clone(),
        reason: format!("unreadable folder: {error}"),
    })?;
    let mut files = EntryFiles::default();
    let mut bytes = 0u64;
    let mut youngest_lock: Option<Duration> = None;
    let mut legacy_names = false;
    let mut current_names = false;
    for child in listing {
        let child = child.map_err(|error| Skipped {
            path: candidate.relative.clone(),
            reason: format!("listing stopped: {error}"),
        })?;
        // The type comes with the listing (no system call where the file system reports it);
        // `DirEntry::file_type` and `DirEntry::metadata` never follow symbolic links.
        let Ok(file_type) = child.file_type() else {
            continue;
        };
        let file_name = child.file_name();
        let name = file_name.as_encoded_bytes();
        let is_lock = is_lock_name(name);
        let metadata = if options.sizes || (is_lock && file_type.is_file()) {
            child.metadata().ok()
        } else {
            None
        };
        let size = metadata.as_ref().map_or(0, std::fs::Metadata::len);
        if file_type.is_symlink() {
            bytes = bytes.saturating_add(size);
            files
                .symlinks
                .push(file_name.to_string_lossy().into_owned());
            continue;
        }
        if file_type.is_dir() {
            if options.sizes {
                bytes = bytes.saturating_add(tree_bytes(&child.path(), 0));
            }
            continue;
        }
        bytes = bytes.saturating_add(size);
        if !file_type.is_file() {
            continue;
        }
        match name {
            b"model.hlo_module.pb" => {
                current_names = true;
                files.hlo = Some("model.hlo_module.pb".to_owned());
            }
            b"model.hlo.pb" => {
                legacy_names = true;
                files.hlo.get_or_insert_with(|| "model.hlo.pb".to_owned());
            }
            b"compile_flags.json" => {
                current_names = true;
                files.flags_file = Some("compile_flags.json".to_owned());
            }
            b"compile_flags.txt" => {
                legacy_names = true;
                files
                    .flags_file
                    .get_or_insert_with(|| "compile_flags.txt".to_owned());
            }
            b"model.neff" => {
                files.neff = true;
                files.neff_bytes = metadata.as_ref().map(std::fs::Metadata::len);
            }
            b"model.done" => {
                current_names = true;
                files.done = true;
            }
            b"model.log" => files.log = true,
            _ if is_lock => {
                let age = metadata
                    .and_then(|metadata| metadata.modified().ok())
                    .map_or(Duration::ZERO, |modified| lock_age(options.now, modified));
                youngest_lock = Some(youngest_lock.map_or(age, |young| young.min(age)));
                files.locks.push(file_name.to_string_lossy().into_owned());
            }
            _ => {}
        }
    }
    files.locks.sort();
    files.symlinks.sort();
    let naming = match (current_names, legacy_names) {
        (true, _) => Naming::Current,
        (false, true) => Naming::Legacy,
        (false, false) => Naming::Unknown,
    };
    let (state, detail) = match (youngest_lock, files.neff, files.done, files.log) {
        (Some(age), ..) if age < options.stale_after => (
            State::Locked,
            format!(
                "locked {} ago: a compilation is probably running",
                humantime::format_duration(round(age))
            ),
        ),
        (Some(age), ..) => (
            State::StaleLock,
            format!(
                "locked {} ago, longer than {}: probably left by a killed compilation",
                humantime::format_duration(round(age)),
                humantime::format_duration(options.stale_after)
            ),
        ),
        (None, true, true, _) => (
            State::Complete,
            "compiled (model.neff and model.done)".to_owned(),
        ),
        (None, false, _, true) => (
            State::Failed,
            "cached compilation failure (model.log without model.neff)".to_owned(),
        ),
        (None, true, false, _) if naming == Naming::Legacy => (
            State::Complete,
            "compiled (model.neff; old SDKs wrote no done marker)".to_owned(),
        ),
        (None, true, false, _) => (
            State::Incomplete,
            "model.neff without model.done: half-written".to_owned(),
        ),
        (None, false, _, false) if files.hlo.is_some() => (
            State::Incomplete,
            "graph collected but never compiled".to_owned(),
        ),
        (None, false, ..) => (
            State::Incomplete,
            "no graph, result or failure record".to_owned(),
        ),
    };
    Ok(Entry {
        path: candidate.relative.clone(),
        compiler_version: candidate.compiler_version.clone(),
        graph_key: candidate.graph_key.clone(),
        flags_key: candidate.flags_key.clone(),
        state,
        bytes,
        naming,
        lock_age_seconds: youngest_lock.map(|age| age.as_secs()),
        files,
        detail,
    })
}

fn round(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}

/// Bytes below `directory`, not following links, at most 8 levels deep.
fn tree_bytes(directory: &Path, depth: usize) -> u64 {
    if depth > 8 {
        return 0;
    }
    let Ok(listing) = std::fs::read_dir(directory) else {
        return 0;
    };
    listing
        .filter_map(|child| child.ok())
        .filter_map(|child| Some((child.metadata().ok()?, child.path())))
        .map(|(metadata, path)| {
            if metadata.is_dir() {
                tree_bytes(&path, depth + 1)
            } else {
                metadata.len()
            }
        })
        .fold(0, u64::saturating_add)
}
