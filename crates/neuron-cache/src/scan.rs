//! Inspection: walk a cache root and classify every entry, without following symbolic links.
//!
//! The walk is two levels deep (`neuronxcc-*/MODULE_*`) plus one listing per entry. It never
//! follows a symbolic link: links at the version or entry level are skipped and reported, links
//! inside an entry are listed but do not count as the file they are named after. File types come
//! with the listing (`d_type`), sizes from `lstat`; entry folders are opened with `O_NOFOLLOW`.
//!
//! Each entry costs `openat` (relative to its open version folder, so one path component is
//! looked up, not the whole path), `getdents64` and `close`, plus one `fstatat` per file when
//! sizes are measured and per lock file otherwise; nothing else, and no allocation per file
//! beyond the names kept. That is fewer system calls than `du -sb` makes for the same tree.
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

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use crate::model::{CacheReport, Entry, EntryFiles, Naming, Skipped, State, Summary};
use crate::{Error, Result};

/// The prefix of compiler-version folders.
pub const VERSION_PREFIX: &str = "neuronxcc-";
/// The prefix of entry folders.
pub const ENTRY_PREFIX: &str = "MODULE_";
/// The prefix of an entry being removed by `prune` (renamed first, then deleted), so that a
/// killed prune leaves nothing that looks like an entry; the next prune finishes the removal.
pub const REMOVING_PREFIX: &str = ".trnkit-removing-";

/// trnkit's own bookkeeping files at the cache root (for example the mark the local profile's
/// compile step leaves) start with this: they are neither entries nor reported as skipped.
pub const TRNKIT_FILE_PREFIX: &str = ".trnkit-";

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
    let root_fd =
        rustix::fs::open(root, DIR_FLAGS & !OFlags::NOFOLLOW, Mode::empty()).map_err(|errno| {
            Error::InspectRoot {
                path: root.to_owned(),
                source: errno.into(),
            }
        })?;
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    // The version folders, open: entries are opened relative to them (one path component to
    // look up instead of the whole path).
    let mut version_fds: Vec<OwnedFd> = Vec::new();
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
        if name.starts_with(TRNKIT_FILE_PREFIX) && file_type.is_file() {
            continue;
        }
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
        let opened = rustix::fs::openat(
            &root_fd,
            child.file_name().as_os_str(),
            DIR_FLAGS,
            Mode::empty(),
        )
        .and_then(|fd| Ok((Dir::read_from(&fd)?, fd)));
        let (mut listing, version_fd) = match opened {
            Ok(opened) => opened,
            Err(errno) => {
                skipped.push(Skipped {
                    path: name,
                    reason: format!("unreadable folder: {}", std::io::Error::from(errno)),
                });
                continue;
            }
        };
        let version_index = version_fds.len();
        while let Some(entry) = listing.read() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(errno) => {
                    skipped.push(Skipped {
                        path: name.clone(),
                        reason: format!("listing stopped: {}", std::io::Error::from(errno)),
                    });
                    break;
                }
            };
            let entry_name_bytes = entry.file_name().to_bytes();
            if entry_name_bytes == b"." || entry_name_bytes == b".." {
                continue;
            }
            let entry_name = String::from_utf8_lossy(entry_name_bytes);
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
            let file_type = match entry.file_type() {
                FileType::Unknown => {
                    rustix::fs::statat(&version_fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                        .map(|stat| FileType::from_raw_mode(stat.st_mode))
                }
                file_type => Ok(file_type),
            };
            match file_type {
                Ok(FileType::Symlink) => {
                    skipped.push(Skipped {
                        path: relative,
                        reason: "symbolic link (not followed)".to_owned(),
                    });
                }
                Ok(FileType::Directory) => candidates.push(Candidate {
                    path: version_dir.join(OsStr::from_bytes(entry_name_bytes)),
                    relative,
                    compiler_version: version.clone(),
                    graph_key: graph_key.to_owned(),
                    flags_key: flags_key.to_owned(),
                    at: Some((version_index, entry.file_name().to_owned())),
                }),
                Ok(_) => skipped.push(Skipped {
                    path: relative,
                    reason: "not a folder".to_owned(),
                }),
                Err(errno) => skipped.push(Skipped {
                    path: relative,
                    reason: format!("unreadable: {}", std::io::Error::from(errno)),
                }),
            }
        }
        version_fds.push(version_fd);
    }

    // In path order, so that the results come out sorted.
    candidates.sort_unstable_by(|a, b| a.relative.cmp(&b.relative));
    let results = classify_all(&candidates, &version_fds, options);
    let mut entries = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(entry) => entries.push(entry),
            Err(skip) => skipped.push(skip),
        }
    }
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

/// How entry and version folders are opened: read-only, never through a symbolic link.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

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
    /// The open version folder (an index into the walk's list) and the entry's name in it, when
    /// found by the walk; `None` opens `path`.
    pub(crate) at: Option<(usize, CString)>,
}

fn classify_all(
    candidates: &[Candidate],
    version_fds: &[OwnedFd],
    options: &InspectOptions,
) -> Vec<Result<Entry, Skipped>> {
    let threads = match options.threads {
        0 => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .max(8),
        threads => threads,
    };
    let one = |candidate: &Candidate| {
        let opened = match &candidate.at {
            Some((version, name)) => rustix::fs::openat(
                &version_fds[*version],
                name.as_c_str(),
                DIR_FLAGS,
                Mode::empty(),
            ),
            None => rustix::fs::open(&candidate.path, DIR_FLAGS, Mode::empty()),
        };
        opened
            .map_err(|errno| unreadable(candidate, errno))
            .and_then(|fd| classify_open(fd, candidate, options))
    };
    if threads <= 1 || candidates.len() < 256 {
        return candidates.iter().map(one).collect();
    }
    // Work is handed out in small batches from a shared counter, so one slow folder (a remote
    // server's hiccup) does not hold up a whole pre-assigned share.
    const BATCH: usize = 64;
    let next = AtomicUsize::new(0);
    let one = &one;
    let mut batches: Vec<(usize, Vec<Result<Entry, Skipped>>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(BATCH, Ordering::Relaxed);
                        if start >= candidates.len() {
                            break done;
                        }
                        let end = start.saturating_add(BATCH).min(candidates.len());
                        done.push((start, candidates[start..end].iter().map(one).collect()));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("classification does not panic"))
            .collect()
    });
    batches.sort_unstable_by_key(|(start, _)| *start);
    let mut results = Vec::with_capacity(candidates.len());
    for (_, batch) in batches {
        results.extend(batch);
    }
    results
}

fn unreadable(candidate: &Candidate, errno: rustix::io::Errno) -> Skipped {
    Skipped {
        path: candidate.relative.clone(),
        reason: format!("unreadable folder: {}", std::io::Error::from(errno)),
    }
}

/// Reads one entry folder (by its path) and classifies it; `Err` when the folder cannot be read.
pub(crate) fn classify(candidate: &Candidate, options: &InspectOptions) -> Result<Entry, Skipped> {
    let fd = rustix::fs::open(&candidate.path, DIR_FLAGS, Mode::empty())
        .map_err(|errno| unreadable(candidate, errno))?;
    classify_open(fd, candidate, options)
}

/// Calls `each` with the name and type (`Unknown` when the file system does not say) of every
/// child of the open folder `fd`, `.` and `..` included. On Linux the listing is read into a
/// buffer each thread keeps, so listing allocates nothing.
#[cfg(target_os = "linux")]
fn for_each_child(
    fd: &OwnedFd,
    mut each: impl FnMut(&std::ffi::CStr, FileType),
) -> Result<(), rustix::io::Errno> {
    use std::cell::RefCell;
    use std::mem::MaybeUninit;
    thread_local! {
        static BUFFER: RefCell<Vec<MaybeUninit<u8>>> =
            RefCell::new(vec![MaybeUninit::uninit(); 32 * 1024]);
    }
    BUFFER.with_borrow_mut(|buffer| {
        let mut listing = rustix::fs::RawDir::new(fd, buffer);
        while let Some(child) = listing.next() {
            let child = child?;
            each(child.file_name(), child.file_type());
        }
        Ok(())
    })
}

/// See the Linux version.
#[cfg(not(target_os = "linux"))]
fn for_each_child(
    fd: &OwnedFd,
    mut each: impl FnMut(&std::ffi::CStr, FileType),
) -> Result<(), rustix::io::Errno> {
    let mut listing = Dir::read_from(fd)?;
    while let Some(child) = listing.read() {
        let child = child?;
        each(child.file_name(), child.file_type());
    }
    Ok(())
}

/// The modification time in a `stat`, if representable.
#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
fn modified(stat: &rustix::fs::Stat) -> Option<SystemTime> {
    let seconds = i64::from(stat.st_mtime);
    let nanos = u32::try_from(stat.st_mtime_nsec).ok()?;
    match u64::try_from(seconds) {
        Ok(seconds) => SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos)),
        Err(_) => SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs())),
    }
}

/// Classifies the entry folder open as `fd`: one listing, plus one `lstat` per file when sizes
/// are measured (else per lock file only), each relative to the folder.
fn classify_open(
    fd: OwnedFd,
    candidate: &Candidate,
    options: &InspectOptions,
) -> Result<Entry, Skipped> {
    let mut files = EntryFiles::default();
    let mut bytes = 0u64;
    let mut youngest_lock: Option<Duration> = None;
    let mut legacy_names = false;
    let mut current_names = false;
    let listed = for_each_child(&fd, |name, mut file_type| {
        let name_bytes = name.to_bytes();
        if name_bytes == b"." || name_bytes == b".." {
            return;
        }
        // The type comes with the listing (no system call where the file system reports it);
        // `lstat` never follows a symbolic link.
        let is_lock = is_lock_name(name_bytes);
        let wanted = options.sizes
            || file_type == FileType::Unknown
            || (is_lock && file_type == FileType::RegularFile);
        let stat = if wanted {
            rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()
        } else {
            None
        };
        if file_type == FileType::Unknown {
            match &stat {
                Some(stat) => file_type = FileType::from_raw_mode(stat.st_mode),
                None => return,
            }
        }
        let size = match &stat {
            Some(stat) if options.sizes => u64::try_from(stat.st_size).unwrap_or(0),
            _ => 0,
        };
        if file_type == FileType::Symlink {
            bytes = bytes.saturating_add(size);
            files
                .symlinks
                .push(String::from_utf8_lossy(name_bytes).into_owned());
            return;
        }
        if file_type == FileType::Directory {
            if options.sizes {
                bytes = bytes.saturating_add(tree_bytes(
                    &candidate.path.join(OsStr::from_bytes(name_bytes)),
                    0,
                ));
            }
            return;
        }
        bytes = bytes.saturating_add(size);
        if file_type != FileType::RegularFile {
            return;
        }
        match name_bytes {
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
                files.neff_bytes = if options.sizes {
                    stat.as_ref().map(|_| size)
                } else {
                    None
                };
            }
            b"model.done" => {
                current_names = true;
                files.done = true;
            }
            b"model.log" => files.log = true,
            _ if is_lock => {
                let age = stat
                    .as_ref()
                    .and_then(modified)
                    .map_or(Duration::ZERO, |modified| lock_age(options.now, modified));
                youngest_lock = Some(youngest_lock.map_or(age, |young| young.min(age)));
                files
                    .locks
                    .push(String::from_utf8_lossy(name_bytes).into_owned());
            }
            _ => {}
        }
    });
    listed.map_err(|errno| Skipped {
        path: candidate.relative.clone(),
        reason: format!("listing stopped: {}", std::io::Error::from(errno)),
    })?;
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
