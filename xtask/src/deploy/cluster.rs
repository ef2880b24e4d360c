//! The EKS executor: runs each step against the cluster (through a `kube::Client`) and AWS
//! (through an [`ImagePublisher`]). Waits are bounded; failures say what to do next.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use mpijob::MPIJob;
use mpijob::io::{FollowEvent, Outcome};

use super::plan::{RenderedImage, Step, StepId};
use super::run::{Executor, StepOutput};
use super::state::StepRecord;
use crate::config::Config;
use crate::kube::{apply, preflight};
use crate::render::Manifest;
use crate::tensorboard;

/// Builds and pushes the images (the CLI's implementation uses Docker and ECR).
#[allow(async_fn_in_trait)]
pub trait ImagePublisher {
    /// Publishes every image; returns `name → pushed digest`.
    async fn publish(
        &mut self,
        images: &BTreeMap<String, RenderedImage>,
    ) -> anyhow::Result<BTreeMap<String, String>>;
}

/// Bounds of the waits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// The claim becoming Bound (FSx creation takes about 10 minutes).
    pub storage: Duration,
    /// The staging Job.
    pub staging: Duration,
    /// The compile-cache check Job.
    pub cache_check: Duration,
    /// The node check Job (its pods pull the training image first).
    pub node_check: Duration,
    /// How often a Job's pods are looked at while it runs.
    pub pod_check: Duration,
    /// How long a pod may stay unschedulable (room for the cluster autoscaler) before the step
    /// fails.
    pub unschedulable: Duration,
    /// The compile MPIJob.
    pub compile: Duration,
    /// Pause between looks at the launcher while following.
    pub follow_poll: Duration,
    /// How long the follow step waits for a log line before it looks for a hang.
    pub hang_check: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            storage: Duration::from_secs(30 * 60),
            staging: Duration::from_secs(4 * 60 * 60),
            cache_check: Duration::from_secs(15 * 60),
            node_check: Duration::from_secs(30 * 60),
            pod_check: Duration::from_secs(20),
            unschedulable: Duration::from_secs(10 * 60),
            compile: Duration::from_secs(2 * 60 * 60),
            follow_poll: Duration::from_secs(2),
            hang_check: Duration::from_secs(60),
        }
    }
}

/// Runs the steps in a cluster.
pub struct ClusterExecutor<P> {
    /// The cluster.
    pub client: kube::Client,
    /// The configuration.
    pub config: Config,
    /// Cluster facts the caller fetched moments ago (to choose the launcher gate); the
    /// preflight step uses them once instead of asking again, and fetches afresh otherwise.
    pub facts: Option<preflight::ClusterFacts>,
    /// Everything rendered (the images, for the images step).
    pub images: BTreeMap<String, RenderedImage>,
    /// Builds and pushes images.
    pub publisher: P,
    /// The FSx API, for `storage.mode = "static"` (the file system is created or adopted in
    /// the storage step); `None` where no AWS client exists (that mode then fails, saying so).
    pub fsx: Option<fsx::aws_sdk_fsx::Client>,
    /// The HuggingFace token, if the user has one (from `HF_TOKEN`); it goes into a Secret only.
    pub hf_token: Option<String>,
    /// The HuggingFace Hub preflight asks whether the token can read the tokenizer
    /// (`HF_ENDPOINT`, else [`crate::hub::DEFAULT_ENDPOINT`]).
    pub hf_endpoint: String,
    /// Wait bounds.
    pub timeouts: Timeouts,
    /// Receives what the follow step reads (log lines, re-attachments).
    pub on_follow: Box<dyn FnMut(&FollowEvent) + Send + Sync>,
    /// Receives what a long step is doing now ("waiting for MPIJob … to succeed").
    pub on_status: Box<dyn Fn(&str) + Send + Sync>,
}

impl<P: ImagePublisher> ClusterExecutor<P> {
    fn namespace(&self) -> &str {
        &self.config.cluster.namespace
    }

    fn field_manager(&self) -> &str {
        &self.config.cluster.field_manager
    }

    /// Server-side applies `manifests` in order, in the configured namespace.
    async fn apply(&self, manifests: &[Manifest]) -> anyhow::Result<()> {
        let values: Vec<serde_json::Value> = manifests
            .iter()
            .map(|manifest| manifest.value.clone())
            .collect();
        apply::apply_all(
            &self.client,
            &values,
            self.namespace(),
            self.field_manager(),
        )
        .await?;
        Ok(())
    }

    async fn preflight(&mut self) -> anyhow::Result<StepOutput> {
        let facts = match self.facts.take() {
            Some(facts) => facts,
            None => preflight::fetch_facts(&self.client).await,
        };
        let training = &self.config.training;
        let preflight = preflight::evaluate(&facts, &requirements(training));
        // The Hub before anything is created: a gated tokenizer without a token (or a token
        // without access) would otherwise fail the staging Job after images and storage.
        let hub =
            crate::hub::check(&self.config, &self.hf_endpoint, self.hf_token.as_deref()).await;
        if !preflight.passed() || hub.is_err() {
            let mut failures: Vec<String> =
                preflight.failures().map(|check| check.line()).collect();
            if let Err(error) = &hub {
                failures.push(format!("huggingface-hub: {error:#}"));
            }
            bail!(
                "preflight found {} problem(s):\n  - {}",
                failures.len(),
                failures.join("\n  - ")
            );
        }
        // Warnings (a Karpenter pool that may consolidate Trainium nodes) do not stop deploy.
        let warnings: Vec<String> = preflight.warnings().map(|check| check.line()).collect();
        for warning in &warnings {
            tracing::warn!("preflight: {warning}");
        }
        if let Ok(report) = &hub {
            for warning in report.warnings() {
                tracing::warn!("preflight: {warning}");
            }
        }
        let hub = hub.map(|report| report.summary()).unwrap_or_default();
        Ok(StepOutput {
            summary: format!(
                "{} checks passed; {}; {hub}{}",
                preflight.checks.len(),
                preflight.launcher_gate_reason,
                warnings
                    .iter()
                    .map(|warning| format!("; warning: {warning}"))
                    .collect::<String>()
            ),
            outputs: BTreeMap::new(),
        })
    }

    /// The file system (static mode) and the storage objects, read before written: see
    /// [`crate::storage::ensure_in_cluster`].
    async fn storage(&self, step: &Step) -> anyhow::Result<StepOutput> {
        let outcome = crate::storage::ensure_in_cluster(
            &self.client,
            self.fsx.as_ref(),
            &self.config,
            &step.manifests,
            self.timeouts.storage,
            &*self.on_status,
        )
        .await?;
        Ok(StepOutput {
            summary: outcome.summary,
            outputs: outcome.outputs,
        })
    }

    async fn staging(&self, step: &Step) -> anyhow::Result<StepOutput> {
        if let Some(token) = &self.hf_token {
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(self.config.data.hf_token_secret.clone()),
                    namespace: Some(self.namespace().to_owned()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    crate::staging::HF_TOKEN_KEY.to_owned(),
                    ByteString(token.as_bytes().to_vec()),
                )])),
                type_: Some("Opaque".to_owned()),
                ..Default::default()
            };
            let mut value = serde_json::to_value(&secret)?;
            value["apiVersion"] = "v1".into();
            value["kind"] = "Secret".into();
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace());
            secrets
                .patch(
                    &self.config.data.hf_token_secret,
                    &PatchParams::apply(self.field_manager()).force(),
                    &Patch::Apply(&value),
                )
                .await
                .context("cannot store the HuggingFace token in its Secret")?;
        }
        // One Job, or staging, the sharded tokenization and the merge, one after the other;
        // then the dataset check, whose answer is recorded.
        let check = step
            .manifests
            .iter()
            .find(|manifest| manifest.name == crate::staging::DATASET_CHECK_JOB_NAME);
        let jobs: Vec<&Manifest> = step
            .manifests
            .iter()
            .filter(|manifest| {
                manifest.kind == "Job" && manifest.name != crate::staging::DATASET_CHECK_JOB_NAME
            })
            .collect();
        anyhow::ensure!(!jobs.is_empty(), "the staging step has no Job");
        for (index, manifest) in jobs.iter().enumerate() {
            (self.on_status)(&format!(
                "waiting for Job {} ({}/{}, at most {})",
                manifest.name,
                index + 1,
                jobs.len(),
                humantime::format_duration(self.timeouts.staging)
            ));
            self.run_job(manifest, self.timeouts.staging).await?;
        }
        let outputs = match check {
            Some(check) => {
                (self.on_status)("fingerprinting the tokenized dataset");
                self.check_datasets(check).await?
            }
            None => BTreeMap::new(),
        };
        Ok(StepOutput {
            summary: format!(
                "tokenizer, dataset and training code staged and tokenized: {}",
                outputs
                    .iter()
                    .map(|(prefix, fingerprint)| format!("{prefix} ({fingerprint})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            outputs,
        })
    }

    /// Runs a Job to its end: a previous Job of the same name is deleted first (a Job's pod
    /// template is immutable, and a finished Job does not run again), then it is applied and
    /// awaited for at most `timeout`. A failed Job is an error naming its reason.
    async fn run_job(&self, manifest: &Manifest, timeout: Duration) -> anyhow::Result<Job> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), self.namespace());
        let name = manifest.name.as_str();
        if jobs.get_opt(name).await?.is_some() {
            jobs.delete(name, &DeleteParams::foreground()).await?;
            let gone = |job: Option<&Job>| job.is_none();
            tokio::time::timeout(
                Duration::from_secs(120),
                await_condition(jobs.clone(), name, gone),
            )
            .await
            .with_context(|| {
                format!("the previous Job {name} was not deleted within 2 minutes")
            })??;
        }
        self.apply(std::slice::from_ref(manifest)).await?;
        let finished = |job: Option<&Job>| {
            job.and_then(|job| job.status.as_ref())
                .and_then(|status| status.conditions.as_ref())
                .is_some_and(|conditions| {
                    conditions.iter().any(|c| {
                        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                    })
                })
        };
        let job = self
            .watching_pods(
                tokio::time::timeout(timeout, await_condition(jobs, name, finished)),
                &format!("batch.kubernetes.io/job-name={name}"),
                &format!("the Job {name}"),
            )
            .await?
            .with_context(|| {
                format!(
                    "the Job {name} did not finish within {}",
                    humantime::format_duration(timeout)
                )
            })??
            .with_context(|| format!("the Job {name} disappeared while it ran"))?;
        let failed = job
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|c| c.type_ == "Failed" && c.status == "True")
                    .cloned()
            });
        if let Some(condition) = failed {
            bail!(
                "the Job {name} failed ({}: {}); see `kubectl logs -n {} job/{name} --all-containers`",
                condition.reason.unwrap_or_default(),
                condition.message.unwrap_or_default(),
                self.namespace()
            );
        }
        Ok(job)
    }

    /// Awaits `wait`, looking at the pods `selector` picks meanwhile: a pod that cannot pull its
    /// image or start, or stays unschedulable past the grace period, fails `what` now rather
    /// than when the wait's bound runs out.
    async fn watching_pods<T>(
        &self,
        wait: impl std::future::Future<Output = T>,
        selector: &str,
        what: &str,
    ) -> anyhow::Result<T> {
        tokio::pin!(wait);
        let mut look = tokio::time::interval(self.timeouts.pod_check);
        loop {
            tokio::select! {
                result = &mut wait => return Ok(result),
                _ = look.tick() => {
                    if let Some(problem) = self.pod_problem(selector).await {
                        bail!(
                            "{what} cannot run: {problem}; see `kubectl describe pod -n {} -l {selector}`",
                            self.namespace()
                        );
                    }
                }
            }
        }
    }

    /// The first problem of the pods `selector` picks that will not go away by waiting.
    async fn pod_problem(&self, selector: &str) -> Option<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace());
        let listed = match pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await
        {
            Ok(listed) => listed.items,
            Err(error) => {
                tracing::debug!("cannot list the pods {selector}: {error}");
                return None;
            }
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        listed
            .iter()
            .find_map(|pod| pod_problem(pod, now, self.timeouts.unschedulable))
    }

    /// Runs a check Job (it only reads) and returns the log of its `check` container, whose
    /// last JSON line is the answer.
    async fn run_check_job(&self, manifest: &Manifest) -> anyhow::Result<String> {
        self.run_job(manifest, self.timeouts.cache_check).await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace());
        let selector = format!("batch.kubernetes.io/job-name={}", manifest.name);
        let mut listed = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("cannot list the pods of Job {}", manifest.name))?
            .items;
        listed.sort_by_key(|pod| pod.metadata.creation_timestamp.clone());
        let pod = listed
            .pop()
            .and_then(|pod| pod.metadata.name)
            .with_context(|| format!("the Job {} finished but has no pod", manifest.name))?;
        pods.logs(
            &pod,
            &kube::api::LogParams {
                container: Some(crate::staging::CHECK_CONTAINER.to_owned()),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot read the log of pod {pod}"))
    }

    /// Runs the node check Job and reads every pod's result: an error naming each node that
    /// failed (the Job's own failure only when no pod said why).
    async fn check_nodes(&self, manifest: &Manifest) -> anyhow::Result<String> {
        let ran = self.run_job(manifest, self.timeouts.node_check).await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace());
        let selector = format!("batch.kubernetes.io/job-name={}", manifest.name);
        let listed = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("cannot list the pods of Job {}", manifest.name))?
            .items;
        let mut reports = Vec::new();
        for pod in listed {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let exit_code = pod
                .status
                .as_ref()
                .and_then(|status| status.container_statuses.as_ref())
                .and_then(|statuses| {
                    statuses
                        .iter()
                        .find(|status| status.name == crate::node_check::CONTAINER)
                })
                .and_then(|status| status.state.as_ref())
                .and_then(|state| state.terminated.as_ref())
                .map(|terminated| terminated.exit_code);
            let log = pods
                .logs(
                    &name,
                    &kube::api::LogParams {
                        container: Some(crate::node_check::CONTAINER.to_owned()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap_or_default();
            reports.push(crate::node_check::PodReport {
                node: pod.spec.and_then(|spec| spec.node_name),
                pod: name,
                exit_code,
                log,
            });
        }
        let failed = crate::node_check::failures(&reports);
        if !failed.is_empty() {
            bail!("{}", crate::node_check::failure_message(&failed));
        }
        ran?;
        crate::node_check::verdict(&reports, self.config.training.workers)
            .map_err(anyhow::Error::msg)
    }

    /// Runs the cache-check Job and reads its answer.
    async fn check_cache(&self, manifest: &Manifest) -> anyhow::Result<neuron_cache::Coverage> {
        let log = self.run_check_job(manifest).await?;
        crate::checks::parse_cache_check(&log).with_context(|| {
            format!(
                "the log of Job {} does not end with the cache check's JSON line",
                manifest.name
            )
        })
    }

    /// Runs the dataset-check Job and returns what staging records: `prefix → fingerprint`.
    async fn check_datasets(
        &self,
        manifest: &Manifest,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let log = self.run_check_job(manifest).await?;
        let fingerprints = crate::checks::parse_dataset_check(&log).with_context(|| {
            format!(
                "the log of Job {} does not end with the dataset check's JSON line",
                manifest.name
            )
        })?;
        Ok(crate::checks::dataset_outputs(&fingerprints))
    }

    /// Applies an MPIJob afresh: a finished job of the same name does not run again, so a
    /// previous one is deleted first.
    async fn replace_mpijob(&self, manifest: &Manifest) -> anyhow::Result<MPIJob> {
        let jobs: Api<MPIJob> = Api::namespaced(self.client.clone(), self.namespace());
        let job: MPIJob = serde_json::from_value(manifest.value.clone())
            .context("a rendered MPIJob does not parse")?;
        if mpijob::io::delete(&jobs, &manifest.name).await? {
            let gone = |job: Option<&MPIJob>| job.is_none();
            tokio::time::timeout(
                Duration::from_secs(300),
                await_condition(jobs.clone(), &manifest.name, gone),
            )
            .await
            .with_context(|| {
                format!(
                    "the previous MPIJob {} was not deleted within 5 minutes",
                    manifest.name
                )
            })??;
        }
        Ok(mpijob::io::apply(&jobs, &job, self.field_manager()).await?)
    }

    async fn compile(
        &self,
        step: &Step,
        previous: Option<&StepRecord>,
    ) -> anyhow::Result<StepOutput> {
        let manifest = step
            .manifests
            .iter()
            .find(|manifest| manifest.kind == "MPIJob")
            .context("the compile step has no MPIJob")?;
        // What this compile would compile; recorded when it succeeds, so that a later run may
        // skip it only for the same inputs.
        let training_image = self
            .images
            .get("training")
            .map(|image| image.reference.as_str())
            .unwrap_or_default();
        let inputs = super::plan::compile_inputs_digest(&self.config, training_image);
        let compiled = BTreeMap::from([(super::plan::COMPILED_INPUTS.to_owned(), inputs.clone())]);
        // Nothing compiles on a broken node: the node check runs first (see `node_check`).
        if let Some(check) = step
            .manifests
            .iter()
            .find(|manifest| manifest.kind == "Job" && manifest.name == crate::node_check::JOB_NAME)
        {
            (self.on_status)(&format!(
                "checking the Neuron devices and EFA interfaces of each Trainium node (Job {})",
                check.name
            ));
            let passed = self.check_nodes(check).await?;
            tracing::info!("{passed}");
        }
        let mut hint = String::new();
        if let Some(check) = step.manifests.iter().find(|manifest| {
            manifest.kind == "Job" && manifest.name == crate::staging::CACHE_CHECK_JOB_NAME
        }) {
            (self.on_status)(&format!(
                "checking the compile cache on the shared file system (Job {})",
                check.name
            ));
            let recorded = previous
                .and_then(|record| record.outputs.get(super::plan::COMPILED_INPUTS))
                .map(String::as_str);
            let compiler = crate::images::training_image(&self.config).neuronx_cc_version;
            match self.check_cache(check).await {
                Ok(coverage) => {
                    match crate::checks::compile_skip(&coverage, &compiler, recorded, &inputs) {
                        Ok(verdict) => {
                            let mut outputs = compiled;
                            outputs.insert(
                            "skipped".to_owned(),
                            "the compile cache holds the entries of a recorded compile with the same inputs".to_owned(),
                        );
                            return Ok(StepOutput {
                                summary: format!(
                                    "compile job skipped: {verdict} (set [training] force_compile = true to compile anyway)"
                                ),
                                outputs,
                            });
                        }
                        Err(why) => {
                            tracing::info!("running the compile job: {why}");
                            if coverage.failed > 0 || coverage.stale_lock > 0 {
                                hint = format!(
                                    "\nthe compile cache before this run: {}",
                                    coverage.verdict()
                                );
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(
                    "could not check the compile cache ({error:#}); running the compile job"
                ),
            }
        }
        self.replace_mpijob(manifest).await?;
        let jobs: Api<MPIJob> = Api::namespaced(self.client.clone(), self.namespace());
        (self.on_status)(&format!(
            "waiting for MPIJob {} to succeed (at most {})",
            manifest.name,
            humantime::format_duration(self.timeouts.compile)
        ));
        let outcome = self
            .watching_pods(
                mpijob::io::wait_for_completion(&jobs, &manifest.name, self.timeouts.compile),
                &format!("training.kubeflow.org/job-name={}", manifest.name),
                &format!("the compile job {}", manifest.name),
            )
            .await??;
        match outcome {
            Outcome::Succeeded => Ok(StepOutput {
                summary: format!("{} succeeded: the compile cache is warm", manifest.name),
                outputs: compiled,
            }),
            Outcome::Failed { reason, message } => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace());
                // The log model reads a long tail; the message shows its diagnosis and the last
                // lines.
                let tail = mpijob::io::launcher_log_tail(&pods, &manifest.name, 5000)
                    .await
                    .ok()
                    .flatten()
                    .map(|(pod, text)| {
                        let analyzer = crate::observe::analysis::read(&text);
                        let diagnosis = crate::observe::decide::diagnosis(&analyzer)
                            .map(|diagnosis| format!("\n{diagnosis}"))
                            .unwrap_or_default();
                        let lines: Vec<&str> = text.lines().collect();
                        let last = lines[lines.len().saturating_sub(40)..].join("\n");
                        format!("{diagnosis}\nlast lines of {pod}:\n{last}")
                    })
                    .unwrap_or_default();
                bail!(
                    "the compile job {} failed: {reason}: {message}{tail}{hint}\nfix the cause, then run `cargo xtask deploy` again (it resumes at compile)",
                    manifest.name
                )
            }
        }
    }

    async fn train(&self, step: &Step) -> anyhow::Result<StepOutput> {
        let manifest = step
            .manifests
            .first()
            .context("the train step has no MPIJob")?;
        let job = self.replace_mpijob(manifest).await?;
        let mut outputs = BTreeMap::from([
            ("uid".to_owned(), job.metadata.uid.unwrap_or_default()),
            // What `watch` re-creates must be this very job (see `supervise`).
            (
                super::supervise::MANIFEST_OUTPUT_KEY.to_owned(),
                super::plan::digest(&manifest.value),
            ),
        ]);
        let mut summary = format!("applied MPIJob {}", manifest.name);
        // The run's name, so that the next deploy keeps it (see `run_identity`).
        if let Some(run) = crate::run_identity::in_manifest(&manifest.value) {
            summary.push_str(&format!(" (run {run}: nemo_experiments/{run}/)"));
            outputs.insert(crate::run_identity::OUTPUT_KEY.to_owned(), run);
        }
        Ok(StepOutput { summary, outputs })
    }

    async fn tensorboard(&self, step: &Step) -> anyhow::Result<StepOutput> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace());
        let name = &self.config.tensorboard.secret_name;
        let created = if secrets.get_opt(name).await?.is_none() {
            let password = generate_password()?;
            let htpasswd = tensorboard::htpasswd(&self.config.tensorboard.user, &password);
            let secret = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": name, "namespace": self.namespace(), "labels": { "app.kubernetes.io/managed-by": "trnkit" } },
                "type": "Opaque",
                "data": {
                    tensorboard::PASSWORD_KEY: ByteString(password.into_bytes()),
                    tensorboard::HTPASSWD_KEY: ByteString(htpasswd.into_bytes()),
                },
            });
            secrets
                .patch(
                    name,
                    &PatchParams::apply(self.field_manager()),
                    &Patch::Apply(&secret),
                )
                .await?;
            true
        } else {
            false
        };
        self.apply(&step.manifests).await?;
        Ok(StepOutput {
            summary: format!(
                "TensorBoard applied ({}); `cargo xtask tensorboard` prints its URL and password",
                if created {
                    "password generated into the Secret"
                } else {
                    "existing password kept"
                }
            ),
            outputs: BTreeMap::new(),
        })
    }

    /// Follows the train job through the log model and its worker pods, restarting it whole
    /// within the run's budget (see [`super::supervise`]): the live figures go to
    /// `on_status`; what a restart cannot fix stops the job (TCP instead of EFA unless
    /// `require_efa = false`, a failed compilation, an invalid NEFF), and a spent budget
    /// fails the step with the run's restart history (a hung job is left running).
    async fn follow(&mut self, step: &Step) -> anyhow::Result<StepOutput> {
        let manifest = step
            .manifests
            .iter()
            .find(|manifest| manifest.kind == "MPIJob")
            .context("the follow step has no train MPIJob to restart")?;
        let store = super::state::ConfigMapStore::new(
            self.client.clone(),
            self.namespace(),
            self.field_manager(),
        );
        let (summary, outputs) = super::supervise::Supervisor {
            client: self.client.clone(),
            config: &self.config,
            manifest,
            store: &store,
            pace: super::supervise::Pace {
                follow_poll: self.timeouts.follow_poll,
                hang_check: self.timeouts.hang_check,
                pod_check: self.timeouts.pod_check,
            },
            on_follow: &mut *self.on_follow,
            on_status: &*self.on_status,
        }
        .run()
        .await?;
        Ok(StepOutput { summary, outputs })
    }
}

/// The follow step's decisions as `[training]` asks for them (`require_efa`, `hang_timeout`).
pub fn follow_policy(training: &crate::config::Training) -> crate::observe::decide::Policy {
    crate::observe::decide::Policy {
        require_efa: training.require_efa,
        hang_timeout: training
            .hang_timeout
            .as_ref()
            .map(crate::config::Timeout::duration),
    }
}

/// What the configured jobs need from the cluster's nodes.
pub fn requirements(training: &crate::config::Training) -> preflight::Requirements {
    preflight::Requirements {
        nodes: usize::try_from(training.workers).unwrap_or(0),
        neuron_devices: i64::from(training.neuron_devices_per_worker),
        efa_interfaces: i64::from(training.efa_interfaces_per_worker),
        launcher_gate: match training.launcher_gate {
            crate::config::LauncherGateSetting::Auto => None,
            crate::config::LauncherGateSetting::WaitForWorkersReady => {
                Some(mpijob::LauncherGate::WaitForWorkersReady)
            }
            crate::config::LauncherGateSetting::InitContainer => {
                Some(mpijob::LauncherGate::InitContainer)
            }
        },
    }
}

/// Why `pod` will not run by waiting longer, if so: a container that cannot start (its image
/// cannot be pulled, its configuration is wrong), or scheduling that has failed for longer than
/// `unschedulable` (the cluster autoscaler had that long to make room).
pub fn pod_problem(
    pod: &Pod,
    now: k8s_openapi::jiff::Timestamp,
    unschedulable: Duration,
) -> Option<String> {
    const FATAL: &[&str] = &[
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    ];
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in statuses {
        let waiting = container
            .state
            .as_ref()
            .and_then(|state| state.waiting.as_ref());
        if let Some(waiting) = waiting {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if FATAL.contains(&reason) {
                return Some(format!(
                    "pod {name}: container {} cannot start: {reason}: {}",
                    container.name,
                    waiting.message.as_deref().unwrap_or("no message")
                ));
            }
        }
    }
    let scheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == "PodScheduled")?;
    if scheduled.status != "False" || scheduled.reason.as_deref() != Some("Unschedulable") {
        return None;
    }
    let since = scheduled.last_transition_time.as_ref()?.0;
    let waited = now.as_second().saturating_sub(since.as_second());
    if waited < i64::try_from(unschedulable.as_secs()).unwrap_or(i64::MAX) {
        return None;
    }
    Some(format!(
        "pod {name} could not be scheduled for {}: {} (make room in a node group, or lower [data] staging_cpu / staging_memory)",
        humantime::format_duration(Duration::from_secs(waited.unsigned_abs())),
        scheduled.message.as_deref().unwrap_or("no message")
    ))
}

/// A random password of 24 URL-safe characters, from the kernel's generator.
pub fn generate_password() -> anyhow::Result<String> {
    use base64::Engine;
    use std::io::Read;
    let mut bytes = [0u8; 18];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl<P: ImagePublisher> Executor for ClusterExecutor<P> {
    async fn execute(
        &mut self,
        step: &Step,
        previous: Option<&StepRecord>,
    ) -> anyhow::Result<StepOutput> {
        match step.id {
            StepId::Preflight => self.preflight().await,
            StepId::Images => {
                let images = self.images.clone();
                let digests = self.publisher.publish(&images).await?;
                Ok(StepOutput {
                    summary: format!("{} images pushed", digests.len()),
                    outputs: digests,
                })
            }
            StepId::Storage => self.storage(step).await,
            StepId::Staging => self.staging(step).await,
            StepId::Compile => self.compile(step, previous).await,
            StepId::Train => self.train(step).await,
            StepId::Tensorboard => self.tensorboard(step).await,
            StepId::Follow => self.follow(step).await,
        }
    }

    /// Staging is up to date only while the tokenized datasets on the shared file system still
    /// have the fingerprints it recorded (the dataset-check Job asks them).
    async fn still_valid(&mut self, step: &Step, record: &StepRecord) -> bool {
        if step.id != StepId::Staging {
            return true;
        }
        let Some(check) = step
            .manifests
            .iter()
            .find(|manifest| manifest.name == crate::staging::DATASET_CHECK_JOB_NAME)
        else {
            return true;
        };
        (self.on_status)("checking the tokenized dataset on the shared file system");
        match self.check_datasets(check).await {
            Ok(outputs) if outputs == record.outputs => true,
            Ok(outputs) => {
                tracing::warn!(
                    recorded = ?record.outputs,
                    found = ?outputs,
                    "the tokenized dataset changed since staging recorded it: staging again"
                );
                false
            }
            Err(error) => {
                tracing::warn!(
                    "the tokenized dataset is not as staging left it ({error:#}): staging again"
                );
                false
            }
        }
    }
}
