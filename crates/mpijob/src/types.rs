//! The `kubeflow.org/v2beta1` MPIJob API as Rust types.
//!
//! Field names and JSON spellings follow `pkg/apis/kubeflow/v2beta1/types.go` of the MPI
//! Operator and the CRD in `schema/kubeflow.org_mpijobs.yaml`. Every optional field is an
//! `Option` that is left out of the JSON when unset, so a document read from the cluster
//! round-trips unchanged.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The key of the launcher in `mpiReplicaSpecs`.
pub const LAUNCHER: &str = "Launcher";
/// The key of the workers in `mpiReplicaSpecs`.
pub const WORKER: &str = "Worker";

/// The desired state of an MPIJob.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kubeflow.org",
    version = "v2beta1",
    kind = "MPIJob",
    plural = "mpijobs",
    singular = "mpijob",
    namespaced,
    status = "MPIJobStatus",
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct MPIJobSpec {
    /// Slots per worker in the hostfile (the operator defaults it to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_per_worker: Option<i32>,
    /// Whether the launcher is also listed in the hostfile as a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_launcher_as_worker: Option<bool>,
    /// Clean-up, retry and scheduling policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_policy: Option<RunPolicy>,
    /// The replicas by type: [`LAUNCHER`] (exactly one) and [`WORKER`].
    pub mpi_replica_specs: BTreeMap<String, ReplicaSpec>,
    /// Where the generated SSH Secret is mounted (the operator defaults it to `/root/.ssh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_auth_mount_path: Option<String>,
    /// When the launcher Job is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher_creation_policy: Option<LauncherCreationPolicy>,
    /// The MPI implementation of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpi_implementation: Option<MPIImplementation>,
}

/// `spec.runPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    /// Which pods to delete when the job finishes (the operator's default is `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_pod_policy: Option<CleanPodPolicy>,
    /// Seconds after which a finished job is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Seconds the launcher Job may run before it is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// Launcher retries before the job is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    /// Gang-scheduling settings (used with the operator's `--gang-scheduling` flag only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_policy: Option<SchedulingPolicy>,
    /// Suspends the job (Kueue style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// The controller that manages the job (`kubeflow.org/mpi-operator` or
    /// `kueue.x-k8s.io/multikueue`); immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// `spec.runPolicy.schedulingPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingPolicy {
    /// Minimum number of pods that must be schedulable together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<i32>,
    /// The scheduler queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Minimum resources for the gang.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_resources: Option<BTreeMap<String, Quantity>>,
    /// The PodGroup's priority class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    /// How long the gang may wait to be scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_timeout_seconds: Option<i32>,
}

/// One entry of `spec.mpiReplicaSpecs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    /// Number of pods (the launcher must have exactly 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The pod template; `containers[0]` is the MPI container.
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// Restart policy; the v2 controller accepts only `Never` and `OnFailure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
}

/// `runPolicy.cleanPodPolicy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanPodPolicy {
    /// Keep every pod.
    None,
    /// Delete the pods still running when the job finishes (the blueprint's choice).
    Running,
    /// Delete every pod (the operator keeps the launcher pod anyway, issue #643).
    All,
}

/// `spec.launcherCreationPolicy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LauncherCreationPolicy {
    /// Create the launcher together with the workers (the operator's default).
    AtStartup,
    /// Create the launcher only once every worker is Ready (operator v0.5.0 and later).
    WaitForWorkersReady,
}

/// `spec.mpiImplementation`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MPIImplementation {
    /// Open MPI (the operator's default, and what the Neuron images ship).
    OpenMPI,
    /// Intel MPI.
    Intel,
    /// MPICH.
    #[serde(rename = "MPICH")]
    Mpich,
}

/// `mpiReplicaSpecs.*.restartPolicy`.
///
/// The API type allows all four values; the v2 controller's validation accepts only `Never`
/// and `OnFailure`, which `validate` enforces.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Always restart.
    Always,
    /// Restart on failure (the operator's default for the launcher).
    OnFailure,
    /// Never restart (the operator's default for workers).
    Never,
    /// Restart depending on the exit code.
    ExitCode,
}

/// The observed state of an MPIJob (`status`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MPIJobStatus {
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<JobCondition>>,
    /// Pod counts by replica type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_statuses: Option<BTreeMap<String, ReplicaStatus>>,
    /// When the controller first saw the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// When the controller last reconciled the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_time: Option<Time>,
}

/// One entry of `status.conditions`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobCondition {
    /// `Created`, `Running`, `Restarting`, `Succeeded`, `Suspended` or `Failed`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A machine-readable reason, such as `BackoffLimitExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the condition was last updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// When the condition last changed status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// One entry of `status.replicaStatuses`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Running pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<i32>,
    /// Pods that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<i32>,
    /// Pods that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<i32>,
    /// Deprecated label selector of the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// The label selector of the replicas, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

impl MPIJobStatus {
    /// The condition of the given type, if the controller has set it.
    pub fn condition(&self, type_: &str) -> Option<&JobCondition> {
        self.conditions
            .iter()
            .flatten()
            .find(|condition| condition.type_ == type_)
    }

    /// Whether the condition of the given type is `True`.
    pub fn is(&self, type_: &str) -> bool {
        self.condition(type_)
            .is_some_and(|condition| condition.status == "True")
    }

    /// `Succeeded` or `Failed` is `True`: the job will not change any more.
    pub fn is_terminal(&self) -> bool {
        self.is("Succeeded") || self.is("Failed")
    }
}
