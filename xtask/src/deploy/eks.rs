//! The EKS deploy sequence: who deploy acts as in AWS, the cluster's facts and preflight, the
//! staging binary (built only when the images step runs after preflight passed), the run's
//! name, the rendered objects and the plan, the executor, the Lease, and the run.
//!
//! It reads no environment and prints nothing: the edge (`cli::cluster`) hands it what it read
//! ([`Edge`]) and the callbacks that show progress, and prints the [`Outcome`].

use std::future::Future;
use std::path::{Path, PathBuf};

use mpijob::io::FollowEvent;

use super::cluster::{ClusterExecutor, ImagePublisher, Timeouts};
use super::plan::{self, Plan};
use super::run::{self, Event, Report, Selection};
use super::state::{ConfigMapStore, StateStore as _};
use crate::config::Config;
use crate::kube::preflight;

/// The Lease that keeps two deploys (and `watch`) against one namespace apart.
pub const DEPLOY_LEASE: &str = "trnkit-deploy";

/// Takes [`DEPLOY_LEASE`] in `namespace` for `command` (`deploy` or `watch`): one supervisor
/// per namespace, so that no two apply or restart the same jobs. Fails naming the holder, or
/// with `wait` waits for it.
pub async fn take_deploy_lease(
    client: kube::Client,
    namespace: &str,
    command: &str,
    wait: bool,
) -> Result<crate::lock::LeaseLock, crate::lock::LockError> {
    crate::lock::LeaseLock::acquire(
        kube::Api::namespaced(client, namespace),
        namespace,
        DEPLOY_LEASE,
        &crate::lock::Holder::this_process(command),
        wait,
        crate::lock::LeaseTiming::default(),
    )
    .await
}

/// What the edge read for the deploy: the process environment and the command line.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    /// `HF_TOKEN`, when set.
    pub hf_token: Option<String>,
    /// `HF_ENDPOINT`, else the Hub.
    pub hf_endpoint: String,
    /// `--stage-binary`, when given.
    pub stage_binary: Option<PathBuf>,
    /// `--wait`: wait for another deploy's Lease instead of failing.
    pub wait: bool,
}

/// Shows what the follow step reads, given the run's name.
pub type ShowFollow = Box<dyn FnMut(&str, &FollowEvent) + Send + Sync>;

/// The clients the edge built: the AWS SDK configuration (the cluster's region) and the
/// bounded Kubernetes client of the configured context.
#[derive(Clone)]
pub struct Connections {
    /// AWS (STS, ECR, FSx).
    pub aws: aws_config::SdkConfig,
    /// The cluster.
    pub kube: kube::Client,
}

/// How the sequence shows progress; each is called from the deploy's own task.
pub struct Callbacks<'a> {
    /// One line about what deploy found (the AWS identity).
    pub on_note: &'a (dyn Fn(&str) + Send + Sync),
    /// The runner's events.
    pub on_event: &'a mut (dyn FnMut(Event) + Send),
    /// What the follow step reads, with the run's name.
    pub on_follow: ShowFollow,
    /// What a running step waits for.
    pub on_status: Box<dyn Fn(&str) + Send + Sync>,
}

/// How a deploy ended: the runner's report and the plan it ran.
#[derive(Debug)]
pub struct Outcome {
    /// What ran, what was up to date, what failed.
    pub report: Report,
    /// The plan.
    pub plan: Plan,
}

/// Deploys `config` to its cluster through `connections`; `build_stage_binary` builds `trnkit-stage` when the images step needs it;
/// `make_publisher` builds and pushes the images, given the configuration with its AWS account
/// and the image definitions.
pub async fn deploy<P, F, Fut>(
    config: &Config,
    selection: Selection,
    edge: Edge,
    connections: Connections,
    build_stage_binary: F,
    make_publisher: impl FnOnce(&Config, &aws_config::SdkConfig, Vec<crate::images::Image>) -> P,
    callbacks: Callbacks<'_>,
) -> anyhow::Result<Outcome>
where
    P: ImagePublisher,
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<PathBuf>>,
{
    let Connections {
        aws: sdk,
        kube: client,
    } = connections;
    // Who we act as in AWS, before anything is rendered or touched: the account names the ECR
    // registry, and credentials for another account than the configured one stop here.
    let identity = crate::aws_identity::fetch(&sdk).await?;
    let config = &crate::aws_identity::reconcile(config, &identity)?;
    (callbacks.on_note)(&format!(
        "AWS account {} as {} in {}",
        identity.account, identity.arn, config.cluster.region
    ));
    let facts = preflight::fetch_facts(&client).await;
    let requirements = super::cluster::requirements(&config.training);
    let preflight = preflight::evaluate(&facts, &requirements);
    let stager_binary = crate::images::stage_binary_for_run(
        edge.stage_binary.as_deref(),
        &selection,
        preflight.passed(),
        build_stage_binary,
    )
    .await?;
    let store = ConfigMapStore::new(
        client.clone(),
        &config.cluster.namespace,
        &config.cluster.field_manager,
    );
    // The run's name: configured, recorded by an earlier deploy, or named now (run_identity).
    let recorded = store.load().await?;
    let config =
        &crate::run_identity::with_run_name(config, &recorded, std::time::SystemTime::now());
    let rendered =
        super::bundle::render_all(config, preflight.launcher_gate, None, &stager_binary)?;
    let plan = plan::plan(config, &rendered);
    let images = crate::images::images(
        config,
        Some(stager_binary.as_path()).filter(|path: &&Path| path.is_file()),
    )?;
    let publisher = make_publisher(config, &sdk, images);
    let mut executor = ClusterExecutor {
        client: client.clone(),
        config: config.clone(),
        facts: Some(facts),
        images: rendered.images.clone(),
        fsx: Some(crate::aws::fsx_client(&sdk)),
        publisher,
        hf_token: edge.hf_token,
        hf_endpoint: edge.hf_endpoint,
        timeouts: Timeouts {
            compile: config.training.compile_timeout.duration(),
            ..Timeouts::default()
        },
        on_follow: {
            let run = config.training.run_name.clone();
            let mut show = callbacks.on_follow;
            Box::new(move |event: &FollowEvent| show(&run, event))
        },
        on_status: callbacks.on_status,
    };
    let lease = take_deploy_lease(client, &config.cluster.namespace, "deploy", edge.wait).await?;
    let on_event = callbacks.on_event;
    let report = run::run(&plan, &store, &mut executor, selection, |event| {
        on_event(event)
    })
    .await;
    lease.release().await;
    Ok(Outcome {
        report: report?,
        plan,
    })
}
