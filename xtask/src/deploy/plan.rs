//! The plan: the configuration, rendered, becomes an ordered list of steps, each with a digest
//! of its inputs.
//!
//! Pure. A step whose digest matches the one recorded for its last successful run is up to
//! date; a changed input (an image tag, a manifest field, a dataset setting) changes the digest
//! of that step and of the steps that depend on it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::render::Manifest;

/// The steps, in the blueprint's order. TensorBoard comes before following the logs because
/// following blocks until the training job ends.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum StepId {
    /// AWS identity, cluster reachability, operator, CSI driver, device plugins, nodes.
    Preflight,
    /// Build and push the training, TensorBoard and staging images.
    Images,
    /// The shared file system's StorageClass/PV/PVC.
    Storage,
    /// Tokenizer, dataset, training code and tokenization onto the shared file system (up to
    /// date while the datasets there match the recorded fingerprints).
    Staging,
    /// The compile MPIJob that fills the Neuron compile cache (skipped when the cache already
    /// holds complete entries for the flags, unless `force_compile`).
    Compile,
    /// The train MPIJob.
    Train,
    /// TensorBoard behind basic auth.
    Tensorboard,
    /// Follow the launcher and the rank-0 log.
    Follow,
}

impl StepId {
    /// Every step, in order.
    pub const ALL: [StepId; 8] = [
        StepId::Preflight,
        StepId::Images,
        StepId::Storage,
        StepId::Staging,
        StepId::Compile,
        StepId::Train,
        StepId::Tensorboard,
        StepId::Follow,
    ];

    /// The kebab-case name used on the command line and in the state.
    pub fn name(self) -> &'static str {
        match self {
            StepId::Preflight => "preflight",
            StepId::Images => "images",
            StepId::Storage => "storage",
            StepId::Staging => "staging",
            StepId::Compile => "compile",
            StepId::Train => "train",
            StepId::Tensorboard => "tensorboard",
            StepId::Follow => "follow",
        }
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// Which step.
    pub id: StepId,
    /// What it is for, in a few words.
    pub title: String,
    /// sha256 of the step's inputs (and of the digests of the steps it depends on).
    pub digest: String,
    /// Runs every time (checks and log following), whatever the state says.
    pub always: bool,
    /// What the step does, one line per action.
    pub actions: Vec<String>,
    /// The objects it applies.
    #[serde(skip)]
    pub manifests: Vec<Manifest>,
}

/// The whole plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// `local` or `eks`.
    pub target: crate::config::Target,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The step with this id.
    pub fn step(&self, id: StepId) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }
}

/// What the plan is made from, besides the configuration: everything rendered.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    /// Dockerfiles by image name (`training`, `tensorboard`, `stager`), with their tags.
    pub images: BTreeMap<String, RenderedImage>,
    /// The storage objects.
    pub storage: Vec<Manifest>,
    /// The staging objects (the staging Job).
    pub staging: Vec<Manifest>,
    /// The compile MPIJob.
    pub compile: Vec<Manifest>,
    /// The train MPIJob.
    pub train: Vec<Manifest>,
    /// The TensorBoard objects.
    pub tensorboard: Vec<Manifest>,
}

/// One rendered image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RenderedImage {
    /// The full reference it is pushed as.
    pub reference: String,
    /// The Dockerfile.
    pub dockerfile: String,
}

/// sha256 (hex) of a JSON value's canonical text (keys sorted, whatever serde_json's features
/// in this build).
pub fn digest(value: &Value) -> String {
    let mut canonical = value.clone();
    canonical.sort_all_objects();
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

fn manifest_values(manifests: &[Manifest]) -> Value {
    Value::Array(
        manifests
            .iter()
            .map(|manifest| manifest.value.clone())
            .collect(),
    )
}

fn describe(manifests: &[Manifest], verb: &str) -> Vec<String> {
    manifests
        .iter()
        .map(|manifest| {
            let namespace = manifest.value["metadata"]["namespace"]
                .as_str()
                .map(|ns| format!("{ns}/"))
                .unwrap_or_default();
            format!("{verb} {} {namespace}{}", manifest.kind, manifest.name)
        })
        .collect()
}

/// The key under which the compile step records [`compile_inputs_digest`] of a compile that
/// succeeded (and keeps it while the cache check skips the compile job for the same inputs).
pub const COMPILED_INPUTS: &str = "compiled_inputs";

/// What decides which graphs the compile job compiles into the cache, and so whether a warm
/// cache fits the train job: the training image (its neuronx-cc, torch-neuronx and the
/// neuronx-nemo-megatron build), the training code checked out on the shared file system, the
/// script and its arguments, every variable the ranks get (`GBS`, `SEQ_LENGTH`, parallelism
/// settings and the like arrive as `[training.env]`), the world size, and the effective
/// `NEURON_CC_FLAGS`. Not the job names, timeouts, scheduling or dataset: those change no graph.
pub fn compile_inputs(config: &Config, training_image: &str) -> Value {
    let training = &config.training;
    json!({
        "training_image": training_image,
        "neuronx_cc": crate::images::training_image(config).neuronx_cc_version,
        "nemo_ref": config.image.nemo_ref,
        "script": training.script,
        "script_args": training.script_args,
        "env": training.env,
        "workers": training.workers,
        "slots_per_worker": training.slots_per_worker,
        "neuron_devices_per_worker": training.neuron_devices_per_worker,
        "neuron_cc_flags": crate::checks::effective_neuron_cc_flags(training),
    })
}

/// The digest of [`compile_inputs`].
pub fn compile_inputs_digest(config: &Config, training_image: &str) -> String {
    digest(&compile_inputs(config, training_image))
}

/// The experiment directory's name as the plan shows it: the run's name, or a placeholder when
/// deploy names it (an empty `[training] run_name` is resolved from the state before the plan
/// of a deploy is made; `render` and `--dry-run` read no state).
fn run_directory(config: &Config) -> String {
    match config.training.run_name.as_str() {
        "" => "<run name>".to_owned(),
        name => name.to_owned(),
    }
}

/// What the train step says about the run (see `run_identity`).
fn run_action(config: &Config) -> String {
    let run = run_directory(config);
    let name = if config.training.run_name.is_empty() {
        format!(
            "the run name recorded by an earlier deploy, else {}-<yyyymmdd-hhmmss>",
            config.training.train_job_name
        )
    } else {
        format!("the run {run}")
    };
    if config.training.resume {
        format!(
            "keep logs and checkpoints in nemo_experiments/{run}/ ({name}) across launcher restarts and re-deploys, resuming from its latest checkpoint"
        )
    } else {
        format!(
            "write logs and checkpoints to nemo_experiments/{run}/ ({name}); resume = false: every launcher start begins at step 0"
        )
    }
}

/// Makes the plan. Pure: the same configuration and rendered inputs give the same plan.
pub fn plan(config: &Config, rendered: &Rendered) -> Plan {
    let images_digest = digest(&json!({
        "images": rendered.images,
        "repository": config.image.repository,
        "registry": config.image.registry,
        "human_tag": config.image.human_tag,
    }));
    let storage_digest =
        digest(&json!({ "storage": manifest_values(&rendered.storage), "config": config.storage }));
    let staging_digest = digest(&json!({
        "data": config.data,
        "nemo_ref": config.image.nemo_ref,
        "objects": manifest_values(&rendered.staging),
        "storage": storage_digest,
    }));
    let compile_digest = digest(
        &json!({ "objects": manifest_values(&rendered.compile), "staging": staging_digest }),
    );
    let train_digest =
        digest(&json!({ "objects": manifest_values(&rendered.train), "compile": compile_digest }));
    let tensorboard_digest = digest(
        &json!({ "objects": manifest_values(&rendered.tensorboard), "storage": storage_digest }),
    );
    let training = &config.training;

    let mut steps = vec![
        Step {
            id: StepId::Preflight,
            title: "check the cluster and AWS before anything is changed".to_owned(),
            digest: digest(&json!({ "cluster": config.cluster, "training": [training.workers, training.neuron_devices_per_worker, training.efa_interfaces_per_worker] })),
            always: true,
            actions: vec![
                "ask STS for the AWS identity (its account names the ECR registry and must match cluster.account_id)".to_owned(),
                "check the kube context, the MPI Operator (its version decides the launcher gate), the FSx CSI driver, the Neuron and EFA device plugins".to_owned(),
                format!(
                    "check {} node(s) with {} aws.amazon.com/neuron and {} vpc.amazonaws.com/efa allocatable",
                    training.workers, training.neuron_devices_per_worker, training.efa_interfaces_per_worker
                ),
            ],
            manifests: Vec::new(),
        },
        Step {
            id: StepId::Images,
            title: "build the images and push them to ECR (skipped when the tags exist)".to_owned(),
            digest: images_digest,
            always: false,
            actions: rendered.images.iter().map(|(name, image)| format!("build and push the {name} image as {}", image.reference)).collect(),
            manifests: Vec::new(),
        },
        Step {
            id: StepId::Storage,
            title: "the shared file system and its claim".to_owned(),
            digest: storage_digest,
            always: false,
            actions: if config.storage.mode == crate::config::StorageMode::Static && rendered.storage.is_empty() {
                vec![
                    match config.storage.file_system_id.as_str() {
                        "" => format!("create the FSx file system, or adopt the one tagged {}={}, and wait until it is AVAILABLE", fsx::spec::NAME_TAG, crate::storage::tag_name(config)),
                        id => format!("adopt the FSx file system {id} and wait until it is AVAILABLE"),
                    },
                    format!("apply its static PersistentVolume and the claim {} (unless they exist), and wait until the claim is Bound", config.storage.claim_name),
                ]
            } else if rendered.storage.is_empty() {
                vec![format!("use the existing claim {}", config.storage.claim_name)]
            } else {
                let mut actions = describe(&rendered.storage, "apply");
                actions.push(format!("wait until the claim {} is Bound", config.storage.claim_name));
                actions
            },
            manifests: rendered.storage.clone(),
        },
        Step {
            id: StepId::Staging,
            title: "stage the tokenizer, the dataset and the training code, and tokenize".to_owned(),
            digest: staging_digest,
            always: false,
            actions: {
                let mut actions = vec![
                    format!("fetch the tokenizer {} ({})", config.data.tokenizer, config.data.tokenizer_revision),
                    format!("fetch the dataset {} ({})", config.data.dataset, config.data.dataset_revision),
                    format!("check out neuronx-nemo-megatron {}", config.image.nemo_ref),
                    format!("tokenize ({} mode, keys {:?}) into {}_<key>_document.{{bin,idx}}", config.data.mode, config.data.json_keys, config.data.dataset_name),
                ];
                let jobs: Vec<Manifest> = rendered.staging.iter().filter(|manifest| manifest.name != crate::staging::DATASET_CHECK_JOB_NAME).cloned().collect();
                actions.extend(describe(&jobs, "apply"));
                actions.push(format!(
                    "fingerprint the tokenized datasets (Job/{}) and record them; a re-run skips staging only while they are unchanged",
                    crate::staging::DATASET_CHECK_JOB_NAME
                ));
                actions
            },
            manifests: rendered.staging.clone(),
        },
        Step {
            id: StepId::Compile,
            title: "warm the Neuron compile cache (skipped when it holds the flags' entries)".to_owned(),
            digest: compile_digest,
            always: false,
            actions: {
                let mut actions = Vec::new();
                if training.node_check {
                    actions.push(format!(
                        "run Job/{} (one pod on each of {} Trainium node(s): neuron-ls and fi_info -p efa see the {} Neuron devices and {} EFA interfaces requested) and stop, naming the node, if one fails",
                        crate::node_check::JOB_NAME,
                        training.workers,
                        training.neuron_devices_per_worker,
                        training.efa_interfaces_per_worker
                    ));
                }
                if training.force_compile {
                    actions.push("force_compile is set: run the compile job whatever the cache holds".to_owned());
                } else {
                    actions.push(format!(
                        "run Job/{} (trnkit-stage cache inspect on the shared compile cache) and skip the compile job only when it holds complete entries for NEURON_CC_FLAGS {:?} under neuronx-cc {} and a compile with the same inputs (image, script and arguments, environment, world size, flags) succeeded before",
                        crate::staging::CACHE_CHECK_JOB_NAME,
                        crate::checks::effective_neuron_cc_flags(training),
                        crate::images::training_image(config).neuronx_cc_version
                    ));
                }
                let jobs: Vec<Manifest> = rendered.compile.iter().filter(|manifest| manifest.kind == "MPIJob").cloned().collect();
                actions.extend(describe(&jobs, "apply"));
                actions.push(format!("wait for Succeeded (at most {})", training.compile_timeout));
                actions
            },
            manifests: rendered.compile.clone(),
        },
        Step {
            id: StepId::Train,
            title: "start training".to_owned(),
            digest: train_digest,
            always: false,
            actions: {
                let mut actions = describe(&rendered.train, "apply");
                actions.push(run_action(config));
                actions
            },
            manifests: rendered.train.clone(),
        },
    ];
    if config.tensorboard.enabled {
        let mut actions = vec![format!(
            "create the Secret {} with a generated password (once)",
            config.tensorboard.secret_name
        )];
        actions.extend(describe(&rendered.tensorboard, "apply"));
        steps.push(Step {
            id: StepId::Tensorboard,
            title: "TensorBoard behind basic auth".to_owned(),
            digest: tensorboard_digest,
            always: false,
            actions,
            manifests: rendered.tensorboard.clone(),
        });
    }
    steps.push(Step {
        id: StepId::Follow,
        title: "follow the training log".to_owned(),
        digest: digest(&json!(training.train_job_name)),
        always: true,
        actions: vec![format!(
            "follow the newest launcher of {} and the rank-0 log nemo_experiments/{}/0/log, re-attaching when the launcher restarts",
            training.train_job_name,
            run_directory(config)
        )],
        // The train job, re-created from it when the run is restarted whole (see `restart`).
        manifests: rendered.train.clone(),
    });
    Plan {
        target: config.cluster.target,
        steps,
    }
}
