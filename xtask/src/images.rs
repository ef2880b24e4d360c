//! The three images of a deployment (training, TensorBoard, stager), made from the configuration
//! in one place: their definitions, content-addressed tags and human tags.
//!
//! Deploy (`bundle`, the images step), `render` and `cargo xtask image build|push|render` all
//! call [`image`] or [`images`], so a tag in a manifest is exactly the tag `image push` pushes.
//! The `trnkit-stage` binary the stager image carries is built only when a run needs it
//! ([`stage_binary_for_run`]): after preflight passed and only when the images step runs.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ecr_image::{
    BuildContext, BuildOptions, ImageDefinition, StagerImage, TensorboardImage, TrainingImage,
};

use crate::config::Config;
use crate::deploy::plan::{RenderedImage, StepId};
use crate::deploy::run::Selection;

/// trnkit's images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum ImageName {
    /// Ubuntu 22.04 with the Neuron SDK, EFA, PyTorch Neuron and neuronx-nemo-megatron.
    Training,
    /// TensorBoard behind nginx basic auth; the htpasswd file comes from a Kubernetes Secret.
    Tensorboard,
    /// The trnkit-stage binary on Debian slim, for staging data inside the cluster.
    Stager,
}

impl ImageName {
    /// Every image, in the order deploy builds them.
    pub const ALL: [ImageName; 3] = [Self::Training, Self::Tensorboard, Self::Stager];

    /// The short name (`training`, `tensorboard`, `stager`): the key in rendered maps.
    pub fn name(self) -> &'static str {
        match self {
            Self::Training => "training",
            Self::Tensorboard => "tensorboard",
            Self::Stager => "stager",
        }
    }
}

/// One image of a deployment: what is built, and the tags it is pushed under.
#[derive(Debug, Clone)]
pub struct Image {
    /// Which image.
    pub name: ImageName,
    /// The typed definition, rendered (Dockerfile and generated files).
    pub definition: ImageDefinition,
    /// The build context made of it.
    pub context: BuildContext,
    /// The content-addressed tag with the default build options: what `ecr_image::build_and_push`
    /// pushes, and what the manifests name.
    pub tag: String,
    /// Human tags moved to the image besides its content tag.
    pub human_tags: Vec<String>,
}

impl Image {
    /// `registry/repository:<content tag>`.
    pub fn reference(&self, registry: &str, repository: &str) -> String {
        format!("{registry}/{repository}:{}", self.tag)
    }

    /// What the plan records of it: its reference and its Dockerfile's text.
    pub fn rendered(&self, registry: &str, repository: &str) -> RenderedImage {
        RenderedImage {
            reference: self.reference(registry, repository),
            dockerfile: self.definition.dockerfile.render(),
        }
    }
}

/// Checks `image.nemo_ref` with the training image's own check (a full 40-digit commit id), so
/// a configuration that validates always renders its training image. The error is the reason.
pub fn check_nemo_ref(value: &str) -> Result<(), String> {
    ecr_image::validate_commit(value).map_err(|error| match error {
        ecr_image::Error::InvalidParameter { value, reason, .. } => format!("{value:?}: {reason}"),
        other => other.to_string(),
    })
}

/// The training image's definition for `config`: the pinned Neuron SDK set with the configured
/// neuronx-nemo-megatron commit. Its `neuronx_cc_version` is the compiler whose cache entries
/// (`neuronxcc-<version>+<build>/`) the compile and train jobs use.
pub fn training_image(config: &Config) -> TrainingImage {
    let mut training = TrainingImage::default();
    training
        .neuronx_nemo_megatron
        .commit
        .clone_from(&config.image.nemo_ref);
    training
}

/// One image for `config`. `stager_binary` is the `trnkit-stage` executable the stager image
/// carries; without it the stager's Dockerfile still renders, and its tag then covers the
/// Dockerfile only (nothing is pushed under such a tag: the images step always has a binary).
pub fn image(
    config: &Config,
    name: ImageName,
    stager_binary: Option<&Path>,
) -> anyhow::Result<Image> {
    let definition = match name {
        ImageName::Training => {
            let mut definition = training_image(config)
                .definition()
                .context("cannot render the training image (image.nemo_ref)")?;
            crate::render::rank::add_to_image(&mut definition);
            definition
        }
        ImageName::Tensorboard => {
            let layout = crate::render::layout(config)?;
            TensorboardImage {
                logdir: layout.experiments().display().to_string(),
                ..TensorboardImage::default()
            }
            .definition()?
        }
        ImageName::Stager => match stager_binary {
            Some(binary) => StagerImage::new(binary).definition()?,
            None => ImageDefinition {
                name: "stager",
                dockerfile: StagerImage::new(ecr_image::STAGE_BINARY_NAME).dockerfile()?,
                files: Vec::new(),
            },
        },
    };
    let context = definition.context()?;
    let tag = ecr_image::content_tag(
        &context.digest()?,
        context.dockerfile(),
        &BuildOptions::default(),
    );
    Ok(Image {
        name,
        definition,
        context,
        tag,
        human_tags: human_tags(config, name),
    })
}

/// Every image for `config`, in [`ImageName::ALL`]'s order (see [`image`]).
pub fn images(config: &Config, stager_binary: Option<&Path>) -> anyhow::Result<Vec<Image>> {
    ImageName::ALL
        .into_iter()
        .map(|name| image(config, name, stager_binary))
        .collect()
}

/// The human tags of an image: `image.human_tag` for the training image, none for the others
/// (the manifests name content tags; a human tag only helps people find the training image).
pub fn human_tags(config: &Config, name: ImageName) -> Vec<String> {
    match name {
        ImageName::Training if !config.image.human_tag.is_empty() => {
            vec![config.image.human_tag.clone()]
        }
        _ => Vec::new(),
    }
}

/// The images as the plan records them, by name, in `registry/repository`.
pub fn rendered(
    images: &[Image],
    registry: &str,
    repository: &str,
) -> BTreeMap<String, RenderedImage> {
    images
        .iter()
        .map(|image| {
            (
                image.name.name().to_owned(),
                image.rendered(registry, repository),
            )
        })
        .collect()
}

/// The `trnkit-stage` next to the running executable: built by the same cargo profile as
/// `cargo xtask` (it may be missing or older than the sources; [`stage_binary_for_run`] decides
/// when a fresh build is needed).
pub fn default_stage_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .map(|dir| dir.join(ecr_image::STAGE_BINARY_NAME))
        })
        .unwrap_or_else(|| PathBuf::from(ecr_image::STAGE_BINARY_NAME))
}

/// Whether a run with `selection` needs a freshly built `trnkit-stage`: only when it runs the
/// images step, and then only once preflight passed (or is not part of the run). Nothing is
/// built for a run that stops at preflight, nor for `--only preflight`.
pub fn needs_stage_binary(selection: &Selection, preflight_passed: bool) -> bool {
    selection.includes(StepId::Images)
        && (preflight_passed || !selection.includes(StepId::Preflight))
}

/// The `trnkit-stage` executable for a cluster run: `given` (`--stage-binary`) when there is
/// one; otherwise `build()`'s when [`needs_stage_binary`], else [`default_stage_binary`] without
/// building (the images step does not run, so only the manifests' tags depend on it).
pub async fn stage_binary_for_run<F, Fut>(
    given: Option<&Path>,
    selection: &Selection,
    preflight_passed: bool,
    build: F,
) -> anyhow::Result<PathBuf>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<PathBuf>>,
{
    if let Some(path) = given {
        anyhow::ensure!(
            path.is_file(),
            "--stage-binary {}: no such file",
            path.display()
        );
        return Ok(path.to_owned());
    }
    if needs_stage_binary(selection, preflight_passed) {
        build().await
    } else {
        Ok(default_stage_binary())
    }
}

/// Insta settings that redact content-addressed tags (`:sha256-<20 hex>`), so a Dockerfile
/// change does not rewrite every snapshot that names an image; the tags themselves are checked
/// by tests comparing them with the images step's.
#[cfg(test)]
pub(crate) fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r":sha256-[0-9a-f]{20}\b", ":sha256-[content-tag]");
    settings
}

#[cfg(test)]
pub(crate) mod tests;
