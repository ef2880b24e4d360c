//! Exclusive locks on outputs: `{target}.lock`, held with `flock` for as long as a run writes
//! `target` (a dataset prefix, a staged directory, a merged JSONL file).
//!
//! Two runs on one output would write the same files; the second to start fails at once with
//! the holder's pid, host, command and start time (written into the lock file), or, with
//! [`LockOptions::wait`], waits for the first to end. The kernel drops a `flock` when its process
//! dies, so a killed run never leaves a lock that blocks the next one (on Lustre, once the dead
//! client is evicted).
//!
//! The lock file is removed by its holder on release, while still locked; a run that waited on
//! the removed file sees that the path now names another file (or none) and locks again, so two
//! runs never both believe they hold the lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::indexed::with_suffix;

/// How to take a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    /// Wait for the holder to finish instead of failing at once.
    pub wait: bool,
    /// What this run is, as other runs will be told (the command line, say).
    pub command: String,
}

impl Default for LockOptions {
    /// Fail at once; the command is described as `trnkit pipeline`.
    fn default() -> Self {
        LockOptions {
            wait: false,
            command: "trnkit pipeline".to_owned(),
        }
    }
}

/// Who holds a lock, as its holder wrote it into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// The process id.
    pub pid: u32,
    /// The host (a pod's name in Kubernetes).
    pub host: String,
    /// The command.
    pub command: String,
    /// When it took the lock (RFC 3339, UTC).
    pub started: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host {}, `{}`, since {}",
            self.pid, self.host, self.command, self.started
        )
    }
}

/// The lock file of `target`: `{target}.lock`.
pub fn lock_path(target: &Path) -> PathBuf {
    with_suffix(target, ".lock")
}

/// A held lock; dropping it removes the lock file and releases the lock.
#[derive(Debug)]
pub struct OutputLock {
    target: PathBuf,
    path: PathBuf,
    // Held open: the `flock` lives as long as this descriptor.
    _file: File,
}

/// Longest lock file read back (a holder record is a few hundred bytes).
const MAX_HOLDER_BYTES: u64 = 4096;
/// Longest command kept in a holder record.
const MAX_COMMAND_CHARS: usize = 400;

impl OutputLock {
    /// Takes the lock of `target` (creating its parent directory), failing with
    /// [`Error::Locked`] when another run holds it, unless `options.wait`.
    pub fn acquire(target: &Path, options: &LockOptions) -> Result<OutputLock> {
        let path = lock_path(target);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
        }
        let file = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io("open the lock file", &path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = read_holder(&path);
                    if !options.wait {
                        return Err(Error::Locked {
                            path: path.clone(),
                            holder,
                        });
                    }
                    tracing::info!(lock = %path.display(), %holder, "waiting for the run that holds the lock");
                    file.lock()
                        .map_err(|e| Error::io("wait for the lock", &path, e))?;
                }
                Err(std::fs::TryLockError::Error(e)) if flock_unsupported(&e) => {
                    tracing::warn!(
                        lock = %path.display(),
                        "the file system does not support flock; concurrent runs on this output are not detected (mount Lustre with -o flock)"
                    );
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io("lock", &path, e));
                }
            }
            // The previous holder removes the file on release: lock again unless the path still
            // names the file we locked.
            let ours = file.metadata().map_err(|e| Error::io("stat", &path, e))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => break file,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("stat", &path, e)),
            }
        };
        let holder = Holder {
            pid: std::process::id(),
            host: hostname(),
            command: options.command.chars().take(MAX_COMMAND_CHARS).collect(),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        let record = serde_json::to_vec(&holder).map_err(|e| Error::Config(e.to_string()))?;
        file.set_len(0)
            .and_then(|()| (&file).write_all(&record))
            .and_then(|()| (&file).write_all(b"\n"))
            .map_err(|e| Error::io("write", &path, e))?;
        tracing::debug!(lock = %path.display(), "lock taken");
        Ok(OutputLock {
            target: target.to_owned(),
            path,
            _file: file,
        })
    }

    /// Takes the locks of every target, in sorted order (so two runs that wait on overlapping
    /// sets cannot deadlock), each once.
    pub fn acquire_all(targets: &[PathBuf], options: &LockOptions) -> Result<Vec<OutputLock>> {
        let mut sorted: Vec<&PathBuf> = targets.iter().collect();
        sorted.sort();
        sorted.dedup();
        sorted
            .into_iter()
            .map(|target| OutputLock::acquire(target, options))
            .collect()
    }

    /// What the lock protects.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked (see the module docs); the descriptor closes after this.
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(lock = %self.path.display(), error = %e, "could not remove the lock file");
        }
    }
}

/// Whether `flock` failed because the file system does not offer it (Linux: `ENOLCK`,
/// `ENOSYS` from a Lustre client mounted without `-o flock`, `EOPNOTSUPP`).
fn flock_unsupported(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::Unsupported
        || matches!(error.raw_os_error(), Some(37 | 38 | 95))
}

/// The holder record in a lock file, or what the file holds when it is not one.
fn read_holder(path: &Path) -> String {
    let mut text = String::new();
    let read = File::options()
        .read(true)
        .open(path)
        .and_then(|file| file.take(MAX_HOLDER_BYTES).read_to_string(&mut text));
    match read {
        Err(e) => format!("unknown holder (the lock file could not be read: {e})"),
        Ok(_) => match serde_json::from_str::<Holder>(text.trim()) {
            Ok(holder) => holder.to_string(),
            Err(_) if text.trim().is_empty() => "a run that has not written its record yet".into(),
            Err(_) => format!("unknown holder (lock file holds {:?})", text.trim()),
        },
    }
}

/// This machine's name: the kernel's hostname (a pod's name in Kubernetes).
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            fs_err::read_to_string(path)
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
