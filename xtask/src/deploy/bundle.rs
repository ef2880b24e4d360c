//! Renders everything a plan is made from: the images and, per step, the objects to apply.
//!
//! Offline: nothing here contacts AWS or the cluster. What only the cluster can tell (the MPI
//! Operator's version, an FSx file system's mount name) comes in as arguments.

use std::path::Path;

use anyhow::Context;
use fsx::FileSystem;
use mpijob::LauncherGate;
use mpijob::llama2;

use super::plan::Rendered;
use crate::config::Config;
use crate::render::{self, ImageRefs, Manifest};
use crate::{images, tensorboard};

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
    // Without the binary (a dry run before any build) the stager's tag covers its Dockerfile.
    let stager_binary = Some(stager_binary).filter(|path| path.is_file());
    let rendered_images = images::rendered(
        &images::images(config, stager_binary)?,
        &registry,
        &config.image.repository,
    );
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
    let train = llama2::train_job(&render::train_config(&jobs, config))
        .context("the train job is invalid")?;

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
        storage: crate::storage::manifests(config, file_system)?,
        staging: crate::staging::jobs(config, &layout, &refs.training, &refs.stager)?
            .iter()
            .map(Manifest::from_object)
            .collect::<Result<_, _>>()?,
        compile: {
            // The node check runs first (unless switched off), then the cache check unless
            // the compile job is forced.
            let mut objects = Vec::new();
            if config.training.node_check
                && let Some(check) = crate::node_check::job(&compile)
            {
                objects.push(Manifest::from_object(&check)?);
            }
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
