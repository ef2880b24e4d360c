//! A builder for MPIJobs on Trainium: workers x Neuron devices x EFA interfaces.
//!
//! [`TrainiumJobConfig`] holds every choice; [`build`] turns it into an [`MPIJob`] with every
//! default written out (nothing is left to server-side defaulting) and validates the result,
//! so an invalid configuration never yields an object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, ResourceRequirements, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::mpirun::Mpirun;
use crate::schema::OperatorCrd;
use crate::types::{
    CleanPodPolicy, LAUNCHER, LauncherCreationPolicy, MPIImplementation, MPIJob, MPIJobSpec,
    ReplicaSpec, RestartPolicy, RunPolicy, WORKER,
};
use crate::{Result, validate};

/// The extended resource of Neuron devices (16 per trn1.32xlarge).
pub const NEURON_RESOURCE: &str = "aws.amazon.com/neuron";
/// The extended resource of EFA interfaces (8 per trn1.32xlarge).
pub const EFA_RESOURCE: &str = "vpc.amazonaws.com/efa";
/// Where the MPI Operator mounts the job's ConfigMap (hostfile, `discover_hosts.sh`).
pub const MPI_CONFIG_MOUNT: &str = "/etc/mpi";
/// The volume name the MPI Operator gives that ConfigMap.
pub const MPI_CONFIG_VOLUME: &str = "mpi-job-config";
/// The volume name the MPI Operator gives the SSH Secret.
pub const SSH_AUTH_VOLUME: &str = "ssh-auth";
/// The default SSH mount path (the only one the operator mounts with mode 0600).
pub const SSH_AUTH_MOUNT: &str = "/root/.ssh";
/// The pod annotation that keeps Karpenter from evicting a pod to consolidate or drift its node.
pub const DO_NOT_DISRUPT_ANNOTATION: &str = "karpenter.sh/do-not-disrupt";
/// The name of the init container that gates the launcher on operators before v0.5.
pub const WAIT_FOR_WORKERS_CONTAINER: &str = "wait-hostfilename";

/// How the launcher waits for the workers before `mpirun` starts.
///
/// Without a gate the launcher may start before the workers' DNS names resolve, and `mpirun`
/// fails with `ssh: Could not resolve hostname` (mpi-operator issues #386, #481).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LauncherGate {
    /// `launcherCreationPolicy: WaitForWorkersReady`: the operator creates the launcher only
    /// when every worker is Ready. Needs MPI Operator v0.5.0 or later.
    WaitForWorkersReady,
    /// The blueprint's init container, for v0.4 operators: it waits until every expected worker
    /// is listed by `/etc/mpi/discover_hosts.sh` and answers over SSH. (The blueprint's own
    /// script opened the gate as soon as one worker ran.)
    InitContainer,
}

/// `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImagePullPolicy {
    /// Always pull (the blueprint's choice, for a moving `:latest` tag).
    Always,
    /// Pull when the node does not have the image (right for content-addressed tags).
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// A PersistentVolumeClaim mounted into the workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedVolume {
    /// The claim, such as `fsx-claim`.
    pub claim_name: String,
    /// Where it is mounted, such as `/shared`.
    pub mount_path: String,
    /// The volume's name inside the pod.
    pub volume_name: String,
}

/// Every choice that shapes a Trainium MPIJob.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainiumJobConfig {
    /// The MPIJob's name; the operator derives pod, service and job names from it.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// Labels put on the MPIJob and its pods.
    pub labels: BTreeMap<String, String>,
    /// The image of the launcher, the workers and the init container.
    pub image: String,
    /// When to pull it.
    pub image_pull_policy: ImagePullPolicy,
    /// The name of the MPI container (`containers[0]`).
    pub container_name: String,
    /// Number of worker pods (trn1.32xlarge nodes).
    pub workers: i32,
    /// Slots per worker in the hostfile; `mpirun -np` is workers x slots.
    pub slots_per_worker: i32,
    /// `aws.amazon.com/neuron` per worker, as request and limit.
    pub neuron_devices_per_worker: u32,
    /// `vpc.amazonaws.com/efa` per worker, as request and limit.
    pub efa_interfaces_per_worker: u32,
    /// The launcher's command.
    pub mpirun: Mpirun,
    /// The launcher container's environment.
    pub launcher_env: Vec<EnvVar>,
    /// The workers' container environment.
    pub worker_env: Vec<EnvVar>,
    /// The shared file system, mounted on the workers.
    pub shared_volume: Option<SharedVolume>,
    /// A memory-backed `emptyDir` at `/dev/shm` on the workers (PyTorch data loaders need more
    /// than the container runtime's 64 MiB).
    pub memory_backed_shm: bool,
    /// Launcher retries (`runPolicy.backoffLimit`).
    pub backoff_limit: Option<i32>,
    /// `runPolicy.cleanPodPolicy`.
    pub clean_pod_policy: CleanPodPolicy,
    /// `runPolicy.ttlSecondsAfterFinished`.
    pub ttl_seconds_after_finished: Option<i32>,
    /// `runPolicy.activeDeadlineSeconds`.
    pub active_deadline_seconds: Option<i64>,
    /// How the launcher waits for the workers.
    pub launcher_gate: LauncherGate,
    /// Node selector of the workers.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the workers.
    pub tolerations: Vec<Toleration>,
    /// Priority class of the launcher and the workers.
    pub priority_class: Option<String>,
    /// Annotations put on the launcher's and the workers' pods (such as
    /// `karpenter.sh/do-not-disrupt: "true"`).
    pub pod_annotations: BTreeMap<String, String>,
    /// The CRD of the operator the job is for: the job carries only the fields it declares
    /// (`launcherCreationPolicy` and `runLauncherAsWorker` are left out for v0.4.0) and
    /// [`build`] validates against it.
    pub operator_crd: OperatorCrd,
}

impl TrainiumJobConfig {
    /// A configuration with the blueprint's shape: one rank per trn1.32xlarge (16 Neuron
    /// devices, 8 EFA interfaces), launcher retries 20, `cleanPodPolicy: Running`,
    /// `imagePullPolicy: Always`, container `mpitest`, memory-backed `/dev/shm`, and the
    /// `WaitForWorkersReady` gate.
    pub fn new(
        name: impl Into<String>,
        image: impl Into<String>,
        workers: i32,
        mpirun: Mpirun,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: "default".to_owned(),
            labels: BTreeMap::new(),
            image: image.into(),
            image_pull_policy: ImagePullPolicy::Always,
            container_name: "mpitest".to_owned(),
            workers,
            slots_per_worker: 1,
            neuron_devices_per_worker: 16,
            efa_interfaces_per_worker: 8,
            mpirun,
            launcher_env: Vec::new(),
            worker_env: Vec::new(),
            shared_volume: None,
            memory_backed_shm: true,
            backoff_limit: Some(20),
            clean_pod_policy: CleanPodPolicy::Running,
            ttl_seconds_after_finished: None,
            active_deadline_seconds: None,
            launcher_gate: LauncherGate::WaitForWorkersReady,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            priority_class: None,
            pod_annotations: BTreeMap::new(),
            operator_crd: OperatorCrd::default(),
        }
    }

    /// The number of MPI processes: workers x slots per worker.
    pub fn processes(&self) -> i32 {
        self.workers.saturating_mul(self.slots_per_worker)
    }
}

/// An environment variable with a literal value.
pub fn env(name: impl Into<String>, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An environment variable read from a field of the pod itself (the downward API), such as
/// `metadata.uid`.
pub fn env_from_field(name: impl Into<String>, field_path: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// Builds the MPIJob and validates it (the operator's rules, names, values and the schema of
/// `config.operator_crd`).
pub fn build(config: &TrainiumJobConfig) -> Result<MPIJob> {
    let job = render(config);
    validate::validate_for(&job, config.operator_crd)?;
    Ok(job)
}

/// Builds the MPIJob without validating it. Prefer [`build`]; this exists so that tests and
/// tools can look at what an invalid configuration would produce.
pub fn render(config: &TrainiumJobConfig) -> MPIJob {
    let mut replica_specs = BTreeMap::new();
    replica_specs.insert(LAUNCHER.to_owned(), launcher(config));
    replica_specs.insert(WORKER.to_owned(), worker(config));
    // Only fields the operator's CRD declares are sent: a server-side apply carrying an
    // undeclared field is refused. The init-container gate needs no policy, and the defaults
    // (`AtStartup`, launcher not a worker) are written out only where the CRD knows them.
    let crd = config.operator_crd;
    let launcher_creation_policy = match config.launcher_gate {
        LauncherGate::WaitForWorkersReady => Some(LauncherCreationPolicy::WaitForWorkersReady),
        LauncherGate::InitContainer => crd
            .declares_spec_field("launcherCreationPolicy")
            .then_some(LauncherCreationPolicy::AtStartup),
    };
    let spec = MPIJobSpec {
        slots_per_worker: Some(config.slots_per_worker),
        run_launcher_as_worker: crd
            .declares_spec_field("runLauncherAsWorker")
            .then_some(false),
        run_policy: Some(RunPolicy {
            clean_pod_policy: Some(config.clean_pod_policy),
            ttl_seconds_after_finished: config.ttl_seconds_after_finished,
            active_deadline_seconds: config.active_deadline_seconds,
            backoff_limit: config.backoff_limit,
            scheduling_policy: None,
            suspend: Some(false),
            managed_by: None,
        }),
        mpi_replica_specs: replica_specs,
        ssh_auth_mount_path: Some(SSH_AUTH_MOUNT.to_owned()),
        launcher_creation_policy,
        mpi_implementation: Some(MPIImplementation::OpenMPI),
    };
    let mut job = MPIJob::new(&config.name, spec);
    job.metadata.namespace = Some(config.namespace.clone());
    if !config.labels.is_empty() {
        job.metadata.labels = Some(config.labels.clone());
    }
    job
}

fn pod_metadata(config: &TrainiumJobConfig) -> Option<ObjectMeta> {
    let labels = (!config.labels.is_empty()).then(|| config.labels.clone());
    let annotations = (!config.pod_annotations.is_empty()).then(|| config.pod_annotations.clone());
    (labels.is_some() || annotations.is_some()).then(|| ObjectMeta {
        labels,
        annotations,
        ..Default::default()
    })
}

fn launcher(config: &TrainiumJobConfig) -> ReplicaSpec {
    let container = Container {
        name: config.container_name.clone(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(config.image_pull_policy.as_str().to_owned()),
        command: Some(config.mpirun.argv(config.processes())),
        env: (!config.launcher_env.is_empty()).then(|| config.launcher_env.clone()),
        ..Default::default()
    };
    let init_containers = match config.launcher_gate {
        LauncherGate::WaitForWorkersReady => None,
        LauncherGate::InitContainer => Some(vec![Container {
            name: WAIT_FOR_WORKERS_CONTAINER.to_owned(),
            image: Some(config.image.clone()),
            image_pull_policy: Some(config.image_pull_policy.as_str().to_owned()),
            command: Some(vec![
                "bash".to_owned(),
                "-c".to_owned(),
                wait_for_workers_script(config.workers),
            ]),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: MPI_CONFIG_VOLUME.to_owned(),
                    mount_path: MPI_CONFIG_MOUNT.to_owned(),
                    ..Default::default()
                },
                VolumeMount {
                    name: SSH_AUTH_VOLUME.to_owned(),
                    mount_path: SSH_AUTH_MOUNT.to_owned(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }]),
    };
    ReplicaSpec {
        replicas: Some(1),
        restart_policy: Some(RestartPolicy::OnFailure),
        template: PodTemplateSpec {
            metadata: pod_metadata(config),
            spec: Some(PodSpec {
                containers: vec![container],
                init_containers,
                priority_class_name: config.priority_class.clone(),
                ..Default::default()
            }),
        },
    }
}

fn worker(config: &TrainiumJobConfig) -> ReplicaSpec {
    let devices: BTreeMap<String, Quantity> = [
        (
            NEURON_RESOURCE.to_owned(),
            Quantity(config.neuron_devices_per_worker.to_string()),
        ),
        (
            EFA_RESOURCE.to_owned(),
            Quantity(config.efa_interfaces_per_worker.to_string()),
        ),
    ]
    .into_iter()
    .collect();
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(shared) = &config.shared_volume {
        volumes.push(Volume {
            name: shared.volume_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: shared.claim_name.clone(),
                read_only: None,
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: shared.volume_name.clone(),
            mount_path: shared.mount_path.clone(),
            ..Default::default()
        });
    }
    if config.memory_backed_shm {
        volumes.push(Volume {
            name: "dshm".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: None,
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "dshm".to_owned(),
            mount_path: "/dev/shm".to_owned(),
            ..Default::default()
        });
    }
    let container = Container {
        name: config.container_name.clone(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(config.image_pull_policy.as_str().to_owned()),
        env: (!config.worker_env.is_empty()).then(|| config.worker_env.clone()),
        resources: Some(ResourceRequirements {
            limits: Some(devices.clone()),
            requests: Some(devices),
            ..Default::default()
        }),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    };
    ReplicaSpec {
        replicas: Some(config.workers),
        restart_policy: Some(RestartPolicy::Never),
        template: PodTemplateSpec {
            metadata: pod_metadata(config),
            spec: Some(PodSpec {
                containers: vec![container],
                volumes: (!volumes.is_empty()).then_some(volumes),
                node_selector: (!config.node_selector.is_empty())
                    .then(|| config.node_selector.clone()),
                tolerations: (!config.tolerations.is_empty()).then(|| config.tolerations.clone()),
                priority_class_name: config.priority_class.clone(),
                ..Default::default()
            }),
        },
    }
}

/// The init container's script: wait until `discover_hosts.sh` lists every expected worker,
/// then until each answers over SSH. Only the worker count is interpolated, as a number.
fn wait_for_workers_script(workers: i32) -> String {
    format!(
        r#"set -u
expected={workers}
while true; do
  running=$(/etc/mpi/discover_hosts.sh | wc -l)
  if [ "$running" -ge "$expected" ]; then break; fi
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) waiting for workers: $running of $expected running"
  sleep 10
done
for host in $(/etc/mpi/discover_hosts.sh); do
  until ssh -o ConnectTimeout=5 "$host" true; do
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) waiting for sshd on $host"
    sleep 10
  done
  echo "worker $host is ready"
done
"#
    )
}
