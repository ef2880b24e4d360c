//! The Kubernetes Indexed Job that tokenizes a corpus in `N` shards on as many pods, writing
//! each shard's dataset to the shared volume (FSx), and the `merge` arguments that join them.
//!
//! Pure builders: nothing here talks to a cluster. Pod `i` runs
//! `trnkit-stage tokenize ... --shard i/N --output-prefix {prefix}.shard-i-of-N`, with `i` from
//! the Job's completion index; `trnkit-stage dataset merge` over [`shard_prefixes`] (in order)
//! then gives the same bytes as a single run.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::tokenizer::Mode;

/// What the sharded tokenization Job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardJobConfig {
    /// Job name (also the pods' label `trnkit.io/job`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Image holding `trnkit-stage` on its `PATH`.
    pub image: String,
    /// Number of shards `N` (the Job's completions).
    pub shards: u32,
    /// Pods running at once.
    pub parallelism: u32,
    /// PVC of the shared volume (the blueprint's `fsx-claim`).
    pub claim_name: String,
    /// Where the volume is mounted (the blueprint's `/shared`).
    pub mount_path: String,
    /// Input files or globs, as seen inside the pod.
    pub inputs: Vec<String>,
    /// The tokenizer directory inside the pod.
    pub tokenizer_dir: String,
    /// Output prefix of the merged dataset; shards write `{prefix}.shard-I-of-N`.
    pub output_prefix: String,
    /// JSON keys.
    pub json_keys: Vec<String>,
    /// NeMo or Megatron semantics.
    pub mode: Mode,
    /// `--append-eod`.
    pub append_eod: bool,
    /// `--need-pad-id`.
    pub need_pad_id: bool,
    /// Encoding threads per pod.
    pub workers_per_pod: u32,
    /// CPU request per pod, e.g. `3` (threads may use more when the node is idle).
    pub cpu: String,
    /// Memory request and limit per pod, e.g. `1Gi`.
    pub memory: String,
    /// Retries per shard before the shard counts as failed.
    pub backoff_limit_per_index: i32,
}

/// The prefix shard `index` of `count` writes.
pub fn shard_output_prefix(output_prefix: &str, index: &str, count: u32) -> String {
    format!("{output_prefix}.shard-{index}-of-{count}")
}

/// The dataset prefixes the shards produce for `key`, in merge order.
pub fn shard_prefixes(config: &ShardJobConfig, key: &str) -> Vec<String> {
    (0..config.shards)
        .map(|i| {
            format!(
                "{}_{key}_document",
                shard_output_prefix(&config.output_prefix, &i.to_string(), config.shards)
            )
        })
        .collect()
}

/// `trnkit-stage dataset merge` arguments joining the shards of `key` into the final dataset.
pub fn merge_args(config: &ShardJobConfig, key: &str) -> Vec<String> {
    let mut args = vec![
        "dataset".to_owned(),
        "merge".to_owned(),
        "--output".to_owned(),
        format!("{}_{key}_document", config.output_prefix),
    ];
    args.extend(shard_prefixes(config, key));
    args
}

/// The container arguments of every shard pod (`$(JOB_COMPLETION_INDEX)` is expanded by the
/// kubelet from the container's environment).
pub fn tokenize_args(config: &ShardJobConfig) -> Vec<String> {
    let mut args = vec!["tokenize".to_owned(), "--input".to_owned()];
    args.extend(config.inputs.iter().cloned());
    args.push("--tokenizer".into());
    args.push(config.tokenizer_dir.clone());
    args.push("--json-keys".into());
    args.extend(config.json_keys.iter().cloned());
    args.push("--mode".into());
    args.push(config.mode.to_string());
    if config.append_eod {
        args.push("--append-eod".into());
    }
    if config.need_pad_id {
        args.push("--need-pad-id".into());
    }
    args.push("--workers".into());
    args.push(config.workers_per_pod.to_string());
    args.push("--shard".into());
    args.push(format!("$(JOB_COMPLETION_INDEX)/{}", config.shards));
    args.push("--output-prefix".into());
    args.push(shard_output_prefix(
        &config.output_prefix,
        "$(JOB_COMPLETION_INDEX)",
        config.shards,
    ));
    args.push("--no-progress".into());
    args
}

/// The Indexed Job.
pub fn shard_job(config: &ShardJobConfig) -> Job {
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "trnkit-tokenize".to_owned(),
        ),
        ("trnkit.io/job".to_owned(), config.name.clone()),
    ]);
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(config.cpu.clone())),
        ("memory".to_owned(), Quantity(config.memory.clone())),
    ]);
    let container = Container {
        name: "tokenize".into(),
        image: Some(config.image.clone()),
        command: Some(vec!["trnkit-stage".into()]),
        args: Some(tokenize_args(config)),
        env: Some(vec![EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                        .into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(resources.clone()),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity(config.memory.clone()),
            )])),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "shared".into(),
            mount_path: config.mount_path.clone(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(config.shards as i32),
            parallelism: Some(config.parallelism.min(config.shards) as i32),
            backoff_limit_per_index: Some(config.backoff_limit_per_index),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "shared".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: config.claim_name.clone(),
                            ..PersistentVolumeClaimVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}
