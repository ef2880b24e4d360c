//! The Kubernetes objects of the FSx for Lustre CSI driver (`fsx.csi.aws.com`), as pure builders.
//!
//! Two ways to give pods the file system (`ecosystem.md` §5):
//!
//! - **Static** ([`static_volume`]): trnkit creates the file system through the FSx API, and a
//!   PersistentVolume names it (`volumeHandle` = `FileSystemId`, `dnsname`, `mountname`,
//!   `mountOptions: [flock]`, `ReadWriteMany`, `Retain`), pre-bound to one claim through
//!   `claimRef`; the claim asks for no StorageClass (`storageClassName: ""`) and names the
//!   volume. Deleting the claim or the volume never deletes the file system or its data.
//! - **Dynamic** ([`storage_class`] + [`dynamic_claim`]): the blueprint's way. The StorageClass
//!   `fsx` carries the creation parameters, and the driver creates a file system for each claim
//!   (`fsx-claim`). The file system's life is tied to the claim; with reclaim policy `Delete`
//!   (the blueprint's, by default) deleting the claim deletes the file system and all its data.
//!
//! The builders return k8s-openapi types; the composition root serializes and applies them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::spec::{DeploymentType, FileSystemSpec};
use crate::{Error, FileSystem, Result};

/// The CSI driver's name.
pub const CSI_DRIVER: &str = "fsx.csi.aws.com";
/// The blueprint's claim name; other examples of the blueprint's repository use it too.
pub const BLUEPRINT_CLAIM: &str = "fsx-claim";
/// The blueprint's StorageClass name.
pub const BLUEPRINT_STORAGE_CLASS: &str = "fsx";
/// The mount option every FSx volume gets: POSIX locks, which the training code's checkpoint
/// and index-map writers rely on.
pub const MOUNT_OPTIONS: &[&str] = &["flock"];

/// The label every object built here carries, with the value [`MANAGER`]: what trnkit created
/// (and may delete), as opposed to what it found and adopted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGER: &str = "trnkit";
const MANAGED_BY: (&str, &str) = (MANAGED_BY_LABEL, MANAGER);
/// The label on a static PersistentVolume naming the file system it mounts.
pub const FILE_SYSTEM_ID_LABEL: &str = "trnkit.io/fsx-file-system-id";

/// What happens to a dynamically provisioned file system when its claim is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimPolicy {
    /// The file system is deleted with the claim (the blueprint's StorageClass, by default).
    Delete,
    /// The file system outlives the claim and must be deleted by hand.
    Retain,
}

impl ReclaimPolicy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "Delete",
            Self::Retain => "Retain",
        }
    }
}

/// The name of the static PersistentVolume for `claim_name` in `namespace`.
///
/// A PersistentVolume is cluster-wide and binds one claim, so its name says both the claim and
/// the file system: `<claim>-<namespace>-<file system id>`.
pub fn static_volume_name(file_system_id: &str, claim_name: &str, namespace: &str) -> String {
    format!("{claim_name}-{namespace}-{file_system_id}")
}

/// A static PersistentVolume for an existing file system, and a claim bound to it.
///
/// `capacity_gib` is what the volume and claim declare; Kubernetes does not enforce it for FSx,
/// but it may not exceed the file system's capacity when that is known.
///
/// Fails when the file system has no DNS name or no Lustre mount name. Real FSx reports both
/// once the file system is `AVAILABLE`; moto (the test stand-in) never reports a mount name, so
/// tests set [`FileSystem::mount_name`] themselves.
pub fn static_volume(
    file_system: &FileSystem,
    claim_name: &str,
    namespace: &str,
    capacity_gib: u32,
) -> Result<(PersistentVolume, PersistentVolumeClaim)> {
    validate_dns_label("namespace", namespace)?;
    validate_dns_subdomain("claim name", claim_name)?;
    let id = &file_system.file_system_id;
    let dns_name = file_system
        .dns_name
        .as_deref()
        .ok_or_else(|| Error::MissingDnsName {
            file_system_id: id.clone(),
        })?;
    let mount_name = file_system
        .mount_name
        .as_deref()
        .ok_or_else(|| Error::MissingMountName {
            file_system_id: id.clone(),
            lifecycle: file_system.lifecycle_label().to_owned(),
        })?;
    check_capacity(file_system, capacity_gib)?;
    let volume_name = static_volume_name(id, claim_name, namespace);
    validate_dns_subdomain("persistent volume name", &volume_name)?;

    let volume = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name.clone()),
            labels: Some(labels([(FILE_SYSTEM_ID_LABEL, id.as_str())])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(storage(capacity_gib)),
            volume_mode: Some("Filesystem".to_owned()),
            access_modes: Some(vec!["ReadWriteMany".to_owned()]),
            mount_options: Some(
                MOUNT_OPTIONS
                    .iter()
                    .map(|option| (*option).to_owned())
                    .collect(),
            ),
            persistent_volume_reclaim_policy: Some("Retain".to_owned()),
            storage_class_name: Some(String::new()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("PersistentVolumeClaim".to_owned()),
                name: Some(claim_name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: CSI_DRIVER.to_owned(),
                volume_handle: id.clone(),
                volume_attributes: Some(BTreeMap::from([
                    ("dnsname".to_owned(), dns_name.to_owned()),
                    ("mountname".to_owned(), mount_name.to_owned()),
                ])),
                ..CSIPersistentVolumeSource::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    let claim = claim(claim_name, namespace, "", Some(volume_name), capacity_gib);
    Ok((volume, claim))
}

/// The blueprint's dynamic StorageClass: the driver creates a file system from `spec` for
/// every claim of this class.
///
/// Fails for a PERSISTENT_2 spec with an S3 data repository: the driver only knows the legacy
/// import/export paths, and data repository associations need the FSx API.
pub fn storage_class(
    spec: &FileSystemSpec,
    name: &str,
    reclaim_policy: ReclaimPolicy,
) -> Result<StorageClass> {
    spec.validate()?;
    validate_dns_subdomain("storage class name", name)?;
    let mut parameters = BTreeMap::from([
        ("subnetId", spec.subnet_id.clone()),
        ("securityGroupIds", spec.security_group_ids.join(",")),
        ("deploymentType", spec.deployment_type.as_str().to_owned()),
        (
            "automaticBackupRetentionDays",
            spec.automatic_backup_retention_days.to_string(),
        ),
        (
            "perUnitStorageThroughput",
            spec.per_unit_storage_throughput.to_string(),
        ),
        (
            "dataCompressionType",
            spec.data_compression.as_str().to_owned(),
        ),
        (
            "weeklyMaintenanceStartTime",
            spec.weekly_maintenance_start_time.clone(),
        ),
        ("fileSystemTypeVersion", spec.lustre_version.clone()),
        (
            "extraTags",
            spec.tags()
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    if spec.automatic_backup_retention_days > 0 {
        parameters.insert(
            "dailyAutomaticBackupStartTime",
            spec.daily_automatic_backup_start_time.clone(),
        );
        parameters.insert("copyTagsToBackups", spec.copy_tags_to_backups.to_string());
    }
    if let Some(repository) = &spec.data_repository {
        if spec.deployment_type == DeploymentType::Persistent2 {
            return Err(Error::InvalidSpec {
                field: "data_repository",
                reason:
                    "the CSI driver cannot link S3 to a PERSISTENT_2 file system; use the static \
                         volume (`cargo xtask fsx create`) or PERSISTENT_1"
                        .to_owned(),
            });
        }
        parameters.insert("s3ImportPath", repository.s3_path.clone());
        parameters.insert("s3ExportPath", repository.s3_path.clone());
        parameters.insert(
            "autoImportPolicy",
            repository.auto_import.as_str().to_owned(),
        );
    }
    Ok(StorageClass {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels([])),
            ..ObjectMeta::default()
        },
        provisioner: CSI_DRIVER.to_owned(),
        parameters: Some(
            parameters
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        ),
        mount_options: Some(
            MOUNT_OPTIONS
                .iter()
                .map(|option| (*option).to_owned())
                .collect(),
        ),
        reclaim_policy: Some(reclaim_policy.as_str().to_owned()),
        volume_binding_mode: Some("Immediate".to_owned()),
        ..StorageClass::default()
    })
}

/// What must be equal for an existing StorageClass to serve trnkit's claim in place of the one
/// trnkit would create. A StorageClass's `parameters` and `provisioner` are immutable, so an
/// existing class is either used as it is or not at all:
///
/// - `provisioner`: another driver does not make FSx for Lustre file systems.
/// - `subnetId`: the subnet decides the Availability Zone of the file system; the Trainium
///   nodes' zone is the one the configuration names (a file system elsewhere is reached across
///   zones, slower and billed, or not at all).
/// - `securityGroupIds` (as a set): whether the nodes may reach the Lustre ports (TCP 988 and
///   1021-1023) at all; with the wrong groups every mount hangs.
/// - `deploymentType` (the driver's default is `SCRATCH_1`): durability (a scratch file system
///   loses its data when a server fails) and which throughputs and features exist.
/// - `mountOptions` must include `flock` ([`MOUNT_OPTIONS`]): the training code takes POSIX locks.
///
/// Every other parameter (throughput, Lustre version, backups, maintenance window, compression,
/// `extraTags`, S3 paths) tunes a file system that works either way: a difference is reported and
/// the class is used as it is.
pub const MUST_MATCH: &[&str] = &[
    "provisioner",
    "subnetId",
    "securityGroupIds",
    "deploymentType",
    "mountOptions",
];

/// One way an existing StorageClass differs from the one trnkit would create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassDifference {
    /// The parameter (`subnetId`, …), or `provisioner` or `mountOptions`.
    pub parameter: String,
    /// The existing class's value; `None` when it does not set it.
    pub existing: Option<String>,
    /// trnkit's value; `None` when trnkit does not set it.
    pub wanted: Option<String>,
    /// Whether the difference makes the existing class unusable ([`MUST_MATCH`]).
    pub must_match: bool,
}

/// How `existing` differs from `wanted` (trnkit's [`storage_class`]), sorted by parameter.
///
/// Values are compared as the driver reads them: security groups as a set, a missing
/// `deploymentType` as the driver's default `SCRATCH_1`, and only the presence of
/// [`MOUNT_OPTIONS`] among the mount options.
pub fn compare_storage_classes(
    existing: &StorageClass,
    wanted: &StorageClass,
) -> Vec<ClassDifference> {
    let mut differences = Vec::new();
    let mut differ = |parameter: &str, existing: Option<String>, wanted: Option<String>| {
        if existing != wanted {
            differences.push(ClassDifference {
                parameter: parameter.to_owned(),
                must_match: MUST_MATCH.contains(&parameter),
                existing,
                wanted,
            });
        }
    };
    differ(
        "provisioner",
        Some(existing.provisioner.clone()),
        Some(wanted.provisioner.clone()),
    );
    let has_options = |class: &StorageClass| {
        let options = class.mount_options.clone().unwrap_or_default();
        MOUNT_OPTIONS
            .iter()
            .all(|option| options.iter().any(|given| given == option))
    };
    if has_options(wanted) && !has_options(existing) {
        differ(
            "mountOptions",
            Some(existing.mount_options.clone().unwrap_or_default().join(",")),
            Some(MOUNT_OPTIONS.join(",")),
        );
    }
    let empty = BTreeMap::new();
    let existing_parameters = existing.parameters.as_ref().unwrap_or(&empty);
    let wanted_parameters = wanted.parameters.as_ref().unwrap_or(&empty);
    let normalized = |parameters: &BTreeMap<String, String>, key: &str| -> Option<String> {
        let value = parameters.get(key).map(|value| value.trim().to_owned());
        match key {
            "securityGroupIds" => value.map(|groups| {
                let mut groups: Vec<&str> = groups
                    .split(',')
                    .map(str::trim)
                    .filter(|group| !group.is_empty())
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                groups.join(",")
            }),
            "deploymentType" => Some(value.unwrap_or_else(|| "SCRATCH_1".to_owned())),
            _ => value,
        }
    };
    let keys: std::collections::BTreeSet<&String> = existing_parameters
        .keys()
        .chain(wanted_parameters.keys())
        .collect();
    for key in keys {
        differ(
            key,
            normalized(existing_parameters, key),
            normalized(wanted_parameters, key),
        );
    }
    differences.sort_by(|a, b| a.parameter.cmp(&b.parameter));
    differences
}

/// The blueprint's claim (`fsx-claim`, 1200 GiB, `ReadWriteMany`) on a dynamic StorageClass.
pub fn dynamic_claim(
    storage_class_name: &str,
    claim_name: &str,
    namespace: &str,
    capacity_gib: u32,
) -> Result<PersistentVolumeClaim> {
    validate_dns_label("namespace", namespace)?;
    validate_dns_subdomain("claim name", claim_name)?;
    validate_dns_subdomain("storage class name", storage_class_name)?;
    if capacity_gib == 0 {
        return Err(Error::InvalidCapacity {
            capacity_gib,
            reason: "a claim needs a capacity above 0".to_owned(),
        });
    }
    Ok(claim(
        claim_name,
        namespace,
        storage_class_name,
        None,
        capacity_gib,
    ))
}

fn claim(
    name: &str,
    namespace: &str,
    storage_class_name: &str,
    volume_name: Option<String>,
    capacity_gib: u32,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels([])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteMany".to_owned()]),
            storage_class_name: Some(storage_class_name.to_owned()),
            volume_mode: Some("Filesystem".to_owned()),
            volume_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(storage(capacity_gib)),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn check_capacity(file_system: &FileSystem, capacity_gib: u32) -> Result<()> {
    if capacity_gib == 0 {
        return Err(Error::InvalidCapacity {
            capacity_gib,
            reason: "a volume needs a capacity above 0".to_owned(),
        });
    }
    match file_system.storage_capacity_gib {
        Some(actual) if capacity_gib > actual => Err(Error::InvalidCapacity {
            capacity_gib,
            reason: format!(
                "file system {} holds only {actual} GiB; declare at most that",
                file_system.file_system_id
            ),
        }),
        _ => Ok(()),
    }
}

fn storage(capacity_gib: u32) -> BTreeMap<String, Quantity> {
    BTreeMap::from([("storage".to_owned(), Quantity(format!("{capacity_gib}Gi")))])
}

fn labels<const N: usize>(extra: [(&str, &str); N]) -> BTreeMap<String, String> {
    std::iter::once(MANAGED_BY)
        .chain(extra)
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// Checks a DNS-1123 label (namespaces): 1–63 characters, `a-z`, `0-9`, `-`, alphanumeric at
/// both ends.
pub fn validate_dns_label(what: &'static str, name: &str) -> Result<()> {
    validate_dns(what, name, 63, false)
}

/// Checks a DNS-1123 subdomain (most object names): 1–253 characters, `a-z`, `0-9`, `-` and
/// `.`, alphanumeric at both ends.
pub fn validate_dns_subdomain(what: &'static str, name: &str) -> Result<()> {
    validate_dns(what, name, 253, true)
}

fn validate_dns(what: &'static str, name: &str, max: usize, dots: bool) -> Result<()> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let reason = if name.is_empty() || name.len() > max {
        Some(format!("it must be 1 to {max} characters long"))
    } else if let Some(bad) = name
        .chars()
        .find(|&c| !(alnum(c) || c == '-' || (dots && c == '.')))
    {
        Some(format!(
            "it contains {bad:?}; use lowercase letters, digits and `-`{}",
            if dots { " or `.`" } else { "" }
        ))
    } else if !name.starts_with(alnum) || !name.ends_with(alnum) {
        Some("it must start and end with a lowercase letter or digit".to_owned())
    } else {
        None
    };
    Error::check_name(what, name, reason)
}
