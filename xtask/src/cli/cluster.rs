//! The EKS side of `deploy` and the commands that talk to the cluster: reading the process
//! environment (`HF_TOKEN`, AWS settings, the kubeconfig) happens here, at the edge; the
//! sequence itself is `deploy::eks`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use mpijob::io::FollowEvent;

use super::progress::StepSpinner;
use crate::config::Config;
use crate::deploy::cluster::ImagePublisher;
use crate::deploy::eks::{Callbacks, Connections, Edge};
use crate::deploy::plan::RenderedImage;
use crate::deploy::run::Selection;

/// A client for the configured kube context (or the current one) of the configured
/// kubeconfig (or kubectl's), every call bounded (see [`crate::kube_client`]); the API server
/// is asked for its version first, so an unreachable cluster is a clear error at once.
pub(crate) async fn client(config: &Config) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: (!config.cluster.kube_context.is_empty())
            .then(|| config.cluster.kube_context.clone()),
        ..Default::default()
    };
    let kube_config = match (&config.cluster.kubeconfig, config.cluster.kube_context.is_empty()) {
        (Some(path), _) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| {
                    format!(
                        "cannot use the kube context {:?} of {}",
                        options.context.as_deref().unwrap_or("(current)"),
                        path.display()
                    )
                })?
        }
        (None, true) => kube::Config::infer().await.context(
            "no Kubernetes configuration found: run `aws eks update-kubeconfig --name <cluster>`, or pass --kubeconfig FILE / --context NAME",
        )?,
        (None, false) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| {
                format!(
                    "cannot load the kube context {:?} (`kubectl config get-contexts` lists them)",
                    config.cluster.kube_context
                )
            })?,
    };
    let url = kube_config.cluster_url.to_string();
    let bounds = crate::kube_client::Bounds::default();
    let client = crate::kube_client::bounded(kube_config, bounds)?;
    crate::kube_client::ensure_reachable(&client, &url, bounds).await?;
    Ok(client)
}

/// Builds with the local Docker engine and pushes to ECR (or `image.registry`).
struct EcrPublisher {
    config: Config,
    /// The AWS configuration deploy resolved once (the cluster's region).
    sdk: aws_config::SdkConfig,
    /// The images, as `crate::images` makes them for every command.
    images: Vec<crate::images::Image>,
    /// The Docker engine (`DOCKER_HOST`, else the usual socket).
    docker_host: String,
    quiet: bool,
    verbose: bool,
}

impl ImagePublisher for EcrPublisher {
    async fn publish(
        &mut self,
        _images: &BTreeMap<String, RenderedImage>,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let ecr = crate::aws::ecr_client(&self.sdk);
        let repository = ecr_image::ensure_repository(
            &ecr,
            &ecr_image::RepositorySpec::new(&self.config.image.repository),
        )
        .await?;
        let mut credentials = ecr_image::registry_credentials(&ecr).await?;
        let registry = if self.config.image.registry.is_empty() {
            repository.registry.clone()
        } else {
            credentials = credentials.for_server(&self.config.image.registry);
            self.config.image.registry.clone()
        };
        let docker = ecr_image::connect(&self.docker_host).await?;
        let mut digests = BTreeMap::new();
        for image in &self.images {
            let request = ecr_image::PublishRequest {
                context: image.context.clone(),
                options: ecr_image::BuildOptions::default(),
                registry: registry.clone(),
                repository: self.config.image.repository.clone(),
                credentials: credentials.clone(),
                extra_tags: image.human_tags.clone(),
                retry: ecr_image::RetryPolicy::default(),
                force: false,
            };
            let bars = super::image::Bars::new(self.quiet, self.verbose);
            let published = ecr_image::build_and_push(&docker, &request, &bars).await;
            bars.finish();
            let published = published?;
            tracing::info!(image = image.name.name(), digest = %published.digest, pushed = published.pushed, "image ready");
            digests.insert(image.name.name().to_owned(), published.digest.clone());
        }
        Ok(digests)
    }
}

/// Shows what the follow step reads; `run` is the run's name, which names its experiment
/// directory whatever the launcher's UID (see `run_identity`).
pub(crate) fn show_follow(run: &str, event: &FollowEvent) {
    match event {
        FollowEvent::Attached { pod, uid } => {
            eprintln!("    following {pod} (launcher {uid}; run directory nemo_experiments/{run})")
        }
        FollowEvent::Reattached {
            pod,
            uid,
            previous_uid,
        } => {
            eprintln!(
                "    the launcher restarted: following {pod} (launcher {uid}, was {previous_uid}); the run resumes in nemo_experiments/{run}"
            )
        }
        FollowEvent::Line(line) => println!("{line}"),
        FollowEvent::Finished(outcome) => eprintln!("    the job finished: {outcome:?}"),
    }
}

/// Deploys to the cluster: reads what the sequence needs from the environment (`HF_TOKEN`,
/// `HF_ENDPOINT`, `DOCKER_HOST`, the AWS chain, the kubeconfig), runs `deploy::eks::deploy`
/// with a spinner, and prints how it ended.
pub(crate) async fn deploy(
    config: &Config,
    selection: Selection,
    wait: bool,
    stage_binary: Option<&Path>,
    global: &super::Global,
) -> anyhow::Result<()> {
    let spinner = StepSpinner::new(global.quiet);
    // The cluster's region, whatever the environment's default is.
    let sdk = super::aws_sdk_config(Some(&config.cluster.region), config).await;
    let client = client(config).await?;
    let edge = Edge {
        hf_token: std::env::var("HF_TOKEN")
            .ok()
            .filter(|token| !token.is_empty()),
        hf_endpoint: std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|endpoint| !endpoint.is_empty())
            .unwrap_or_else(|| crate::hub::DEFAULT_ENDPOINT.to_owned()),
        stage_binary: stage_binary.map(Path::to_path_buf),
        wait,
    };
    let docker_host = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    let (quiet, verbose) = (global.quiet, global.verbose > 0);
    let make_publisher =
        |config: &Config, sdk: &aws_config::SdkConfig, images: Vec<crate::images::Image>| {
            EcrPublisher {
                config: config.clone(),
                sdk: sdk.clone(),
                images,
                docker_host,
                quiet,
                verbose,
            }
        };
    let on_note = |note: &str| eprintln!("{note}");
    let mut on_event = {
        let spinner = spinner.clone();
        move |event| super::progress::show(&spinner, event)
    };
    let callbacks = Callbacks {
        on_note: &on_note,
        on_event: &mut on_event,
        on_follow: Box::new(show_follow),
        on_status: {
            let spinner = spinner.clone();
            Box::new(move |message: &str| spinner.status(message))
        },
    };
    let outcome = crate::deploy::eks::deploy(
        config,
        selection,
        edge,
        Connections {
            aws: sdk,
            kube: client,
        },
        super::image::build_stage_binary,
        make_publisher,
        callbacks,
    )
    .await?;
    if let Some(failed) = outcome.report.failed {
        anyhow::bail!(
            "step {failed} failed; fix the cause and run `cargo xtask deploy` again to resume there"
        );
    }
    if outcome.report.nothing_to_do(&outcome.plan) {
        println!("everything is up to date: nothing needed doing");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
