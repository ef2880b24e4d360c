//! Writing files so that no reader, and no interrupted run, ever sees half of one, and no
//! command ever deletes what it did not write.
//!
//! - [`write_atomic`]: one file, through a temporary name unique to this write.
//! - [`OutputDir`]: a directory of generated files (`render --out`, `deploy --dry-run --out`,
//!   `image render --out`). trnkit replaces such a directory only when every entry in it is one
//!   trnkit wrote there itself, as listed in its marker file [`MARKER`]; a directory holding
//!   anything else, or a path that is not a directory, is refused, and nothing is touched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The marker trnkit leaves in every directory it generates: the relative path of each file it
/// wrote, one a line, `/`-separated.
pub const MARKER: &str = ".trnkit-output";

/// A name next to `path` that no other write, in this process or another, uses at the same
/// time: `.<name>.<pid>.<n>.tmp`.
pub fn unique_sibling(path: &Path, suffix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_owned());
    let file = format!(".{name}.{}.{n}.{nanos:x}.{suffix}", std::process::id());
    match path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        Some(parent) => parent.join(file),
        None => PathBuf::from(file),
    }
}

/// Writes `contents` to a temporary name unique to this write, then renames it to `path`:
/// `path` holds either its old contents or all of the new ones, and two concurrent writers
/// never write into the same temporary file. Errors name the file (fs-err).
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    let temporary = unique_sibling(path, "tmp");
    if let Err(error) = fs_err::write(&temporary, contents) {
        let _ = fs_err::remove_file(&temporary);
        return Err(error);
    }
    fs_err::rename(&temporary, path).inspect_err(|_| {
        let _ = fs_err::remove_file(&temporary);
    })
}

/// Reads a text file of at most `limit` bytes; a longer one (or an endless one such as
/// `/dev/zero`) is an `InvalidData` error stating the limit, read no further than it. Callers
/// name the file (the errors of opening and reading name it already, through fs-err).
pub fn read_to_string_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let file = fs_err::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is larger than {limit} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is not UTF-8 text: byte {} starts an invalid sequence",
                error.utf8_error().valid_up_to() + 1
            ),
        )
    })
}

/// Why an output directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The path exists and is not a directory.
    #[error(
        "{}: exists and is not a directory; give --out a new or empty directory",
        path.display()
    )]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The directory holds entries trnkit did not write.
    #[error(
        "{}: holds {} that trnkit did not write ({}); trnkit replaces only directories it \
         generated itself: give --out a new or empty directory, or move those away",
        path.display(),
        if foreign.len() == 1 { "an entry" } else { "entries" },
        summary(foreign)
    )]
    Foreign {
        /// The directory.
        path: PathBuf,
        /// Up to all of its entries that no marker lists.
        foreign: Vec<String>,
    },
    /// Reading, writing or renaming failed.
    #[error("could not write the output directory {}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed (fs-err names the file).
        #[source]
        source: std::io::Error,
    },
}

/// Up to five names, and how many more there are.
fn summary(names: &[String]) -> String {
    let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(5) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// A directory of generated files, built aside and swapped in whole.
#[derive(Debug)]
pub struct OutputDir {
    dir: PathBuf,
    staging: PathBuf,
    entries: BTreeSet<String>,
}

impl OutputDir {
    /// Checks that `dir` may be replaced (absent, empty, or generated by trnkit and unchanged
    /// since) and starts a new set of files beside it. Nothing under `dir` is touched yet.
    pub fn begin(dir: &Path) -> Result<Self, OutputError> {
        check_replaceable(dir)?;
        let io = |source| OutputError::Io {
            path: dir.to_owned(),
            source,
        };
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent).map_err(io)?;
        }
        let staging = unique_sibling(dir, "new");
        fs_err::create_dir(&staging).map_err(io)?;
        Ok(Self {
            dir: dir.to_owned(),
            staging,
            entries: BTreeSet::new(),
        })
    }

    /// Writes one file, `relative` to the directory (its parents are created).
    pub fn write(
        &mut self,
        relative: &Path,
        contents: impl AsRef<[u8]>,
    ) -> Result<PathBuf, OutputError> {
        let io = |source| OutputError::Io {
            path: self.dir.clone(),
            source,
        };
        let path = self.staging.join(relative);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).map_err(io)?;
        }
        fs_err::write(&path, contents).map_err(io)?;
        self.entries.insert(slash_path(relative));
        Ok(self.dir.join(relative))
    }

    /// The path a relative name will have once committed.
    pub fn staged_path(&self, relative: &Path) -> PathBuf {
        self.staging.join(relative)
    }

    /// Swaps the new set in: the old directory (checked again, so nothing written into it
    /// meanwhile is lost) is moved aside, the new one renamed into place, the old one removed.
    /// A crash at any point leaves either the old or the new complete set under the name.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        let dir = self.dir.clone();
        let io = |source| OutputError::Io {
            path: dir.clone(),
            source,
        };
        let marker: String = self
            .entries
            .iter()
            .map(|entry| format!("{entry}\n"))
            .collect();
        fs_err::write(self.staging.join(MARKER), marker).map_err(io)?;
        check_replaceable(&dir)?;
        let previous = unique_sibling(&dir, "old");
        let existed = dir.exists();
        if existed {
            fs_err::rename(&dir, &previous).map_err(io)?;
        }
        fs_err::rename(&self.staging, &dir).map_err(io)?;
        self.staging = PathBuf::new();
        if existed {
            fs_err::remove_dir_all(&previous).map_err(io)?;
        }
        Ok(dir)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.staging.as_os_str().is_empty() {
            let _ = fs_err::remove_dir_all(&self.staging);
        }
    }
}

fn slash_path(relative: &Path) -> String {
    relative
        .components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every file (or link, or other non-directory) below `dir`, relative and `/`-separated.
fn files_below(dir: &Path, prefix: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let relative = prefix.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            files_below(&entry.path(), &relative, out)?;
        } else {
            out.push(slash_path(&relative));
        }
    }
    Ok(())
}

/// Whether `dir` may be replaced: absent, an empty directory, or a directory whose every file
/// its marker lists.
pub fn check_replaceable(dir: &Path) -> Result<(), OutputError> {
    let metadata = match fs_err::symlink_metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(OutputError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    if !metadata.is_dir() {
        return Err(OutputError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let io = |source| OutputError::Io {
        path: dir.to_owned(),
        source,
    };
    let listed: BTreeSet<String> = match fs_err::read_to_string(dir.join(MARKER)) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(source) => return Err(io(source)),
    };
    let mut files = Vec::new();
    files_below(dir, Path::new(""), &mut files).map_err(io)?;
    let mut foreign: Vec<String> = files
        .into_iter()
        .filter(|file| file != MARKER && !listed.contains(file))
        .collect();
    foreign.sort();
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(OutputError::Foreign {
            path: dir.to_owned(),
            foreign,
        })
    }
}

#[cfg(test)]
mod tests;
