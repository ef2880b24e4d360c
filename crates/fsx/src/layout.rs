//! The layout of the shared file system: every path of `/shared`, spelled once.
//!
//! In the blueprint, the FSx for Lustre file system is mounted at `/shared` in every pod and its
//! paths are repeated by hand in five places (tokenizer, raw data, merged JSONL, tokenized prefix,
//! training-code checkout, compile cache, experiment logs; `blueprint.md` §1, §6.3, §7).
//! [`SharedLayout`] is the one typed model of those paths. It is the **only** place in the
//! workspace where a path under `/shared` is written; other crates receive the paths they need
//! from the composition root (`xtask`).
//!
//! The same layout can sit under another root: [`SharedLayout::new`] for the local profile (for
//! example `./.trnkit/shared`), [`SharedLayout::in_cluster`] for `/shared`, and
//! [`SharedLayout::rebase`] to move a layout (a local mirror of the cluster's `/shared`).
//!
//! Names that become path components (the dataset name, a JSON key, a launcher pod UID) are
//! validated by [`validate_component`]: ASCII letters, digits, `-`, `_` and `.` only, not empty,
//! not `.` or `..`, not starting with `-`, at most 255 bytes. That rules out `/`, `..`, NUL,
//! newlines and every shell metacharacter, so the paths can be pasted into a shell command line
//! (for example `mpirun -wdir`) without quoting surprises.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The typed model of the shared file system's directory tree.
///
/// ```
/// use fsx::SharedLayout;
///
/// let layout = SharedLayout::in_cluster();
/// assert_eq!(layout.compile_cache().to_str(), Some("/shared/neuron_cache"));
/// assert_eq!(
///     layout.dataset_prefix("text")?.to_str(),
///     Some("/shared/data/redpajama_sample_text_document"),
/// );
/// let local = layout.rebase("./.trnkit/shared");
/// assert_eq!(local.tokenizer_dir().to_str(), Some("./.trnkit/shared/llama7b_tokenizer"));
/// # Ok::<(), fsx::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawLayout", deny_unknown_fields)]
pub struct SharedLayout {
    root: PathBuf,
    dataset_name: String,
}

/// The unvalidated form that `serde` reads before [`SharedLayout`] checks it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    root: PathBuf,
    #[serde(default = "default_dataset_name")]
    dataset_name: String,
}

fn default_dataset_name() -> String {
    SharedLayout::DEFAULT_DATASET_NAME.to_owned()
}

impl TryFrom<RawLayout> for SharedLayout {
    type Error = Error;

    fn try_from(raw: RawLayout) -> Result<Self> {
        SharedLayout::new(raw.root).with_dataset_name(&raw.dataset_name)
    }
}

impl SharedLayout {
    /// Where the file system is mounted in every pod of the blueprint.
    pub const IN_CLUSTER_ROOT: &str = "/shared";
    /// The dataset name of the blueprint: the merged JSONL is `<root>/redpajama_sample.jsonl` and
    /// the tokenizer's output prefix `<root>/data/redpajama_sample`.
    pub const DEFAULT_DATASET_NAME: &str = "redpajama_sample";

    /// A layout under `root`, with the blueprint's dataset name.
    ///
    /// The root is taken as given (relative roots stay relative); it is not created.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            dataset_name: Self::DEFAULT_DATASET_NAME.to_owned(),
        }
    }

    /// The layout as pods see it: root `/shared`.
    pub fn in_cluster() -> Self {
        Self::new(Self::IN_CLUSTER_ROOT)
    }

    /// The same layout with another dataset name (`redpajama_sample` by default).
    ///
    /// Fails when the name is not a safe path component (see [`validate_component`]).
    pub fn with_dataset_name(self, name: &str) -> Result<Self> {
        validate_component("dataset name", name)?;
        Ok(Self {
            dataset_name: name.to_owned(),
            ..self
        })
    }

    /// The same layout under another root, for example a local mirror of `/shared`.
    pub fn rebase(&self, new_root: impl Into<PathBuf>) -> Self {
        Self {
            root: new_root.into(),
            dataset_name: self.dataset_name.clone(),
        }
    }

    /// The root directory (`/shared` in the cluster).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The dataset name (`redpajama_sample` by default).
    pub fn dataset_name(&self) -> &str {
        &self.dataset_name
    }

    /// Whether this is the in-cluster layout (root `/shared`).
    pub fn is_in_cluster(&self) -> bool {
        self.root == Path::new(Self::IN_CLUSTER_ROOT)
    }

    /// `<root>/llama7b_tokenizer`: the Hugging Face tokenizer (`save_pretrained`), read by the
    /// tokenizer step and by training (`model.tokenizer.type`, `TOKENIZER_PATH`).
    pub fn tokenizer_dir(&self) -> PathBuf {
        self.root.join("llama7b_tokenizer")
    }

    /// `<root>/data`: the raw and tokenized data.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `<root>/data/RedPajama-Data-1T-Sample`: the raw dataset clone (`*.jsonl`).
    pub fn raw_data_dir(&self) -> PathBuf {
        self.data_dir().join("RedPajama-Data-1T-Sample")
    }

    /// `<root>/<dataset name>.jsonl`: the raw JSONL files concatenated into one.
    pub fn merged_jsonl(&self) -> PathBuf {
        self.root.join(format!("{}.jsonl", self.dataset_name))
    }

    /// `<root>/data/<dataset name>`: the tokenizer's `--output-prefix`.
    pub fn output_prefix(&self) -> PathBuf {
        self.data_dir().join(&self.dataset_name)
    }

    /// `<root>/data/<dataset name>_<json key>_document`: the tokenized dataset without its
    /// `.bin`/`.idx` extension, i.e. training's `DATASET_PATH` (`model.data.data_prefix`).
    ///
    /// Fails when `json_key` is not a safe path component.
    pub fn dataset_prefix(&self, json_key: &str) -> Result<PathBuf> {
        validate_component("json key", json_key)?;
        Ok(self
            .data_dir()
            .join(format!("{}_{json_key}_document", self.dataset_name)))
    }

    /// `<root>/neuronx-nemo-megatron`: the training-code checkout.
    pub fn code_checkout(&self) -> PathBuf {
        self.root.join("neuronx-nemo-megatron")
    }

    /// `<checkout>/nemo/examples/nlp/language_modeling/`: the working directory of every rank
    /// (`mpirun -wdir`), where `llama_7b.sh`, `test_llama.sh` and `train_setup.sh` live.
    ///
    /// The path ends with a separator, as the blueprint writes it: `to_str()`/`display()` give
    /// `/shared/neuronx-nemo-megatron/nemo/examples/nlp/language_modeling/`. `Path` comparison
    /// ignores the trailing separator, so `==` against the form without it still holds.
    pub fn training_workdir(&self) -> PathBuf {
        self.code_checkout()
            .join("nemo/examples/nlp/language_modeling")
            .join("")
    }

    /// `<root>/neuron_cache`: the Neuron persistent compile cache (`NEURON_COMPILE_CACHE_URL`).
    pub fn compile_cache(&self) -> PathBuf {
        self.root.join("neuron_cache")
    }

    /// `<root>/nemo_experiments`: NeMo's experiment directories, one per launcher pod UID; also
    /// TensorBoard's log directory.
    pub fn experiments(&self) -> PathBuf {
        self.root.join("nemo_experiments")
    }

    /// `<root>/nemo_experiments/<launcher uid>`: one run's directory (`EXPLICIT_LOGDIR`).
    ///
    /// Every launcher retry gets a new pod UID and so a new run directory.
    /// Fails when `launcher_uid` is not a safe path component.
    pub fn run_dir(&self, launcher_uid: &str) -> Result<PathBuf> {
        validate_component("launcher pod uid", launcher_uid)?;
        Ok(self.experiments().join(launcher_uid))
    }

    /// `<root>/nemo_experiments/${VAR}`: the run directory as a shell expression, for scripts in
    /// which the launcher's UID is only known at run time (the blueprint's
    /// `EXPLICIT_LOGDIR=/shared/nemo_experiments/$POD_UID`).
    ///
    /// `env_var` must be a shell variable name (`[A-Za-z_][A-Za-z0-9_]*`).
    pub fn run_dir_shell(&self, env_var: &str) -> Result<String> {
        let valid = env_var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && env_var
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::InvalidName {
                what: "environment variable name",
                name: env_var.escape_debug().to_string(),
                reason: "use letters, digits and `_`, not starting with a digit".to_owned(),
            });
        }
        Ok(format!("{}/${{{env_var}}}", self.experiments().display()))
    }

    /// `<run dir>/<rank>`: one rank's (node's) log directory (`LOG_PATH`).
    pub fn rank_dir(&self, launcher_uid: &str, rank: u32) -> Result<PathBuf> {
        Ok(self.run_dir(launcher_uid)?.join(rank.to_string()))
    }

    /// `<run dir>/<rank>/log`: the `tee -a` of one node's torchrun output.
    pub fn rank_log(&self, launcher_uid: &str, rank: u32) -> Result<PathBuf> {
        Ok(self.rank_dir(launcher_uid, rank)?.join("log"))
    }

    /// `<run dir>/checkpoints`: NeMo's checkpoint callback output.
    pub fn checkpoints(&self, launcher_uid: &str) -> Result<PathBuf> {
        Ok(self.run_dir(launcher_uid)?.join("checkpoints"))
    }

    /// The directories a fresh shared file system needs before the workflow writes to it, parents
    /// first: data, compile cache and experiments (the tokenizer and checkout directories are
    /// created by the steps that fill them).
    pub fn directories(&self) -> Vec<PathBuf> {
        vec![
            self.root.clone(),
            self.data_dir(),
            self.compile_cache(),
            self.experiments(),
        ]
    }
}

/// Checks that `name` is safe to use as one path component (and on a shell command line).
///
/// Allowed: ASCII letters, digits, `-`, `_` and `.`; not empty, not `.` or `..`, not starting
/// with `-` (it would read as an option), at most 255 bytes. `what` names the value in the error,
/// for example `"launcher pod uid"`.
pub fn validate_component(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not names".to_owned())
    } else if name.len() > 255 {
        Some(format!("it is {} bytes long; the limit is 255", name.len()))
    } else if name.starts_with('-') {
        Some("it starts with `-`, which reads as an option".to_owned())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .map(|c| format!("it contains {:?}; use letters, digits, `-`, `_` and `.`", c))
    };
    Error::check_name(what, name, reason)
}
