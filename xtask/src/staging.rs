//! The staging Job: checks out the pinned training code onto the shared file system, stages
//! the tokenizer and the dataset with `trnkit-stage`, then tokenizes — in one pod on CPU nodes,
//! as init containers in order.
//!
//! Pure. The HuggingFace token reaches the pod only through a Secret reference (`HF_TOKEN`,
//! optional, for gated repositories); no value is in the manifest. Every path comes from the
//! shared layout, and the only shell script (the git checkout) interpolates nothing but
//! validated layout paths and a 40-digit commit id.

use std::collections::BTreeMap;

use fsx::SharedLayout;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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

/// The staging Job for `config`, with the training image (for `git`) and the stager image.
pub fn job(
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
    let stage = vec![
        "trnkit-stage".to_owned(),
        "stage".to_owned(),
        "--target".to_owned(),
        text(layout.root().to_path_buf()),
        "--tokenizer".to_owned(),
        data.tokenizer.clone(),
        "--tokenizer-revision".to_owned(),
        data.tokenizer_revision.clone(),
        "--tokenizer-dir-name".to_owned(),
        file_name(&layout.tokenizer_dir()),
        "--dataset".to_owned(),
        data.dataset.clone(),
        "--dataset-revision".to_owned(),
        data.dataset_revision.clone(),
        "--merge-to".to_owned(),
        file_name(&layout.merged_jsonl()),
    ];
    let mut tokenize = vec![
        "trnkit-stage".to_owned(),
        "tokenize".to_owned(),
        "--no-progress".to_owned(),
        "--input".to_owned(),
        text(layout.merged_jsonl()),
        "--output-prefix".to_owned(),
        text(layout.output_prefix()),
        "--tokenizer".to_owned(),
        text(layout.tokenizer_dir()),
        "--mode".to_owned(),
        data.mode.clone(),
        "--workers".to_owned(),
        "8".to_owned(),
        "--json-keys".to_owned(),
    ];
    tokenize.extend(data.json_keys.iter().cloned());
    if data.append_eod {
        tokenize.push("--append-eod".to_owned());
    }
    if data.need_pad_id {
        tokenize.push("--need-pad-id".to_owned());
    }
    let mount = VolumeMount {
        name: "persistent-storage".to_owned(),
        mount_path: text(layout.root().to_path_buf()),
        ..Default::default()
    };
    let resources = |cpu: &str, memory: &str| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity(memory.to_owned()),
        )])),
        ..Default::default()
    };
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
    let container = |name: &str,
                     image: &str,
                     command: Vec<String>,
                     env: Option<Vec<EnvVar>>,
                     cpu: &str,
                     memory: &str| Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some(config.image.pull_policy.clone()),
        command: Some(command),
        env,
        volume_mounts: Some(vec![mount.clone()]),
        resources: Some(resources(cpu, memory)),
        ..Default::default()
    };
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "trnkit-staging".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "trnkit".to_owned(),
        ),
    ]);
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(JOB_NAME.to_owned()),
            namespace: Some(config.cluster.namespace.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    init_containers: Some(vec![
                        container(
                            "checkout",
                            training_image,
                            vec!["/bin/sh".to_owned(), "-c".to_owned(), checkout_script],
                            None,
                            "1",
                            "2Gi",
                        ),
                        container(
                            "stage",
                            stager_image,
                            stage,
                            Some(vec![hf_token]),
                            "2",
                            "2Gi",
                        ),
                    ]),
                    containers: vec![container(
                        "tokenize",
                        stager_image,
                        tokenize,
                        None,
                        "8",
                        "4Gi",
                    )],
                    volumes: Some(vec![Volume {
                        name: "persistent-storage".to_owned(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: config.storage.claim_name.clone(),
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
    })
}
