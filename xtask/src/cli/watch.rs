//! `watch`: the train job's supervisor for a deploy run with `--no-follow`: follows the job
//! and restarts it whole within the run's budget, exactly as deploy's follow step does (see
//! `deploy::supervise`). The restarts already recorded for the run count: a new `watch` never
//! exceeds `[training] max_restarts`.

use anyhow::Context;
use mpijob::io::FollowEvent;

use super::Global;
use crate::config::Target;
use crate::deploy::plan::StepId;
use crate::deploy::state::{ConfigMapStore, StateStore, Status};
use crate::deploy::supervise::{self, Pace, Supervisor};

/// `watch`'s arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Wait while a deploy (or another watch) holds the namespace's lease, instead of failing.
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    anyhow::ensure!(
        config.cluster.target == Target::Eks,
        "watch supervises a train job in a cluster; the local profile (cluster.target = \"local\") runs none"
    );
    let client = super::cluster::client(&config).await?;
    let store = ConfigMapStore::new(
        client.clone(),
        &config.cluster.namespace,
        &config.cluster.field_manager,
    );
    let state = store.load().await?;
    let train = state
        .get(StepId::Train)
        .filter(|record| record.status == Status::Done)
        .context(
            "no train job is recorded as applied here: run `cargo xtask deploy --no-follow` first",
        )?;
    // The job as deploy rendered it: the run's recorded name, the launcher gate of the
    // installed operator.
    let config = crate::run_identity::with_run_name(&config, &state, std::time::SystemTime::now());
    let facts = crate::kube::preflight::fetch_facts(&client).await;
    let gate = crate::kube::preflight::evaluate(
        &facts,
        &crate::deploy::cluster::requirements(&config.training),
    )
    .launcher_gate;
    let rendered = crate::deploy::bundle::render_all(
        &config,
        gate,
        None,
        &crate::images::default_stage_binary(),
    )?;
    let manifest = rendered
        .train
        .iter()
        .find(|manifest| manifest.kind == "MPIJob")
        .context("the configuration renders no train MPIJob")?;
    let recorded = train
        .outputs
        .get(supervise::MANIFEST_OUTPUT_KEY)
        .map(String::as_str);
    if !supervise::is_applied_job(recorded, manifest).map_err(anyhow::Error::msg)? {
        tracing::warn!(
            "the train step recorded no digest of its MPIJob (an older deploy): restarts re-create {} as this configuration renders it",
            manifest.name
        );
    }
    // The Lease deploy holds while it follows: one supervisor per namespace, so that no two
    // restart the same job.
    let lease = crate::deploy::eks::take_deploy_lease(
        client.clone(),
        &config.cluster.namespace,
        "watch",
        args.wait,
    )
    .await?;
    let run = supervise::run_key(&config, manifest);
    if let Some(record) = state.runs.get(&run) {
        eprintln!(
            "run {run}: {}",
            crate::deploy::restart::summary(record, config.training.max_restarts)
        );
    }
    eprintln!(
        "watching {} (run {run}): a failure restarts it whole, at most {} time(s) for the run",
        manifest.name, config.training.max_restarts
    );
    let timeouts = crate::deploy::cluster::Timeouts::default();
    let spinner = super::progress::StepSpinner::new(global.quiet);
    spinner.start("watch", &format!("watch {}", manifest.name));
    let mut on_follow = |event: &FollowEvent| super::cluster::show_follow(&run, event);
    let on_status = |status: &str| spinner.status(status);
    let outcome = Supervisor {
        client,
        config: &config,
        manifest,
        store: &store,
        pace: Pace {
            follow_poll: timeouts.follow_poll,
            hang_check: timeouts.hang_check,
            pod_check: timeouts.pod_check,
        },
        on_follow: &mut on_follow,
        on_status: &on_status,
    }
    .run()
    .await;
    spinner.stop();
    lease.release().await;
    let (summary, _) = outcome?;
    println!("{summary}");
    Ok(())
}
