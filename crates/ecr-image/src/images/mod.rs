//! trnkit's typed image definitions: the training image, the TensorBoard image and the
//! staging image.
//!
//! Each definition is a plain struct whose fields are the versions and sources it pins, with a
//! `Default` (or `new`) holding the pinned defaults. [`ImageDefinition`] is what rendering
//! produces: the Dockerfile, the generated files next to it, and a build context made of both.
//! Every value is checked before it is written into a Dockerfile (no whitespace, quotes or shell
//! metacharacters), and no rendered Dockerfile may hold a secret-looking `ARG` or `ENV`.

mod stager;
mod tensorboard;
mod training;

pub use stager::{STAGE_BINARY_NAME, STAGER_BINARY_PATH, StagerImage};
pub use tensorboard::{
    TENSORBOARD_HTPASSWD_DIR, TENSORBOARD_HTPASSWD_FILE, TENSORBOARD_LOGDIR_ENV, TENSORBOARD_PORT,
    TensorboardImage,
};
pub use training::{GitSource, NeuronAptPackages, TrainingImage};

use crate::context::{BuildContext, ContextFile};
use crate::dockerfile::Dockerfile;
use crate::error::{Error, Result};

/// A rendered image: its Dockerfile and the files it copies.
#[derive(Debug, Clone)]
pub struct ImageDefinition {
    /// Short name (`training`, `tensorboard`, `stager`).
    pub name: &'static str,
    /// The Dockerfile.
    pub dockerfile: Dockerfile,
    /// Files placed next to the Dockerfile in the build context.
    pub files: Vec<ContextFile>,
}

impl ImageDefinition {
    /// The build context: `Dockerfile` plus [`Self::files`].
    pub fn context(&self) -> Result<BuildContext> {
        BuildContext::from_files(
            format!("the {} image", self.name),
            &self.dockerfile.render(),
            self.files.iter().cloned(),
        )
    }
}

/// Checks a value that goes into a Dockerfile unquoted: a version, an image reference, a URL.
pub(crate) fn check_value(image: &str, parameter: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid_parameter(
            image,
            parameter,
            value,
            "it is empty",
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-:/@+=~%".contains(c);
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Err(Error::invalid_parameter(
            image,
            parameter,
            value,
            format!("{bad:?} is not allowed: use letters, digits and . _ - : / @ + = ~ %"),
        ));
    }
    Ok(())
}

/// The base of the training and TensorBoard images: Ubuntu 22.04 (the Neuron SDK's), pinned
/// by digest.
pub(crate) const UBUNTU_JAMMY: &str = "public.ecr.aws/docker/library/ubuntu:jammy-20260901.2@sha256:\
     b8b6ee6aa931ecd9d0d952abc34dc0e5f7c6a30c6bb71b079fe399fde0329c02";

/// Checks a git commit id: 40 lowercase hex digits (a full SHA-1, never a branch).
pub(crate) fn check_commit(image: &str, parameter: &str, value: &str) -> Result<()> {
    if value.len() == 40
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(())
    } else {
        Err(Error::invalid_parameter(
            image,
            parameter,
            value,
            "give the full 40-digit commit id, not a branch, tag or short id, so the build is reproducible",
        ))
    }
}

/// Checks the `neuronx-nemo-megatron` commit the training image is built from: the full 40-digit
/// commit id, never a branch, tag or short id. The training image applies exactly this check, so
/// a configuration validated with it always renders.
pub fn validate_commit(commit: &str) -> Result<()> {
    check_commit("training", "neuronx_nemo_megatron.commit", commit)
}

/// Checks that an image reference is pinned by digest (`name:tag@sha256:<64 hex>`).
pub(crate) fn check_pinned_image(image: &str, parameter: &str, value: &str) -> Result<()> {
    check_value(image, parameter, value)?;
    let pinned = value
        .split_once("@sha256:")
        .is_some_and(|(_, hex)| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if pinned {
        Ok(())
    } else {
        Err(Error::invalid_parameter(
            image,
            parameter,
            value,
            "pin the base image by digest (name:tag@sha256:...) so the build is reproducible",
        ))
    }
}

/// The Dockerfile of every image with its default values, for snapshot tests and listings.
/// The stager needs no binary to render its Dockerfile.
pub fn default_dockerfiles() -> Result<Vec<(&'static str, Dockerfile)>> {
    Ok(vec![
        ("training", TrainingImage::default().dockerfile()?),
        ("tensorboard", TensorboardImage::default().dockerfile()?),
        ("stager", StagerImage::new("trnkit-stage").dockerfile()?),
    ])
}

#[cfg(test)]
mod tests;
