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
//! flat whatever the corpus size. Every output is written under a `.partial` name; `finish`
//! removes any old `.idx` first, renames the `.bin`, then the `.idx`, so a killed run never leaves
//! a pair that looks complete.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
}

#[derive(Debug)]
struct PartialPaths {
    bin: PathBuf,
    idx: PathBuf,
    sizes: PathBuf,
    docs: PathBuf,
}

impl PartialPaths {
    fn new(prefix: &Path) -> Self {
        PartialPaths {
            bin: with_suffix(prefix, ".bin.partial"),
            idx: with_suffix(prefix, ".idx.partial"),
            sizes: with_suffix(prefix, ".sizes.partial"),
            docs: with_suffix(prefix, ".docs.partial"),
        }
    }
}

const BUF: usize = 1 << 20;

impl DatasetWriter {
    /// Starts a dataset at `prefix` (the outputs will be `{prefix}.bin` and `{prefix}.idx`).
    pub fn create(prefix: &Path, dtype: DType) -> Result<Self> {
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
        self.tokens += tokens.len() as u64;
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
        let boundary = self.sequences as i64;
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
        let base = self.sequences as i64;
        let mut reader = index.section_reader(Section::DocIdx)?;
        let mut buf = [0u8; 8];
        for i in 0..index.doc_entries {
            reader
                .read_exact(&mut buf)
                .map_err(|e| Error::io("read", &index.idx_path, e))?;
            if i == 0 {
                continue;
            }
            let shifted = i64::from_le_bytes(buf) + base;
            self.docs
                .write_all(&shifted.to_le_bytes())
                .map_err(|e| Error::io("write", &self.paths.docs, e))?;
        }
        self.sequences += index.sequences;
        self.documents += index.doc_entries.saturating_sub(1);
        // Tokens.
        let mut bin = open_file(&index.bin_path)?;
        let copied = std::io::copy(&mut bin, &mut self.bin)
            .map_err(|e| Error::io("copy", &index.bin_path, e))?;
        self.tokens += copied / self.dtype.size();
        Ok(())
    }

    /// Writes the `.idx`, then renames both files into place.
    pub fn finish(mut self) -> Result<DatasetSummary> {
        let paths = PartialPaths::new(&self.prefix);
        flush_sync(&mut self.bin, &paths.bin)?;
        flush_sync(&mut self.sizes, &paths.sizes)?;
        flush_sync(&mut self.docs, &paths.docs)?;

        let mut idx = BufWriter::with_capacity(BUF, create_file(&paths.idx)?);
        let werr = |e| Error::io("write", &paths.idx, e);
        idx.write_all(MAGIC).map_err(werr)?;
        idx.write_all(&VERSION.to_le_bytes()).map_err(werr)?;
        idx.write_all(&[self.dtype.code()]).map_err(werr)?;
        idx.write_all(&self.sequences.to_le_bytes()).map_err(werr)?;
        idx.write_all(&(self.documents + 1).to_le_bytes())
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
            pointer += i64::from(i32::from_le_bytes(buf)) * item;
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

/// Merges datasets (same dtype) into `output`, in the given order: the result equals a single
/// run over the concatenated inputs.
pub fn merge(parts: &[PathBuf], output: &Path) -> Result<DatasetSummary> {
    let Some(first) = parts.first() else {
        return Err(Error::Config("merge needs at least one dataset".into()));
    };
    let dtype = IndexReader::open(first)?.dtype;
    let mut writer = DatasetWriter::create(output, dtype)?;
    for part in parts {
        writer.append_dataset(part)?;
    }
    writer.finish()
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
        Ok(IndexReader {
            idx_path,
            bin_path,
            dtype,
            sequences,
            doc_entries,
            idx_len,
        })
    }

    fn section_offset(&self, section: Section) -> u64 {
        match section {
            Section::Sizes => HEADER_LEN,
            Section::Pointers => HEADER_LEN + 4 * self.sequences,
            Section::DocIdx => HEADER_LEN + 12 * self.sequences,
        }
    }

    /// The expected `.idx` length for a text dataset.
    pub fn expected_len(&self) -> u64 {
        HEADER_LEN + 12 * self.sequences + 8 * self.doc_entries
    }

    /// A buffered reader positioned at the start of `section`.
    pub fn section_reader(&self, section: Section) -> Result<BufReader<File>> {
        let mut file = open_file(&self.idx_path)?;
        file.seek(SeekFrom::Start(self.section_offset(section)))
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
        let mut reader = self.section_reader(section)?;
        let mut out = Vec::with_capacity(count as usize);
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
        let mut reader = self.section_reader(Section::Sizes)?;
        let mut out = Vec::with_capacity(self.sequences as usize);
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
        if self.idx_len > expected {
            let extra = self.idx_len - expected;
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
        let item = self.dtype.size() as i64;
        let mut sizes = self.section_reader(Section::Sizes)?;
        let mut pointers = self.section_reader(Section::Pointers)?;
        let mut seq_tokens = Vec::new();
        let mut running: i64 = 0;
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
            if pointer != running && first_pointer_problem {
                report.problems.push(format!(
                    "pointer {i} is {pointer} but the lengths before it put the sequence at byte {running}"
                ));
                first_pointer_problem = false;
            }
            running += i64::from(size.max(0)) * item;
            report.tokens += size.max(0) as u64;
            // Keep per-sequence lengths only while they are cheap (documents are summed below).
            if seq_tokens.len() < (1 << 24) {
                seq_tokens.push(size.max(0) as u32);
            }
        }
        if running as u64 != report.bin_len {
            report.problems.push(if (running as u64) > report.bin_len {
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
                        report.empty_documents += 1;
                    }
                    if sizes_known && entry >= p && (entry as u64) <= self.sequences {
                        let tokens: u64 = seq_tokens[p as usize..entry as usize]
                            .iter()
                            .map(|&t| u64::from(t))
                            .sum();
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
        } else if last as u64 != self.sequences {
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
    let mut bin = BufReader::new(open_file(&index.bin_path)?);
    let mut out = Vec::with_capacity(sizes.len());
    for size in sizes {
        let mut sequence = Vec::with_capacity(size.max(0) as usize);
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
