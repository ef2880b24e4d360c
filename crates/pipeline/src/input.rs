//! Input files: glob expansion in sorted order, transparent `.gz`/`.zst` decompression, and
//! line batching with Python's universal newlines (`\n`, `\r\n` and `\r` each end a line).
//!
//! Sharding: the inputs, concatenated in order, are cut into `N` equal byte ranges. A line of a
//! plain file belongs to the shard whose range holds the line's first byte; a compressed file,
//! whose lines cannot be located without decompressing, belongs whole to the shard whose range
//! holds its first byte. Every line lands in exactly one shard, in input order, so merging the
//! shards' outputs in shard order equals a single run.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::indexed::open_file;

/// The default longest line: 64 MiB. The longest documents of the blueprint's corpora (whole
/// books in RedPajama's `book` set, arXiv papers) are a few MiB of JSON; 64 MiB leaves a wide
/// margin while bounding what one line can make a worker hold (the line, its decoded text and
/// its token ids: a few hundred MiB at worst, instead of whatever a corrupt file holds).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// The highest line limit allowed: line offsets in a batch are 32-bit.
pub const MAX_LINE_BYTES_LIMIT: usize = 3 << 30;

/// `I/N`: this run tokenizes the `index`-th (0-based) of `count` parts of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    /// 0-based shard index, below `count`.
    pub index: u32,
    /// Number of shards, at least 1.
    pub count: u32,
}

impl Shard {
    /// The whole input.
    pub const ALL: Shard = Shard { index: 0, count: 1 };
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// Parses `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("expected I/N (e.g. 0/4), got {s:?}"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("shard index {i:?} is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count {n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Expands files, directories and globs into a sorted, de-duplicated list of files.
/// A directory contributes its `*.json*` files (recursively), except hidden files (such as
/// staging's checksum manifest) and `.partial` downloads. A pattern that matches nothing is an
/// error.
pub fn expand_inputs(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for pattern in patterns {
        let before = files.len();
        let path = Path::new(pattern);
        if path.is_file() {
            files.push(path.to_owned());
        } else if path.is_dir() {
            collect_dir(path, &mut files)?;
        } else {
            let paths = glob::glob(pattern)
                .map_err(|e| Error::Config(format!("bad glob {pattern:?}: {e}")))?;
            for entry in paths {
                let entry = entry.map_err(|e| Error::io("read", e.path().to_owned(), e.into()))?;
                if entry.is_file() {
                    files.push(entry);
                }
            }
        }
        if files.len() == before {
            return Err(Error::NoInput {
                pattern: pattern.clone(),
            });
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io("list", dir, e))?.path();
        if path.is_dir() {
            collect_dir(&path, files)?;
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".json") && !n.starts_with('.') && !n.ends_with(".partial"))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Whether a file is read through a decompressor (by extension).
pub fn is_compressed(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("gz" | "zst" | "zstd")
    )
}

/// Opens a file, decompressing `.gz` (multi-member) and `.zst`.
pub fn open_decoded(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = open_file(path)?;
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Box::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::with_capacity(1 << 20, file),
        )),
        Some("zst" | "zstd") => Box::new(
            zstd::stream::read::Decoder::new(file)
                .map_err(|e| Error::io("start decompressing", path, e))?,
        ),
        _ => Box::new(file) as Box<dyn Read + Send>,
    })
}

/// A batch of whole lines from one file.
#[derive(Debug)]
pub struct Batch {
    /// Sequence number of the batch in the run (0, 1, 2... in input order).
    pub seq: u64,
    /// Index of the file in the run's input list.
    pub file: usize,
    /// 1-based number of the first line.
    pub first_line: u64,
    /// The bytes of the lines (terminators included).
    pub data: Vec<u8>,
    /// `(start, end)` of each line's content in `data`, terminator excluded.
    pub lines: Vec<(u32, u32)>,
    /// Lines over the length bound skipped just before `lines` (only when the reader skips
    /// them, see [`LineReader::skip_too_long`]).
    pub skipped: Vec<SkippedLine>,
}

/// A line over the length bound that the reader skipped without holding it in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedLine {
    /// Its 1-based line number.
    pub line: u64,
    /// Its length in bytes, terminator excluded.
    pub bytes: u64,
}

/// What the reader saw of a file.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileSpan {
    /// Bytes read from disk (compressed size for compressed files).
    pub bytes: u64,
}

/// Sizes of the inputs (on disk).
pub fn input_sizes(files: &[PathBuf]) -> Result<Vec<u64>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .map(|m| m.len())
                .map_err(|e| Error::io("stat", f, e))
        })
        .collect()
}

/// The plan of which bytes of which files a shard reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// Per input file: `None` to skip it, or the local byte range `[start, end)` in which a line
    /// must start to be taken (whole file for compressed ones).
    pub ranges: Vec<Option<(u64, u64)>>,
}

/// Computes which lines of which files the shard takes (see the module docs).
pub fn plan_shard(files: &[PathBuf], sizes: &[u64], shard: Shard) -> ShardPlan {
    let total: u64 = sizes.iter().sum();
    let bound =
        |i: u64| -> u64 { ((u128::from(total) * u128::from(i)) / u128::from(shard.count)) as u64 };
    let lo = bound(u64::from(shard.index));
    let hi = bound(u64::from(shard.index) + 1);
    let mut base = 0u64;
    let mut ranges = Vec::with_capacity(files.len());
    for (file, &size) in files.iter().zip(sizes) {
        let range = if is_compressed(file) || size == 0 {
            // Whole file, owned by the shard holding its first byte (empty files carry nothing).
            (size > 0 && base >= lo && base < hi).then_some((0, u64::MAX))
        } else {
            let start = lo.max(base);
            let end = hi.min(base + size);
            (start < end).then(|| (start - base, end - base))
        };
        ranges.push(range);
        base += size;
    }
    ShardPlan { ranges }
}

/// One batch from [`LineReader::next_batch`]: `(data, line ranges, first line number)`, where
/// each line range is `(start, end)` into `data`.
pub type LineBatch = (Vec<u8>, Vec<(u32, u32)>, u64);

/// Reads lines in batches of about `target` bytes from one file, keeping only lines that start
/// in `range`, with universal newlines.
pub struct LineReader {
    reader: Box<dyn Read + Send>,
    path: PathBuf,
    range: (u64, u64),
    /// Bytes read but not yet handed out; `pending[..]` starts at a line start.
    pending: Vec<u8>,
    /// File offset of `pending[0]` (decompressed offset for compressed files).
    pending_offset: u64,
    /// 1-based line number of the line starting at `pending[0]`.
    pending_line: u64,
    eof: bool,
    target: usize,
    max_line: usize,
    /// Skip lines over `max_line` (recorded in `skipped`) instead of failing.
    skip_long: bool,
    skipped: Vec<SkippedLine>,
}

impl LineReader {
    pub(crate) fn open(
        path: &Path,
        range: (u64, u64),
        target: usize,
        max_line: usize,
    ) -> Result<Self> {
        Ok(Self::with_reader(
            open_decoded(path)?,
            path,
            range,
            target,
            max_line,
        ))
    }

    /// A reader of any byte stream (`path` names it in errors); `max_line` is capped at
    /// [`MAX_LINE_BYTES_LIMIT`], as line offsets are 32-bit.
    pub fn with_reader(
        reader: Box<dyn Read + Send>,
        path: &Path,
        range: (u64, u64),
        target: usize,
        max_line: usize,
    ) -> Self {
        LineReader {
            reader,
            path: path.to_owned(),
            range,
            pending: Vec::new(),
            pending_offset: 0,
            pending_line: 1,
            eof: false,
            target: target.clamp(1, MAX_LINE_BYTES_LIMIT),
            max_line: max_line.min(MAX_LINE_BYTES_LIMIT),
            skip_long: false,
            skipped: Vec::new(),
        }
    }

    /// With `skip`, a line over the length bound is read past in bounded memory and recorded
    /// (see [`LineReader::take_skipped`]) instead of ending the read with
    /// [`Error::LineTooLong`]. Only lines that start in the reader's range are recorded.
    #[must_use]
    pub fn skip_too_long(mut self, skip: bool) -> Self {
        self.skip_long = skip;
        self
    }

    /// The over-long lines skipped since the last call, in order. They all come before the
    /// lines of the batch [`LineReader::next_batch`] returned last (or after the last batch,
    /// once it returned `None`).
    pub fn take_skipped(&mut self) -> Vec<SkippedLine> {
        std::mem::take(&mut self.skipped)
    }

    /// Reads past the line that starts at `pending[0]`, through its terminator, holding at most
    /// one read's worth of it, and records it when it starts in range.
    fn skip_line(&mut self) -> Result<()> {
        let line = self.pending_line;
        let in_range = self.pending_offset >= self.range.0;
        let mut bytes = 0u64;
        loop {
            match memchr::memchr2(b'\n', b'\r', &self.pending) {
                Some(at) => {
                    let term_len = if self.pending[at] == b'\r' {
                        match self.pending.get(at + 1) {
                            Some(b'\n') => 2,
                            Some(_) => 1,
                            None if self.eof => 1,
                            None => {
                                // Undecided: keep the "\r" and read on.
                                bytes += at as u64;
                                self.pending_offset += at as u64;
                                self.pending.drain(..at);
                                self.fill()?;
                                continue;
                            }
                        }
                    } else {
                        1
                    };
                    bytes += at as u64;
                    self.pending_offset += (at + term_len) as u64;
                    self.pending.drain(..at + term_len);
                    break;
                }
                None => {
                    bytes += self.pending.len() as u64;
                    self.pending_offset += self.pending.len() as u64;
                    self.pending.clear();
                    if self.eof {
                        break;
                    }
                    self.fill()?;
                }
            }
        }
        self.pending_line += 1;
        if in_range {
            self.skipped.push(SkippedLine { line, bytes });
        }
        Ok(())
    }

    fn too_long(&self, line: u64) -> Error {
        Error::LineTooLong {
            file: self.path.clone(),
            line,
            limit: self.max_line,
        }
    }

    fn fill(&mut self) -> Result<usize> {
        let old = self.pending.len();
        let want = self.target.max(64 * 1024);
        self.pending.resize(old + want, 0);
        let mut got = 0;
        while got < want {
            match self.reader.read(&mut self.pending[old + got..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.pending.truncate(old);
                    return Err(Error::io("read", &self.path, e));
                }
            }
        }
        self.pending.truncate(old + got);
        Ok(got)
    }

    /// The next batch: `(data, line ranges, first line number)`. `None` at the end of the range.
    pub fn next_batch(&mut self) -> Result<Option<LineBatch>> {
        enum Stop {
            Full,
            RangeEnd,
            NeedMore,
            Eof,
            /// The line at `start` is over the bound and is to be skipped.
            Long,
        }
        loop {
            if self.pending_offset >= self.range.1 {
                return Ok(None);
            }
            let data = &self.pending;
            let mut lines: Vec<(u32, u32)> = Vec::new();
            let mut first_line: Option<u64> = None;
            let mut line_no = self.pending_line;
            let mut start = 0usize;
            let stop = loop {
                if start >= self.target {
                    break Stop::Full;
                }
                let line_offset = self.pending_offset + start as u64;
                if line_offset >= self.range.1 {
                    break Stop::RangeEnd;
                }
                let in_range = line_offset >= self.range.0;
                match memchr::memchr2(b'\n', b'\r', &data[start..]) {
                    Some(found) => {
                        let at = start + found;
                        let term_len = if data[at] == b'\r' {
                            match data.get(at + 1) {
                                Some(b'\n') => 2,
                                Some(_) => 1,
                                None if self.eof => 1,
                                // Undecided: this "\r" might be followed by "\n".
                                None => break Stop::NeedMore,
                            }
                        } else {
                            1
                        };
                        if at - start > self.max_line {
                            if self.skip_long {
                                break Stop::Long;
                            }
                            return Err(self.too_long(line_no));
                        }
                        if in_range {
                            first_line.get_or_insert(line_no);
                            lines.push((start as u32, at as u32));
                        }
                        line_no += 1;
                        start = at + term_len;
                    }
                    None if self.eof => {
                        // The last line of the file may lack a terminator.
                        if start < data.len() {
                            if data.len() - start > self.max_line {
                                if self.skip_long {
                                    break Stop::Long;
                                }
                                return Err(self.too_long(line_no));
                            }
                            if in_range {
                                first_line.get_or_insert(line_no);
                                lines.push((start as u32, data.len() as u32));
                            }
                            line_no += 1;
                            start = data.len();
                        }
                        break Stop::Eof;
                    }
                    None => break Stop::NeedMore,
                }
            };
            let rest = self.pending.split_off(start);
            let batch = std::mem::replace(&mut self.pending, rest);
            self.pending_offset += start as u64;
            self.pending_line = line_no;
            if !lines.is_empty() {
                return Ok(Some((
                    batch,
                    lines,
                    first_line.expect("lines imply a first line"),
                )));
            }
            match stop {
                Stop::Full => {}
                Stop::RangeEnd | Stop::Eof => return Ok(None),
                // `pending` now starts at the long line.
                Stop::Long => self.skip_line()?,
                Stop::NeedMore => {
                    // `pending` starts at a line start: the unfinished line is all of it.
                    if self.pending.len() > self.max_line {
                        if !self.skip_long {
                            return Err(self.too_long(self.pending_line));
                        }
                        self.skip_line()?;
                    } else {
                        self.fill()?;
                    }
                }
            }
        }
    }
}

/// Opens every planned file in turn; used by the pipeline's reader thread. With `skip_long`, a
/// line over `max_line` is skipped and handed on in [`Batch::skipped`] (a batch may then hold
/// no lines, when the skipped line is a file's last).
#[cfg_attr(not(feature = "tokenize"), allow(dead_code))]
pub(crate) fn read_all(
    files: &[PathBuf],
    plan: &ShardPlan,
    target: usize,
    (max_line, skip_long): (usize, bool),
    mut sink: impl FnMut(Batch) -> Result<bool>,
    mut on_file_done: impl FnMut(usize, u64),
) -> Result<()> {
    let mut seq = 0u64;
    for (index, (file, range)) in files.iter().zip(&plan.ranges).enumerate() {
        let Some(range) = *range else { continue };
        let mut reader = LineReader::open(file, range, target, max_line)?.skip_too_long(skip_long);
        let mut read_bytes = 0u64;
        loop {
            let next = reader.next_batch()?;
            let skipped = reader.take_skipped();
            let (data, lines, first_line) = match next {
                Some(batch) => batch,
                None if skipped.is_empty() => break,
                None => (Vec::new(), Vec::new(), 0),
            };
            let done = lines.is_empty();
            read_bytes += data.len() as u64 + skipped.iter().map(|s| s.bytes).sum::<u64>();
            let batch = Batch {
                seq,
                file: index,
                first_line,
                data,
                lines,
                skipped,
            };
            seq += 1;
            if !sink(batch)? {
                return Ok(());
            }
            if done {
                break;
            }
        }
        on_file_done(index, read_bytes);
    }
    Ok(())
}
