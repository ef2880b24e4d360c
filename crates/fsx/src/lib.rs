//! FSx for Lustre for trnkit: the shared file system, its Kubernetes objects, and its layout.
//!
//! Every step of the blueprint meets on one FSx for Lustre file system mounted at `/shared`
//! (tokenizer, dataset, training code, Neuron compile cache, experiment logs). In the blueprint
//! it appears as a side effect of a PersistentVolumeClaim; here it is created, found again,
//! waited for and deleted explicitly, and mounted through a static PersistentVolume.
//!
//! # What it does
//!
//! - [`layout`]: [`SharedLayout`], the typed directory tree of `/shared`: the **only** place in
//!   the workspace where a `/shared` path is spelled.
//! - [`spec`]: [`FileSystemSpec`], what to create, defaulting to the blueprint's StorageClass
//!   values ([`FileSystemSpec::blueprint`]), validated before any API call.
//! - [`model`]: [`FileSystem`], the facts read back from the API.
//! - [`csi`]: pure builders of the CSI driver's objects: a static PersistentVolume plus bound
//!   claim ([`csi::static_volume`]), or the blueprint's dynamic StorageClass `fsx` and claim
//!   `fsx-claim` ([`csi::storage_class`], [`csi::dynamic_claim`]); and whether a StorageClass
//!   that already exists can serve in place of trnkit's ([`csi::compare_storage_classes`]).
//! - [`io`]: the FSx API calls — create, adopt by id or tag, describe, a bounded wait for
//!   `AVAILABLE`, delete — taking an `aws_sdk_fsx::Client` as argument.
//!
//! # What it does not do
//!
//! It builds no AWS or Kubernetes client, applies nothing to a cluster, reads no environment
//! variable, prints nothing and asks no questions (deletion is confirmed by the caller). It has
//! no EC2 client: network facts come in as data. It depends on no other trnkit crate.
//!
//! # Example
//!
//! ```
//! use fsx::{FileSystemSpec, SharedLayout, csi};
//!
//! let layout = SharedLayout::in_cluster();
//! assert_eq!(layout.rank_log("0f1e", 0)?.to_str(), Some("/shared/nemo_experiments/0f1e/0/log"));
//!
//! let spec = FileSystemSpec::blueprint("trnkit", "subnet-0abc", &["sg-0def"]);
//! spec.validate()?;
//! let class = csi::storage_class(&spec, csi::BLUEPRINT_STORAGE_CLASS, csi::ReclaimPolicy::Retain)?;
//! assert_eq!(class.provisioner, "fsx.csi.aws.com");
//!
//! let mut file_system = fsx::FileSystem::from_sdk(
//!     &aws_sdk_fsx::types::FileSystem::builder()
//!         .file_system_id("fs-0199e5a63bd90f796")
//!         .dns_name("fs-0199e5a63bd90f796.fsx.us-west-2.amazonaws.com")
//!         .storage_capacity(1200)
//!         .build(),
//! )?;
//! file_system.mount_name = Some("abcdefgh".to_owned());
//! let (volume, claim) = fsx::static_volume(&file_system, "fsx-claim", "default", 1200)?;
//! assert_eq!(claim.spec.unwrap().volume_name, volume.metadata.name);
//! # Ok::<(), fsx::Error>(())
//! ```

#![warn(missing_docs)]

pub mod csi;
mod error;
pub mod io;
pub mod layout;
pub mod model;
pub mod spec;

/// The AWS SDK for FSx, re-exported so that callers build the client with the same version.
pub use aws_sdk_fsx;
pub use csi::static_volume;
pub use error::{Error, Result};
pub use layout::{SharedLayout, validate_component};
pub use model::{FileSystem, Lifecycle};
pub use spec::{DeploymentType, FileSystemSpec};

#[cfg(test)]
mod tests;
