//! Staging: put the tokenizer and the dataset where tokenization and training expect them, from a
//! local directory or the HuggingFace Hub protocol, the way the blueprint lays out `/shared`:
//!
//! ```text
//! {target}/llama7b_tokenizer/          tokenizer.json, tokenizer_config.json, ...
//! {target}/data/{dataset name}/...     the dataset's JSONL files
//! {target}/redpajama_sample.jsonl      optional merged copy (`merge_jsonl`), sorted order
//! ```
//!
//! Downloads go to `{file}.partial` and resume from its length with an HTTP `Range` request; a
//! finished file is checked against the Hub's recorded size and SHA-256 (LFS files) and renamed
//! into place. Every staged file's SHA-256 and size is recorded in `{dir}/.trnkit-checksums.json`,
//! so a rerun skips what is already complete. The HF token is sent only as an `Authorization`
//! header and never appears in errors, logs or `Debug` output.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::indexed::{create_file, open_file, rename, with_suffix};
use crate::lock::{LockOptions, OutputLock};

/// The HuggingFace Hub (or a mirror speaking its protocol).
#[derive(Clone)]
pub struct Hub {
    /// e.g. `https://huggingface.co` (no trailing slash).
    pub endpoint: String,
    /// The access token, if any (from `HF_TOKEN` or the token file; the caller reads them).
    pub token: Option<String>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where something comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local directory (or, for datasets, files and globs).
    Local(Vec<String>),
    /// A Hub repository at a revision (branch, tag or commit).
    Hub {
        /// `owner/name`.
        repo: String,
        /// `main` by default.
        revision: String,
    },
}

/// The files a tokenizer directory may hold; `tokenizer.json` is required.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "config.json",
];

const MANIFEST: &str = ".trnkit-checksums.json";

/// One staged file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedFile {
    /// Path relative to the staging directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What a staging step did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageReport {
    /// The directory staged into.
    pub dir: PathBuf,
    /// Files now present, with checksums.
    pub files: Vec<StagedFile>,
    /// How many were already complete and skipped.
    pub skipped: usize,
    /// Bytes transferred (downloaded or copied) in this run.
    pub transferred: u64,
}

fn load_manifest(dir: &Path) -> BTreeMap<String, StagedFile> {
    std::fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<StagedFile>>(&b).ok())
        .map(|files| files.into_iter().map(|f| (f.path.clone(), f)).collect())
        .unwrap_or_default()
}

fn save_manifest(dir: &Path, manifest: &BTreeMap<String, StagedFile>) -> Result<()> {
    let path = dir.join(MANIFEST);
    let partial = with_suffix(&path, ".partial");
    let files: Vec<&StagedFile> = manifest.values().collect();
    let bytes = serde_json::to_vec_pretty(&files).expect("serializable");
    let mut file = create_file(&partial)?;
    file.write_all(&bytes)
        .map_err(|e| Error::io("write", &partial, e))?;
    rename(&partial, &path)
}

/// The sha256 (hex) and size of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = open_file(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Whether `dir/rel` is complete according to the manifest (same size; the hash was checked
/// when it was recorded).
fn already_staged(dir: &Path, rel: &str, manifest: &BTreeMap<String, StagedFile>) -> bool {
    manifest
        .get(rel)
        .is_some_and(|f| std::fs::metadata(dir.join(rel)).is_ok_and(|m| m.len() == f.size))
}

fn copy_file(from: &Path, to: &Path) -> Result<u64> {
    if let Some(parent) = to.parent() {
        fs_err::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
    }
    let partial = with_suffix(to, ".partial");
    let mut source = open_file(from)?;
    let mut dest = create_file(&partial)?;
    let copied = std::io::copy(&mut source, &mut dest).map_err(|e| Error::io("copy", from, e))?;
    dest.sync_all()
        .map_err(|e| Error::io("sync", &partial, e))?;
    rename(&partial, to)?;
    Ok(copied)
}

/// Takes the lock of `dir` (`{dir}.lock`), creates `dir` and reads what earlier runs recorded
/// there; the report starts empty.
fn begin(
    dir: &Path,
    lock: &LockOptions,
) -> Result<(OutputLock, BTreeMap<String, StagedFile>, StageReport)> {
    let lock = OutputLock::acquire(dir, lock)?;
    fs_err::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let report = StageReport {
        dir: dir.to_owned(),
        ..StageReport::default()
    };
    Ok((lock, load_manifest(dir), report))
}

/// Stages a tokenizer into `dir` (created if needed), holding the lock of `dir`.
pub fn stage_tokenizer(
    source: &Source,
    hub: &Hub,
    dir: &Path,
    lock: &LockOptions,
) -> Result<StageReport> {
    let (_lock, mut manifest, mut report) = begin(dir, lock)?;
    match source {
        Source::Local(paths) => {
            let from = PathBuf::from(
                paths
                    .first()
                    .ok_or_else(|| Error::Config("no tokenizer directory".into()))?,
            );
            if !from.join("tokenizer.json").is_file() {
                return Err(Error::LoadTokenizer {
                    path: from,
                    reason: "no tokenizer.json in this directory".into(),
                    source: None,
                });
            }
            for name in TOKENIZER_FILES {
                let file = from.join(name);
                if !file.is_file() {
                    continue;
                }
                let (sha, size) = sha256_file(&file)?;
                if manifest.get(*name).is_some_and(|f| f.sha256 == sha) && dir.join(name).is_file()
                {
                    report.skipped += 1;
                } else {
                    report.transferred += copy_file(&file, &dir.join(name))?;
                }
                manifest.insert(
                    (*name).into(),
                    StagedFile {
                        path: (*name).into(),
                        size,
                        sha256: sha,
                    },
                );
            }
        }
        Source::Hub { repo, revision } => {
            let agent = agent();
            for name in TOKENIZER_FILES {
                if already_staged(dir, name, &manifest) {
                    report.skipped += 1;
                    continue;
                }
                let url = format!("{}/{repo}/resolve/{revision}/{name}", hub.endpoint);
                match download(&agent, hub, &url, &dir.join(name), None)? {
                    Some((size, sha256, bytes)) => {
                        report.transferred += bytes;
                        manifest.insert(
                            (*name).into(),
                            StagedFile {
                                path: (*name).into(),
                                size,
                                sha256,
                            },
                        );
                    }
                    None if *name == "tokenizer.json" => {
                        return Err(Error::Download {
                            url,
                            reason: format!(
                                "{repo} has no tokenizer.json at revision {revision}; trnkit needs a fast (tokenizers) tokenizer"
                            ),
                            source: None,
                        });
                    }
                    None => {}
                }
            }
        }
    }
    save_manifest(dir, &manifest)?;
    report.files = manifest.into_values().collect();
    Ok(report)
}

/// Stages a dataset's JSONL files into `dir`, keeping their relative paths. From the Hub, the
/// files whose names contain `.json` are taken (e.g. `*.jsonl`, `*.jsonl.zst`).
/// Holds the lock of `dir` while it runs.
pub fn stage_dataset(
    source: &Source,
    hub: &Hub,
    dir: &Path,
    lock: &LockOptions,
) -> Result<StageReport> {
    let (_lock, mut manifest, mut report) = begin(dir, lock)?;
    match source {
        Source::Local(patterns) => {
            for file in crate::input::expand_inputs(patterns)? {
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = dir.join(&name);
                if target == file {
                    report.skipped += 1;
                    continue;
                }
                let size = std::fs::metadata(&file)
                    .map_err(|e| Error::io("stat", &file, e))?
                    .len();
                if already_staged(dir, &name, &manifest) && manifest[&name].size == size {
                    report.skipped += 1;
                    continue;
                }
                report.transferred += copy_file(&file, &target)?;
                let (sha256, size) = sha256_file(&target)?;
                manifest.insert(
                    name.clone(),
                    StagedFile {
                        path: name,
                        size,
                        sha256,
                    },
                );
                save_manifest(dir, &manifest)?;
            }
        }
        Source::Hub { repo, revision } => {
            let agent = agent();
            let tree_url = format!(
                "{}/api/datasets/{repo}/tree/{revision}?recursive=true",
                hub.endpoint
            );
            let listing = get_json(&agent, hub, &tree_url)?;
            let entries = listing.as_array().ok_or_else(|| Error::Download {
                url: tree_url.clone(),
                reason: "the file listing is not a JSON array".into(),
                source: None,
            })?;
            let mut files: Vec<(String, Option<u64>, Option<String>)> = entries
                .iter()
                .filter(|e| e.get("type").and_then(|t| t.as_str()) == Some("file"))
                .filter_map(|e| {
                    let path = e.get("path")?.as_str()?.to_owned();
                    let name = path.rsplit('/').next().unwrap_or(&path);
                    if !name.contains(".json") {
                        return None;
                    }
                    let lfs = e.get("lfs");
                    let size = lfs
                        .and_then(|l| l.get("size"))
                        .or_else(|| e.get("size"))
                        .and_then(|s| s.as_u64());
                    let sha = lfs
                        .and_then(|l| l.get("oid").or_else(|| l.get("sha256")))
                        .and_then(|s| s.as_str())
                        .map(str::to_owned);
                    Some((path, size, sha))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::Download {
                    url: tree_url,
                    reason: format!("{repo} has no JSONL files at revision {revision}"),
                    source: None,
                });
            }
            for (path, size, sha) in files {
                if path.split('/').any(|part| part == ".." || part.is_empty()) {
                    return Err(Error::Config(format!(
                        "refusing the unsafe path {path:?} from the Hub"
                    )));
                }
                if already_staged(dir, &path, &manifest) {
                    report.skipped += 1;
                    continue;
                }
                let url = format!("{}/datasets/{repo}/resolve/{revision}/{path}", hub.endpoint);
                let target = dir.join(&path);
                let Some((got_size, got_sha, bytes)) = download(&agent, hub, &url, &target, size)?
                else {
                    return Err(Error::Download {
                        url,
                        reason: "listed but not found (404)".into(),
                        source: None,
                    });
                };
                if let Some(expected) = sha.filter(|s| s.len() == 64)
                    && expected != got_sha
                {
                    let _ = std::fs::remove_file(&target);
                    return Err(Error::Checksum {
                        path: target,
                        what: "sha256",
                        expected,
                        actual: got_sha,
                    });
                }
                report.transferred += bytes;
                manifest.insert(
                    path.clone(),
                    StagedFile {
                        path,
                        size: got_size,
                        sha256: got_sha,
                    },
                );
                save_manifest(dir, &manifest)?;
            }
        }
    }
    save_manifest(dir, &manifest)?;
    report.files = manifest.into_values().collect();
    Ok(report)
}

/// Concatenates files (in the given order, as `cat` does) into `output`, via a temporary name,
/// holding the lock of `output` with the default [`LockOptions`].
pub fn merge_jsonl(files: &[PathBuf], output: &Path) -> Result<u64> {
    merge_jsonl_with(files, output, &LockOptions::default())
}

/// [`merge_jsonl`] with the given lock options.
pub fn merge_jsonl_with(files: &[PathBuf], output: &Path, lock: &LockOptions) -> Result<u64> {
    let _lock = OutputLock::acquire(output, lock)?;
    let partial = with_suffix(output, ".partial");
    let mut out = std::io::BufWriter::new(create_file(&partial)?);
    let mut total = 0;
    for file in files {
        let mut input = crate::input::open_decoded(file)?;
        total += std::io::copy(&mut input, &mut out).map_err(|e| Error::io("copy", file, e))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| Error::io("write", &partial, e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io("sync", &partial, e))?;
    rename(&partial, output)?;
    Ok(total)
}

/// The Hub client: every request bounded. Resolving and connecting take at most 10 s each,
/// sending a request 30 s, and the response's head must come within 60 s; a body (a dataset
/// file of gigabytes) is not bounded as a whole, since an interrupted download resumes where
/// it stopped on the next attempt (the staging Job's retries).
fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(Some(std::time::Duration::from_secs(10)))
            .timeout_connect(Some(std::time::Duration::from_secs(10)))
            .timeout_send_request(Some(std::time::Duration::from_secs(30)))
            .timeout_recv_response(Some(std::time::Duration::from_secs(60)))
            .build(),
    )
}

fn request(
    agent: &ureq::Agent,
    hub: &Hub,
    url: &str,
    range_from: u64,
) -> Result<ureq::http::Response<ureq::Body>> {
    let mut request = agent.get(url).header("User-Agent", "trnkit-stage");
    if let Some(token) = &hub.token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    if range_from > 0 {
        request = request.header("Range", format!("bytes={range_from}-"));
    }
    request.call().map_err(|e| Error::Download {
        url: url.to_owned(),
        reason: "the request failed; check the network and the endpoint".into(),
        source: Some(Box::new(e)),
    })
}

fn status_error(url: &str, status: u16, has_token: bool) -> Error {
    let reason = match status {
        401 if !has_token => {
            "401 Unauthorized: this repository needs a token; set HF_TOKEN or run `huggingface-cli login`".to_owned()
        }
        401 | 403 => "access denied: the repository is gated; accept its license on its Hub page with the account of your token, then rerun".to_owned(),
        other => format!("HTTP status {other}"),
    };
    Error::Download {
        url: url.to_owned(),
        reason,
        source: None,
    }
}

fn get_json(agent: &ureq::Agent, hub: &Hub, url: &str) -> Result<serde_json::Value> {
    let mut response = request(agent, hub, url, 0)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(status_error(url, status, hub.token.is_some()));
    }
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| Error::Download {
            url: url.to_owned(),
            reason: "could not read the response".into(),
            source: Some(Box::new(e)),
        })?;
    serde_json::from_str(&text).map_err(|e| Error::Download {
        url: url.to_owned(),
        reason: "the response is not JSON".into(),
        source: Some(Box::new(e)),
    })
}

/// Downloads `url` to `target` through `{target}.partial`, resuming it. Returns `None` on 404,
/// else `(size, sha256, bytes transferred)`.
fn download(
    agent: &ureq::Agent,
    hub: &Hub,
    url: &str,
    target: &Path,
    expected_size: Option<u64>,
) -> Result<Option<(u64, String, u64)>> {
    if let Some(parent) = target.parent() {
        fs_err::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
    }
    let partial = with_suffix(target, ".partial");
    let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    if expected_size.is_some_and(|s| have > s) {
        have = 0;
    }
    let mut response = request(agent, hub, url, have)?;
    let status = response.status().as_u16();
    let append = match status {
        206 => true,
        200 => false,
        404 => return Ok(None),
        416 if have > 0 => {
            // Nothing past what we have: the partial file may be complete already.
            true
        }
        other => return Err(status_error(url, other, hub.token.is_some())),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&partial)
        .map_err(|e| Error::io("open", &partial, e))?;
    let mut transferred = 0;
    if status != 416 {
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        transferred = std::io::copy(&mut reader, &mut file)
            .map_err(|e| Error::io("download into", &partial, e))?;
    }
    file.sync_all()
        .map_err(|e| Error::io("sync", &partial, e))?;
    drop(file);
    let (sha256, size) = sha256_file(&partial)?;
    if let Some(expected) = expected_size
        && expected != size
    {
        return Err(Error::Checksum {
            path: partial,
            what: "size",
            expected: expected.to_string(),
            actual: size.to_string(),
        });
    }
    rename(&partial, target)?;
    tracing::debug!(url, size, "downloaded");
    Ok(Some((size, sha256, transferred)))
}
