//! Talking to a cluster about MPIJobs: server-side apply, waiting for the outcome, finding the
//! launcher pod, following its log across launcher restarts, and deleting.
//!
//! Every function takes its `kube::Api` as an argument (the namespace comes with it); nothing
//! here builds a client, reads the environment or prints. Waits are bounded by the caller's
//! timeout. Pure helpers ([`outcome`], [`launcher_selector`], [`newest_first`]) carry the
//! decisions so they can be tested without a server.
//!
//! The operator's facts this relies on (`ecosystem.md` §1.5–1.6): a job is finished when its
//! condition `Succeeded` or `Failed` is `True`; launcher pods carry
//! `training.kubeflow.org/job-name=<job>` and `training.kubeflow.org/job-role=launcher`, are named
//! `<job>-launcher-<random>` and are replaced by a new pod (new name, new UID) on each retry.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::time::Duration;

use futures::{AsyncBufReadExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;

use crate::error::{Error, Result};
use crate::schema::CrdSchema;
use crate::types::MPIJob;

/// The label the operator puts on every pod of a job, with the job's name.
pub const JOB_NAME_LABEL: &str = "training.kubeflow.org/job-name";
/// The label that tells launcher pods (`launcher`) from worker pods (`worker`).
pub const JOB_ROLE_LABEL: &str = "training.kubeflow.org/job-role";

/// How a finished MPIJob ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Condition `Succeeded=True`.
    Succeeded,
    /// Condition `Failed=True`, with its reason (`BackoffLimitExceeded`, `MPIJobEvicted`, ...)
    /// and message.
    Failed {
        /// The condition's reason; empty when the operator gave none.
        reason: String,
        /// The condition's message; empty when the operator gave none.
        message: String,
    },
}

/// The outcome of a finished job, or `None` while it runs.
pub fn outcome(job: &MPIJob) -> Option<Outcome> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is_true = |kind: &str| {
        conditions
            .iter()
            .find(|condition| condition.type_ == kind && condition.status == "True")
    };
    if is_true("Succeeded").is_some() {
        return Some(Outcome::Succeeded);
    }
    is_true("Failed").map(|condition| Outcome::Failed {
        reason: condition.reason.clone().unwrap_or_default(),
        message: condition.message.clone().unwrap_or_default(),
    })
}

/// The label selector of a job's launcher pods.
pub fn launcher_selector(job_name: &str) -> String {
    format!("{JOB_NAME_LABEL}={job_name},{JOB_ROLE_LABEL}=launcher")
}

fn job_name_of(job: &MPIJob) -> &str {
    job.metadata.name.as_deref().unwrap_or_default()
}

fn namespace_of<K: kube::Resource>(api: &Api<K>) -> String {
    api.namespace().unwrap_or_default().to_owned()
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

/// The name of the MPI Operator's CRD.
pub const CRD_NAME: &str = "mpijobs.kubeflow.org";

/// Checks the job against the MPIJob CRD the cluster serves, with unknown fields rejected, so a
/// field that CRD does not declare (`launcherCreationPolicy` on a v0.4 operator) is named before
/// the API server refuses the apply. When the CRD is absent or cannot be read, nothing is
/// checked here: the apply itself then says what is wrong.
pub async fn check_installed_crd(api: &Api<MPIJob>, job: &MPIJob) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(api.clone().into_client());
    let crd = match crds.get_opt(CRD_NAME).await {
        Ok(Some(crd)) => crd,
        Ok(None) => return Ok(()),
        Err(error) => {
            tracing::debug!(%error, "cannot read CRD {CRD_NAME}; the job is not checked against it");
            return Ok(());
        }
    };
    let name = job_name_of(job).to_owned();
    let serialize = |source| Error::Serialize {
        name: name.clone(),
        source,
    };
    let crd = serde_json::to_value(&crd).map_err(serialize)?;
    let document = serde_json::to_value(job).map_err(serialize)?;
    let mut problems = match CrdSchema::from_crd(&crd, format!("the installed CRD {CRD_NAME}")) {
        Ok(schema) => schema.validate(&document),
        Err(message) => {
            tracing::debug!(message, "the job is not checked against the installed CRD");
            return Ok(());
        }
    };
    if job.spec.launcher_creation_policy.is_some()
        && !crate::schema::spec_declares(&crd, "launcherCreationPolicy")
    {
        problems.0.insert(
            0,
            crate::Problem::new(
                "spec.launcherCreationPolicy",
                format!("the installed CRD {CRD_NAME} does not declare it (MPI Operator before v0.5.0); build the job with the init-container launcher gate for this operator, or upgrade the operator and its CRD"),
            ),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid { name, problems })
    }
}

/// Server-side applies the job with `field_manager`, forcing ownership of its fields (trnkit is
/// the job's only author), and returns the stored job. The job is first checked against the CRD
/// the cluster serves ([`check_installed_crd`]).
pub async fn apply(api: &Api<MPIJob>, job: &MPIJob, field_manager: &str) -> Result<MPIJob> {
    check_installed_crd(api, job).await?;
    let name = job_name_of(job);
    tracing::debug!(job = name, field_manager, "server-side apply of the MPIJob");
    let params = PatchParams::apply(field_manager).force();
    api.patch(name, &params, &Patch::Apply(job))
        .await
        .map_err(|source| Error::ApplyMpiJob {
            name: name.to_owned(),
            namespace: namespace_of(api),
            source: Box::new(source),
        })
}

/// Waits until the job is finished and returns how it ended.
///
/// Watches the one object (so a restarted watch resumes) inside `tokio::time::timeout`; errors
/// when the time is up, when the watch fails, or when the job is deleted meanwhile.
pub async fn wait_for_completion(
    api: &Api<MPIJob>,
    name: &str,
    timeout: Duration,
) -> Result<Outcome> {
    let finished = |job: Option<&MPIJob>| job.is_none_or(|job| outcome(job).is_some());
    let waited = tokio::time::timeout(timeout, await_condition(api.clone(), name, finished)).await;
    let context = || (name.to_owned(), namespace_of(api));
    match waited {
        Err(_elapsed) => {
            let (name, namespace) = context();
            Err(Error::WaitTimeout {
                name,
                namespace,
                timeout,
            })
        }
        Ok(Err(source)) => {
            let (name, namespace) = context();
            Err(Error::WatchMpiJob {
                name,
                namespace,
                source: Box::new(source),
            })
        }
        Ok(Ok(None)) => {
            let (name, namespace) = context();
            Err(Error::MpiJobGone { name, namespace })
        }
        Ok(Ok(Some(job))) => Ok(outcome(&job).expect("the wait ends only on a finished job")),
    }
}

/// Sorts pods newest first: by `creationTimestamp`, then by name (later names first), so that
/// ties between pods created in the same second still order the same way every time.
pub fn newest_first(pods: &mut [Pod]) {
    pods.sort_by(|left, right| {
        let created = |pod: &Pod| pod.metadata.creation_timestamp.as_ref().map(|time| time.0);
        created(right)
            .cmp(&created(left))
            .then_with(|| right.metadata.name.cmp(&left.metadata.name))
    });
}

/// The job's launcher pods, newest first.
pub async fn launcher_pods(pods: &Api<Pod>, job_name: &str) -> Result<Vec<Pod>> {
    let params = ListParams::default().labels(&launcher_selector(job_name));
    let mut found = pods
        .list(&params)
        .await
        .map_err(|source| Error::ListLaunchers {
            job: job_name.to_owned(),
            namespace: namespace_of(pods),
            source: Box::new(source),
        })?
        .items;
    newest_first(&mut found);
    Ok(found)
}

/// The last `lines` lines of the newest launcher's log, with that pod's name, or `None` when no
/// launcher pod exists (any more). Used to show why a job failed.
pub async fn launcher_log_tail(
    pods: &Api<Pod>,
    job_name: &str,
    lines: i64,
) -> Result<Option<(String, String)>> {
    let Some(pod) = launcher_pods(pods, job_name).await?.into_iter().next() else {
        return Ok(None);
    };
    let name = pod.metadata.name.unwrap_or_default();
    let params = LogParams {
        tail_lines: Some(lines),
        ..LogParams::default()
    };
    match pods.logs(&name, &params).await {
        Ok(text) => Ok(Some((name, text))),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(source) => Err(Error::ReadLauncherLog {
            pod: name,
            namespace: namespace_of(pods),
            source: Box::new(source),
        }),
    }
}

/// Deletes the job (the operator's owner references take its pods, services and launcher Job
/// with it). Returns `false` when it did not exist.
pub async fn delete(api: &Api<MPIJob>, name: &str) -> Result<bool> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(source) => Err(Error::DeleteMpiJob {
            name: name.to_owned(),
            namespace: namespace_of(api),
            source: Box::new(source),
        }),
    }
}

/// What [`follow_launcher`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowEvent {
    /// Following the first launcher pod; its UID names the run's log directory
    /// (`nemo_experiments/<uid>`).
    Attached {
        /// The pod's name.
        pod: String,
        /// The pod's UID.
        uid: String,
    },
    /// The launcher was replaced (a retry): following the new pod from the start of its log.
    Reattached {
        /// The new pod's name.
        pod: String,
        /// The new pod's UID.
        uid: String,
        /// The UID of the pod followed before.
        previous_uid: String,
    },
    /// One log line of the launcher being followed.
    Line(String),
    /// The job finished and the last launcher's log has been read to its end.
    Finished(Outcome),
}

/// How [`follow_launcher`] follows.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// How long to wait between looks for a (new) launcher pod or a finished job.
    pub poll_interval: Duration,
    /// The launcher container, when its pod has more than one.
    pub container: Option<String>,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            container: None,
        }
    }
}

type Lines = Pin<Box<dyn Stream<Item = std::io::Result<String>> + Send>>;

/// The records of a log: lines ended by `\n`, and also the records a progress bar redraws in
/// place with `\r` (NeMo's and tqdm's), so each progress update arrives when it is written
/// instead of when a newline finally comes. `\r\n` ends one record; empty records are
/// dropped; invalid UTF-8 is replaced.
pub fn log_records<R>(reader: R) -> impl Stream<Item = std::io::Result<String>> + Send
where
    R: futures::AsyncBufRead + Send + Unpin,
{
    futures::stream::unfold(
        (reader, Vec::new(), false),
        |(mut reader, mut pending, done)| async move {
            if done {
                return None;
            }
            loop {
                let buffer = match reader.fill_buf().await {
                    Ok(buffer) => buffer,
                    Err(error) => return Some((Err(error), (reader, pending, true))),
                };
                if buffer.is_empty() {
                    // End of the stream: what is left is the last record.
                    return (!pending.is_empty()).then(|| {
                        let record = String::from_utf8_lossy(&pending).into_owned();
                        (Ok(record), (reader, Vec::new(), true))
                    });
                }
                match buffer
                    .iter()
                    .position(|&byte| byte == b'\n' || byte == b'\r')
                {
                    Some(end) => {
                        pending.extend_from_slice(&buffer[..end]);
                        reader.consume_unpin(end + 1);
                        if !pending.is_empty() {
                            let record = String::from_utf8_lossy(&pending).into_owned();
                            pending.clear();
                            return Some((Ok(record), (reader, pending, false)));
                        }
                    }
                    None => {
                        let length = buffer.len();
                        pending.extend_from_slice(buffer);
                        reader.consume_unpin(length);
                    }
                }
            }
        },
    )
}

struct Attachment {
    pod: String,
    uid: String,
    lines: Lines,
    /// Lines read from this stream, including the ones skipped on a reconnect.
    read: usize,
    /// Lines already reported before a reconnect to the same pod.
    skip: usize,
}

struct Follower {
    pods: Api<Pod>,
    jobs: Api<MPIJob>,
    job_name: String,
    options: FollowOptions,
    attachment: Option<Attachment>,
    last_uid: Option<String>,
    /// Lines reported per pod UID, so a reconnect to the same pod does not repeat them.
    reported: HashMap<String, usize>,
    /// Pods whose log was read to its end after they terminated.
    exhausted: HashSet<String>,
    done: bool,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        .unwrap_or("Pending")
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

impl Follower {
    async fn next(&mut self) -> Option<Result<FollowEvent>> {
        while !self.done {
            let step = match self.attachment.as_mut() {
                Some(attachment) => match attachment.lines.next().await {
                    Some(Ok(line)) => {
                        attachment.read += 1;
                        if attachment.read <= attachment.skip {
                            continue;
                        }
                        Ok(Some(FollowEvent::Line(line)))
                    }
                    Some(Err(error)) => {
                        tracing::debug!(pod = attachment.pod, %error, "launcher log stream broke; reconnecting");
                        self.detach().await.map(|()| None)
                    }
                    None => self.detach().await.map(|()| None),
                },
                None => self.look().await,
            };
            match step {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
        None
    }

    async fn look(&mut self) -> Result<Option<FollowEvent>> {
        let launchers = launcher_pods(&self.pods, &self.job_name).await?;
        // Only the newest launcher counts: older ones are finished retries.
        let newest = launchers.into_iter().next();
        if let Some(pod) =
            newest.filter(|pod| !self.exhausted.contains(uid(pod)) && phase(pod) != "Pending")
        {
            return self.attach(pod).await;
        }
        let job = self
            .jobs
            .get_opt(&self.job_name)
            .await
            .map_err(|source| Error::GetMpiJob {
                name: self.job_name.clone(),
                namespace: namespace_of(&self.jobs),
                source: Box::new(source),
            })?;
        let Some(job) = job else {
            return Err(Error::MpiJobGone {
                name: self.job_name.clone(),
                namespace: namespace_of(&self.jobs),
            });
        };
        if let Some(outcome) = outcome(&job) {
            self.done = true;
            return Ok(Some(FollowEvent::Finished(outcome)));
        }
        tokio::time::sleep(self.options.poll_interval).await;
        Ok(None)
    }

    async fn attach(&mut self, pod: Pod) -> Result<Option<FollowEvent>> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pod_uid = uid(&pod).to_owned();
        let params = LogParams {
            follow: true,
            container: self.options.container.clone(),
            ..LogParams::default()
        };
        let reader = match self.pods.log_stream(&name, &params).await {
            Ok(reader) => reader,
            // Deleted between the list and the log request: look again.
            Err(error) if is_not_found(&error) => return Ok(None),
            // `400 container ... is waiting to start`: the container is not up yet.
            Err(kube::Error::Api(status)) if status.code == 400 => {
                tracing::debug!(
                    pod = name,
                    message = status.message,
                    "launcher log not readable yet"
                );
                tokio::time::sleep(self.options.poll_interval).await;
                return Ok(None);
            }
            Err(source) => {
                return Err(Error::ReadLauncherLog {
                    pod: name,
                    namespace: namespace_of(&self.pods),
                    source: Box::new(source),
                });
            }
        };
        let skip = self.reported.get(&pod_uid).copied().unwrap_or(0);
        tracing::debug!(
            pod = name,
            uid = pod_uid,
            skip,
            "following the launcher log"
        );
        self.attachment = Some(Attachment {
            pod: name.clone(),
            uid: pod_uid.clone(),
            lines: Box::pin(log_records(Box::pin(reader))),
            read: 0,
            skip,
        });
        let event = match self.last_uid.replace(pod_uid.clone()) {
            None => Some(FollowEvent::Attached {
                pod: name,
                uid: pod_uid,
            }),
            Some(previous_uid) if previous_uid != pod_uid => Some(FollowEvent::Reattached {
                pod: name,
                uid: pod_uid,
                previous_uid,
            }),
            Some(_) => None,
        };
        Ok(event)
    }

    /// Called when the attached stream ended: records what was reported, and whether the pod is
    /// done (terminated or gone) so that it is not followed again.
    async fn detach(&mut self) -> Result<()> {
        let Some(attachment) = self.attachment.take() else {
            return Ok(());
        };
        let reported = attachment.read.max(attachment.skip);
        self.reported.insert(attachment.uid.clone(), reported);
        let pod =
            self.pods
                .get_opt(&attachment.pod)
                .await
                .map_err(|source| Error::GetLauncher {
                    pod: attachment.pod.clone(),
                    namespace: namespace_of(&self.pods),
                    source: Box::new(source),
                })?;
        let finished = match &pod {
            None => true,
            Some(pod) => uid(pod) != attachment.uid || matches!(phase(pod), "Succeeded" | "Failed"),
        };
        if finished {
            self.exhausted.insert(attachment.uid);
        } else {
            tokio::time::sleep(self.options.poll_interval).await;
        }
        Ok(())
    }
}

/// Follows the job's launcher log: attaches to the newest launcher pod once it has started,
/// yields its lines, and when that pod ends and the operator starts a new launcher (new name, new
/// UID), re-attaches to the new one. Ends with [`FollowEvent::Finished`] once the job is finished
/// and the last launcher's log is read. A dropped log stream of a still-running pod is
/// reconnected without repeating lines.
///
/// The stream ends with an error when the job is deleted or the API fails. Bound it with a
/// timeout if the caller must not wait forever.
pub fn follow_launcher(
    pods: Api<Pod>,
    jobs: Api<MPIJob>,
    job_name: &str,
    options: FollowOptions,
) -> impl Stream<Item = Result<FollowEvent>> + Send {
    let follower = Follower {
        pods,
        jobs,
        job_name: job_name.to_owned(),
        options,
        attachment: None,
        last_uid: None,
        reported: HashMap::new(),
        exhausted: HashSet::new(),
        done: false,
    };
    futures::stream::unfold(follower, |mut follower| async move {
        let item = follower.next().await?;
        Some((item, follower))
    })
}
