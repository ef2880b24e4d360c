//! The answers of deploy's read-only check Jobs: the one JSON line each prints
//! (`trnkit-stage cache inspect --coverage-only --json`, `trnkit-stage dataset fingerprint`), how
//! it is made and how deploy reads it back from the pod's log.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use pipeline::IndexReader;

/// What `cache inspect --coverage-only --json` prints: one line, read back by deploy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CoverageLine {
    /// The coverage of the configured flags.
    pub coverage: neuron_cache::Coverage,
    /// A `[training.env] NEURON_CC_FLAGS` that differs from the checked flags, if any.
    pub flags_mismatch: Option<String>,
}

/// The `NEURON_CC_FLAGS` the compile and train jobs run with: `[training.env]`'s when set (it is
/// set on the launcher after, and so overrides, `[training] neuron_cc_flags`), else
/// `[training] neuron_cc_flags`.
pub fn effective_neuron_cc_flags(training: &crate::config::Training) -> &str {
    training
        .env
        .get("NEURON_CC_FLAGS")
        .unwrap_or(&training.neuron_cc_flags)
}

/// Whether the compile job may be skipped, from the cache check's `coverage`: only when the
/// cache holds complete entries (and nothing failed or pending) for the flags under the
/// training image's neuronx-cc `compiler`, and a compile with the same inputs (`inputs`, see
/// `deploy::plan::compile_inputs`) succeeded before (`recorded`, from the compile step's record):
/// the cache cannot tell which graphs a run traces, only the record of that compile can.
/// `Ok` is the verdict to show; `Err` says why the compile job runs.
pub fn compile_skip(
    coverage: &neuron_cache::Coverage,
    compiler: &str,
    recorded: Option<&str>,
    inputs: &str,
) -> Result<String, String> {
    if !coverage.is_ready() {
        return Err(coverage.verdict());
    }
    if coverage.compiler_version.as_deref() != Some(compiler) {
        return Err(format!(
            "the cache check counted the entries of {}, not only those of the training image's neuronx-cc {compiler}",
            coverage.compiler_version.as_deref().map_or_else(
                || "every compiler version".to_owned(),
                |version| format!("neuronx-cc {version}")
            )
        ));
    }
    match recorded {
        Some(recorded) if recorded == inputs => Ok(format!("{} (neuronx-cc {compiler}), filled by a compile with the same inputs", coverage.verdict())),
        Some(_) => Err("the compile inputs (training image, script and arguments, environment such as GBS or the sequence length, world size, flags) changed since the last successful compile, so the cached graphs may not be the train job's".to_owned()),
        None => Err("no successful compile is recorded for these inputs, so nothing says the cached graphs are the train job's".to_owned()),
    }
}

/// What `dataset fingerprint` prints for one dataset.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// The dataset prefix.
    pub prefix: String,
    /// SHA-256 of the `.idx` (sizes, pointers and document index: any re-tokenization that
    /// changes a length changes it).
    pub idx_sha256: String,
    /// Size of the `.bin`.
    pub bin_bytes: u64,
    /// Documents.
    pub documents: u64,
    /// Tokens.
    pub tokens: u64,
}

/// The line `dataset fingerprint` prints.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprints {
    /// One per prefix, in order.
    pub datasets: Vec<Fingerprint>,
    /// The tokenizer directory's files: name → SHA-256 (empty when not asked).
    #[serde(default)]
    pub tokenizer: BTreeMap<String, String>,
    /// The training-code checkout's commit (when asked).
    #[serde(default)]
    pub checkout_commit: Option<String>,
}

/// Fingerprints what staging leaves: the datasets at `prefixes`, the files of `tokenizer`
/// (a directory) and the commit of the git checkout `checkout`.
pub fn fingerprint_staging(
    prefixes: &[std::path::PathBuf],
    tokenizer: Option<&Path>,
    checkout: Option<&Path>,
) -> anyhow::Result<Fingerprints> {
    let datasets = prefixes
        .iter()
        .map(|prefix| fingerprint(prefix))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut files = BTreeMap::new();
    if let Some(dir) = tokenizer {
        for entry in fs_err::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() {
                let name = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.insert(name, pipeline::stage::sha256_file(&path)?.0);
            }
        }
        if files.is_empty() {
            bail!("the tokenizer directory {} holds no file", dir.display());
        }
    }
    let checkout_commit = checkout.map(checkout_commit).transpose()?;
    Ok(Fingerprints {
        datasets,
        tokenizer: files,
        checkout_commit,
    })
}

/// The commit a git checkout is at: `.git/HEAD` itself when detached (how the staging Job
/// checks out the pinned commit), else the branch it names (a loose ref, or `packed-refs`).
/// Read from the files, so the image needs no git.
pub fn checkout_commit(checkout: &Path) -> anyhow::Result<String> {
    let git = checkout.join(".git");
    let head = fs_err::read_to_string(git.join("HEAD"))
        .with_context(|| format!("{} is not a git checkout", checkout.display()))?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return Ok(head.to_owned());
    };
    if let Ok(commit) = fs_err::read_to_string(git.join(reference)) {
        return Ok(commit.trim().to_owned());
    }
    let packed = fs_err::read_to_string(git.join("packed-refs")).unwrap_or_default();
    packed
        .lines()
        .find_map(|line| {
            let (commit, name) = line.split_once(' ')?;
            (name == reference).then(|| commit.to_owned())
        })
        .with_context(|| {
            format!(
                "{}: HEAD names {reference}, which is not there",
                checkout.display()
            )
        })
}

/// Verifies the dataset at `prefix` and fingerprints it.
pub fn fingerprint(prefix: &Path) -> anyhow::Result<Fingerprint> {
    let index =
        IndexReader::open(prefix).with_context(|| format!("opening {}", prefix.display()))?;
    let report = index
        .verify()
        .with_context(|| format!("reading {}", prefix.display()))?;
    if !report.problems.is_empty() {
        bail!(
            "{} is inconsistent: {}",
            prefix.display(),
            report.problems.join("; ")
        );
    }
    let mut idx = prefix.as_os_str().to_owned();
    idx.push(".idx");
    let (idx_sha256, _) = pipeline::stage::sha256_file(Path::new(&idx))?;
    Ok(Fingerprint {
        prefix: prefix.display().to_string(),
        idx_sha256,
        bin_bytes: report.bin_len,
        documents: index.doc_entries.saturating_sub(1),
        tokens: report.tokens,
    })
}

/// The last line of `log` that parses as a `T`.
fn last_json_line<T: serde::de::DeserializeOwned>(log: &str) -> Option<T> {
    log.lines()
        .rev()
        .find_map(|line| serde_json::from_str::<T>(line.trim()).ok())
}

/// The answer in the cache-check Job's log: its last line that is the JSON object
/// `trnkit-stage cache inspect --coverage-only --json` prints.
pub fn parse_cache_check(log: &str) -> Option<neuron_cache::Coverage> {
    last_json_line::<CoverageLine>(log).map(|output| output.coverage)
}

/// The answer in the dataset-check Job's log: the line `trnkit-stage dataset fingerprint`
/// prints.
pub fn parse_dataset_check(log: &str) -> Option<Fingerprints> {
    last_json_line(log)
}

/// What the staging step records of the fingerprints: `prefix → "idx sha256 …, bin … bytes,
/// … documents, … tokens"`; a re-run compares these strings.
pub fn dataset_outputs(fingerprints: &Fingerprints) -> BTreeMap<String, String> {
    let mut outputs: BTreeMap<String, String> = fingerprints
        .datasets
        .iter()
        .map(|dataset| {
            (
                dataset.prefix.clone(),
                format!(
                    "idx sha256 {}, bin {} bytes, {} documents, {} tokens",
                    dataset.idx_sha256, dataset.bin_bytes, dataset.documents, dataset.tokens
                ),
            )
        })
        .collect();
    for (file, sha256) in &fingerprints.tokenizer {
        outputs.insert(format!("tokenizer/{file}"), format!("sha256 {sha256}"));
    }
    if let Some(commit) = &fingerprints.checkout_commit {
        outputs.insert("checkout".to_owned(), format!("commit {commit}"));
    }
    outputs
}

#[cfg(test)]
mod tests;
