//! The thin IO layer: FSx API calls through a caller-supplied `aws_sdk_fsx::Client`.
//!
//! - [`describe`], [`find_by_name`]: read one file system, or trnkit's by its `trnkit:name` tag.
//! - [`create`], [`ensure`]: create from a [`FileSystemSpec`], or adopt an existing one by id
//!   or by tag so that re-runs never make a second file system.
//! - [`wait_until_available`]: a bounded wait with exponential back-off that reports every
//!   lifecycle change to a callback and fails fast on `FAILED`.
//! - [`delete`]: delete (with or without a final backup); confirmation is the caller's job.
//! - [`associate_data_repository`]: link S3 to a PERSISTENT_2 file system.
//!
//! Nothing here builds a client, reads the environment or prints; progress goes to the caller's
//! callback and to `tracing`.

use std::time::Duration;

use aws_sdk_fsx::Client;
use aws_sdk_fsx::types::FileSystemType;

use crate::spec::{DeploymentType, FileSystemSpec, NAME_TAG};
use crate::{Error, FileSystem, Lifecycle, Result};

/// Reads one file system; `None` when it does not exist.
///
/// Real FSx answers an unknown id with `FileSystemNotFound`; moto answers with an empty list.
/// Both give `None`.
#[tracing::instrument(skip(client))]
pub async fn describe(client: &Client, file_system_id: &str) -> Result<Option<FileSystem>> {
    let output = match client
        .describe_file_systems()
        .file_system_ids(file_system_id)
        .send()
        .await
    {
        Ok(output) => output,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|error| error.is_file_system_not_found()) =>
        {
            return Ok(None);
        }
        Err(error) => {
            return Err(Error::DescribeFileSystems {
                file_system_id: Some(file_system_id.to_owned()),
                source: Box::new(error.into()),
            });
        }
    };
    output
        .file_systems()
        .iter()
        .find(|file_system| file_system.file_system_id() == Some(file_system_id))
        .map(FileSystem::from_sdk)
        .transpose()
}

/// Every Lustre file system tagged `trnkit:name = name`, in the API's order, deleting ones
/// included (look at [`FileSystem::lifecycle`]).
#[tracing::instrument(skip(client))]
pub async fn find_by_name(client: &Client, name: &str) -> Result<Vec<FileSystem>> {
    let mut found = Vec::new();
    let mut pages = client.describe_file_systems().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| Error::DescribeFileSystems {
            file_system_id: None,
            source: Box::new(error.into()),
        })?;
        for file_system in page.file_systems() {
            if file_system.file_system_type() != Some(&FileSystemType::Lustre) {
                continue;
            }
            let tagged = file_system
                .tags()
                .iter()
                .any(|tag| tag.key() == Some(NAME_TAG) && tag.value() == Some(name));
            if tagged {
                found.push(FileSystem::from_sdk(file_system)?);
            }
        }
    }
    Ok(found)
}

/// Creates a file system from `spec` (validated first) and returns it as the API describes it
/// right after the call (normally `CREATING`).
///
/// The request carries [`FileSystemSpec::client_request_token`], so repeating the same create
/// returns the same file system.
#[tracing::instrument(skip(client, spec), fields(name = %spec.name))]
pub async fn create(client: &Client, spec: &FileSystemSpec) -> Result<FileSystem> {
    spec.validate()?;
    let output = client
        .create_file_system()
        .client_request_token(spec.client_request_token())
        .file_system_type(FileSystemType::Lustre)
        .storage_capacity(i32::try_from(spec.storage_capacity_gib).unwrap_or(i32::MAX))
        .storage_type(aws_sdk_fsx::types::StorageType::Ssd)
        .subnet_ids(&spec.subnet_id)
        .set_security_group_ids(Some(spec.security_group_ids.clone()))
        .set_tags(Some(spec.sdk_tags()))
        .file_system_type_version(&spec.lustre_version)
        .lustre_configuration(spec.lustre_configuration())
        .send()
        .await
        .map_err(|error| Error::CreateFileSystem {
            name: spec.name.clone(),
            source: Box::new(error.into()),
        })?;
    let file_system = output.file_system().ok_or(Error::ReadFileSystem {
        reason: "CreateFileSystem returned no file system",
    })?;
    let file_system = FileSystem::from_sdk(file_system)?;
    tracing::info!(file_system_id = %file_system.file_system_id, "created FSx for Lustre file system");
    Ok(file_system)
}

/// How [`ensure`] finds an existing file system before it creates one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adopt {
    /// Use exactly this file system; fail if it does not exist.
    Id(String),
    /// Use the one file system tagged `trnkit:name = spec.name`, or create it if there is none.
    Tag,
}

/// What [`ensure`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ensured {
    /// The file system, as last described.
    pub file_system: FileSystem,
    /// Whether [`ensure`] created it (rather than adopting it).
    pub created: bool,
    /// Where the adopted file system differs from the spec, one sentence each (empty when
    /// created). Differences are reported, not fixed.
    pub differences: Vec<String>,
}

/// Adopts the file system `adopt` points at, or creates one from `spec`.
///
/// By tag: file systems being deleted are ignored; a `FAILED` one is an error (delete it with
/// `cargo xtask fsx delete --yes` and run again); two or more are an error naming them all.
#[tracing::instrument(skip(client, spec), fields(name = %spec.name))]
pub async fn ensure(client: &Client, spec: &FileSystemSpec, adopt: &Adopt) -> Result<Ensured> {
    spec.validate()?;
    let existing = match adopt {
        Adopt::Id(id) => {
            let file_system =
                describe(client, id)
                    .await?
                    .ok_or_else(|| Error::FileSystemNotFound {
                        file_system_id: id.clone(),
                    })?;
            Some(file_system)
        }
        Adopt::Tag => {
            let mut candidates: Vec<FileSystem> = find_by_name(client, &spec.name)
                .await?
                .into_iter()
                .filter(|file_system| file_system.lifecycle != Some(Lifecycle::Deleting))
                .collect();
            match candidates.len() {
                0 => None,
                1 => candidates.pop(),
                _ => {
                    return Err(Error::AmbiguousFileSystems {
                        name: spec.name.clone(),
                        file_system_ids: candidates
                            .into_iter()
                            .map(|file_system| file_system.file_system_id)
                            .collect(),
                    });
                }
            }
        }
    };
    match existing {
        Some(file_system) => {
            if file_system.lifecycle == Some(Lifecycle::Failed) {
                return Err(Error::FileSystemFailed {
                    file_system_id: file_system.file_system_id.clone(),
                    lifecycle: Lifecycle::Failed.to_string(),
                    message: file_system
                        .failure_message
                        .clone()
                        .unwrap_or_else(|| "no failure details".to_owned()),
                });
            }
            let differences = differences(spec, &file_system);
            for difference in &differences {
                tracing::warn!(file_system_id = %file_system.file_system_id, "{difference}");
            }
            tracing::info!(file_system_id = %file_system.file_system_id, lifecycle = file_system.lifecycle_label(), "adopted existing file system");
            Ok(Ensured {
                file_system,
                created: false,
                differences,
            })
        }
        None => Ok(Ensured {
            file_system: create(client, spec).await?,
            created: true,
            differences: Vec::new(),
        }),
    }
}

/// Where an adopted file system differs from what `spec` asks for (fields the API reports).
pub fn differences(spec: &FileSystemSpec, file_system: &FileSystem) -> Vec<String> {
    let mut found = Vec::new();
    let id = &file_system.file_system_id;
    if let Some(capacity) = file_system.storage_capacity_gib
        && capacity != spec.storage_capacity_gib
    {
        found.push(format!(
            "{id} has {capacity} GiB, the configuration asks for {}",
            spec.storage_capacity_gib
        ));
    }
    if let Some(deployment) = &file_system.deployment_type
        && deployment != spec.deployment_type.as_str()
    {
        found.push(format!(
            "{id} is {deployment}, the configuration asks for {}",
            spec.deployment_type.as_str()
        ));
    }
    if let Some(throughput) = file_system.per_unit_storage_throughput
        && throughput != spec.per_unit_storage_throughput
    {
        found.push(format!(
            "{id} has {throughput} MB/s/TiB, the configuration asks for {}",
            spec.per_unit_storage_throughput
        ));
    }
    if !file_system.subnet_ids.is_empty() && !file_system.subnet_ids.contains(&spec.subnet_id) {
        found.push(format!(
            "{id} is in subnet {}, the configuration asks for {}",
            file_system.subnet_ids.join(", "),
            spec.subnet_id
        ));
    }
    if let Some(version) = &file_system.lustre_version
        && version != &spec.lustre_version
    {
        found.push(format!(
            "{id} runs Lustre {version}, the configuration asks for {}",
            spec.lustre_version
        ));
    }
    found
}

/// How long and how often [`wait_until_available`] polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitOptions {
    /// Give up after this long. FSx for Lustre usually takes 5 to 15 minutes.
    pub timeout: Duration,
    /// The first pause between polls.
    pub initial_interval: Duration,
    /// The longest pause between polls; each pause doubles until it reaches this.
    pub max_interval: Duration,
}

impl Default for WaitOptions {
    /// 30 minutes, polling after 5 s, then 10 s, 20 s, and every 30 s.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30 * 60),
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
        }
    }
}

/// A change of lifecycle seen while waiting, for progress reporting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleChange {
    /// The file system.
    pub file_system_id: String,
    /// The lifecycle before (`None` on the first poll, or when the API did not report one).
    pub from: Option<Lifecycle>,
    /// The lifecycle now (`None` when the API does not report one, as with moto).
    pub to: Option<Lifecycle>,
    /// Time since the wait began.
    pub elapsed: Duration,
}

/// Polls until the file system is `AVAILABLE` and returns it as then described.
///
/// Fails at once on `FAILED`, `DELETING` or `MISCONFIGURED_UNAVAILABLE` (with FSx's failure
/// message), when the file system disappears, or when `options.timeout` passes. `on_change` is
/// called for the first state seen and for every change. Uses tokio's clock, so tests can run it
/// with paused time.
#[tracing::instrument(skip(client, options, on_change))]
pub async fn wait_until_available(
    client: &Client,
    file_system_id: &str,
    options: WaitOptions,
    mut on_change: impl FnMut(&LifecycleChange),
) -> Result<FileSystem> {
    let start = tokio::time::Instant::now();
    let deadline = start + options.timeout;
    let mut interval = options.initial_interval.max(Duration::from_millis(1));
    let mut last: Option<Option<Lifecycle>> = None;
    loop {
        let file_system =
            describe(client, file_system_id)
                .await?
                .ok_or_else(|| Error::FileSystemNotFound {
                    file_system_id: file_system_id.to_owned(),
                })?;
        let now = file_system.lifecycle.clone();
        if last.as_ref() != Some(&now) {
            let change = LifecycleChange {
                file_system_id: file_system_id.to_owned(),
                from: last.clone().flatten(),
                to: now.clone(),
                elapsed: start.elapsed(),
            };
            tracing::info!(file_system_id, lifecycle = file_system.lifecycle_label(), elapsed = ?change.elapsed, "lifecycle");
            on_change(&change);
            last = Some(now.clone());
        }
        match &now {
            Some(Lifecycle::Available) => return Ok(file_system),
            Some(lifecycle) if lifecycle.is_terminal_failure() => {
                return Err(Error::FileSystemFailed {
                    file_system_id: file_system_id.to_owned(),
                    lifecycle: lifecycle.to_string(),
                    message: file_system
                        .failure_message
                        .unwrap_or_else(|| "FSx gave no failure details".to_owned()),
                });
            }
            _ => {}
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(Error::WaitTimedOut {
                file_system_id: file_system_id.to_owned(),
                lifecycle: file_system.lifecycle_label().to_owned(),
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(interval.min(remaining)).await;
        interval = (interval * 2).min(options.max_interval.max(options.initial_interval));
    }
}

/// Options of [`delete`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Skip the final backup FSx otherwise takes of a persistent file system with backups on
    /// (the backup is kept, and billed, until deleted).
    pub skip_final_backup: bool,
}

/// Starts deleting a file system and returns the lifecycle FSx reports (normally `DELETING`).
///
/// This deletes every file on it: the dataset, the compile cache, checkpoints. The caller must
/// have asked for confirmation (`cargo xtask fsx delete --yes`).
#[tracing::instrument(skip(client))]
pub async fn delete(
    client: &Client,
    file_system_id: &str,
    options: DeleteOptions,
) -> Result<Option<Lifecycle>> {
    let lustre = aws_sdk_fsx::types::DeleteFileSystemLustreConfiguration::builder()
        .skip_final_backup(options.skip_final_backup)
        .build();
    let output = client
        .delete_file_system()
        .file_system_id(file_system_id)
        .lustre_configuration(lustre)
        .send()
        .await
        .map_err(|error| {
            if error
                .as_service_error()
                .is_some_and(|error| error.is_file_system_not_found())
            {
                Error::FileSystemNotFound {
                    file_system_id: file_system_id.to_owned(),
                }
            } else {
                Error::DeleteFileSystem {
                    file_system_id: file_system_id.to_owned(),
                    source: Box::new(error.into()),
                }
            }
        })?;
    let lifecycle = output
        .lifecycle()
        .map(|lifecycle| Lifecycle::parse(lifecycle.as_str()));
    tracing::info!(file_system_id, lifecycle = ?lifecycle, "deleting FSx for Lustre file system");
    Ok(lifecycle)
}

/// Links the spec's S3 data repository to an available PERSISTENT_2 file system (a data
/// repository association) and returns the association's id. For PERSISTENT_1 the link is made
/// at creation and this is not needed.
#[tracing::instrument(skip(client, spec))]
pub async fn associate_data_repository(
    client: &Client,
    file_system_id: &str,
    spec: &FileSystemSpec,
) -> Result<String> {
    let Some(repository) = &spec.data_repository else {
        return Err(Error::InvalidSpec {
            field: "data_repository",
            reason: "the spec links no S3 bucket".to_owned(),
        });
    };
    if spec.deployment_type != DeploymentType::Persistent2 {
        return Err(Error::InvalidSpec {
            field: "data_repository",
            reason: "only PERSISTENT_2 file systems use data repository associations".to_owned(),
        });
    }
    use aws_sdk_fsx::types::{
        AutoExportPolicy, AutoImportPolicy, EventType, S3DataRepositoryConfiguration,
    };
    let events: Vec<EventType> = match repository.auto_import {
        crate::spec::AutoImport::None => Vec::new(),
        crate::spec::AutoImport::New => vec![EventType::New],
        crate::spec::AutoImport::NewChanged => vec![EventType::New, EventType::Changed],
        crate::spec::AutoImport::NewChangedDeleted => {
            vec![EventType::New, EventType::Changed, EventType::Deleted]
        }
    };
    let s3 = S3DataRepositoryConfiguration::builder()
        .auto_import_policy(
            AutoImportPolicy::builder()
                .set_events(Some(events.clone()))
                .build(),
        )
        .auto_export_policy(AutoExportPolicy::builder().set_events(Some(events)).build())
        .build();
    let output = client
        .create_data_repository_association()
        .file_system_id(file_system_id)
        .file_system_path(&repository.file_system_path)
        .data_repository_path(&repository.s3_path)
        .batch_import_meta_data_on_create(true)
        .s3(s3)
        .send()
        .await
        .map_err(|error| Error::AssociateDataRepository {
            file_system_id: file_system_id.to_owned(),
            s3_path: repository.s3_path.clone(),
            source: Box::new(error.into()),
        })?;
    output
        .association()
        .and_then(|association| association.association_id())
        .map(str::to_owned)
        .ok_or(Error::ReadFileSystem {
            reason: "CreateDataRepositoryAssociation returned no association id",
        })
}
