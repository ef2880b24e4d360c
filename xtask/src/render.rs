//! Rendering: the configuration becomes every Kubernetes object trnkit would apply.
//!
//! Pure: the configuration and the resolved inputs (image references, the launcher gate)
//! become the inputs of the builders (`llama2_config`, `tensorboard_config`); `deploy::bundle`
//! assembles every object. [`write`] puts them in a directory, one object per YAML document,
//! atomically.
//!
//! Secrets are not rendered: their values (the HuggingFace token, the TensorBoard password)
//! never touch the disk; `deploy` creates them directly in the cluster.

use std::path::{Path, PathBuf};

use fsx::SharedLayout;
use mpijob::LauncherGate;
use mpijob::llama2::{Llama2Config, Llama2Paths};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, LauncherGateSetting, Target};
use crate::tensorboard::TensorboardConfig;

/// The registry named in rendered manifests of the local profile, when no registry or account
/// is configured.
pub const LOCAL_REGISTRY: &str = "localhost:5000";

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An MPIJob did not validate.
    #[error("the {job} job is invalid")]
    MpiJob {
        /// `compile` or `train`.
        job: &'static str,
        /// The problems.
        #[source]
        source: mpijob::Error,
    },
    /// The output directory was refused or could not be written.
    #[error(transparent)]
    Output(#[from] crate::files::OutputError),
    /// A path of the shared layout was rejected.
    #[error("the shared file system layout rejected a name")]
    Layout(#[source] fsx::Error),
    /// The image registry cannot be named.
    #[error(
        "cannot name the ECR registry: set cluster.account_id or image.registry (deploy asks STS for the account, but --dry-run and render contact nothing)"
    )]
    NoRegistry,
    /// An object could not be serialized.
    #[error("cannot serialize {kind} {name}")]
    Serialize {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// One rendered object.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The whole object, with `apiVersion` and `kind`.
    pub value: Value,
}

impl Manifest {
    /// Serializes a typed object.
    pub fn from_object<T: Serialize>(object: &T) -> Result<Self, RenderError> {
        let mut value = serde_json::to_value(object).map_err(|source| RenderError::Serialize {
            kind: std::any::type_name::<T>().to_owned(),
            name: String::new(),
            source,
        })?;
        // Keys in sorted order whatever serde_json's features in this build (`preserve_order`
        // is switched on by some dependents), so files, snapshots and digests are the same
        // in every build of the workspace.
        value.sort_all_objects();
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(Self { kind, name, value })
    }

    /// The file name this object is written to, such as `20-mpijob-test-mpi-train.yaml`.
    pub fn file_name(&self, index: usize) -> String {
        format!("{index:02}-{}-{}.yaml", self.kind.to_lowercase(), self.name)
    }

    /// The object as a YAML document. Strings that a YAML 1.1 reader would take for something
    /// else (the FSx maintenance window `7:09:00` is a base-60 number there) are quoted.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(&self.value)
            .unwrap_or_else(|error| format!("# cannot render: {error}\n"))
    }
}

/// The images the manifests refer to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageRefs {
    /// The training image (launcher, workers).
    pub training: String,
    /// The TensorBoard image.
    pub tensorboard: String,
    /// The staging image.
    pub stager: String,
}

/// The registry host the configuration names: `image.registry`, else the account's ECR
/// registry, else (local profile only) [`LOCAL_REGISTRY`].
pub fn registry(config: &Config) -> Result<String, RenderError> {
    if !config.image.registry.is_empty() {
        return Ok(config.image.registry.clone());
    }
    if !config.cluster.account_id.is_empty() {
        return Ok(format!(
            "{}.dkr.ecr.{}.amazonaws.com",
            config.cluster.account_id, config.cluster.region
        ));
    }
    match config.cluster.target {
        Target::Local => Ok(LOCAL_REGISTRY.to_owned()),
        Target::Eks => Err(RenderError::NoRegistry),
    }
}

/// The in-cluster layout of `/shared` for this configuration.
pub fn layout(config: &Config) -> Result<SharedLayout, RenderError> {
    SharedLayout::in_cluster()
        .with_dataset_name(&config.data.dataset_name)
        .map_err(RenderError::Layout)
}

/// The launcher gate the configuration asks for; `auto` means the operator version decides
/// (`detected`), and without a detected version the v0.5+ policy.
pub fn launcher_gate(config: &Config, detected: Option<LauncherGate>) -> LauncherGate {
    match config.training.launcher_gate {
        LauncherGateSetting::InitContainer => LauncherGate::InitContainer,
        LauncherGateSetting::WaitForWorkersReady => LauncherGate::WaitForWorkersReady,
        LauncherGateSetting::Auto => detected.unwrap_or(LauncherGate::WaitForWorkersReady),
    }
}

/// The Llama-2 jobs' configuration.
pub fn llama2_config(
    config: &Config,
    image: &str,
    gate: LauncherGate,
) -> Result<Llama2Config, RenderError> {
    let layout = layout(config)?;
    let key = config.data.json_keys.first().map_or("text", String::as_str);
    let text = |path: PathBuf| path.display().to_string();
    let paths = Llama2Paths {
        mount_path: text(layout.root().to_path_buf()),
        workdir: text(layout.training_workdir()),
        tokenizer_path: text(layout.tokenizer_dir()),
        dataset_path: text(layout.dataset_prefix(key).map_err(RenderError::Layout)?),
        compile_cache_url: text(layout.compile_cache()),
    };
    let training = &config.training;
    let mut jobs = Llama2Config::new(image, paths);
    jobs.namespace = config.cluster.namespace.clone();
    jobs.image_pull_policy = config.image.pull_policy;
    jobs.compile_job_name = training.compile_job_name.clone();
    jobs.train_job_name = training.train_job_name.clone();
    jobs.workers = training.workers;
    jobs.slots_per_worker = training.slots_per_worker;
    jobs.neuron_devices_per_worker = training.neuron_devices_per_worker;
    jobs.efa_interfaces_per_worker = training.efa_interfaces_per_worker;
    jobs.backoff_limit = Some(training.backoff_limit);
    jobs.clean_pod_policy = training.clean_pod_policy;
    jobs.ttl_seconds_after_finished =
        (training.ttl_seconds_after_finished > 0).then_some(training.ttl_seconds_after_finished);
    jobs.active_deadline_seconds =
        (training.active_deadline_seconds > 0).then_some(training.active_deadline_seconds);
    jobs.launcher_gate = gate;
    jobs.claim_name = config.storage.claim_name.clone();
    jobs.neuron_cc_flags = training.neuron_cc_flags.clone();
    // Every rank runs `trnkit-rank <script> <args>`, which hands the flags to the compiler
    // after `train_setup.sh` has overwritten NEURON_CC_FLAGS (see `rank`).
    jobs.script = rank::PATH.to_owned();
    jobs.script_args = std::iter::once(training.script.clone())
        .chain(training.script_args.iter().cloned())
        .collect();
    jobs.extra_env = std::iter::once((
        rank::FLAGS_VARIABLE.to_owned(),
        training.neuron_cc_flags.clone(),
    ))
    .chain(
        training
            .env
            .iter()
            .map(|(name, value)| (name.clone(), value.clone())),
    )
    .collect();
    jobs.node_selector = training.node_selector.clone();
    jobs.tolerations = training
        .tolerations
        .iter()
        .map(|toleration| k8s_openapi::api::core::v1::Toleration {
            key: (!toleration.key.is_empty()).then(|| toleration.key.clone()),
            operator: Some(toleration.operator.as_str().to_owned()),
            value: (!toleration.value.is_empty()).then(|| toleration.value.clone()),
            effect: toleration.effect.as_kubernetes().map(str::to_owned),
            toleration_seconds: None,
        })
        .collect();
    jobs.priority_class =
        (!training.priority_class.is_empty()).then(|| training.priority_class.clone());
    if training.do_not_disrupt {
        jobs.pod_annotations.insert(
            mpijob::builder::DO_NOT_DISRUPT_ANNOTATION.to_owned(),
            "true".to_owned(),
        );
    }
    // The init-container gate is for operators before v0.5 (the blueprint's v0.4.0): the jobs
    // then carry only what that CRD declares and are checked against it. At apply time
    // `mpijob::io::apply` checks them against the CRD the cluster serves.
    jobs.operator_crd = match gate {
        LauncherGate::InitContainer => mpijob::OperatorCrd::V0_4_0,
        LauncherGate::WaitForWorkersReady => mpijob::OperatorCrd::V0_8_2,
    };
    Ok(jobs)
}

/// The train job's configuration: the jobs' configuration plus the run's identity and resume
/// settings, which the compile job does not get (see [`crate::run_identity`]).
pub fn train_config(jobs: &Llama2Config, config: &Config) -> Llama2Config {
    let mut train = jobs.clone();
    train.extra_env.extend(crate::run_identity::train_env(
        crate::run_identity::rendered_name(config),
        &config.training,
    ));
    train
}

/// The TensorBoard objects' configuration.
pub fn tensorboard_config(config: &Config, image: &str) -> Result<TensorboardConfig, RenderError> {
    let layout = layout(config)?;
    Ok(TensorboardConfig {
        namespace: config.cluster.namespace.clone(),
        image: image.to_owned(),
        pull_policy: config.image.pull_policy.as_str().to_owned(),
        replicas: config.tensorboard.replicas,
        service_type: config.tensorboard.service_type,
        secret_name: config.tensorboard.secret_name.clone(),
        claim_name: config.storage.claim_name.clone(),
        mount_path: layout.root().display().to_string(),
        logdir: layout.experiments().display().to_string(),
    })
}

/// Writes the manifests into `dir`, one file per object plus `all.yaml` with every object as
/// one YAML document each. The files are written into a temporary directory beside `dir`,
/// which then replaces `dir` whole, so an interrupted run never leaves a partial set.
pub fn write(dir: &Path, manifests: &[Manifest]) -> Result<Vec<PathBuf>, RenderError> {
    let mut out = crate::files::OutputDir::begin(dir)?;
    let mut written = Vec::new();
    for (index, manifest) in manifests.iter().enumerate() {
        written.push(out.write(Path::new(&manifest.file_name(index)), manifest.to_yaml())?);
    }
    written.push(out.write(Path::new("all.yaml"), stream(manifests))?);
    out.commit()?;
    Ok(written)
}

/// Every manifest as one YAML stream (`---` before each document), as `kubectl apply -f -`
/// and `kubectl diff -f -` read it.
pub fn stream(manifests: &[Manifest]) -> String {
    let mut all = String::new();
    for manifest in manifests {
        all.push_str("---\n");
        all.push_str(&manifest.to_yaml());
    }
    all
}

pub mod rank;
#[cfg(test)]
pub(crate) mod rank_harness;

#[cfg(test)]
mod tests;
