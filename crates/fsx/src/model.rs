//! What trnkit knows about an existing file system: [`FileSystem`], read from the FSx API.
//!
//! The SDK's `FileSystem` is wide and almost every field is optional. [`FileSystem`] keeps the
//! facts the workflow uses (id, lifecycle, DNS name, Lustre mount name, capacity, tags), keeps
//! them optional where the API may omit them (moto never reports `Lifecycle` or `MountName`), and
//! serializes to the stable JSON that `cargo xtask fsx describe --output json` prints.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The lifecycle of a file system, as the FSx API reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Lifecycle {
    /// Ready to mount.
    Available,
    /// Being created; FSx for Lustre takes about 5 to 15 minutes.
    Creating,
    /// Being deleted.
    Deleting,
    /// Creation failed; the file system's failure details say why.
    Failed,
    /// Reachable but misconfigured (for example, an Active Directory setting).
    Misconfigured,
    /// Unreachable because of a misconfiguration.
    MisconfiguredUnavailable,
    /// An update is in progress; the file system stays mountable.
    Updating,
    /// A value this version of trnkit does not know.
    #[serde(untagged)]
    Other(String),
}

impl Lifecycle {
    /// The API's spelling, e.g. `AVAILABLE`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Creating => "CREATING",
            Self::Deleting => "DELETING",
            Self::Failed => "FAILED",
            Self::Misconfigured => "MISCONFIGURED",
            Self::MisconfiguredUnavailable => "MISCONFIGURED_UNAVAILABLE",
            Self::Updating => "UPDATING",
            Self::Other(other) => other,
        }
    }

    /// Parses the API's spelling; unknown values become [`Lifecycle::Other`].
    pub fn parse(value: &str) -> Self {
        match value {
            "AVAILABLE" => Self::Available,
            "CREATING" => Self::Creating,
            "DELETING" => Self::Deleting,
            "FAILED" => Self::Failed,
            "MISCONFIGURED" => Self::Misconfigured,
            "MISCONFIGURED_UNAVAILABLE" => Self::MisconfiguredUnavailable,
            "UPDATING" => Self::Updating,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether pods can mount the file system in this state.
    pub fn is_mountable(&self) -> bool {
        matches!(self, Self::Available | Self::Updating)
    }

    /// Whether the file system will never become available from this state.
    pub fn is_terminal_failure(&self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Deleting | Self::MisconfiguredUnavailable
        )
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The facts about one FSx for Lustre file system that trnkit uses.
///
/// Fields that the API may leave out are `Option`s. In particular, moto (the test stand-in)
/// reports neither `lifecycle` nor `mount_name`; real FSx always reports both once the file
/// system is `AVAILABLE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSystem {
    /// `FileSystemId`, e.g. `fs-0199e5a63bd90f796`: the CSI volume handle.
    pub file_system_id: String,
    /// `Lifecycle`; `None` when the API does not say.
    pub lifecycle: Option<Lifecycle>,
    /// `DNSName`, e.g. `fs-0199e5a63bd90f796.fsx.us-west-2.amazonaws.com`.
    pub dns_name: Option<String>,
    /// `LustreConfiguration.MountName`: `fsx` for SCRATCH_1, otherwise 8 random characters.
    pub mount_name: Option<String>,
    /// `StorageCapacity`, in GiB.
    pub storage_capacity_gib: Option<u32>,
    /// `LustreConfiguration.DeploymentType`, e.g. `PERSISTENT_1`.
    pub deployment_type: Option<String>,
    /// `LustreConfiguration.PerUnitStorageThroughput`, in MB/s/TiB.
    pub per_unit_storage_throughput: Option<u32>,
    /// `FileSystemTypeVersion`, the Lustre version, e.g. `2.12`.
    pub lustre_version: Option<String>,
    /// `SubnetIds`.
    pub subnet_ids: Vec<String>,
    /// `VpcId`.
    pub vpc_id: Option<String>,
    /// `ResourceARN`.
    pub resource_arn: Option<String>,
    /// `FailureDetails.Message`, set when creation failed.
    pub failure_message: Option<String>,
    /// `Tags`, sorted by key.
    pub tags: BTreeMap<String, String>,
}

impl FileSystem {
    /// Reads the facts out of the SDK's description of a file system.
    pub fn from_sdk(file_system: &aws_sdk_fsx::types::FileSystem) -> Result<Self> {
        let file_system_id = file_system
            .file_system_id()
            .ok_or(Error::ReadFileSystem {
                reason: "the API returned a file system without an id",
            })?
            .to_owned();
        let lustre = file_system.lustre_configuration();
        Ok(Self {
            file_system_id,
            lifecycle: file_system
                .lifecycle()
                .map(|lifecycle| Lifecycle::parse(lifecycle.as_str())),
            dns_name: file_system.dns_name().map(str::to_owned),
            mount_name: lustre
                .and_then(|lustre| lustre.mount_name())
                .map(str::to_owned),
            storage_capacity_gib: file_system
                .storage_capacity()
                .and_then(|gib| u32::try_from(gib).ok()),
            deployment_type: lustre
                .and_then(|lustre| lustre.deployment_type())
                .map(|deployment| deployment.as_str().to_owned()),
            per_unit_storage_throughput: lustre
                .and_then(|lustre| lustre.per_unit_storage_throughput())
                .and_then(|throughput| u32::try_from(throughput).ok()),
            lustre_version: file_system.file_system_type_version().map(str::to_owned),
            subnet_ids: file_system.subnet_ids().to_vec(),
            vpc_id: file_system.vpc_id().map(str::to_owned),
            resource_arn: file_system.resource_arn().map(str::to_owned),
            failure_message: file_system
                .failure_details()
                .and_then(|details| details.message())
                .map(str::to_owned),
            tags: file_system
                .tags()
                .iter()
                .filter_map(|tag| {
                    Some((
                        tag.key()?.to_owned(),
                        tag.value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
        })
    }

    /// The value of tag `key`, if the file system has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The lifecycle for messages: `unknown` when the API did not report one.
    pub fn lifecycle_label(&self) -> &str {
        self.lifecycle.as_ref().map_or("unknown", Lifecycle::as_str)
    }
}
