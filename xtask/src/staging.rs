//! The staging Jobs: checks out the pinned training code onto the shared file system, stages
//! the tokenizer and the dataset with `trnkit-stage`, then tokenizes — in one pod on CPU nodes,
//! as init containers in order, or (`data.shards` > 1) in an Indexed Job of shard pods whose
//! datasets a merge Job joins — and the read-only check Jobs.
//!
//! Every `trnkit-stage` command line is built by [`StageCommand::argv`] from a typed command.
//!
//! Pure. The HuggingFace token reaches the pod only through a Secret reference (`HF_TOKEN`,
//! optional, for gated repositories); no value is in the manifest. Every path comes from the
//! shared layout, and the only shell script (the git checkout) interpolates nothing but
//! validated layout paths and a 40-digit commit id.

use std::collections::BTreeMap;

use fsx::SharedLayout;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, ResourceRequirements, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use anyhow::Context as _;

use crate::config::Config;

/// The Job's name.
pub const JOB_NAME: &str = "trnkit-staging";
/// The key of the token in the HuggingFace Secret.
pub const HF_TOKEN_KEY: &str = "token";
/// Where the training code comes from.
pub const NEMO_REPOSITORY: &str = "https://github.com/aws-neuron/neuronx-nemo-megatron.git";

fn text(path: std::path::PathBuf) -> String {
    path.display().to_string()
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The sharded tokenization Job's name (`data.shards` > 1).
pub const SHARDS_JOB_NAME: &str = "trnkit-tokenize";
/// The Job that merges the shards' datasets (`data.shards` > 1).
pub const MERGE_JOB_NAME: &str = "trnkit-merge";
/// The environment variable (and kubelet expansion) of an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "$(JOB_COMPLETION_INDEX)";

/// A `trnkit-stage` command line, typed: every Job's command is built from one of these by
/// [`StageCommand::argv`], never patched by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageCommand {
    /// `trnkit-stage stage`: the tokenizer and the dataset onto the shared file system.
    Stage(StageArgv),
    /// `trnkit-stage tokenize`.
    Tokenize(TokenizeArgv),
    /// `trnkit-stage dataset merge`.
    Merge {
        /// The merged dataset's prefix.
        output: String,
        /// The parts, in order.
        parts: Vec<String>,
        /// Remove the parts once the merged dataset is complete and verified.
        remove_parts: bool,
    },
    /// `trnkit-stage --quiet dataset fingerprint`.
    Fingerprint {
        /// The tokenizer directory, whose files are fingerprinted too.
        tokenizer: Option<String>,
        /// The training code's checkout, whose commit is reported too.
        checkout: Option<String>,
        /// The dataset prefixes.
        prefixes: Vec<String>,
    },
    /// `trnkit-stage cache inspect --coverage-only --json`.
    CacheCoverage {
        /// The compile cache's root.
        root: String,
        /// The `NEURON_CC_FLAGS` to check.
        flags: String,
        /// The training image's neuronx-cc version: only its entries count.
        compiler_version: String,
    },
}

/// The arguments of `trnkit-stage stage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageArgv {
    /// `--target`.
    pub target: String,
    /// `--tokenizer` (a directory or a Hub repository).
    pub tokenizer: String,
    /// `--tokenizer-revision`.
    pub tokenizer_revision: String,
    /// `--tokenizer-dir-name`.
    pub tokenizer_dir_name: String,
    /// `--dataset` (a Hub repository or local paths).
    pub dataset: String,
    /// `--dataset-revision`.
    pub dataset_revision: String,
    /// `--merge-to`.
    pub merge_to: String,
}

/// The arguments of `trnkit-stage tokenize`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizeArgv {
    /// `--input`.
    pub inputs: Vec<String>,
    /// `--output-prefix`.
    pub output_prefix: String,
    /// `--tokenizer`.
    pub tokenizer_dir: String,
    /// `--mode`.
    pub mode: pipeline::Mode,
    /// `--workers`.
    pub workers: u32,
    /// `--json-keys`.
    pub json_keys: Vec<String>,
    /// `--append-eod`.
    pub append_eod: bool,
    /// `--need-pad-id`.
    pub need_pad_id: bool,
    /// `--shard I/N`, where `I` may be [`COMPLETION_INDEX`].
    pub shard: Option<String>,
}

impl StageCommand {
    /// The command line, `trnkit-stage` first.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec!["trnkit-stage".to_owned()];
        let mut push = |words: &[&str]| argv.extend(words.iter().map(|word| (*word).to_owned()));
        match self {
            StageCommand::Stage(stage) => push(&[
                "stage",
                "--target",
                &stage.target,
                "--tokenizer",
                &stage.tokenizer,
                "--tokenizer-revision",
                &stage.tokenizer_revision,
                "--tokenizer-dir-name",
                &stage.tokenizer_dir_name,
                "--dataset",
                &stage.dataset,
                "--dataset-revision",
                &stage.dataset_revision,
                "--merge-to",
                &stage.merge_to,
            ]),
            StageCommand::Tokenize(tokenize) => {
                push(&["tokenize", "--no-progress", "--input"]);
                push(
                    &tokenize
                        .inputs
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                );
                push(&[
                    "--output-prefix",
                    &tokenize.output_prefix,
                    "--tokenizer",
                    &tokenize.tokenizer_dir,
                    "--mode",
                    &tokenize.mode.to_string(),
                    "--workers",
                    &tokenize.workers.to_string(),
                    "--json-keys",
                ]);
                push(
                    &tokenize
                        .json_keys
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                );
                if tokenize.append_eod {
                    push(&["--append-eod"]);
                }
                if tokenize.need_pad_id {
                    push(&["--need-pad-id"]);
                }
                if let Some(shard) = &tokenize.shard {
                    push(&["--shard", shard]);
                }
            }
            StageCommand::Merge {
                output,
                parts,
                remove_parts,
            } => {
                push(&["dataset", "merge"]);
                if *remove_parts {
                    push(&["--remove-parts"]);
                }
                push(&["--output", output]);
                push(&parts.iter().map(String::as_str).collect::<Vec<_>>());
            }
            StageCommand::Fingerprint {
                tokenizer,
                checkout,
                prefixes,
            } => {
                push(&["--quiet", "dataset", "fingerprint"]);
                if let Some(tokenizer) = tokenizer {
                    push(&["--tokenizer", tokenizer]);
                }
                if let Some(checkout) = checkout {
                    push(&["--checkout", checkout]);
                }
                push(&prefixes.iter().map(String::as_str).collect::<Vec<_>>());
            }
            StageCommand::CacheCoverage {
                root,
                flags,
                compiler_version,
            } => push(&[
                "cache",
                "inspect",
                "--root",
                root,
                "--flags",
                flags,
                "--compiler-version",
                compiler_version,
                "--no-sizes",
                "--coverage-only",
                "--json",
                "--quiet",
            ]),
        }
        argv
    }
}

/// The prefix shard `index` of `count` writes: `{output_prefix}.shard-{index}-of-{count}`.
pub fn shard_output_prefix(output_prefix: &str, index: &str, count: u32) -> String {
    format!("{output_prefix}.shard-{index}-of-{count}")
}

/// The dataset prefix the tokenization of `key` writes under `output_prefix`.
pub fn dataset_prefix(output_prefix: &str, key: &str) -> String {
    format!("{output_prefix}_{key}_document")
}

/// The dataset prefixes the shards produce for `key`, in merge order.
pub fn shard_prefixes(output_prefix: &str, key: &str, shards: u32) -> Vec<String> {
    (0..shards)
        .map(|i| {
            dataset_prefix(
                &shard_output_prefix(output_prefix, &i.to_string(), shards),
                key,
            )
        })
        .collect()
}

/// The tokenization every staging layout runs, before sharding.
fn tokenize_argv(config: &Config, layout: &SharedLayout) -> TokenizeArgv {
    let data = &config.data;
    TokenizeArgv {
        inputs: vec![text(layout.merged_jsonl())],
        output_prefix: text(layout.output_prefix()),
        tokenizer_dir: text(layout.tokenizer_dir()),
        mode: data.pipeline_mode(),
        workers: data.tokenize_workers,
        json_keys: data.json_keys.clone(),
        append_eod: data.append_eod,
        need_pad_id: data.need_pad_id,
        shard: None,
    }
}

/// The Jobs of the staging step, to run one after the other: with `data.shards = 1` the one
/// staging Job (checkout, stage, tokenize); with more, the staging Job (checkout, stage), the
/// Indexed Job whose pods tokenize one shard each onto the shared file system, and the Job
/// that merges the shards in order (byte-identical to a single run). Last, in both cases, the
/// [`dataset_check_job`].
pub fn jobs(
    config: &Config,
    layout: &SharedLayout,
    training_image: &str,
    stager_image: &str,
) -> anyhow::Result<Vec<Job>> {
    let staging = job(config, layout, training_image, stager_image)?;
    let check = dataset_check_job(config, layout, stager_image);
    if config.data.shards <= 1 {
        return Ok(vec![staging, check]);
    }
    let data = &config.data;
    let output_prefix = text(layout.output_prefix());
    let parts = Parts { config, layout };
    let mut merges: Vec<Container> = data
        .json_keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            // The shards go once the merged dataset is complete and verified.
            let merge = StageCommand::Merge {
                output: dataset_prefix(&output_prefix, key),
                parts: shard_prefixes(&output_prefix, key, data.shards),
                remove_parts: true,
            };
            parts.container(
                &format!("merge-{index}"),
                stager_image,
                merge.argv(),
                None,
                ("1", "1Gi"),
            )
        })
        .collect();
    let last = merges.pop().context("data.json_keys is empty")?;
    Ok(vec![
        staging,
        shard_job(config, layout, stager_image),
        parts.job(MERGE_JOB_NAME, 1, merges, last),
        check,
    ])
}

/// The Indexed Job of `data.shards` pods: pod `i` runs the staging tokenization with
/// `--shard i/N --output-prefix {prefix}.shard-i-of-N`, `i` from the Job's completion index.
fn shard_job(config: &Config, layout: &SharedLayout, stager_image: &str) -> Job {
    let data = &config.data;
    let output_prefix = text(layout.output_prefix());
    let mut tokenize = tokenize_argv(config, layout);
    tokenize.shard = Some(format!("{COMPLETION_INDEX}/{}", data.shards));
    tokenize.output_prefix = shard_output_prefix(&output_prefix, COMPLETION_INDEX, data.shards);
    let mut argv = StageCommand::Tokenize(tokenize).argv();
    let command = argv.remove(0);
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            SHARDS_JOB_NAME.to_owned(),
        ),
        ("trnkit.io/job".to_owned(), SHARDS_JOB_NAME.to_owned()),
    ]);
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(data.staging_cpu.to_string())),
        (
            "memory".to_owned(),
            Quantity(data.staging_memory.to_string()),
        ),
    ]);
    let container = Container {
        name: "tokenize".into(),
        image: Some(stager_image.to_owned()),
        command: Some(vec![command]),
        args: Some(argv),
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
            requests: Some(resources),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity(data.staging_memory.to_string()),
            )])),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "shared".into(),
            mount_path: text(layout.root().to_path_buf()),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let shards = i32::try_from(data.shards).unwrap_or(i32::MAX);
    Job {
        metadata: ObjectMeta {
            name: Some(SHARDS_JOB_NAME.to_owned()),
            namespace: Some(config.cluster.namespace.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(shards),
            parallelism: Some(shards),
            backoff_limit_per_index: Some(2),
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
                            claim_name: config.storage.claim_name.clone(),
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

/// The staging Job for `config`, with the training image (for `git`) and the stager image. With
/// `data.shards` > 1 it only checks out and stages; [`jobs`] adds the tokenization.
fn job(
    config: &Config,
    layout: &SharedLayout,
    training_image: &str,
    stager_image: &str,
) -> anyhow::Result<Job> {
    let data = &config.data;
    let checkout = text(layout.code_checkout());
    let checkout_script = format!(
        "set -eu\n\
         dir='{checkout}'\n\
         ref='{reference}'\n\
         if [ ! -d \"$dir/.git\" ]; then\n\
         \x20 rm -rf \"$dir.partial\"\n\
         \x20 git clone --quiet --no-checkout {NEMO_REPOSITORY} \"$dir.partial\"\n\
         \x20 mv \"$dir.partial\" \"$dir\"\n\
         fi\n\
         git -C \"$dir\" cat-file -e \"$ref^{{commit}}\" 2>/dev/null || git -C \"$dir\" fetch --quiet origin\n\
         git -C \"$dir\" checkout --quiet --force \"$ref\"\n\
         echo \"neuronx-nemo-megatron at $(git -C \"$dir\" rev-parse HEAD)\"\n",
        reference = config.image.nemo_ref,
    );
    let stage = StageCommand::Stage(StageArgv {
        target: text(layout.root().to_path_buf()),
        tokenizer: data.tokenizer.clone(),
        tokenizer_revision: data.tokenizer_revision.clone(),
        tokenizer_dir_name: file_name(&layout.tokenizer_dir()),
        dataset: data.dataset.clone(),
        dataset_revision: data.dataset_revision.clone(),
        merge_to: file_name(&layout.merged_jsonl()),
    })
    .argv();
    let tokenize = StageCommand::Tokenize(tokenize_argv(config, layout)).argv();
    let hf_token = EnvVar {
        name: "HF_TOKEN".to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: data.hf_token_secret.clone(),
                key: HF_TOKEN_KEY.to_owned(),
                optional: Some(true),
            }),
            ..Default::default()
        }),
    };
    let parts = Parts { config, layout };
    let checkout = parts.container(
        "checkout",
        training_image,
        vec!["/bin/sh".to_owned(), "-c".to_owned(), checkout_script],
        None,
        (data.staging_cpu.as_str(), data.staging_memory.as_str()),
    );
    let stage = parts.container(
        "stage",
        stager_image,
        stage,
        Some(vec![hf_token]),
        (data.staging_cpu.as_str(), data.staging_memory.as_str()),
    );
    Ok(if data.shards > 1 {
        parts.job(JOB_NAME, 2, vec![checkout], stage)
    } else {
        parts.job(
            JOB_NAME,
            2,
            vec![checkout, stage],
            parts.container(
                "tokenize",
                stager_image,
                tokenize,
                None,
                (data.staging_cpu.as_str(), data.staging_memory.as_str()),
            ),
        )
    })
}

/// The dataset-check Job's name.
pub const DATASET_CHECK_JOB_NAME: &str = "trnkit-dataset-check";

/// The Job that fingerprints the tokenized datasets on the shared file system
/// (`trnkit-stage dataset fingerprint`, one JSON line in its log): after staging, deploy records
/// the answer; on a re-run, staging is skipped only while the answer is unchanged. It only reads.
pub fn dataset_check_job(config: &Config, layout: &SharedLayout, stager_image: &str) -> Job {
    let output_prefix = text(layout.output_prefix());
    let command = StageCommand::Fingerprint {
        tokenizer: Some(text(layout.tokenizer_dir())),
        checkout: Some(text(layout.code_checkout())),
        prefixes: config
            .data
            .json_keys
            .iter()
            .map(|key| dataset_prefix(&output_prefix, key))
            .collect(),
    }
    .argv();
    let parts = Parts { config, layout };
    parts.job(
        DATASET_CHECK_JOB_NAME,
        0,
        Vec::new(),
        parts.container(CHECK_CONTAINER, stager_image, command, None, ("1", "512Mi")),
    )
}

/// The cache-check Job's name.
pub const CACHE_CHECK_JOB_NAME: &str = "trnkit-cache-check";
/// The one container of the check Jobs, whose log holds the answer.
pub const CHECK_CONTAINER: &str = "check";

/// The Job that asks the compile cache on the shared file system whether it already holds
/// complete entries for the effective `NEURON_CC_FLAGS` (`[training.env]`'s, else `[training]
/// neuron_cc_flags`) under the training image's neuronx-cc version: `trnkit-stage cache inspect
/// --coverage-only --json` with the stager image, on CPU nodes. Its log's last line is the
/// answer deploy reads ([`crate::cli::cache`] documents the shape). It only reads.
pub fn cache_check_job(config: &Config, layout: &SharedLayout, stager_image: &str) -> Job {
    let command = StageCommand::CacheCoverage {
        root: text(layout.compile_cache()),
        flags: crate::checks::effective_neuron_cc_flags(&config.training).to_owned(),
        compiler_version: crate::images::training_image(config).neuronx_cc_version,
    }
    .argv();
    let parts = Parts { config, layout };
    parts.job(
        CACHE_CHECK_JOB_NAME,
        0,
        Vec::new(),
        parts.container(
            CHECK_CONTAINER,
            stager_image,
            command,
            None,
            ("500m", "512Mi"),
        ),
    )
}

/// What the staging and cache-check Jobs share: the claim mounted at the layout's root, the
/// labels, the pod shape.
struct Parts<'a> {
    config: &'a Config,
    layout: &'a SharedLayout,
}

impl Parts<'_> {
    fn container(
        &self,
        name: &str,
        image: &str,
        command: Vec<String>,
        env: Option<Vec<EnvVar>>,
        (cpu, memory): (&str, &str),
    ) -> Container {
        Container {
            name: name.to_owned(),
            image: Some(image.to_owned()),
            image_pull_policy: Some(self.config.image.pull_policy.as_str().to_owned()),
            command: Some(command),
            env,
            volume_mounts: Some(vec![VolumeMount {
                name: "persistent-storage".to_owned(),
                mount_path: text(self.layout.root().to_path_buf()),
                ..Default::default()
            }]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity(cpu.to_owned())),
                    ("memory".to_owned(), Quantity(memory.to_owned())),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    Quantity(memory.to_owned()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn job(
        &self,
        name: &str,
        backoff_limit: i32,
        init_containers: Vec<Container>,
        container: Container,
    ) -> Job {
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), name.to_owned()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "trnkit".to_owned(),
            ),
        ]);
        Job {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.config.cluster.namespace.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                backoff_limit: Some(backoff_limit),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".to_owned()),
                        init_containers: (!init_containers.is_empty()).then_some(init_containers),
                        containers: vec![container],
                        volumes: Some(vec![Volume {
                            name: "persistent-storage".to_owned(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: self.config.storage.claim_name.clone(),
                                read_only: None,
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }
}

#[cfg(test)]
mod tests;
