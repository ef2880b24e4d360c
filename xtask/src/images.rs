//! The three images of a deployment, rendered from the configuration, with their
//! content-addressed references.

use std::collections::BTreeMap;
use std::path::Path;

use ecr_image::{BuildOptions, ImageDefinition, StagerImage, TensorboardImage, TrainingImage};

use crate::config::Config;
use crate::deploy::plan::RenderedImage;

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

/// The image definitions: training (with the configured neuronx-nemo-megatron commit),
/// TensorBoard (reading the experiments directory) and the stager (carrying `stager_binary`).
pub fn definitions(
    config: &Config,
    experiments: &str,
    stager_binary: &Path,
) -> anyhow::Result<Vec<ImageDefinition>> {
    let training = training_image(config);
    let tensorboard = TensorboardImage {
        logdir: experiments.to_owned(),
        ..TensorboardImage::default()
    };
    let mut training = training.definition()?;
    crate::render::rank::add_to_image(&mut training);
    let mut definitions = vec![training, tensorboard.definition()?];
    let stager = StagerImage::new(stager_binary);
    definitions.push(if stager_binary.exists() {
        stager.definition()?
    } else {
        // Without the binary the Dockerfile still renders; the tag then covers the Dockerfile only.
        ImageDefinition {
            name: "stager",
            dockerfile: stager.dockerfile()?,
            files: Vec::new(),
        }
    });
    Ok(definitions)
}

/// The definitions rendered, each with its content-addressed reference in `registry/repository`:
/// exactly the tag `ecr_image::build_and_push` pushes (default build options), so manifests name
/// what the images step publishes.
pub fn rendered(
    definitions: &[ImageDefinition],
    registry: &str,
    repository: &str,
) -> anyhow::Result<BTreeMap<String, RenderedImage>> {
    let mut out = BTreeMap::new();
    for definition in definitions {
        let context = definition.context()?;
        let digest = context.digest()?;
        let tag = ecr_image::content_tag(&digest, context.dockerfile(), &BuildOptions::default());
        out.insert(
            definition.name.to_owned(),
            RenderedImage {
                reference: format!("{registry}/{repository}:{tag}"),
                dockerfile: context.dockerfile().to_owned(),
            },
        );
    }
    Ok(out)
}
