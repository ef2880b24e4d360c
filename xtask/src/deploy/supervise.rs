//! The train job's supervisor: follows its launcher through the log model, watches its worker
//! pods, and restarts the whole job on a failure within the run's budget (see [`super::restart`]
//! for the policy). Deploy's follow step and `cargo xtask watch` both run it.
//!
//! A restart is recorded in the deploy state before the job is deleted, so a trnkit stopped
//! between the two has spent it rather than risk exceeding the budget; the job is deleted in
//! the foreground (its launcher and workers go first), awaited until gone, and applied again
//! from the same rendered manifest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::wait::await_condition;
use mpijob::MPIJob;
use mpijob::io::{FollowEvent, FollowOptions, Outcome};

use super::restart::{self, Decision, Failure, Restart};
use super::state::{StateStore, now};
use crate::config::Config;
use crate::observe::decide::Verdict;
use crate::observe::live;
use crate::observe::watch::Watch;
use crate::render::Manifest;

/// The key of the applied train MPIJob's digest in the train step's recorded outputs: `watch`
/// re-creates a job only from a manifest rendered the same.
pub const MANIFEST_OUTPUT_KEY: &str = "manifest_digest";

/// How long a deleted job may take to be gone before a restart fails.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The waits of the supervisor.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Pause between looks at the launcher while following.
    pub follow_poll: Duration,
    /// How long to wait for a log line before looking for a hang.
    pub hang_check: Duration,
    /// How often the worker pods are looked at.
    pub pod_check: Duration,
}

/// What the supervisor works on.
pub struct Supervisor<'a, S> {
    /// The cluster.
    pub client: kube::Client,
    /// The configuration (the run's name resolved).
    pub config: &'a Config,
    /// The rendered train MPIJob, re-applied on each restart.
    pub manifest: &'a Manifest,
    /// Where the restarts are recorded.
    pub store: &'a S,
    /// The waits.
    pub pace: Pace,
    /// Receives what the launcher's log says.
    pub on_follow: &'a mut (dyn FnMut(&FollowEvent) + Send + Sync),
    /// Receives the live figures and what the supervisor does.
    pub on_status: &'a (dyn Fn(&str) + Send + Sync),
}

/// How one followed attempt ended.
enum Ended {
    Succeeded {
        uid: String,
    },
    Failed {
        failure: Failure,
        evidence: Vec<String>,
    },
}

/// The key of the run in the deploy state's `runs`: its name (see `run_identity`).
pub fn run_key(config: &Config, manifest: &Manifest) -> String {
    crate::run_identity::in_manifest(&manifest.value)
        .unwrap_or_else(|| crate::run_identity::rendered_name(config).to_owned())
}

/// Whether `manifest` is the train job deploy applied, by the digest its train step recorded
/// ([`MANIFEST_OUTPUT_KEY`]): `Ok(true)` it is, `Ok(false)` nothing was recorded (a deploy
/// before the digest was), `Err` it is another job (the configuration or trnkit changed since),
/// which a restart must not put in its place.
pub fn is_applied_job(recorded: Option<&str>, manifest: &Manifest) -> Result<bool, String> {
    match recorded {
        None => Ok(false),
        Some(applied) if applied == super::plan::digest(&manifest.value) => Ok(true),
        Some(_) => Err(format!(
            "the {} {} this configuration renders is not the one deploy applied (the configuration or trnkit changed since): run `cargo xtask deploy --no-follow` to apply it, then watch",
            manifest.kind, manifest.name
        )),
    }
}

impl<S: StateStore> Supervisor<'_, S> {
    fn namespace(&self) -> &str {
        &self.config.cluster.namespace
    }

    /// Supervises the job until it succeeds (the summary, with the restarts it took), or fails
    /// in a way that is not restarted (an error with the run's restart history).
    pub async fn run(&mut self) -> anyhow::Result<(String, BTreeMap<String, String>)> {
        let name = self.manifest.name.clone();
        let run = run_key(self.config, self.manifest);
        let budget = self.config.training.max_restarts;
        loop {
            let (failure, evidence) = match self.follow_once(&name).await? {
                Ended::Succeeded { uid } => {
                    let record = self
                        .store
                        .load()
                        .await?
                        .runs
                        .remove(&run)
                        .unwrap_or_default();
                    return Ok((
                        format!("{name} succeeded ({})", restart::summary(&record, budget)),
                        BTreeMap::from([("uid".to_owned(), uid)]),
                    ));
                }
                Ended::Failed { failure, evidence } => (failure, evidence),
            };
            let mut state = self.store.load().await?;
            let history = state
                .runs
                .get(&run)
                .map(|record| record.restarts.clone())
                .unwrap_or_default();
            let decision = restart::should_restart(&history, budget, &failure);
            let reason = failure.reason();
            let shown = if evidence.is_empty() {
                String::new()
            } else {
                format!("\n  {}", evidence.join("\n  "))
            };
            match decision {
                Decision::Restart { attempt, budget } => {
                    tracing::warn!(
                        "{name}: {reason}; restarting the whole job ({attempt} of {budget} for run {run}){shown}"
                    );
                    (self.on_status)(&format!(
                        "restarting {name} ({attempt} of {budget}): {reason}"
                    ));
                    state
                        .runs
                        .entry(run.clone())
                        .or_default()
                        .restarts
                        .push(Restart { at: now(), reason });
                    self.store.save(&state).await?;
                    self.recreate().await?;
                }
                Decision::BudgetSpent { budget } => {
                    let record = state.runs.entry(run.clone()).or_default();
                    record.gave_up = Some(Restart {
                        at: now(),
                        reason: reason.clone(),
                    });
                    let history = restart::summary(record, budget);
                    self.store.save(&state).await?;
                    let fate = self.give_up(&name, &failure).await?;
                    bail!(
                        "{name} {fate}: {reason}{shown}\nnot restarted: run {run} has had {budget} restart(s), its budget ([training] max_restarts); {history}"
                    );
                }
                Decision::NotRestartable { why } => {
                    let fate = self.give_up(&name, &failure).await?;
                    bail!("{name} {fate}: {reason}{shown}\nnot restarted: {why}");
                }
            }
        }
    }

    /// Stops the job when the failure leaves it running but useless (a fatal condition, TCP);
    /// says what became of it.
    async fn give_up(&self, name: &str, failure: &Failure) -> anyhow::Result<&'static str> {
        match failure {
            Failure::Fatal { .. } | Failure::Tcp { .. } => {
                let jobs: Api<MPIJob> = Api::namespaced(self.client.clone(), self.namespace());
                let deleted = mpijob::io::delete(&jobs, name)
                    .await
                    .with_context(|| format!("{name} must stop but could not be deleted"))?;
                Ok(if deleted {
                    "stopped (MPIJob deleted)"
                } else {
                    "was already gone"
                })
            }
            Failure::Hung { .. } => Ok(
                "is left running (`cargo xtask logs --follow` shows its log, `cargo xtask stop` stops it)",
            ),
            Failure::WorkerFailed { .. } | Failure::JobFailed { .. } => Ok("failed"),
        }
    }

    /// Deletes the job in the foreground, waits until it is gone, and applies the rendered
    /// manifest again.
    async fn recreate(&self) -> anyhow::Result<()> {
        let name = self.manifest.name.as_str();
        let jobs: Api<MPIJob> = Api::namespaced(self.client.clone(), self.namespace());
        let job: MPIJob = serde_json::from_value(self.manifest.value.clone())
            .context("the rendered train MPIJob does not parse")?;
        match jobs.delete(name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(response)) if response.code == 404 => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot delete {name} to restart it"));
            }
        }
        let gone = |job: Option<&MPIJob>| job.is_none();
        tokio::time::timeout(DELETE_TIMEOUT, await_condition(jobs.clone(), name, gone))
            .await
            .with_context(|| {
                format!(
                    "{name} was not deleted within {}: the restart did not happen",
                    humantime::format_duration(DELETE_TIMEOUT)
                )
            })??;
        mpijob::io::apply(&jobs, &job, &self.config.cluster.field_manager)
            .await
            .with_context(|| format!("cannot re-create {name}"))?;
        tracing::info!("{name} re-created from its rendered manifest");
        Ok(())
    }

    /// Follows one attempt of the job until it succeeds or fails.
    async fn follow_once(&mut self, name: &str) -> anyhow::Result<Ended> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace());
        let jobs: Api<MPIJob> = Api::namespaced(self.client.clone(), self.namespace());
        let options = FollowOptions {
            poll_interval: self.pace.follow_poll,
            container: None,
        };
        let mut stream = std::pin::pin!(mpijob::io::follow_launcher(
            pods.clone(),
            jobs,
            name,
            options
        ));
        let workers = ListParams::default().labels(&format!(
            "training.kubeflow.org/job-name={name},training.kubeflow.org/job-role=worker"
        ));
        let mut look = tokio::time::interval(self.pace.pod_check);
        let mut uid = String::new();
        let training = &self.config.training;
        let mut watch = Watch::new(super::cluster::follow_policy(training), Instant::now());
        let nodes = u32::try_from(training.workers).unwrap_or(0);
        loop {
            // `None`: no line came for a while (the look at the workers counts too, as it
            // cuts the wait short), so look for a hang.
            let next = tokio::select! {
                next = tokio::time::timeout(self.pace.hang_check, stream.next()) => next.ok(),
                _ = look.tick() => {
                    match pods.list(&workers).await {
                        Ok(listed) => {
                            if let Some(failure) = restart::failed_worker(&listed.items) {
                                return Ok(Ended::Failed { failure, evidence: Vec::new() });
                            }
                        }
                        Err(error) => tracing::debug!("cannot list the workers of {name}: {error}"),
                    }
                    None
                }
            };
            let verdict = match next {
                Some(None) => bail!(
                    "the log of {name} ended before the job finished; `cargo xtask logs --follow` re-attaches"
                ),
                None => watch.tick(Instant::now()),
                Some(Some(event)) => {
                    let event = event?;
                    (self.on_follow)(&event);
                    match event {
                        FollowEvent::Attached { uid: new, .. } => {
                            uid = new;
                            None
                        }
                        FollowEvent::Reattached { uid: new, .. } => {
                            uid = new;
                            watch.reattached(Instant::now());
                            None
                        }
                        FollowEvent::Finished(Outcome::Succeeded) => {
                            return Ok(Ended::Succeeded { uid });
                        }
                        FollowEvent::Finished(Outcome::Failed { reason, message }) => {
                            // The log's diagnosis goes with the message, not the record.
                            let seen = crate::observe::decide::diagnosis(watch.analyzer());
                            return Ok(Ended::Failed {
                                failure: Failure::JobFailed {
                                    reason: format!("{reason}: {message}"),
                                },
                                evidence: seen.into_iter().collect(),
                            });
                        }
                        FollowEvent::Line(line) => {
                            let now = Instant::now();
                            let verdict = watch.line(&line, now);
                            let analysis = watch.analyzer().analysis();
                            if analysis.last_global_step.is_some() {
                                let figures = live::live(
                                    &analysis,
                                    watch.elapsed(now),
                                    nodes,
                                    self.config.cost.instance_hourly_usd,
                                );
                                (self.on_status)(&live::summary(&figures));
                            }
                            verdict
                        }
                    }
                }
            };
            match verdict {
                None | Some(Verdict::Continue) => {}
                Some(Verdict::Warn { reason, evidence }) => {
                    tracing::warn!("{name}: {reason}\n  {}", evidence.join("\n  "));
                }
                Some(Verdict::Stop { reason, evidence }) => {
                    let failure = match watch.analyzer().analysis().fatal {
                        Some(category) => Failure::Fatal { category, reason },
                        None => Failure::Tcp { reason },
                    };
                    return Ok(Ended::Failed { failure, evidence });
                }
                Some(Verdict::Hung { reason }) => {
                    return Ok(Ended::Failed {
                        failure: Failure::Hung { reason },
                        evidence: Vec::new(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
