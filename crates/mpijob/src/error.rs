//! The crate's error type, and the list of problems that validation reports at once.

use std::fmt;

/// One problem found by validation: the field path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// A JSON-pointer-like path such as `spec.mpiReplicaSpecs.Worker.replicas`.
    pub path: String,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one object, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Validation found problems; all of them are listed.
    #[error("MPIJob {name} is invalid ({count} problem(s)):\n{problems}", count = problems.0.len())]
    Invalid {
        /// The job's name.
        name: String,
        /// Every problem found.
        problems: Problems,
    },
    /// The MPIJob could not be turned into JSON for schema validation.
    #[error("cannot serialize MPIJob {name}")]
    Serialize {
        /// The job's name.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    // Variants of the cluster IO in `io` (owned by the io module's author).
    /// The server-side apply of the job was refused or failed.
    #[error(
        "cannot apply MPIJob {namespace}/{name}; check that the MPI Operator's CRD mpijobs.kubeflow.org is installed and that you may write MPIJobs in {namespace}"
    )]
    ApplyMpiJob {
        /// The job's name.
        name: String,
        /// The job's namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Reading the job failed.
    #[error("cannot read MPIJob {namespace}/{name}")]
    GetMpiJob {
        /// The job's name.
        name: String,
        /// The job's namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Watching the job for its outcome failed.
    #[error("cannot watch MPIJob {namespace}/{name} for its outcome")]
    WatchMpiJob {
        /// The job's name.
        name: String,
        /// The job's namespace.
        namespace: String,
        /// The watch error.
        #[source]
        source: Box<kube::runtime::wait::Error>,
    },
    /// The job did not finish in time.
    #[error("MPIJob {namespace}/{name} did not finish within {}; see `kubectl describe mpijob -n {namespace} {name}`, or raise the timeout", humantime::format_duration(*timeout))]
    WaitTimeout {
        /// The job's name.
        name: String,
        /// The job's namespace.
        namespace: String,
        /// How long was waited.
        timeout: std::time::Duration,
    },
    /// The job was deleted (or never created) while waiting for it.
    #[error(
        "MPIJob {namespace}/{name} does not exist (deleted while waiting?); apply it again to rerun"
    )]
    MpiJobGone {
        /// The job's name.
        name: String,
        /// The job's namespace.
        namespace: String,
    },
    /// Listing the job's launcher pods failed.
    #[error("cannot list the launcher pods of MPIJob {namespace}/{job}")]
    ListLaunchers {
        /// The job's name.
        job: String,
        /// The job's namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Reading a launcher pod failed.
    #[error("cannot read launcher pod {namespace}/{pod}")]
    GetLauncher {
        /// The pod's name.
        pod: String,
        /// The pod's namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Reading a launcher pod's log failed.
    #[error("cannot read the log of launcher pod {namespace}/{pod}")]
    ReadLauncherLog {
        /// The pod's name.
        pod: String,
        /// The pod's namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Deleting the job failed.
    #[error("cannot delete MPIJob {namespace}/{name}")]
    DeleteMpiJob {
        /// The job's name.
        name: String,
        /// The job's namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
