//! The whole publish step: hash the context, skip what the registry already has, otherwise
//! build and push under the content tag, then move human tags.
//!
//! Re-running with unchanged inputs costs one hash of the context and one registry query.

use bollard::Docker;

use crate::build::{BuiltImage, build};
use crate::context::BuildContext;
use crate::ecr::RegistryCredentials;
use crate::engine::{local_image_exists, pull, remote_digest, tag};
use crate::error::{Error, Result};
use crate::progress::{Event, Progress};
use crate::push::{RetryPolicy, push};
use crate::reference::{BuildOptions, ImageReference, content_tag, validate_tag};

/// What to publish and where.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The files to build.
    pub context: BuildContext,
    /// Build arguments, platform, target.
    pub options: BuildOptions,
    /// The registry host to push to (`<account>.dkr.ecr.<region>.amazonaws.com`, or a mirror).
    pub registry: String,
    /// The repository in that registry.
    pub repository: String,
    /// Credentials for `registry` (their `Debug` is redacted).
    pub credentials: RegistryCredentials,
    /// Human tags (e.g. `latest`) to point at the image as well.
    pub extra_tags: Vec<String>,
    /// Retries of transient push failures.
    pub retry: RetryPolicy,
    /// Build and push even when the registry already holds the content tag.
    pub force: bool,
}

/// A tag that points at the published image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTag {
    /// The reference.
    pub reference: ImageReference,
    /// Its manifest digest in the registry.
    pub digest: String,
    /// Whether this run moved it (false: it already pointed at the image).
    pub moved: bool,
}

/// The outcome of [`build_and_push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The content-addressed reference (`registry/repository:sha256-...`).
    pub reference: ImageReference,
    /// The manifest digest the registry holds for it.
    pub digest: String,
    /// Whether this run built and pushed it (false: the registry already had it).
    pub pushed: bool,
    /// The engine's image id, when this run built the image.
    pub image_id: Option<String>,
    /// The human tags, in the order requested.
    pub extra_tags: Vec<PublishedTag>,
}

impl Published {
    /// `registry/repository@sha256:...`: the immutable way to refer to the image in manifests.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.reference.name(), self.digest)
    }
}

/// Publishes a context: see the module documentation.
#[tracing::instrument(skip_all, fields(registry = %request.registry, repository = %request.repository))]
pub async fn build_and_push(
    docker: &Docker,
    request: &PublishRequest,
    progress: &dyn Progress,
) -> Result<Published> {
    request.options.check()?;
    for extra in &request.extra_tags {
        validate_tag(extra)?;
    }
    let context = request.context.clone();
    let digest = tokio::task::spawn_blocking(move || context.digest())
        .await
        .map_err(|join| Error::ReadContext {
            path: request.context.description().into(),
            source: std::io::Error::other(join.to_string()),
        })??;
    let tag_name = content_tag(&digest, request.context.dockerfile(), &request.options);
    let reference = ImageReference::new(&request.registry, &request.repository, &tag_name)?;
    progress.event(&Event::ContextHashed {
        files: request.context.file_count(),
        bytes: request.context.total_bytes(),
        tag: tag_name.clone(),
    });

    progress.event(&Event::CheckingRegistry {
        reference: reference.to_string(),
    });
    let existing = remote_digest(docker, &reference, &request.credentials).await?;
    let (manifest_digest, pushed, image_id) = match existing {
        Some(digest) if !request.force => {
            tracing::info!(%reference, %digest, "the registry already holds this content tag");
            progress.event(&Event::AlreadyInRegistry {
                reference: reference.to_string(),
                digest: digest.clone(),
            });
            (digest, false, None)
        }
        _ => {
            let BuiltImage { image_id, .. } = build(
                docker,
                &request.context,
                &request.options,
                &reference.to_string(),
                Some(&digest),
                progress,
            )
            .await?;
            let manifest = push(
                docker,
                &reference,
                &request.credentials,
                &request.retry,
                progress,
            )
            .await?;
            (manifest, true, Some(image_id))
        }
    };

    let mut extra_tags = Vec::new();
    for extra in &request.extra_tags {
        let target = reference.with_tag(extra)?;
        progress.event(&Event::CheckingRegistry {
            reference: target.to_string(),
        });
        if remote_digest(docker, &target, &request.credentials)
            .await?
            .as_deref()
            == Some(manifest_digest.as_str())
        {
            progress.event(&Event::TagUnchanged {
                reference: target.to_string(),
            });
            extra_tags.push(PublishedTag {
                reference: target,
                digest: manifest_digest.clone(),
                moved: false,
            });
            continue;
        }
        if !local_image_exists(docker, &reference.to_string()).await? {
            pull(
                docker,
                &reference,
                &request.credentials,
                &request.options.platform,
            )
            .await?;
        }
        tag(docker, &reference.to_string(), &target).await?;
        let digest = push(
            docker,
            &target,
            &request.credentials,
            &request.retry,
            progress,
        )
        .await?;
        extra_tags.push(PublishedTag {
            reference: target,
            digest,
            moved: true,
        });
    }

    Ok(Published {
        reference,
        digest: manifest_digest,
        pushed,
        image_id,
        extra_tags,
    })
}

/// A locally built image (no registry involved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// `repository:sha256-...` in the engine.
    pub reference: String,
    /// The engine's image id.
    pub image_id: String,
    /// Whether this run built it (false: the engine already had the content tag).
    pub built: bool,
}

/// Builds `context` into the engine as `repository:<content tag>`, unless it is already there.
#[tracing::instrument(skip_all, fields(repository = %repository))]
pub async fn build_local(
    docker: &Docker,
    context: &BuildContext,
    options: &BuildOptions,
    repository: &str,
    force: bool,
    progress: &dyn Progress,
) -> Result<LocalImage> {
    crate::reference::validate_repository(repository)?;
    options.check()?;
    let owned = context.clone();
    let digest = tokio::task::spawn_blocking(move || owned.digest())
        .await
        .map_err(|join| Error::ReadContext {
            path: context.description().into(),
            source: std::io::Error::other(join.to_string()),
        })??;
    let tag_name = content_tag(&digest, context.dockerfile(), options);
    let reference = format!("{repository}:{tag_name}");
    progress.event(&Event::ContextHashed {
        files: context.file_count(),
        bytes: context.total_bytes(),
        tag: tag_name,
    });
    if !force && let Some(image_id) = crate::engine::local_image_id(docker, &reference).await? {
        progress.event(&Event::AlreadyBuilt {
            reference: reference.clone(),
        });
        return Ok(LocalImage {
            reference,
            image_id,
            built: false,
        });
    }
    let built = build(
        docker,
        context,
        options,
        &reference,
        Some(&digest),
        progress,
    )
    .await?;
    Ok(LocalImage {
        reference,
        image_id: built.image_id,
        built: true,
    })
}
