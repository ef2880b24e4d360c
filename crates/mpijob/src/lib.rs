//! Typed Kubeflow MPIJobs (`kubeflow.org/v2beta1`) for AWS Trainium: the API types, a builder,
//! the Llama-2 presets of the data-on-eks blueprint, and validation.
//!
//! What it does:
//! - [`MPIJob`] and friends mirror the MPI Operator's v2beta1 API (spec and status); every
//!   field of the CRD round-trips through them.
//! - [`TrainiumJobConfig`] + [`build`] make a job of N workers x Neuron devices x EFA
//!   interfaces, with `mpirun -np` derived from workers x slots and every default written out.
//! - [`llama2`] holds the blueprint's compile and train jobs.
//! - [`validate()`] checks the operator's rules, the names it derives, values that reach a
//!   remote shell, and the CRD's OpenAPI schema with unknown fields rejected, reporting every
//!   problem at once with its field path. Two CRDs are embedded ([`OperatorCrd`]: v0.4.0, what
//!   the blueprint installs, and v0.8.2); a job is built for one of them and carries only the
//!   fields it declares, and [`CrdSchema`] checks a job against the CRD a cluster serves.
//!
//! What it does not do: it knows nothing of FSx, ECR or datasets (paths and image references
//! come in as plain strings), and it neither prints nor reads the environment. Talking to a
//! cluster lives in `io`, which takes a `kube::Client`.
//!
//! ```
//! use mpijob::{Mpirun, TrainiumJobConfig, build};
//!
//! let mut mpirun = Mpirun::new("./train.sh");
//! mpirun.forward_env = vec!["PATH".into()];
//! let mut config = TrainiumJobConfig::new("demo", "example.com/train:v1", 2, mpirun);
//! config.neuron_devices_per_worker = 16;
//! let job = build(&config).expect("a valid job");
//! let launcher = &job.spec.mpi_replica_specs["Launcher"];
//! let command = launcher.template.spec.as_ref().unwrap().containers[0].command.clone().unwrap();
//! assert_eq!(command[..4], ["mpirun", "--allow-run-as-root", "-np", "2"]);
//!
//! config.workers = 0;
//! let error = build(&config).unwrap_err();
//! assert!(error.to_string().contains("spec.mpiReplicaSpecs.Worker.replicas"));
//! ```

#![warn(missing_docs)]

pub mod builder;
pub mod error;
pub mod io;
pub mod llama2;
pub mod mpirun;
pub mod names;
pub mod schema;
pub mod types;
pub mod validate;

pub use builder::{
    ImagePullPolicy, LauncherGate, SharedVolume, TrainiumJobConfig, build, env, env_from_field,
};
pub use error::{Error, Problem, Problems, Result};
pub use mpirun::Mpirun;
pub use schema::{CrdSchema, OperatorCrd};
pub use types::{
    CleanPodPolicy, JobCondition, LauncherCreationPolicy, MPIImplementation, MPIJob, MPIJobSpec,
    MPIJobStatus, ReplicaSpec, ReplicaStatus, RestartPolicy, RunPolicy, SchedulingPolicy,
};
pub use validate::{validate, validate_for};

#[cfg(test)]
mod tests;
