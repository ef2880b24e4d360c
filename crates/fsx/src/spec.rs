//! What to create: [`FileSystemSpec`], with the blueprint's StorageClass values as defaults.
//!
//! The blueprint creates its file system through the FSx CSI driver's dynamic StorageClass
//! (`blueprint.md` §4.5): PERSISTENT_1, 200 MB/s/TiB, 1200 GiB, Lustre 2.12, daily backups kept
//! one day at 00:00, tags copied to backups, no compression, weekly maintenance Sunday 09:00.
//! [`FileSystemSpec::blueprint`] starts from exactly those values; PERSISTENT_2 and an S3 data
//! repository are options.
//!
//! [`FileSystemSpec::validate`] checks the combinations FSx would reject (throughput per
//! deployment type, capacity steps, Lustre versions, time formats), so a mistake is reported
//! before an API call, with the valid values in the message. The mapping to the SDK's request
//! types is pure ([`FileSystemSpec::lustre_configuration`]), and so is the tag set that lets
//! trnkit find its file system again ([`FileSystemSpec::tags`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, validate_component};

/// The tag that marks a file system as trnkit's; its value is the spec's `name`.
pub const NAME_TAG: &str = "trnkit:name";

/// FSx for Lustre deployment types trnkit creates (the persistent ones; scratch file systems
/// lose data when a server fails, which a multi-day training run cannot afford).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentType {
    /// `PERSISTENT_1`: the blueprint's type; 50, 100 or 200 MB/s/TiB; Lustre 2.10 or 2.12.
    #[serde(rename = "PERSISTENT_1")]
    Persistent1,
    /// `PERSISTENT_2`: newer servers; 125, 250, 500 or 1000 MB/s/TiB; Lustre 2.12 or 2.15;
    /// S3 through data repository associations.
    #[serde(rename = "PERSISTENT_2")]
    Persistent2,
}

impl DeploymentType {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Persistent1 => "PERSISTENT_1",
            Self::Persistent2 => "PERSISTENT_2",
        }
    }

    /// Valid `PerUnitStorageThroughput` values (SSD storage), in MB/s/TiB.
    pub fn valid_throughputs(self) -> &'static [u32] {
        match self {
            Self::Persistent1 => &[50, 100, 200],
            Self::Persistent2 => &[125, 250, 500, 1000],
        }
    }

    /// Valid Lustre versions (`FileSystemTypeVersion`).
    pub fn valid_lustre_versions(self) -> &'static [&'static str] {
        match self {
            Self::Persistent1 => &["2.10", "2.12"],
            Self::Persistent2 => &["2.12", "2.15"],
        }
    }

    fn to_sdk(self) -> aws_sdk_fsx::types::LustreDeploymentType {
        match self {
            Self::Persistent1 => aws_sdk_fsx::types::LustreDeploymentType::Persistent1,
            Self::Persistent2 => aws_sdk_fsx::types::LustreDeploymentType::Persistent2,
        }
    }
}

impl std::str::FromStr for DeploymentType {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value.to_ascii_uppercase().replace('-', "_").as_str() {
            "PERSISTENT_1" => Ok(Self::Persistent1),
            "PERSISTENT_2" => Ok(Self::Persistent2),
            _ => Err(Error::InvalidSpec {
                field: "deployment_type",
                reason: format!(
                    "`{value}` is not supported; use PERSISTENT_1 or PERSISTENT_2 (trnkit makes no \
                     scratch file systems: they lose their data when a server fails)"
                ),
            }),
        }
    }
}

/// Data compression of the file system's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DataCompression {
    /// No compression (the blueprint's choice).
    None,
    /// LZ4 compression.
    Lz4,
}

impl DataCompression {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Lz4 => "LZ4",
        }
    }
}

/// How FSx keeps the file listing in sync with a linked S3 bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AutoImport {
    /// Import the listing once, at creation.
    None,
    /// Also import objects added to the bucket later.
    New,
    /// Also import added and changed objects.
    NewChanged,
    /// Also import added and changed objects, and remove deleted ones.
    NewChangedDeleted,
}

impl AutoImport {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::New => "NEW",
            Self::NewChanged => "NEW_CHANGED",
            Self::NewChangedDeleted => "NEW_CHANGED_DELETED",
        }
    }
}

/// An S3 bucket (prefix) linked to the file system.
///
/// For PERSISTENT_1 the link is made at creation with the legacy `ImportPath`/`ExportPath`
/// (the whole file system mirrors the prefix). For PERSISTENT_2 it is a data repository
/// association created once the file system is available
/// (`crate::io::associate_data_repository`), mapping `file_system_path` to `s3_path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRepository {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub s3_path: String,
    /// Where the bucket appears in the file system (PERSISTENT_2 only), e.g. `/s3`.
    #[serde(default = "default_file_system_path")]
    pub file_system_path: String,
    /// How new and changed objects reach the file system.
    #[serde(default = "default_auto_import")]
    pub auto_import: AutoImport,
}

fn default_file_system_path() -> String {
    "/".to_owned()
}

fn default_auto_import() -> AutoImport {
    AutoImport::NewChangedDeleted
}

/// Everything needed to create the file system.
///
/// Start from [`FileSystemSpec::blueprint`] and change fields; call
/// [`FileSystemSpec::validate`] (the IO functions do) before using it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSystemSpec {
    /// trnkit's name for the file system: the value of the `trnkit:name` and `Name` tags that
    /// `cargo xtask fsx describe`/`delete` find it by. Letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The subnet, in the Availability Zone of the Trainium nodes (blueprint: private subnet 0).
    pub subnet_id: String,
    /// Security groups admitting TCP 988 and 1021–1023 from the nodes' subnets.
    pub security_group_ids: Vec<String>,
    /// PERSISTENT_1 (blueprint) or PERSISTENT_2.
    pub deployment_type: DeploymentType,
    /// Storage capacity in GiB: 1200, 2400, or a multiple of 2400.
    pub storage_capacity_gib: u32,
    /// Throughput per TiB of storage, in MB/s/TiB (blueprint: 200).
    pub per_unit_storage_throughput: u32,
    /// The Lustre version (blueprint: `2.12`).
    pub lustre_version: String,
    /// Days to keep daily automatic backups, 0 to 90; 0 turns them off (blueprint: 1).
    pub automatic_backup_retention_days: u32,
    /// When the daily backup starts, `HH:MM` UTC (blueprint: `00:00`).
    pub daily_automatic_backup_start_time: String,
    /// Whether backups carry the file system's tags (blueprint: true).
    pub copy_tags_to_backups: bool,
    /// Data compression (blueprint: none).
    pub data_compression: DataCompression,
    /// The weekly maintenance window, `d:HH:MM` UTC with d = 1 (Monday) to 7 (Sunday)
    /// (blueprint: `7:09:00`, Sunday 09:00).
    pub weekly_maintenance_start_time: String,
    /// An S3 bucket to link, if any.
    #[serde(default)]
    pub data_repository: Option<DataRepository>,
    /// More tags to put on the file system.
    #[serde(default)]
    pub extra_tags: BTreeMap<String, String>,
}

impl FileSystemSpec {
    /// The blueprint's StorageClass values, with the name, subnet and security groups given.
    pub fn blueprint(name: &str, subnet_id: &str, security_group_ids: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            subnet_id: subnet_id.to_owned(),
            security_group_ids: security_group_ids
                .iter()
                .map(|id| (*id).to_owned())
                .collect(),
            deployment_type: DeploymentType::Persistent1,
            storage_capacity_gib: 1200,
            per_unit_storage_throughput: 200,
            lustre_version: "2.12".to_owned(),
            automatic_backup_retention_days: 1,
            daily_automatic_backup_start_time: "00:00".to_owned(),
            copy_tags_to_backups: true,
            data_compression: DataCompression::None,
            weekly_maintenance_start_time: "7:09:00".to_owned(),
            data_repository: None,
            extra_tags: BTreeMap::new(),
        }
    }

    /// Checks the spec against the rules FSx applies, naming the field and the valid values.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |field: &'static str, reason: String| Err(Error::InvalidSpec { field, reason });
        validate_component("file-system name", &self.name)?;
        if !is_aws_id(&self.subnet_id, "subnet-") {
            return invalid(
                "subnet_id",
                format!("`{}` is not a subnet id (subnet-…)", self.subnet_id),
            );
        }
        if self.security_group_ids.is_empty() {
            return invalid(
                "security_group_ids",
                "give at least one security group admitting TCP 988 and 1021-1023 from the nodes"
                    .to_owned(),
            );
        }
        if let Some(bad) = self
            .security_group_ids
            .iter()
            .find(|id| !is_aws_id(id, "sg-"))
        {
            return invalid(
                "security_group_ids",
                format!("`{bad}` is not a security group id (sg-…)"),
            );
        }
        let deployment = self.deployment_type;
        if !deployment
            .valid_throughputs()
            .contains(&self.per_unit_storage_throughput)
        {
            return invalid(
                "per_unit_storage_throughput",
                format!(
                    "{} MB/s/TiB is not offered for {}; use one of {:?}",
                    self.per_unit_storage_throughput,
                    deployment.as_str(),
                    deployment.valid_throughputs()
                ),
            );
        }
        let capacity = self.storage_capacity_gib;
        if !(capacity == 1200 || (capacity >= 2400 && capacity.is_multiple_of(2400))) {
            let next = match capacity {
                0..1200 => 1200,
                1200..2400 => 2400,
                _ => (capacity / 2400 + 1) * 2400,
            };
            return invalid(
                "storage_capacity_gib",
                format!(
                    "{capacity} GiB is not a valid SSD capacity; use 1200, 2400 or a multiple of 2400 \
                     (the next valid size is {next})"
                ),
            );
        }
        if !deployment
            .valid_lustre_versions()
            .contains(&self.lustre_version.as_str())
        {
            return invalid(
                "lustre_version",
                format!(
                    "Lustre {} is not offered for {}; use one of {:?}",
                    self.lustre_version,
                    deployment.as_str(),
                    deployment.valid_lustre_versions()
                ),
            );
        }
        if self.automatic_backup_retention_days > 90 {
            return invalid(
                "automatic_backup_retention_days",
                format!(
                    "{} days is more than the maximum of 90",
                    self.automatic_backup_retention_days
                ),
            );
        }
        if !is_hh_mm(&self.daily_automatic_backup_start_time) {
            return invalid(
                "daily_automatic_backup_start_time",
                format!(
                    "`{}` is not HH:MM (UTC), e.g. 00:00",
                    self.daily_automatic_backup_start_time
                ),
            );
        }
        let weekly = &self.weekly_maintenance_start_time;
        let weekly_ok = weekly.split_once(':').is_some_and(|(day, time)| {
            matches!(day, "1" | "2" | "3" | "4" | "5" | "6" | "7") && is_hh_mm(time)
        });
        if !weekly_ok {
            return invalid(
                "weekly_maintenance_start_time",
                format!("`{weekly}` is not d:HH:MM (UTC, d = 1 Monday … 7 Sunday), e.g. 7:09:00"),
            );
        }
        if let Some(repository) = &self.data_repository {
            if !repository.s3_path.starts_with("s3://") || repository.s3_path.len() <= "s3://".len()
            {
                return invalid(
                    "data_repository.s3_path",
                    format!(
                        "`{}` is not an S3 URL (s3://bucket/prefix)",
                        repository.s3_path
                    ),
                );
            }
            if !repository.file_system_path.starts_with('/') {
                return invalid(
                    "data_repository.file_system_path",
                    format!(
                        "`{}` must be an absolute path such as /s3",
                        repository.file_system_path
                    ),
                );
            }
            if deployment == DeploymentType::Persistent1 {
                if repository.file_system_path != "/" {
                    return invalid(
                        "data_repository.file_system_path",
                        "PERSISTENT_1 links S3 to the whole file system; use / or choose PERSISTENT_2".to_owned(),
                    );
                }
                if self.automatic_backup_retention_days > 0 {
                    return invalid(
                        "data_repository",
                        "FSx does not back up PERSISTENT_1 file systems linked to S3; set \
                         automatic_backup_retention_days to 0 or choose PERSISTENT_2"
                            .to_owned(),
                    );
                }
            }
        }
        for (key, value) in &self.extra_tags {
            if key.is_empty() || key.len() > 128 || value.len() > 256 || key.starts_with("aws:") {
                return invalid(
                    "extra_tags",
                    format!(
                        "tag `{key}` is invalid: keys are 1-128 characters, not starting with aws:, values up to 256"
                    ),
                );
            }
            if key == NAME_TAG || key == "Name" {
                return invalid(
                    "extra_tags",
                    format!("tag `{key}` is set by trnkit from `name`"),
                );
            }
        }
        Ok(())
    }

    /// The tags trnkit puts on the file system: `Name` and `trnkit:name` (both the spec's name)
    /// plus the extra tags.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.extra_tags.clone();
        tags.insert("Name".to_owned(), self.name.clone());
        tags.insert(NAME_TAG.to_owned(), self.name.clone());
        tags
    }

    /// An idempotency token for `CreateFileSystem`: the same spec gives the same token, so a
    /// retried create (say, after a lost response) returns the file system already being created
    /// instead of making a second one. At most 63 characters, as the API requires.
    pub fn client_request_token(&self) -> String {
        let json = serde_json::to_string(self).expect("a spec of strings and numbers serializes");
        let digest = json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        let name: String = self.name.chars().take(39).collect();
        format!("trnkit-{name}-{digest:016x}")
    }

    /// The Lustre part of the `CreateFileSystem` request.
    pub fn lustre_configuration(&self) -> aws_sdk_fsx::types::CreateFileSystemLustreConfiguration {
        use aws_sdk_fsx::types::{AutoImportPolicyType, DataCompressionType};
        let mut lustre = aws_sdk_fsx::types::CreateFileSystemLustreConfiguration::builder()
            .deployment_type(self.deployment_type.to_sdk())
            .per_unit_storage_throughput(to_i32(self.per_unit_storage_throughput))
            .automatic_backup_retention_days(to_i32(self.automatic_backup_retention_days))
            .data_compression_type(DataCompressionType::from(self.data_compression.as_str()))
            .weekly_maintenance_start_time(&self.weekly_maintenance_start_time);
        if self.automatic_backup_retention_days > 0 {
            lustre = lustre
                .daily_automatic_backup_start_time(&self.daily_automatic_backup_start_time)
                .copy_tags_to_backups(self.copy_tags_to_backups);
        }
        if let (DeploymentType::Persistent1, Some(repository)) =
            (self.deployment_type, &self.data_repository)
        {
            lustre = lustre
                .import_path(&repository.s3_path)
                .export_path(&repository.s3_path)
                .auto_import_policy(AutoImportPolicyType::from(repository.auto_import.as_str()));
        }
        lustre.build()
    }

    /// The tags in the SDK's form.
    pub fn sdk_tags(&self) -> Vec<aws_sdk_fsx::types::Tag> {
        self.tags()
            .into_iter()
            .map(|(key, value)| {
                aws_sdk_fsx::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
            })
            .collect()
    }
}

fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn is_aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn is_hh_mm(value: &str) -> bool {
    let Some((hours, minutes)) = value.split_once(':') else {
        return false;
    };
    hours.len() == 2
        && minutes.len() == 2
        && hours.parse::<u8>().is_ok_and(|hours| hours < 24)
        && minutes.parse::<u8>().is_ok_and(|minutes| minutes < 60)
}
