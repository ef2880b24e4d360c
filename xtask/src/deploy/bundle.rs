//! Renders everything a plan is made from: the images and, per step, the objects to apply.
//!
//! Offline: nothing here contacts AWS or the cluster. What only the cluster can tell (the MPI
//! Operator's version, an FSx file system's mount name) comes in as arguments.

use std::path::Path;

use anyhow::Context;
use fsx::csi::ReclaimPolicy;
use fsx::{DeploymentType, FileSystem, FileSystemSpec};
use mpijob::LauncherGate;
use mpijob::llama2;

use super::plan::Rendered;
use crate::config::{Config, StorageMode, Target};
use crate::render::{self, ImageRefs, Manifest};
use crate::{images, tensorboard};

/// Placeholders used only by the local profile when no subnet or security group is configured:
/// the rendered StorageClass then shows its shape, and the plan says the values are missing.
pub const PLACEHOLDER_SUBNET: &str = "subnet-00000000000000000";
/// See [`PLACEHOLDER_SUBNET`].
pub const PLACEHOLDER_SECURITY_GROUP: &str = "sg-00000000000000000";

/// The FSx spec the configuration describes.
pub fn file_system_spec(config: &Config) -> FileSystemSpec {
    let local = config.cluster.target == Target::Local;
    let subnet = if config.storage.subnet_id.is_empty() && local {
        PLACEHOLDER_SUBNET
    } else {
        &config.storage.subnet_id
    };
    let groups: Vec<&str> = if config.storage.security_group_ids.is_empty() && local {
        vec![PLACEHOLDER_SECURITY_GROUP]
    } else {
        config
            .storage
            .security_group_ids
            .iter()
            .map(String::as_str)
            .collect()
    };
    let mut spec =
        FileSystemSpec::blueprint(&format!("trnkit-{}", config.cluster.name), subnet, &groups);
    spec.deployment_type = match config.storage.deployment_type.as_str() {
        "PERSISTENT_2" => DeploymentType::Persistent2,
        _ => DeploymentType::Persistent1,
    };
    spec.storage_capacity_gib = config.storage.capacity_gib;
    spec.per_unit_storage_throughput = config.storage.per_unit_storage_throughput;
    spec.lustre_version = config.storage.lustre_version.clone();
    spec.automatic_backup_retention_days = config.storage.automatic_backup_retention_days;
    spec.daily_automatic_backup_start_time =
        config.storage.daily_automatic_backup_start_time.clone();
    spec.copy_tags_to_backups = config.storage.copy_tags_to_backups;
    spec.weekly_maintenance_start_time = config.storage.weekly_maintenance_start_time.clone();
    spec
}

/// The storage objects: the dynamic StorageClass and claim, the static PV and claim of a known
/// file system, or nothing for an existing claim (or a static file system not yet known).
pub fn storage_manifests(
    config: &Config,
    file_system: Option<&FileSystem>,
) -> anyhow::Result<Vec<Manifest>> {
    let namespace = &config.cluster.namespace;
    let storage = &config.storage;
    Ok(match storage.mode {
        StorageMode::ExistingClaim => Vec::new(),
        StorageMode::Dynamic => {
            let class = fsx::csi::storage_class(
                &file_system_spec(config),
                &storage.storage_class,
                ReclaimPolicy::Delete,
            )
            .context("cannot render the FSx StorageClass")?;
            let claim = fsx::csi::dynamic_claim(
                &storage.storage_class,
                &storage.claim_name,
                namespace,
                storage.capacity_gib,
            )?;
            vec![
                Manifest::from_object(&class)?,
                Manifest::from_object(&claim)?,
            ]
        }
        StorageMode::Static => match file_system {
            None => Vec::new(),
            Some(file_system) => {
                let (volume, claim) = fsx::static_volume(
                    file_system,
                    &storage.claim_name,
                    namespace,
                    storage.capacity_gib,
                )?;
                vec![
                    Manifest::from_object(&volume)?,
                    Manifest::from_object(&claim)?,
                ]
            }
        },
    })
}

/// Everything rendered. `gate` is the launcher gate detected from the cluster, if any;
/// `file_system` the static mode's file system, if known; `stager_binary` the `trnkit-stage`
/// executable the staging image carries.
pub fn render_all(
    config: &Config,
    gate: Option<LauncherGate>,
    file_system: Option<&FileSystem>,
    stager_binary: &Path,
) -> anyhow::Result<Rendered> {
    let layout = render::layout(config)?;
    let registry = render::registry(config)?;
    let definitions = images::definitions(
        config,
        &layout.experiments().display().to_string(),
        stager_binary,
    )?;
    let rendered_images = images::rendered(&definitions, &registry, &config.image.repository)?;
    let reference = |name: &str| {
        rendered_images
            .get(name)
            .map(|image| image.reference.clone())
            .unwrap_or_default()
    };
    let refs = ImageRefs {
        training: reference("training"),
        tensorboard: reference("tensorboard"),
        stager: reference("stager"),
    };
    let gate = render::launcher_gate(config, gate);

    let jobs = render::llama2_config(config, &refs.training, gate)?;
    let compile = llama2::compile_job(&jobs).context("the compile job is invalid")?;
    let train = llama2::train_job(&jobs).context("the train job is invalid")?;

    let mut tensorboard_objects = Vec::new();
    if config.tensorboard.enabled {
        let tensorboard_config = render::tensorboard_config(config, &refs.tensorboard)?;
        for service in tensorboard::services(&tensorboard_config) {
            tensorboard_objects.push(Manifest::from_object(&service)?);
        }
        tensorboard_objects.push(Manifest::from_object(&tensorboard::deployment(
            &tensorboard_config,
        ))?);
    }

    Ok(Rendered {
        images: rendered_images,
        storage: storage_manifests(config, file_system)?,
        staging: crate::staging::jobs(config, &layout, &refs.training, &refs.stager)?
            .iter()
            .map(Manifest::from_object)
            .collect::<Result<_, _>>()?,
        compile: {
            // The cache check runs first unless the compile job is forced.
            let mut objects = Vec::new();
            if !config.training.force_compile {
                objects.push(Manifest::from_object(&crate::staging::cache_check_job(
                    config,
                    &layout,
                    &refs.stager,
                ))?);
            }
            objects.push(Manifest::from_object(&compile)?);
            objects
        },
        train: vec![Manifest::from_object(&train)?],
        tensorboard: tensorboard_objects,
    })
}

impl Rendered {
    /// Every object in apply order.
    pub fn all_manifests(&self) -> Vec<Manifest> {
        [
            &self.storage,
            &self.staging,
            &self.compile,
            &self.train,
            &self.tensorboard,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}
