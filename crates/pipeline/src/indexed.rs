//! Megatron's "mmap" indexed dataset (`MMIDIDX` version 1): a streaming writer, a checking reader
//! and `merge`.
//!
//! Layout (`formats.md` Part A.2): the `.idx` holds a 34-byte header (magic, version, dtype code,
//! sequence count `N`, document-index length `M`), then `N` int32 sequence lengths, `N` int64
//! byte pointers into `.bin`, and `M` int64 document-index entries. The `.bin` is the
//! concatenation of every sequence's token ids in the dtype, little-endian.
//!
//! The writer keeps nothing per sequence in memory: lengths and document boundaries go to
//! side files that are streamed into the `.idx` when the dataset is finished, so memory stays
//! flat whatever the corpus size. Every output is written under a temporary name unique to the
//! run (`{prefix}.bin.{pid}-{nonce}.partial`); `finish` removes any old `.idx` first, renames the
//! `.bin`, then the `.idx`, so a killed run never leaves a pair that looks complete. A writer
//! holds the prefix's lock ([`crate::lock`]) from `create` until it is finished or dropped, and
//! removes the partial files that killed runs left.
//!
//! Reading: every count and offset that comes from a file is checked arithmetic (a header may
//! announce 2^62 sequences), and nothing is allocated from a count the file's length does not
//! back.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::lock::{LockOptions, OutputLock};

/// The 9-byte magic at the start of every `.idx`.
pub const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// The only index version.
pub const VERSION: u64 = 1;
/// Size of the `.idx` header in bytes.
pub const HEADER_LEN: u64 = 34;
/// Vocabulary sizes below this use `uint16`; from it on, `int32` (not 65536: Megatron's rule).
pub const UINT16_VOCAB_LIMIT: usize = 65500;

/// Token dtype of a dataset, with Megatron's dtype codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Code 1.
    U8,
    /// Code 2.
    I8,
    /// Code 3.
    I16,
    /// Code 4: vocabularies of 65500 tokens or more.
    I32,
    /// Code 5.
    I64,
    /// Code 6.
    F64,
    /// Code 7 (float32 for Megatron; fairseq/NeMo read it as float64).
    F32,
    /// Code 8: vocabularies under 65500 tokens.
    U16,
}

impl DType {
    /// The dtype the preprocessing tools choose for a vocabulary of `vocab_size` tokens
    /// (counting added tokens): `uint16` below 65500, `int32` otherwise.
    pub fn for_vocab_size(vocab_size: usize) -> DType {
        if vocab_size < UINT16_VOCAB_LIMIT {
            DType::U16
        } else {
            DType::I32
        }
    }

    /// The code byte stored in the `.idx`.
    pub fn code(self) -> u8 {
        match self {
            DType::U8 => 1,
            DType::I8 => 2,
            DType::I16 => 3,
            DType::I32 => 4,
            DType::I64 => 5,
            DType::F64 => 6,
            DType::F32 => 7,
            DType::U16 => 8,
        }
    }

    /// The dtype of a code byte.
    pub fn from_code(code: u8) -> Option<DType> {
        Some(match code {
            1 => DType::U8,
            2 => DType::I8,
            3 => DType::I16,
            4 => DType::I32,
            5 => DType::I64,
            6 => DType::F64,
            7 => DType::F32,
            8 => DType::U16,
            _ => return None,
        })
    }

    /// Bytes per token.
    pub fn size(self) -> u64 {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    /// The numpy name.
    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::U16 => "uint16",
        }
    }
}

/// `{prefix}.bin` and `{prefix}.idx`.
pub fn dataset_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    (with_suffix(prefix, ".bin"), with_suffix(prefix, ".idx"))
}

/// The path with `suffix` appended to its file name (`a/b` + `.bin` = `a/b.bin`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub(crate) fn create_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

pub(crate) fn open_file(path: &Path) -> Result<File> {
    File::options()
        .read(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(format!("rename to {}", to.display()), from, e))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// What a finished dataset holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatasetSummary {
    /// The prefix (`{prefix}.bin`, `{prefix}.idx`).
    pub prefix: PathBuf,
    /// The token dtype.
    pub dtype: DType,
    /// `N`: sequences (one per non-empty document unless sentences were given).
    pub sequences: u64,
    /// Documents (`M - 1`), empty ones included.
    pub documents: u64,
    /// Tokens in `.bin`.
    pub tokens: u64,
}

/// Streaming writer of one dataset. Call [`DatasetWriter::add_document`] per document, then
/// [`DatasetWriter::finish`]; dropping it unfinished removes its partial files.
#[derive(Debug)]
pub struct DatasetWriter {
    prefix: PathBuf,
    dtype: DType,
    bin: BufWriter<File>,
    sizes: BufWriter<File>,
    docs: BufWriter<File>,
    paths: PartialPaths,
    sequences: u64,
    documents: u64,
    tokens: u64,
    scratch: Vec<u8>,
    finished: bool,
    // Released after `Drop::drop` removed the partial files (fields drop after it).
    _lock: OutputLock,
}

#[derive(Debug)]
struct PartialPaths {
    bin: PathBuf,
    idx: PathBuf,
    sizes: PathBuf,
    docs: PathBuf,
}

/// The kinds of partial file a writer makes.
const PARTIAL_KINDS: [&str; 4] = ["bin", "idx", "sizes", "docs"];

impl PartialPaths {
    /// Names unique to this run: `{prefix}.{kind}.{pid}-{nonce}.partial`.
    fn new(prefix: &Path) -> Self {
        use std::hash::{BuildHasher, Hasher};
        // `RandomState` is seeded randomly per process and per instance.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let run = format!("{}-{:016x}", std::process::id(), hasher.finish());
        let name = |kind: &str| with_suffix(prefix, &format!(".{kind}.{run}.partial"));
        PartialPaths {
            bin: name("bin"),
            idx: name("idx"),
            sizes: name("sizes"),
            docs: name("docs"),
        }
    }
}

/// Whether `file_name` is a partial file of the dataset named `prefix_name`: the old fixed
/// names (`{prefix}.bin.partial`) or a run's (`{prefix}.bin.{pid}-{nonce}.partial`).
fn is_partial_of(file_name: &str, prefix_name: &str) -> bool {
    let Some(rest) = file_name
        .strip_prefix(prefix_name)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".partial"))
    else {
        return false;
    };
    let (kind, run) = rest.split_once('.').unwrap_or((rest, ""));
    PARTIAL_KINDS.contains(&kind)
        && (run.is_empty()
            || run.split_once('-').is_some_and(|(pid, nonce)| {
                !pid.is_empty()
                    && pid.bytes().all(|b| b.is_ascii_digit())
                    && !nonce.is_empty()
                    && nonce.bytes().all(|b| b.is_ascii_hexdigit())
            }))
}

/// Removes the partial files of `prefix` that killed runs left; call it holding the lock.
fn remove_stale_partials(prefix: &Path) -> Result<()> {
    let Some(prefix_name) = prefix.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let dir = match prefix.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| is_partial_of(name, prefix_name))
        {
            tracing::info!(file = %entry.path().display(), "removing a partial file a killed run left");
            remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

const BUF: usize = 1 << 20;

impl DatasetWriter {
    /// Starts a dataset at `prefix` (the outputs will be `{prefix}.bin` and `{prefix}.idx`),
    /// taking its lock; fails at once when another run holds it.
    pub fn create(prefix: &Path, dtype: DType) -> Result<Self> {
        let lock = OutputLock::acquire(prefix, &LockOptions::default())?;
        Self::create_locked(prefix, dtype, lock)
    }

    /// Starts a dataset at `prefix` with its lock already taken (see [`OutputLock::acquire_all`]).
    pub fn create_locked(prefix: &Path, dtype: DType, lock: OutputLock) -> Result<Self> {
        if lock.target() != prefix {
            return Err(Error::Config(format!(
                "the lock of {} does not cover {}",
                lock.target().display(),
                prefix.display()
            )));
        }
        if !matches!(
            dtype,
            DType::U16 | DType::I32 | DType::U8 | DType::I16 | DType::I64
        ) {
            return Err(Error::Config(format!(
                "cannot write token ids as {}",
                dtype.name()
            )));
        }
        if let Some(parent) = prefix.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
        }
        remove_stale_partials(prefix)?;
        let paths = PartialPaths::new(prefix);
        let bin = BufWriter::with_capacity(BUF, create_file(&paths.bin)?);
        let sizes = BufWriter::with_capacity(BUF / 4, create_file(&paths.sizes)?);
        let mut docs = BufWriter::with_capacity(BUF / 4, create_file(&paths.docs)?);
        docs.write_all(&0i64.to_le_bytes())
            .map_err(|e| Error::io("write", &paths.docs, e))?;
        Ok(DatasetWriter {
            prefix: prefix.to_owned(),
            dtype,
            bin,
            sizes,
            docs,
            paths,
            sequences: 0,
            documents: 0,
            tokens: 0,
            scratch: Vec::new(),
            finished: false,
            _lock: lock,
        })
    }

    /// The token dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Appends one document made of sequences of the given lengths (one sequence per sentence;
    /// `lengths` must sum to `tokens.len()`). An empty `lengths` records a zero-length document.
    pub fn add_document(&mut self, tokens: &[u32], lengths: &[u32]) -> Result<()> {
        let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        if total != tokens.len() as u64 {
            return Err(Error::Config(format!(
                "sequence lengths sum to {total} but the document has {} tokens",
                tokens.len()
            )));
        }
        self.write_tokens(tokens)?;
        for &len in lengths {
            self.push_sequence(len)?;
        }
        self.end_document()
    }

    /// Appends many documents at once: `tokens` holds every sequence back to back,
    /// `sequence_lengths` their lengths, `document_sequences` how many sequences each document
    /// has (0 records a zero-length document).
    pub fn add_batch(
        &mut self,
        tokens: &[u32],
        sequence_lengths: &[u32],
        document_sequences: &[u32],
    ) -> Result<()> {
        self.write_tokens(tokens)?;
        let mut lengths = sequence_lengths.iter();
        for &count in document_sequences {
            for _ in 0..count {
                let len = *lengths.next().ok_or_else(|| {
                    Error::Config("fewer sequence lengths than the documents need".into())
                })?;
                self.push_sequence(len)?;
            }
            self.end_document()?;
        }
        if lengths.next().is_some() {
            return Err(Error::Config(
                "more sequence lengths than the documents need".into(),
            ));
        }
        Ok(())
    }

    fn write_tokens(&mut self, tokens: &[u32]) -> Result<()> {
        self.scratch.clear();
        match self.dtype {
            DType::U16 => {
                self.scratch.reserve(tokens.len() * 2);
                for &t in tokens {
                    let v = u16::try_from(t).map_err(|_| Error::TokenOutOfRange {
                        id: t,
                        dtype: "uint16",
                    })?;
                    self.scratch.extend_from_slice(&v.to_le_bytes());
                }
            }
            DType::I32 => {
                self.scratch.reserve(tokens.len() * 4);
                for &t in tokens {
                    let v = i32::try_from(t).map_err(|_| Error::TokenOutOfRange {
                        id: t,
                        dtype: "int32",
                    })?;
                    self.scratch.extend_from_slice(&v.to_le_bytes());
                }
            }
            DType::U8 => {
                for &t in tokens {
                    let v = u8::try_from(t).map_err(|_| Error::TokenOutOfRange {
                        id: t,
                        dtype: "uint8",
                    })?;
                    self.scratch.push(v);
                }
            }
            DType::I16 => {
                for &t in tokens {
                    let v = i16::try_from(t).map_err(|_| Error::TokenOutOfRange {
                        id: t,
                        dtype: "int16",
                    })?;
                    self.scratch.extend_from_slice(&v.to_le_bytes());
                }
            }
            DType::I64 => {
                for &t in tokens {
                    self.scratch.extend_from_slice(&i64::from(t).to_le_bytes());
                }
            }
            DType::I8 | DType::F32 | DType::F64 => unreachable!("rejected in create"),
        }
        self.bin
            .write_all(&self.scratch)
            .map_err(|e| Error::io("write", &self.paths.bin, e))?;
        self.tokens = self.tokens.saturating_add(tokens.len() as u64);
        Ok(())
    }

    fn push_sequence(&mut self, len: u32) -> Result<()> {
        let len = i32::try_from(len).map_err(|_| {
            Error::Config(format!(
                "a sequence of {len} tokens does not fit the int32 length field"
            ))
        })?;
        self.sizes
            .write_all(&len.to_le_bytes())
            .map_err(|e| Error::io("write", &self.paths.sizes, e))?;
        self.sequences += 1;
        Ok(())
    }

    fn end_document(&mut self) -> Result<()> {
        let boundary = i64::try_from(self.sequences)
            .map_err(|_| Error::Config("more sequences than an int64 index holds".into()))?;
        self.docs
            .write_all(&boundary.to_le_bytes())
            .map_err(|e| Error::io("write", &self.paths.docs, e))?;
        self.documents += 1;
        Ok(())
    }

    /// Appends a whole existing dataset (same dtype): its `.bin` is copied and its index
    /// shifted. The source is checked first.
    pub fn append_dataset(&mut self, prefix: &Path) -> Result<()> {
        let index = IndexReader::open(prefix)?;
        if index.dtype != self.dtype {
            return Err(Error::invalid(
                &index.idx_path,
                format!(
                    "dtype {} differs from the merged dataset's {}",
                    index.dtype.name(),
                    self.dtype.name()
                ),
            ));
        }
        let report = index.verify()?;
        if let Some(problem) = report.problems.first() {
            return Err(Error::invalid(&index.idx_path, problem.clone()));
        }
        // Sizes.
        let mut reader = index.section_reader(Section::Sizes)?;
        let mut buf = [0u8; 4];
        for _ in 0..index.sequences {
            reader
                .read_exact(&mut buf)
                .map_err(|e| Error::io("read", &index.idx_path, e))?;
            self.sizes
                .write_all(&buf)
                .map_err(|e| Error::io("write", &self.paths.sizes, e))?;
        }
        // Document index, shifted; its leading 0 is our previous last boundary.
        let base = i64::try_from(self.sequences)
            .map_err(|_| Error::Config("more sequences than an int64 index holds".into()))?;
        let mut reader = index.section_reader(Section::DocIdx)?;
        let mut buf = [0u8; 8];
        for i in 0..index.doc_entries {
            reader
                .read_exact(&mut buf)
                .map_err(|e| Error::io("read", &index.idx_path, e))?;
            if i == 0 {
                continue;
            }
            let shifted = i64::from_le_bytes(buf).checked_add(base).ok_or_else(|| {
                Error::invalid(
                    &index.idx_path,
                    format!("document index entry {i} overflows once shifted by {base}"),
                )
            })?;
            self.docs
                .write_all(&shifted.to_le_bytes())
                .map_err(|e| Error::io("write", &self.paths.docs, e))?;
        }
        self.sequences = self
            .sequences
            .checked_add(index.sequences)
            .ok_or_else(|| Error::invalid(&index.idx_path, "too many sequences in total"))?;
        self.documents = self
            .documents
            .saturating_add(index.doc_entries.saturating_sub(1));
        // Tokens.
        let mut bin = open_file(&index.bin_path)?;
        let copied = std::io::copy(&mut bin, &mut self.bin)
            .map_err(|e| Error::io("copy", &index.bin_path, e))?;
        self.tokens = self.tokens.saturating_add(copied / self.dtype.size());
        Ok(())
    }

    /// Writes the `.idx`, then renames both files into place.
    pub fn finish(mut self) -> Result<DatasetSummary> {
        let paths = PartialPaths {
            bin: self.paths.bin.clone(),
            idx: self.paths.idx.clone(),
            sizes: self.paths.sizes.clone(),
            docs: self.paths.docs.clone(),
        };
        flush_sync(&mut self.bin, &paths.bin)?;
        // The side files are only read back here and removed: flushed, not synced.
        self.sizes
            .flush()
            .map_err(|e| Error::io("write", &paths.sizes, e))?;
        self.docs
            .flush()
            .map_err(|e| Error::io("write", &paths.docs, e))?;

        let mut idx = BufWriter::with_capacity(BUF, create_file(&paths.idx)?);
        let werr = |e| Error::io("write", &paths.idx, e);
        idx.write_all(MAGIC).map_err(werr)?;
        idx.write_all(&VERSION.to_le_bytes()).map_err(werr)?;
        idx.write_all(&[self.dtype.code()]).map_err(werr)?;
        idx.write_all(&self.sequences.to_le_bytes()).map_err(werr)?;
        idx.write_all(&self.documents.saturating_add(1).to_le_bytes())
            .map_err(werr)?;
        // Sizes, copied.
        let mut sizes = BufReader::with_capacity(BUF / 4, open_file(&paths.sizes)?);
        std::io::copy(&mut sizes, &mut idx).map_err(|e| Error::io("copy", &paths.sizes, e))?;
        // Pointers, from the sizes.
        let mut sizes = BufReader::with_capacity(BUF / 4, open_file(&paths.sizes)?);
        let mut pointer: i64 = 0;
        let item = self.dtype.size() as i64;
        let mut buf = [0u8; 4];
        for _ in 0..self.sequences {
            sizes
                .read_exact(&mut buf)
                .map_err(|e| Error::io("read", &paths.sizes, e))?;
            idx.write_all(&pointer.to_le_bytes()).map_err(werr)?;
            pointer = i64::from(i32::from_le_bytes(buf))
                .checked_mul(item)
                .and_then(|bytes| pointer.checked_add(bytes))
                .ok_or_else(|| {
                    Error::invalid(&paths.bin, "the .bin exceeds the int64 byte pointers")
                })?;
        }
        // Document index, copied.
        let mut docs = BufReader::with_capacity(BUF / 4, open_file(&paths.docs)?);
        std::io::copy(&mut docs, &mut idx).map_err(|e| Error::io("copy", &paths.docs, e))?;
        flush_sync(&mut idx, &paths.idx)?;
        drop(idx);

        let (bin_final, idx_final) = dataset_paths(&self.prefix);
        remove_if_exists(&idx_final)?;
        rename(&paths.bin, &bin_final)?;
        rename(&paths.idx, &idx_final)?;
        remove_if_exists(&paths.sizes)?;
        remove_if_exists(&paths.docs)?;
        self.finished = true;
        tracing::debug!(prefix = %self.prefix.display(), sequences = self.sequences, "dataset written");
        Ok(DatasetSummary {
            prefix: self.prefix.clone(),
            dtype: self.dtype,
            sequences: self.sequences,
            documents: self.documents,
            tokens: self.tokens,
        })
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.finished {
            for path in [
                &self.paths.bin,
                &self.paths.idx,
                &self.paths.sizes,
                &self.paths.docs,
            ] {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn flush_sync(writer: &mut BufWriter<File>, path: &Path) -> Result<()> {
    writer.flush().map_err(|e| Error::io("write", path, e))?;
    writer
        .get_ref()
        .sync_all()
        .map_err(|e| Error::io("sync", path, e))
}

/// `34 + 12·N + 8·M`, or `None` when it overflows.
fn layout_len(sequences: u64, doc_entries: u64) -> Option<u64> {
    sequences
        .checked_mul(12)?
        .checked_add(doc_entries.checked_mul(8)?)?
        .checked_add(HEADER_LEN)
}

/// Merges datasets (same dtype) into `output`, in the given order: the result equals a single
/// run over the concatenated inputs. Takes the locks with the default [`LockOptions`] and keeps
/// the parts; see [`merge_with`].
pub fn merge(parts: &[PathBuf], output: &Path) -> Result<DatasetSummary> {
    merge_with(parts, output, &MergeOptions::default()).map(|report| report.summary)
}

/// Options of [`merge_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOptions {
    /// Remove the parts' `.idx` and `.bin` once the merged dataset is complete and verified.
    pub remove_parts: bool,
    /// How to take the locks of the output and the parts.
    pub lock: LockOptions,
}

/// What [`merge_with`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MergeReport {
    /// The merged dataset, as re-read from disk.
    pub summary: DatasetSummary,
    /// The parts removed (with `remove_parts`), in order.
    pub removed: Vec<PathBuf>,
}

/// A file's identity: `(device, inode)`.
fn identity(path: &Path) -> Result<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some((meta.dev(), meta.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// The identities of a dataset's `.idx` and `.bin` (those that exist).
fn dataset_identities(prefix: &Path) -> Result<Vec<(u64, u64)>> {
    let (bin, idx) = dataset_paths(prefix);
    Ok([identity(&idx)?, identity(&bin)?]
        .into_iter()
        .flatten()
        .collect())
}

/// Merges datasets (same dtype) into `output`, in the given order, holding the locks of the
/// output and of every part. Files are compared by identity (device and inode), not by name:
/// an output that is one of the parts (`./s0` and `s0`, a link) is refused before anything is
/// written. The merged dataset is re-read and checked against the parts' counts before any part
/// is removed.
pub fn merge_with(parts: &[PathBuf], output: &Path, options: &MergeOptions) -> Result<MergeReport> {
    let Some(first) = parts.first() else {
        return Err(Error::Config("merge needs at least one dataset".into()));
    };
    let output_ids = dataset_identities(output)?;
    // The parts, each once (by the identity of its .idx), in order.
    let mut distinct: Vec<(&PathBuf, (u64, u64))> = Vec::new();
    for part in parts {
        let (_, idx) = dataset_paths(part);
        let id = identity(&idx)?.ok_or_else(|| {
            Error::io(
                "open",
                &idx,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such dataset part"),
            )
        })?;
        if dataset_identities(part)?
            .iter()
            .any(|id| output_ids.contains(id))
        {
            return Err(Error::Config(format!(
                "the output {} is the part {} (the same files on disk): merging would overwrite a part{}; choose another output",
                output.display(),
                part.display(),
                if options.remove_parts {
                    " and --remove-parts would then delete the result"
                } else {
                    ""
                }
            )));
        }
        match distinct.iter().find(|(_, seen)| *seen == id) {
            Some((seen, _)) if options.remove_parts => {
                return Err(Error::Config(format!(
                    "{} and {} are the same dataset; a part listed twice cannot be removed after the merge",
                    seen.display(),
                    part.display()
                )));
            }
            Some(_) => {}
            None => distinct.push((part, id)),
        }
    }
    let mut targets: Vec<PathBuf> = distinct.iter().map(|(part, _)| (*part).clone()).collect();
    targets.push(output.to_owned());
    let mut locks = OutputLock::acquire_all(&targets, &options.lock)?;
    let output_lock = locks
        .iter()
        .position(|lock| lock.target() == output)
        .map(|at| locks.swap_remove(at))
        .ok_or_else(|| Error::Config("the output's lock is missing".into()))?;

    let mut expected = (0u64, 0u64, 0u64, 0u64); // sequences, documents, tokens, .bin bytes
    let dtype = IndexReader::open(first)?.dtype;
    let mut writer = DatasetWriter::create_locked(output, dtype, output_lock)?;
    for part in parts {
        let index = IndexReader::open(part)?;
        writer.append_dataset(part)?;
        let bin_len = std::fs::metadata(&index.bin_path)
            .map_err(|e| Error::io("stat", &index.bin_path, e))?
            .len();
        expected = (
            expected.0.saturating_add(index.sequences),
            expected
                .1
                .saturating_add(index.doc_entries.saturating_sub(1)),
            expected.2.saturating_add(bin_len / dtype.size()),
            expected.3.saturating_add(bin_len),
        );
    }
    let summary = writer.finish()?;

    // Re-read what is on disk before anything is removed.
    let merged = IndexReader::open(output)?;
    let report = merged.verify()?;
    let found = (
        merged.sequences,
        merged.doc_entries.saturating_sub(1),
        report.tokens,
        report.bin_len,
    );
    if let Some(problem) = report.problems.first() {
        return Err(Error::invalid(
            &merged.idx_path,
            format!("the merged dataset does not verify ({problem}); the parts are kept"),
        ));
    }
    if found != expected {
        return Err(Error::invalid(
            &merged.idx_path,
            format!(
                "the merged dataset holds {} sequences, {} documents, {} tokens and {} bytes of .bin, the parts together {}, {}, {} and {}; the parts are kept",
                found.0, found.1, found.2, found.3, expected.0, expected.1, expected.2, expected.3
            ),
        ));
    }

    let mut removed = Vec::new();
    if options.remove_parts {
        for (part, _) in &distinct {
            let (bin, idx) = dataset_paths(part);
            // The .idx first: a part without it no longer looks complete.
            remove_if_exists(&idx)?;
            remove_if_exists(&bin)?;
            removed.push((*part).clone());
        }
    }
    drop(locks);
    Ok(MergeReport { summary, removed })
}

/// One section of the `.idx`.
#[derive(Debug, Clone, Copy)]
pub enum Section {
    /// int32 sequence lengths.
    Sizes,
    /// int64 byte pointers.
    Pointers,
    /// int64 document index.
    DocIdx,
}

/// The header of an `.idx`, opened for streaming reads of its sections.
#[derive(Debug, Clone)]
pub struct IndexReader {
    /// The `.idx` path.
    pub idx_path: PathBuf,
    /// The `.bin` path.
    pub bin_path: PathBuf,
    /// The token dtype.
    pub dtype: DType,
    /// `N`.
    pub sequences: u64,
    /// `M` (documents + 1).
    pub doc_entries: u64,
    /// Size of the `.idx` in bytes.
    pub idx_len: u64,
}

/// Result of [`IndexReader::verify`]: statistics and every inconsistency found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Tokens according to the sizes.
    pub tokens: u64,
    /// Documents with no sequence.
    pub empty_documents: u64,
    /// Shortest document in tokens.
    pub min_document_tokens: u64,
    /// Longest document in tokens.
    pub max_document_tokens: u64,
    /// Size of the `.bin`.
    pub bin_len: u64,
    /// Inconsistencies; empty when the dataset is sound.
    pub problems: Vec<String>,
}

impl IndexReader {
    /// Reads and checks the header of `{prefix}.idx`.
    pub fn open(prefix: &Path) -> Result<Self> {
        let (bin_path, idx_path) = dataset_paths(prefix);
        let mut file = open_file(&idx_path)?;
        let idx_len = file
            .metadata()
            .map_err(|e| Error::io("stat", &idx_path, e))?
            .len();
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact(&mut header).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::invalid(
                    &idx_path,
                    format!("only {idx_len} bytes, shorter than the 34-byte header"),
                )
            } else {
                Error::io("read", &idx_path, e)
            }
        })?;
        if &header[..9] != MAGIC {
            return Err(Error::invalid(
                &idx_path,
                "not a Megatron index: the magic is not MMIDIDX",
            ));
        }
        let version = u64::from_le_bytes(header[9..17].try_into().expect("8 bytes"));
        if version != VERSION {
            return Err(Error::invalid(
                &idx_path,
                format!("index version {version}, only version 1 exists"),
            ));
        }
        let dtype = DType::from_code(header[17]).ok_or_else(|| {
            Error::invalid(&idx_path, format!("unknown dtype code {}", header[17]))
        })?;
        let sequences = u64::from_le_bytes(header[18..26].try_into().expect("8 bytes"));
        let doc_entries = u64::from_le_bytes(header[26..34].try_into().expect("8 bytes"));
        if layout_len(sequences, doc_entries).is_none() {
            return Err(Error::invalid(
                &idx_path,
                format!(
                    "the header announces {sequences} sequences and {doc_entries} document-index entries, more than any file can hold ({idx_len} bytes here): not a valid index"
                ),
            ));
        }
        Ok(IndexReader {
            idx_path,
            bin_path,
            dtype,
            sequences,
            doc_entries,
            idx_len,
        })
    }

    /// Where `section` starts; `None` when the header's counts put it past any file.
    fn section_offset(&self, section: Section) -> Option<u64> {
        match section {
            Section::Sizes => Some(HEADER_LEN),
            Section::Pointers => self.sequences.checked_mul(4)?.checked_add(HEADER_LEN),
            Section::DocIdx => self.sequences.checked_mul(12)?.checked_add(HEADER_LEN),
        }
    }

    /// The expected `.idx` length for a text dataset (`u64::MAX` when the header's counts
    /// overflow, which [`IndexReader::open`] refuses).
    pub fn expected_len(&self) -> u64 {
        layout_len(self.sequences, self.doc_entries).unwrap_or(u64::MAX)
    }

    /// Fails unless the `.idx` is long enough for everything its header announces.
    fn check_complete(&self) -> Result<()> {
        let expected = self.expected_len();
        if self.idx_len < expected {
            return Err(Error::invalid(
                &self.idx_path,
                format!(
                    "the .idx is truncated: {} bytes, the header announces {} sequences and {} document-index entries ({expected} bytes); re-create the dataset",
                    self.idx_len, self.sequences, self.doc_entries
                ),
            ));
        }
        Ok(())
    }

    /// A buffered reader positioned at the start of `section`.
    pub fn section_reader(&self, section: Section) -> Result<BufReader<File>> {
        let offset = self.section_offset(section).ok_or_else(|| {
            Error::invalid(
                &self.idx_path,
                "the header's counts overflow the file layout",
            )
        })?;
        let mut file = open_file(&self.idx_path)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", &self.idx_path, e))?;
        Ok(BufReader::with_capacity(BUF / 4, file))
    }

    /// Reads the whole of a 64-bit section (pointers or document index) into memory.
    pub fn read_i64_section(&self, section: Section) -> Result<Vec<i64>> {
        let count = match section {
            Section::Pointers => self.sequences,
            Section::DocIdx => self.doc_entries,
            Section::Sizes => return Err(Error::Config("sizes are int32".into())),
        };
        // The counts are backed by the file's length from here on.
        self.check_complete()?;
        let mut reader = self.section_reader(section)?;
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut buf = [0u8; 8];
        for _ in 0..count {
            reader
                .read_exact(&mut buf)
                .map_err(|e| Error::io("read", &self.idx_path, e))?;
            out.push(i64::from_le_bytes(buf));
        }
        Ok(out)
    }

    /// Reads the sequence lengths into memory.
    pub fn read_sizes(&self) -> Result<Vec<i32>> {
        self.check_complete()?;
        let mut reader = self.section_reader(Section::Sizes)?;
        let mut out = Vec::with_capacity(usize::try_from(self.sequences).unwrap_or(0));
        let mut buf = [0u8; 4];
        for _ in 0..self.sequences {
            reader
                .read_exact(&mut buf)
                .map_err(|e| Error::io("read", &self.idx_path, e))?;
            out.push(i32::from_le_bytes(buf));
        }
        Ok(out)
    }

    /// Streams through the index and checks it against itself and the `.bin`: file lengths,
    /// pointers equal to the running sum of lengths, a document index that starts at 0, never
    /// decreases and ends at `N`. Returns statistics and the problems found.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            min_document_tokens: u64::MAX,
            ..VerifyReport::default()
        };
        let expected = self.expected_len();
        if self.idx_len < expected {
            report.problems.push(format!(
                "the .idx is truncated: {} bytes, the header announces {} sequences and {} document-index entries ({} bytes)",
                self.idx_len, self.sequences, self.doc_entries, expected
            ));
            return Ok(report);
        }
        if let Some(extra) = self
            .idx_len
            .checked_sub(expected)
            .filter(|&extra| extra > 0)
        {
            report.problems.push(if extra == self.sequences {
                format!("{extra} bytes after the document index: a multimodal dataset (sequence modes), not a text dataset")
            } else {
                format!("{extra} unexpected bytes after the document index")
            });
        }
        report.bin_len = match std::fs::metadata(&self.bin_path) {
            Ok(meta) => meta.len(),
            Err(e) => return Err(Error::io("stat", &self.bin_path, e)),
        };
        let item = i128::from(self.dtype.size());
        let mut sizes = self.section_reader(Section::Sizes)?;
        let mut pointers = self.section_reader(Section::Pointers)?;
        let mut seq_tokens = Vec::new();
        // i128: N int32 lengths times the item size cannot overflow it (N < 2^64).
        let mut running: i128 = 0;
        let mut b4 = [0u8; 4];
        let mut b8 = [0u8; 8];
        let mut first_pointer_problem = true;
        for i in 0..self.sequences {
            sizes
                .read_exact(&mut b4)
                .map_err(|e| Error::io("read", &self.idx_path, e))?;
            pointers
                .read_exact(&mut b8)
                .map_err(|e| Error::io("read", &self.idx_path, e))?;
            let size = i32::from_le_bytes(b4);
            let pointer = i64::from_le_bytes(b8);
            if size < 0 {
                report
                    .problems
                    .push(format!("sequence {i} has a negative length {size}"));
            }
            if i128::from(pointer) != running && first_pointer_problem {
                report.problems.push(format!(
                    "pointer {i} is {pointer} but the lengths before it put the sequence at byte {running}"
                ));
                first_pointer_problem = false;
            }
            running += i128::from(size.max(0)) * item;
            report.tokens = report.tokens.saturating_add(size.max(0) as u64);
            // Keep per-sequence lengths only while they are cheap (documents are summed below).
            if seq_tokens.len() < (1 << 24) {
                seq_tokens.push(size.max(0) as u32);
            }
        }
        if running != i128::from(report.bin_len) {
            report.problems.push(if running > i128::from(report.bin_len) {
                format!(
                    "the .bin is truncated: {} bytes, the index needs {running} ({} tokens of {})",
                    report.bin_len,
                    report.tokens,
                    self.dtype.name()
                )
            } else {
                format!(
                    "the .bin has {} bytes, the index accounts for {running}",
                    report.bin_len
                )
            });
        }
        let mut docs = self.section_reader(Section::DocIdx)?;
        let mut previous: Option<i64> = None;
        let mut last = 0;
        let sizes_known = seq_tokens.len() as u64 == self.sequences;
        for i in 0..self.doc_entries {
            docs.read_exact(&mut b8)
                .map_err(|e| Error::io("read", &self.idx_path, e))?;
            let entry = i64::from_le_bytes(b8);
            match previous {
                None if entry != 0 => report
                    .problems
                    .push(format!("the document index starts at {entry}, not 0")),
                Some(p) if entry < p => {
                    report.problems.push(format!(
                        "document index entry {i} ({entry}) is below entry {} ({p})",
                        i - 1
                    ));
                }
                Some(p) => {
                    if entry == p {
                        report.empty_documents = report.empty_documents.saturating_add(1);
                    }
                    let range = usize::try_from(p).ok().zip(usize::try_from(entry).ok());
                    if let Some((from, to)) = range
                        .filter(|&(from, to)| sizes_known && from <= to && to <= seq_tokens.len())
                    {
                        let tokens: u64 = seq_tokens[from..to].iter().map(|&t| u64::from(t)).sum();
                        report.min_document_tokens = report.min_document_tokens.min(tokens);
                        report.max_document_tokens = report.max_document_tokens.max(tokens);
                    }
                }
                None => {}
            }
            previous = Some(entry);
            last = entry;
        }
        if self.doc_entries == 0 {
            report
                .problems
                .push("the document index is empty; it must at least hold 0".into());
        } else if u64::try_from(last).ok() != Some(self.sequences) {
            report.problems.push(format!(
                "the document index ends at {last} but there are {} sequences",
                self.sequences
            ));
        }
        if report.min_document_tokens == u64::MAX {
            report.min_document_tokens = 0;
        }
        Ok(report)
    }
}

/// Reads every token of a dataset (for tests and small datasets): one `Vec` per sequence.
pub fn read_sequences(prefix: &Path) -> Result<Vec<Vec<u32>>> {
    let index = IndexReader::open(prefix)?;
    let sizes = index.read_sizes()?;
    let bin_file = open_file(&index.bin_path)?;
    let bin_len = bin_file
        .metadata()
        .map_err(|e| Error::io("stat", &index.bin_path, e))?
        .len();
    // Never reserve more tokens than the .bin holds, whatever a length claims.
    let max_tokens = usize::try_from(bin_len / index.dtype.size()).unwrap_or(usize::MAX);
    let mut bin = BufReader::new(bin_file);
    let mut out = Vec::with_capacity(sizes.len());
    for size in sizes {
        let mut sequence = Vec::with_capacity((size.max(0) as usize).min(max_tokens));
        for _ in 0..size {
            let id = match index.dtype {
                DType::U16 => {
                    let mut b = [0u8; 2];
                    bin.read_exact(&mut b)
                        .map_err(|e| Error::io("read", &index.bin_path, e))?;
                    u32::from(u16::from_le_bytes(b))
                }
                DType::I32 => {
                    let mut b = [0u8; 4];
                    bin.read_exact(&mut b)
                        .map_err(|e| Error::io("read", &index.bin_path, e))?;
                    i32::from_le_bytes(b) as u32
                }
                other => {
                    return Err(Error::invalid(
                        &index.idx_path,
                        format!("reading {} tokens is not supported", other.name()),
                    ));
                }
            };
            sequence.push(id);
        }
        out.push(sequence);
    }
    Ok(out)
}
