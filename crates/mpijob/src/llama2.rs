//! The blueprint's two Llama-2 7B jobs: the compile job (`neuron_parallel_compile` through
//! `COMPILE=1`) and the train job.
//!
//! Defaults reproduce `llama_compile.yaml` / `llama_train.yaml` of awslabs/data-on-eks: 4
//! workers with 16 Neuron devices and 8 EFA interfaces each as requests and limits,
//! `slotsPerWorker: 1`, `backoffLimit: 20`, `cleanPodPolicy: Running`, `POD_UID` from the
//! launcher pod's `metadata.uid`, the shared claim on the workers, `-wdir` the training
//! examples directory and the script `./llama_7b.sh`; `-x COMPILE=1` in the compile job only.
//!
//! Deliberate improvements over the blueprint:
//! - `TOKENIZER_PATH` and `DATASET_PATH` reach every rank through the environment (`-x`), so
//!   nobody edits the training scripts on the shared file system;
//! - `NEURON_COMPILE_CACHE_URL` points both jobs at the same cache on the shared file system,
//!   and both jobs carry the same `NEURON_CC_FLAGS`, so the train job hits what the compile job
//!   compiled;
//! - the launcher waits for the workers through an explicit [`LauncherGate`].
//!
//! Paths come in through [`Llama2Paths`]; this crate spells none of them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

use crate::Result;
use crate::builder::{
    ImagePullPolicy, LauncherGate, SharedVolume, TrainiumJobConfig, build, env, env_from_field,
};
use crate::mpirun::Mpirun;
use crate::schema::OperatorCrd;
use crate::types::{CleanPodPolicy, MPIJob};

/// The compiler flags `train_setup.sh` uses for its default `bf16SR` precision.
pub const DEFAULT_NEURON_CC_FLAGS: &str = "--model-type transformer --distribution-strategy=llm-training --enable-mixed-precision-accumulation";

/// The blueprint's compile job name.
pub const COMPILE_JOB_NAME: &str = "test-mpi-compile";
/// The blueprint's train job name.
pub const TRAIN_JOB_NAME: &str = "test-mpi-train";

/// Where things are on the shared file system, as the pods see it. The caller takes these from
/// its layout model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Llama2Paths {
    /// Where the shared claim is mounted in the workers (the blueprint's `/shared`).
    pub mount_path: String,
    /// The ranks' working directory: the training examples of the neuronx-nemo-megatron checkout.
    pub workdir: String,
    /// The HuggingFace tokenizer directory (`TOKENIZER_PATH`).
    pub tokenizer_path: String,
    /// The Megatron dataset prefix, without `.bin`/`.idx` (`DATASET_PATH`).
    pub dataset_path: String,
    /// The Neuron persistent compile cache (`NEURON_COMPILE_CACHE_URL`).
    pub compile_cache_url: String,
}

/// Everything that shapes the two jobs. [`Llama2Config::new`] gives the blueprint's values.
#[derive(Clone, Debug, PartialEq)]
pub struct Llama2Config {
    /// Namespace of both jobs.
    pub namespace: String,
    /// The training image reference.
    pub image: String,
    /// When to pull it.
    pub image_pull_policy: ImagePullPolicy,
    /// Name of the compile job.
    pub compile_job_name: String,
    /// Name of the train job.
    pub train_job_name: String,
    /// Worker pods (trn1.32xlarge nodes).
    pub workers: i32,
    /// Slots per worker (1: one rank per node, which starts torchrun with 32 processes).
    pub slots_per_worker: i32,
    /// Neuron devices per worker.
    pub neuron_devices_per_worker: u32,
    /// EFA interfaces per worker.
    pub efa_interfaces_per_worker: u32,
    /// Launcher retries.
    pub backoff_limit: Option<i32>,
    /// Which pods to delete when a job finishes.
    pub clean_pod_policy: CleanPodPolicy,
    /// Delete finished jobs after this many seconds.
    pub ttl_seconds_after_finished: Option<i32>,
    /// Fail a job that runs longer than this many seconds.
    pub active_deadline_seconds: Option<i64>,
    /// How the launcher waits for the workers.
    pub launcher_gate: LauncherGate,
    /// The shared file system's claim.
    pub claim_name: String,
    /// Paths on the shared file system.
    pub paths: Llama2Paths,
    /// `NEURON_CC_FLAGS`, identical in both jobs.
    pub neuron_cc_flags: String,
    /// The script every rank runs, relative to the working directory.
    pub script: String,
    /// Arguments of the script.
    pub script_args: Vec<String>,
    /// Further variables set on the launcher and forwarded to every rank.
    pub extra_env: Vec<(String, String)>,
    /// Node selector of the workers.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the workers.
    pub tolerations: Vec<Toleration>,
    /// Priority class of the pods.
    pub priority_class: Option<String>,
    /// Annotations of the launcher's and the workers' pods.
    pub pod_annotations: BTreeMap<String, String>,
    /// The CRD of the operator the jobs are for (which fields they may carry).
    pub operator_crd: OperatorCrd,
}

impl Llama2Config {
    /// The blueprint's values for the given image and paths.
    pub fn new(image: impl Into<String>, paths: Llama2Paths) -> Self {
        Self {
            namespace: "default".to_owned(),
            image: image.into(),
            image_pull_policy: ImagePullPolicy::Always,
            compile_job_name: COMPILE_JOB_NAME.to_owned(),
            train_job_name: TRAIN_JOB_NAME.to_owned(),
            workers: 4,
            slots_per_worker: 1,
            neuron_devices_per_worker: 16,
            efa_interfaces_per_worker: 8,
            backoff_limit: Some(20),
            clean_pod_policy: CleanPodPolicy::Running,
            ttl_seconds_after_finished: None,
            active_deadline_seconds: None,
            launcher_gate: LauncherGate::WaitForWorkersReady,
            claim_name: "fsx-claim".to_owned(),
            paths,
            neuron_cc_flags: DEFAULT_NEURON_CC_FLAGS.to_owned(),
            script: "./llama_7b.sh".to_owned(),
            script_args: Vec::new(),
            extra_env: Vec::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            priority_class: None,
            pod_annotations: BTreeMap::new(),
            operator_crd: OperatorCrd::default(),
        }
    }

    /// The generic job configuration of the compile (`compile = true`) or the train job.
    pub fn job_config(&self, compile: bool) -> TrainiumJobConfig {
        let (name, component) = if compile {
            (&self.compile_job_name, "compile")
        } else {
            (&self.train_job_name, "train")
        };
        let mut launcher_env = vec![
            env_from_field("POD_UID", "metadata.uid"),
            env("TOKENIZER_PATH", &self.paths.tokenizer_path),
            env("DATASET_PATH", &self.paths.dataset_path),
            env("NEURON_COMPILE_CACHE_URL", &self.paths.compile_cache_url),
            env("NEURON_CC_FLAGS", &self.neuron_cc_flags),
        ];
        launcher_env.extend(self.extra_env.iter().map(|(name, value)| env(name, value)));

        let mut mpirun = Mpirun::new(&self.script);
        mpirun.args = self.script_args.clone();
        mpirun.workdir = Some(self.paths.workdir.clone());
        mpirun.forward_env = ["LD_LIBRARY_PATH", "PATH"]
            .into_iter()
            .map(str::to_owned)
            .chain(launcher_env.iter().map(|variable| variable.name.clone()))
            .collect();
        if compile {
            mpirun.set_env.push(("COMPILE".to_owned(), "1".to_owned()));
        }

        let mut config = TrainiumJobConfig::new(name, &self.image, self.workers, mpirun);
        config.namespace = self.namespace.clone();
        config.labels = [
            ("app.kubernetes.io/name", "llama2"),
            ("app.kubernetes.io/component", component),
            ("app.kubernetes.io/managed-by", "trnkit"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        config.image_pull_policy = self.image_pull_policy;
        config.slots_per_worker = self.slots_per_worker;
        config.neuron_devices_per_worker = self.neuron_devices_per_worker;
        config.efa_interfaces_per_worker = self.efa_interfaces_per_worker;
        config.launcher_env = launcher_env;
        config.shared_volume = Some(SharedVolume {
            claim_name: self.claim_name.clone(),
            mount_path: self.paths.mount_path.clone(),
            volume_name: "persistent-storage".to_owned(),
        });
        config.memory_backed_shm = true;
        config.backoff_limit = self.backoff_limit;
        config.clean_pod_policy = self.clean_pod_policy;
        config.ttl_seconds_after_finished = self.ttl_seconds_after_finished;
        config.active_deadline_seconds = self.active_deadline_seconds;
        config.launcher_gate = self.launcher_gate;
        config.node_selector = self.node_selector.clone();
        config.tolerations = self.tolerations.clone();
        config.priority_class = self.priority_class.clone();
        config.pod_annotations = self.pod_annotations.clone();
        config.operator_crd = self.operator_crd;
        config
    }
}

/// The compile job: the train job's command with `-x COMPILE=1`, which makes `train_setup.sh`
/// run `neuron_parallel_compile` for 4 steps and fill the compile cache.
pub fn compile_job(config: &Llama2Config) -> Result<MPIJob> {
    build(&config.job_config(true))
}

/// The train job.
pub fn train_job(config: &Llama2Config) -> Result<MPIJob> {
    build(&config.job_config(false))
}
