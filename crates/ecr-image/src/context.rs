//! Build contexts: the files sent to the Docker engine, as a deterministic tar.
//!
//! A [`BuildContext`] is either read from a directory (honouring its `.dockerignore`) or made
//! from a rendered image definition (a Dockerfile plus generated files and files from disk).
//! Its entries are sorted and written with fixed owners and modification times, so the same
//! files always give the same tar and the same [`ContextDigest`]. The digest covers each entry's
//! path, kind, permission bits and contents (or link target).
//!
//! Reading is synchronous file IO; the async build code runs it on a blocking thread.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::dockerignore::Dockerignore;
use crate::error::{Error, Result};

/// Where the bytes of a context file come from.
#[derive(Clone)]
pub enum FileSource {
    /// Bytes held in memory (a rendered Dockerfile, a generated config file).
    Bytes(Arc<[u8]>),
    /// A file on disk, read when the context is hashed and again when it is sent.
    Path(PathBuf),
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Self::Path(path) => f.debug_tuple("Path").field(path).finish(),
        }
    }
}

/// A file to place in a generated context.
#[derive(Debug, Clone)]
pub struct ContextFile {
    /// Path inside the context, with `/` separators (`nginx.conf`, `bin/tool`).
    pub path: String,
    /// The contents.
    pub source: FileSource,
    /// Permission bits (`0o644`, `0o755`); `COPY` keeps them.
    pub mode: u32,
}

impl ContextFile {
    /// A file with the given text and mode.
    pub fn text(path: impl Into<String>, text: impl Into<String>, mode: u32) -> Self {
        let text: String = text.into();
        Self {
            path: path.into(),
            source: FileSource::Bytes(Arc::from(text.into_bytes())),
            mode,
        }
    }
}

#[derive(Debug, Clone)]
enum EntryKind {
    Directory,
    File { source: FileSource, size: u64 },
    Symlink { target: String },
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    mode: u32,
    kind: EntryKind,
}

/// The digest of a build context's contents: `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContextDigest(pub(crate) String);

impl ContextDigest {
    /// The digest as `sha256:<64 hex digits>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContextDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The files of one build, ready to hash and to stream to the engine as a tar.
#[derive(Debug, Clone)]
pub struct BuildContext {
    description: String,
    root: Option<PathBuf>,
    dockerfile: String,
    entries: Vec<Entry>,
}

/// The name under which a Dockerfile from outside the context directory is added to the tar.
const OUTSIDE_DOCKERFILE_NAME: &str = ".trnkit.Dockerfile";

impl BuildContext {
    /// Reads a context directory, honouring its `.dockerignore`.
    ///
    /// `dockerfile` defaults to `<root>/Dockerfile`. A relative `dockerfile` is resolved
    /// against the current directory, like `docker build -f`. A Dockerfile outside the context is
    /// added to the tar under a fixed name; the Dockerfile and `.dockerignore` are always sent,
    /// even when `.dockerignore` excludes them (as the Docker CLI does).
    pub fn from_directory(root: &Path, dockerfile: Option<&Path>) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::ContextNotFound {
                path: root.to_owned(),
            });
        }
        let dockerfile_on_disk = dockerfile.map_or_else(|| root.join("Dockerfile"), Path::to_owned);
        if !dockerfile_on_disk.is_file() {
            return Err(Error::DockerfileNotFound {
                path: dockerfile_on_disk,
            });
        }

        let ignore_path = root.join(".dockerignore");
        let ignore = match fs_err::read_to_string(&ignore_path) {
            Ok(text) => Dockerignore::parse(&text, &ignore_path)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Dockerignore::default(),
            Err(source) => {
                return Err(Error::ReadContext {
                    path: ignore_path,
                    source,
                });
            }
        };

        // Where the Dockerfile lives inside the context, if it does.
        let canonical_root = canonical(root)?;
        let canonical_dockerfile = canonical(&dockerfile_on_disk)?;
        let inside = canonical_dockerfile
            .strip_prefix(&canonical_root)
            .ok()
            .and_then(relative_string);

        let mut entries = Vec::new();
        walk(root, &ignore, &mut entries)?;

        let dockerfile_name = match inside {
            Some(relative) => {
                ensure_file_entry(&mut entries, &relative, &dockerfile_on_disk)?;
                relative
            }
            None => {
                ensure_file_entry(&mut entries, OUTSIDE_DOCKERFILE_NAME, &dockerfile_on_disk)?;
                OUTSIDE_DOCKERFILE_NAME.to_owned()
            }
        };
        if ignore_path.is_file() {
            ensure_file_entry(&mut entries, ".dockerignore", &ignore_path)?;
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            description: root.display().to_string(),
            root: Some(root.to_owned()),
            dockerfile: dockerfile_name,
            entries,
        })
    }

    /// A context made of a rendered Dockerfile (stored as `Dockerfile`) and other files.
    ///
    /// `description` names the context in messages (e.g. `the training image`). Files from disk
    /// are checked to exist now and are read when the context is hashed or sent.
    pub fn from_files(
        description: impl Into<String>,
        dockerfile: &str,
        files: impl IntoIterator<Item = ContextFile>,
    ) -> Result<Self> {
        let mut entries = vec![Entry {
            path: "Dockerfile".to_owned(),
            mode: 0o644,
            kind: EntryKind::File {
                size: dockerfile.len() as u64,
                source: FileSource::Bytes(Arc::from(dockerfile.as_bytes())),
            },
        }];
        for file in files {
            let size = match &file.source {
                FileSource::Bytes(bytes) => bytes.len() as u64,
                FileSource::Path(path) => fs_err::metadata(path)
                    .map_err(|source| Error::ReadContext {
                        path: path.clone(),
                        source,
                    })?
                    .len(),
            };
            entries.push(Entry {
                path: file.path,
                mode: file.mode & 0o7777,
                kind: EntryKind::File {
                    source: file.source,
                    size,
                },
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        Ok(Self {
            description: description.into(),
            root: None,
            dockerfile: "Dockerfile".to_owned(),
            entries,
        })
    }

    /// The Dockerfile's path inside the context (what the engine is told to build).
    pub fn dockerfile(&self) -> &str {
        &self.dockerfile
    }

    /// How the context is named in messages (its directory, or the image it was rendered for).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The context's paths, sorted, directories included.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| entry.path.as_str())
    }

    /// The number of regular files.
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| matches!(entry.kind, EntryKind::File { .. }))
            .count()
    }

    /// The total size of the regular files, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|entry| match entry.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// Reads every file and returns the context's digest.
    pub fn digest(&self) -> Result<ContextDigest> {
        self.visit(None::<&mut tar::Builder<io::Sink>>)
    }

    /// Writes the context as a tar to `writer` and returns the digest of what was written.
    pub fn write_tar<W: Write>(&self, writer: W) -> Result<ContextDigest> {
        self.write_tar_checked(writer, None)
    }

    /// Like [`Self::write_tar`], but fails with [`Error::ContextChanged`] before writing the
    /// end of the archive when the contents no longer match `expected`.
    pub(crate) fn write_tar_checked<W: Write>(
        &self,
        writer: W,
        expected: Option<&ContextDigest>,
    ) -> Result<ContextDigest> {
        let mut builder = tar::Builder::new(writer);
        let digest = self.visit(Some(&mut builder))?;
        if expected.is_some_and(|expected| *expected != digest) {
            return Err(self.changed_error());
        }
        let mut writer = builder
            .into_inner()
            .map_err(|source| self.send_error(source))?;
        writer.flush().map_err(|source| self.send_error(source))?;
        Ok(digest)
    }

    /// The error for a failed read or write of the context itself.
    pub(crate) fn changed_error(&self) -> Error {
        Error::ContextChanged {
            path: self
                .root
                .clone()
                .unwrap_or_else(|| PathBuf::from(&self.description)),
        }
    }

    fn send_error(&self, source: io::Error) -> Error {
        Error::ReadContext {
            path: self
                .root
                .clone()
                .unwrap_or_else(|| PathBuf::from(&self.description)),
            source,
        }
    }

    fn visit<W: Write>(&self, mut tar: Option<&mut tar::Builder<W>>) -> Result<ContextDigest> {
        let mut hasher = Sha256::new();
        hasher.update(b"trnkit-context-v1\0");
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match &entry.kind {
                EntryKind::Directory => {
                    hasher.update(format!("d\0{}\0{:o}\0", entry.path, entry.mode));
                    if let Some(tar) = tar.as_deref_mut() {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_size(0);
                        let path = format!("{}/", entry.path);
                        tar.append_data(&mut header, path, io::empty())
                            .map_err(|source| self.send_error(source))?;
                    }
                }
                EntryKind::Symlink { target } => {
                    hasher.update(format!("l\0{}\0{:o}\0{}\0", entry.path, entry.mode, target));
                    if let Some(tar) = tar.as_deref_mut() {
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_size(0);
                        tar.append_link(&mut header, &entry.path, target)
                            .map_err(|source| self.send_error(source))?;
                    }
                }
                EntryKind::File { source, size } => {
                    hasher.update(format!("f\0{}\0{:o}\0{}\0", entry.path, entry.mode, size));
                    let (reader, on_disk): (Box<dyn Read>, Option<&PathBuf>) = match source {
                        FileSource::Bytes(bytes) => {
                            (Box::new(io::Cursor::new(Arc::clone(bytes))), None)
                        }
                        FileSource::Path(path) => (
                            Box::new(fs_err::File::open(path).map_err(|source| {
                                Error::ReadContext {
                                    path: path.clone(),
                                    source,
                                }
                            })?),
                            Some(path),
                        ),
                    };
                    let error = |source: io::Error| match on_disk {
                        Some(path) => Error::ReadContext {
                            path: path.clone(),
                            source,
                        },
                        None => self.send_error(source),
                    };
                    let mut counting = HashingReader {
                        inner: reader.take(*size),
                        hasher: &mut hasher,
                        read: 0,
                    };
                    match tar.as_deref_mut() {
                        Some(tar) => {
                            header.set_entry_type(tar::EntryType::Regular);
                            header.set_size(*size);
                            tar.append_data(&mut header, &entry.path, &mut counting)
                                .map_err(error)?;
                        }
                        None => {
                            io::copy(&mut counting, &mut io::sink()).map_err(error)?;
                        }
                    }
                    if counting.read != *size {
                        // The file shrank since it was listed: the tar would be corrupt.
                        return Err(self.changed_error());
                    }
                    hasher.update(b"\0");
                }
            }
        }
        Ok(ContextDigest(format!(
            "sha256:{}",
            hex::encode(hasher.finalize())
        )))
    }
}

/// Feeds everything read through it to the digest.
struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    fs_err::canonicalize(path).map_err(|source| Error::ReadContext {
        path: path.to_owned(),
        source,
    })
}

fn relative_string(path: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = path.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|parts| parts.join("/")).filter(|s| !s.is_empty())
}

fn ensure_file_entry(entries: &mut Vec<Entry>, path: &str, on_disk: &Path) -> Result<()> {
    if entries.iter().any(|entry| entry.path == path) {
        return Ok(());
    }
    let metadata = fs_err::metadata(on_disk).map_err(|source| Error::ReadContext {
        path: on_disk.to_owned(),
        source,
    })?;
    entries.push(Entry {
        path: path.to_owned(),
        mode: permissions(&metadata),
        kind: EntryKind::File {
            source: FileSource::Path(on_disk.to_owned()),
            size: metadata.len(),
        },
    });
    Ok(())
}

#[cfg(unix)]
fn permissions(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn permissions(metadata: &std::fs::Metadata) -> u32 {
    if metadata.is_dir() { 0o755 } else { 0o644 }
}

/// Lists `root` recursively (without following symbolic links), skipping excluded paths.
fn walk(root: &Path, ignore: &Dockerignore, entries: &mut Vec<Entry>) -> Result<()> {
    let mut pending = vec![(root.to_owned(), String::new())];
    while let Some((directory, prefix)) = pending.pop() {
        let read = fs_err::read_dir(&directory).map_err(|source| Error::ReadContext {
            path: directory.clone(),
            source,
        })?;
        for item in read {
            let item = item.map_err(|source| Error::ReadContext {
                path: directory.clone(),
                source,
            })?;
            let path = item.path();
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let metadata =
                fs_err::symlink_metadata(&path).map_err(|source| Error::ReadContext {
                    path: path.clone(),
                    source,
                })?;
            let excluded = ignore.is_excluded(&relative);
            let file_type = metadata.file_type();
            if file_type.is_dir() {
                if !excluded {
                    entries.push(Entry {
                        path: relative.clone(),
                        mode: permissions(&metadata),
                        kind: EntryKind::Directory,
                    });
                }
                // An excluded directory may still hold re-included files.
                if !excluded || ignore.has_exclusions() {
                    pending.push((path, relative));
                }
            } else if excluded {
                continue;
            } else if file_type.is_file() {
                entries.push(Entry {
                    path: relative,
                    mode: permissions(&metadata),
                    kind: EntryKind::File {
                        source: FileSource::Path(path),
                        size: metadata.len(),
                    },
                });
            } else if file_type.is_symlink() {
                let target = fs_err::read_link(&path).map_err(|source| Error::ReadContext {
                    path: path.clone(),
                    source,
                })?;
                entries.push(Entry {
                    path: relative,
                    mode: 0o777,
                    kind: EntryKind::Symlink {
                        target: target.to_string_lossy().into_owned(),
                    },
                });
            } else {
                tracing::warn!(path = %path.display(), "skipping a special file (socket, fifo or device)");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
