//! The configuration file: one TOML file from which every object trnkit renders is derived.
//!
//! Every key has a default equal to the blueprint's value, so an empty file (or no file at all)
//! describes the blueprint. `cargo xtask init` writes [`EXAMPLE`], which documents each key.
//! Unknown keys are errors that name the key, its line, and the closest known key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use fsx::DeploymentType;
pub use fsx::spec::DataCompression;
pub use mpijob::{CleanPodPolicy, ImagePullPolicy};
pub use types::{
    LauncherGateSetting, Quantity, ServiceType, TaintEffect, Timeout, TokenizeMode,
    TolerationOperator,
};

/// The commented example configuration, written by `cargo xtask init`. A test checks that it
/// parses to the defaults (except `cluster.target`), so it stays true.
pub const EXAMPLE: &str = include_str!("example.toml");

/// The file read when neither `-c` nor `TRNKIT_CONFIG` names one, and `cargo xtask init`'s
/// default output.
pub const DEFAULT_FILE: &str = "trnkit.toml";

/// The file the configuration is read from: `flag_or_env` (`-c FILE`, which clap fills from
/// `TRNKIT_CONFIG` when the flag is absent), else [`DEFAULT_FILE`] in `dir` when it exists
/// (what `cargo xtask init` writes), else none: the defaults.
pub fn find(flag_or_env: Option<&Path>, dir: &Path) -> Option<PathBuf> {
    if let Some(path) = flag_or_env {
        return Some(path.to_owned());
    }
    let default = dir.join(DEFAULT_FILE);
    default.is_file().then_some(default)
}

/// Where the configuration did not parse or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML did not parse, or a key is unknown or of the wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// The file, or "the configuration".
        origin: String,
        /// The parser's message with its line and column, and a suggestion where one helps.
        message: String,
    },
    /// Keys have values that cannot work; every problem is listed.
    #[error("{origin} has {} invalid value(s):\n{}", problems.len(), Problems(problems))]
    Invalid {
        /// The file, or "the configuration".
        origin: String,
        /// `(key, problem)` pairs.
        problems: Vec<(String, String)>,
    },
}

struct Problems<'a>(&'a [(String, String)]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (key, message)) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {key}: {message}")?;
        }
        Ok(())
    }
}

/// Whether the command reading the configuration may contact AWS and the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// Deploy and the commands around it: STS answers what the file leaves out.
    Online,
    /// `deploy --dry-run` and `render`: nothing is contacted.
    Offline,
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where trnkit deploys.
    pub cluster: Cluster,
    /// The training, TensorBoard and staging images.
    pub image: Image,
    /// The shared file system.
    pub storage: Storage,
    /// Tokenizer and dataset staging.
    pub data: Data,
    /// The compile and train MPIJobs.
    pub training: Training,
    /// TensorBoard.
    pub tensorboard: Tensorboard,
    /// The cost estimate `status` and `logs --follow` show.
    pub cost: Cost,
}

/// Where the workflow runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The embedded local profile: everything that can run on this machine runs under
    /// `./.trnkit/`, and the cluster steps are planned and rendered, not applied.
    #[default]
    Local,
    /// An Amazon EKS cluster reached through the kubeconfig.
    Eks,
}

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// `local` or `eks`.
    pub target: Target,
    /// The kubeconfig context; empty means the current context.
    pub kube_context: String,
    /// The namespace of every namespaced object.
    pub namespace: String,
    /// The AWS region (ECR, FSx).
    pub region: String,
    /// The EKS cluster's name.
    pub name: String,
    /// The AWS account; empty means "ask STS" at deploy time.
    pub account_id: String,
    /// The field manager of server-side apply.
    pub field_manager: String,
    /// Where trnkit keeps its local work (rendered manifests, the local profile's shared tree).
    pub work_dir: PathBuf,
    /// The kubeconfig file, from `--kubeconfig` for one run (not a configuration key; without
    /// it, `KUBECONFIG` or `~/.kube/config` as kubectl reads them).
    #[serde(skip)]
    pub kubeconfig: Option<PathBuf>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            target: Target::Local,
            kube_context: String::new(),
            namespace: "default".to_owned(),
            region: "us-west-2".to_owned(),
            name: "trainium-inferentia".to_owned(),
            account_id: String::new(),
            field_manager: "trnkit".to_owned(),
            work_dir: PathBuf::from(".trnkit"),
            kubeconfig: None,
        }
    }
}

/// `[image]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Image {
    /// The ECR repository holding all three images.
    pub repository: String,
    /// A registry to use instead of the one ECR reports (`host[:port]`): a mirror or a test registry.
    pub registry: String,
    /// A human tag moved to the training image besides its content-addressed tag.
    pub human_tag: String,
    /// `Always`, `IfNotPresent` or `Never`. Content-addressed tags make `IfNotPresent` safe.
    pub pull_policy: ImagePullPolicy,
    /// The neuronx-nemo-megatron commit (the full 40-digit id) baked into the image and checked
    /// out onto the shared file system (one commit for both, so they cannot skew).
    pub nemo_ref: String,
}

impl Default for Image {
    fn default() -> Self {
        Self {
            repository: "neuronx_nemo".to_owned(),
            registry: String::new(),
            human_tag: "latest".to_owned(),
            pull_policy: ImagePullPolicy::Always,
            nemo_ref: "f4743cef5a1c8dc9eeb6b3d128e01693e041a9be".to_owned(),
        }
    }
}

/// How the shared file system reaches the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageMode {
    /// The blueprint's way: a StorageClass `fsx` and a claim that makes the FSx CSI driver
    /// create the file system.
    #[default]
    Dynamic,
    /// An FSx file system created or adopted through the AWS API, bound by a static PV.
    Static,
    /// A claim that already exists; trnkit creates nothing.
    ExistingClaim,
}

/// `[storage]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// `dynamic`, `static` or `existing-claim`.
    pub mode: StorageMode,
    /// The claim every pod mounts.
    pub claim_name: String,
    /// The StorageClass of the dynamic mode.
    pub storage_class: String,
    /// Capacity in GiB (Lustre: 1200, 2400, or multiples of 2400).
    pub capacity_gib: u32,
    /// The FSx file system of the static mode (`fs-…`); empty means "create or adopt by tag".
    pub file_system_id: String,
    /// The subnet the file system is created in (the Trainium nodes' zone).
    pub subnet_id: String,
    /// Security groups admitting TCP 988 and 1021-1023 from the nodes.
    pub security_group_ids: Vec<String>,
    /// `PERSISTENT_1` or `PERSISTENT_2` (scratch file systems lose data when a server fails).
    pub deployment_type: DeploymentType,
    /// MB/s per TiB.
    pub per_unit_storage_throughput: u32,
    /// Lustre version.
    pub lustre_version: String,
    /// Days of automatic backups (0 turns them off).
    pub automatic_backup_retention_days: u32,
    /// `HH:MM` UTC.
    pub daily_automatic_backup_start_time: String,
    /// `d:HH:MM` UTC.
    pub weekly_maintenance_start_time: String,
    /// Copy tags to backups.
    pub copy_tags_to_backups: bool,
    /// `NONE` or `LZ4`.
    pub data_compression_type: DataCompression,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            mode: StorageMode::Dynamic,
            claim_name: "fsx-claim".to_owned(),
            storage_class: "fsx".to_owned(),
            capacity_gib: 1200,
            file_system_id: String::new(),
            subnet_id: String::new(),
            security_group_ids: Vec::new(),
            deployment_type: DeploymentType::Persistent1,
            per_unit_storage_throughput: 200,
            lustre_version: "2.12".to_owned(),
            automatic_backup_retention_days: 1,
            daily_automatic_backup_start_time: "00:00".to_owned(),
            weekly_maintenance_start_time: "7:09:00".to_owned(),
            copy_tags_to_backups: true,
            data_compression_type: DataCompression::None,
        }
    }
}

/// `[data]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Data {
    /// The tokenizer: a HuggingFace Hub repository id or a local directory.
    pub tokenizer: String,
    /// The Hub revision of the tokenizer.
    pub tokenizer_revision: String,
    /// The dataset: a Hub dataset repository id or a local directory of JSONL files.
    pub dataset: String,
    /// The Hub revision of the dataset.
    pub dataset_revision: String,
    /// The name of the merged JSONL and of the tokenized prefix.
    pub dataset_name: String,
    /// The JSON keys to tokenize; each gets its own `.bin`/`.idx` pair.
    pub json_keys: Vec<String>,
    /// `nemo` (what the blueprint runs) or `megatron`.
    pub mode: TokenizeMode,
    /// Append EOS to every non-empty document.
    pub append_eod: bool,
    /// Add `<pad>` to the vocabulary as NeMo's `--need-pad-id` does.
    pub need_pad_id: bool,
    /// Tokenization shards (pods of an Indexed Job); 1 tokenizes in one pod.
    pub shards: u32,
    /// Tokenization threads in each tokenizing pod.
    pub tokenize_workers: u32,
    /// CPU request of the staging pods (threads may use more when the node is idle). The
    /// default fits the blueprint's core nodes (m5.xlarge: 4 vCPU, 16 GiB).
    pub staging_cpu: Quantity,
    /// Memory request and limit of the staging pods.
    pub staging_memory: Quantity,
    /// The Kubernetes Secret holding the HuggingFace token (made from `HF_TOKEN` at deploy time).
    pub hf_token_secret: String,
}

impl Data {
    /// The tokenization semantics `mode` names.
    pub fn pipeline_mode(&self) -> pipeline::Mode {
        self.mode.pipeline_mode()
    }
}

impl Default for Data {
    fn default() -> Self {
        Self {
            tokenizer: "meta-llama/Llama-2-7b-hf".to_owned(),
            tokenizer_revision: "main".to_owned(),
            dataset: "togethercomputer/RedPajama-Data-1T-Sample".to_owned(),
            dataset_revision: "main".to_owned(),
            dataset_name: "redpajama_sample".to_owned(),
            json_keys: vec!["text".to_owned()],
            mode: TokenizeMode::Nemo,
            append_eod: true,
            need_pad_id: true,
            shards: 1,
            tokenize_workers: 4,
            staging_cpu: Quantity::parse("3").expect("a valid quantity"),
            staging_memory: Quantity::parse("6Gi").expect("a valid quantity"),
            hf_token_secret: "trnkit-hf-token".to_owned(),
        }
    }
}

/// A toleration, as in a pod spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TolerationConfig {
    /// The taint key.
    pub key: String,
    /// `Exists` or `Equal` (Kubernetes' default).
    pub operator: TolerationOperator,
    /// The taint value (with `Equal`).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`, or empty for all.
    pub effect: TaintEffect,
}

/// `[training]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Training {
    /// Worker pods, one per trn1.32xlarge.
    pub workers: i32,
    /// `aws.amazon.com/neuron` per worker.
    pub neuron_devices_per_worker: u32,
    /// `vpc.amazonaws.com/efa` per worker.
    pub efa_interfaces_per_worker: u32,
    /// MPI slots per worker; `mpirun -np` = workers x slots.
    pub slots_per_worker: i32,
    /// Launcher retries.
    pub backoff_limit: i32,
    /// `None`, `Running` or `All`.
    pub clean_pod_policy: CleanPodPolicy,
    /// Seconds after which finished jobs are deleted; 0 keeps them.
    pub ttl_seconds_after_finished: i32,
    /// Seconds a job may run; 0 means no limit.
    pub active_deadline_seconds: i64,
    /// `auto` (from the MPI Operator's version), `wait-for-workers-ready` (v0.5+) or
    /// `init-container` (v0.4).
    pub launcher_gate: LauncherGateSetting,
    /// `NEURON_CC_FLAGS` of both jobs.
    pub neuron_cc_flags: String,
    /// The script every rank runs.
    pub script: String,
    /// Its arguments.
    pub script_args: Vec<String>,
    /// The compile job's name.
    pub compile_job_name: String,
    /// The train job's name.
    pub train_job_name: String,
    /// How long to wait for the compile job, such as `2h`.
    pub compile_timeout: Timeout,
    /// Run the compile job even when the cache already holds complete entries for the flags.
    pub force_compile: bool,
    /// Further variables for every rank.
    pub env: BTreeMap<String, String>,
    /// Node selector of the workers.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the workers.
    pub tolerations: Vec<TolerationConfig>,
    /// Priority class of the pods; empty for none.
    pub priority_class: String,
    /// Put `karpenter.sh/do-not-disrupt: "true"` on the training pods, so Karpenter does not
    /// evict them to consolidate or replace their nodes mid-run.
    pub do_not_disrupt: bool,
    /// Stop a training run whose collectives fell back to TCP instead of EFA (false: warn).
    pub require_efa: bool,
    /// How long the train job may go without a progress line before it counts as hung; unset:
    /// 10 × the observed seconds per step, at least 30 minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang_timeout: Option<Timeout>,
    /// How many times a run's train job is deleted and re-created after a failure (a failed
    /// worker or job, a hang, a fatal condition) before trnkit gives up; the count is recorded
    /// per run and never resets (see `deploy::restart`).
    pub max_restarts: u32,
    /// The training run's name: its logs and checkpoints live in
    /// `/shared/nemo_experiments/<run_name>/`; empty: named once on the first deploy as
    /// `<train_job_name>-<yyyymmdd-hhmmss>` and recorded in the state (see `run_identity`).
    pub run_name: String,
    /// Resume the run from its latest checkpoint when the launcher restarts or the job is
    /// deployed again (false: the blueprint's fresh start every time).
    pub resume: bool,
    /// How much training time passes between checkpoints (what a restart can lose), such as
    /// `1h`; the blueprint's is `10h`.
    pub checkpoint_interval: Timeout,
    /// Check every Trainium node (Neuron devices, EFA interfaces) with a short Job before the
    /// compile step (see `node_check`).
    pub node_check: bool,
}

impl Default for Training {
    fn default() -> Self {
        Self {
            workers: 4,
            neuron_devices_per_worker: 16,
            efa_interfaces_per_worker: 8,
            slots_per_worker: 1,
            backoff_limit: 20,
            clean_pod_policy: CleanPodPolicy::Running,
            ttl_seconds_after_finished: 0,
            active_deadline_seconds: 0,
            launcher_gate: LauncherGateSetting::Auto,
            neuron_cc_flags: mpijob::llama2::DEFAULT_NEURON_CC_FLAGS.to_owned(),
            script: "./llama_7b.sh".to_owned(),
            script_args: Vec::new(),
            compile_job_name: mpijob::llama2::COMPILE_JOB_NAME.to_owned(),
            train_job_name: mpijob::llama2::TRAIN_JOB_NAME.to_owned(),
            compile_timeout: Timeout::parse("2h").expect("a valid duration"),
            force_compile: false,
            env: BTreeMap::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            priority_class: String::new(),
            do_not_disrupt: true,
            require_efa: true,
            hang_timeout: None,
            max_restarts: crate::deploy::restart::DEFAULT_MAX_RESTARTS,
            run_name: String::new(),
            resume: true,
            checkpoint_interval: Timeout::parse("10h").expect("a valid duration"),
            node_check: true,
        }
    }
}

/// `[cost]`: what the estimate of a run's cost is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cost {
    /// The price of one node (a trn1.32xlarge) for one hour, in USD.
    pub instance_hourly_usd: f64,
}

/// The on-demand price of a trn1.32xlarge in us-west-2, in USD per hour.
pub const TRN1_32XLARGE_US_WEST_2_HOURLY_USD: f64 = 21.50;

impl Default for Cost {
    fn default() -> Self {
        Self {
            instance_hourly_usd: TRN1_32XLARGE_US_WEST_2_HOURLY_USD,
        }
    }
}

/// `[tensorboard]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tensorboard {
    /// Deploy TensorBoard.
    pub enabled: bool,
    /// Replicas of the Deployment.
    pub replicas: i32,
    /// `LoadBalancer` (the blueprint's public ELB) or `ClusterIP` (reach it with port-forward).
    pub service_type: ServiceType,
    /// The basic-auth user.
    pub user: String,
    /// The Secret holding the generated password and the htpasswd file.
    pub secret_name: String,
}

impl Default for Tensorboard {
    fn default() -> Self {
        Self {
            enabled: true,
            replicas: 2,
            service_type: ServiceType::LoadBalancer,
            user: "admin".to_owned(),
            secret_name: "tensorboard-auth".to_owned(),
        }
    }
}

/// The largest configuration file read (the example, every key with its meaning, is 10 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, Use::Online)
    }

    /// Reads and validates a configuration file for a command that contacts nothing
    /// (`deploy --dry-run`, `render`): see [`Self::parse_offline`].
    pub fn load_offline(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, Use::Offline)
    }

    fn load_with(path: &Path, usage: Use) -> Result<Self, ConfigError> {
        let text =
            crate::files::read_to_string_bounded(path, MAX_CONFIG_BYTES).map_err(|source| {
                ConfigError::Read {
                    path: path.to_owned(),
                    source,
                }
            })?;
        Self::parse_with(&text, &path.display().to_string(), usage)
    }

    /// Parses and validates configuration text; `origin` names it in errors. Every key that
    /// does not deserialize and every value that cannot work is reported, all at once.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_with(text, origin, Use::Online)
    }

    /// [`Self::parse`] for a command that contacts nothing: what deploy would ask AWS for
    /// (the account that names the ECR registry) must then be in the file, and its absence is
    /// reported together with every other problem.
    pub fn parse_offline(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_with(text, origin, Use::Offline)
    }

    fn parse_with(text: &str, origin: &str, usage: Use) -> Result<Self, ConfigError> {
        let (config, mut problems) = parse::deserialize(text, origin)?;
        problems.extend(config.problems());
        if usage == Use::Offline {
            problems.extend(config.offline_problems());
        }
        parse::add_locations(text, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    /// What a command that contacts nothing needs besides [`Self::problems`].
    pub fn offline_problems(&self) -> Vec<(String, String)> {
        validate::offline_problems(self)
    }

    /// Every value that cannot work, as `(key, problem)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        validate::problems(self)
    }
}

mod parse;
mod types;
pub mod upstream;
mod validate;

#[cfg(test)]
mod tests;
