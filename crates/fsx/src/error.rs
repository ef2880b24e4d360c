//! The crate's one error type.
//!
//! Variants are named by the operation that failed and carry its context (file-system id, name,
//! field). `Display` never repeats the source error; print the chain to see it.

use std::time::Duration;

/// Everything that can go wrong in `fsx`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name that would become a path component, a shell word or a Kubernetes name is unsafe.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        /// What the name is for, e.g. `launcher pod uid`.
        what: &'static str,
        /// The rejected name, with control characters escaped.
        name: String,
        /// Why it was rejected and what to use instead.
        reason: String,
    },
    /// A [`crate::FileSystemSpec`] field has a value FSx would reject.
    #[error("invalid file-system setting `{field}`: {reason}")]
    InvalidSpec {
        /// The field, e.g. `per_unit_storage_throughput`.
        field: &'static str,
        /// Why, with the valid values.
        reason: String,
    },
    /// A volume or claim capacity is out of range.
    #[error("invalid capacity {capacity_gib} GiB: {reason}")]
    InvalidCapacity {
        /// The requested capacity.
        capacity_gib: u32,
        /// Why it is out of range.
        reason: String,
    },
    /// The FSx API answered with something trnkit cannot use.
    #[error("unexpected FSx API answer: {reason}")]
    ReadFileSystem {
        /// What was missing.
        reason: &'static str,
    },
    /// `DescribeFileSystems` failed.
    #[error("could not describe FSx file systems{}; check the AWS credentials, region and fsx:DescribeFileSystems permission", .file_system_id.as_ref().map(|id| format!(" ({id})")).unwrap_or_default())]
    DescribeFileSystems {
        /// The file system asked for, if one was.
        file_system_id: Option<String>,
        /// The SDK's error.
        #[source]
        source: Box<aws_sdk_fsx::Error>,
    },
    /// `CreateFileSystem` failed.
    #[error("could not create the FSx for Lustre file system `{name}`")]
    CreateFileSystem {
        /// The spec's name.
        name: String,
        /// The SDK's error.
        #[source]
        source: Box<aws_sdk_fsx::Error>,
    },
    /// `DeleteFileSystem` failed.
    #[error("could not delete FSx file system {file_system_id}")]
    DeleteFileSystem {
        /// The file system.
        file_system_id: String,
        /// The SDK's error.
        #[source]
        source: Box<aws_sdk_fsx::Error>,
    },
    /// `CreateDataRepositoryAssociation` failed.
    #[error("could not link {s3_path} to FSx file system {file_system_id}")]
    AssociateDataRepository {
        /// The file system.
        file_system_id: String,
        /// The S3 URL.
        s3_path: String,
        /// The SDK's error.
        #[source]
        source: Box<aws_sdk_fsx::Error>,
    },
    /// The file system does not exist (any more).
    #[error("FSx file system {file_system_id} does not exist; check the id and the region")]
    FileSystemNotFound {
        /// The file system.
        file_system_id: String,
    },
    /// More than one file system carries trnkit's tag for this name.
    #[error(
        "{} FSx file systems are tagged trnkit:name={name} ({}); pass the one to use by id, or delete the others",
        .file_system_ids.len(),
        .file_system_ids.join(", ")
    )]
    AmbiguousFileSystems {
        /// The name.
        name: String,
        /// The matching file systems.
        file_system_ids: Vec<String>,
    },
    /// The file system reached a state it will not become available from.
    #[error(
        "FSx file system {file_system_id} is {lifecycle}: {message}; fix the cause (subnet, security group, quota), \
         delete it with `cargo xtask fsx delete --yes`, and create it again"
    )]
    FileSystemFailed {
        /// The file system.
        file_system_id: String,
        /// The lifecycle, e.g. `FAILED`.
        lifecycle: String,
        /// FSx's failure message.
        message: String,
    },
    /// The file system did not become available in time.
    #[error(
        "FSx file system {file_system_id} is still {lifecycle} after {}; it may still finish: run the command again to keep waiting",
        humanize(*.waited)
    )]
    WaitTimedOut {
        /// The file system.
        file_system_id: String,
        /// The last lifecycle seen (`unknown` when the API reports none).
        lifecycle: String,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// The file system has no DNS name to mount.
    #[error("FSx file system {file_system_id} reports no DNS name; wait until it is AVAILABLE")]
    MissingDnsName {
        /// The file system.
        file_system_id: String,
    },
    /// The file system has no Lustre mount name.
    #[error(
        "FSx file system {file_system_id} reports no Lustre mount name (lifecycle {lifecycle}); wait until it is \
         AVAILABLE. (moto, the test stand-in, never reports one: tests set it themselves)"
    )]
    MissingMountName {
        /// The file system.
        file_system_id: String,
        /// Its lifecycle, `unknown` when not reported.
        lifecycle: String,
    },
}

fn humanize(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `Ok` when `reason` is `None`, else [`Error::InvalidName`] for `name` (escaped).
    pub(crate) fn check_name(what: &'static str, name: &str, reason: Option<String>) -> Result<()> {
        match reason {
            None => Ok(()),
            Some(reason) => Err(Self::InvalidName {
                what,
                name: name.escape_debug().to_string(),
                reason,
            }),
        }
    }
}
