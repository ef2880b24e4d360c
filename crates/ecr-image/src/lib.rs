//! Container images for trnkit: typed definitions rendered to Dockerfiles, built through the
//! Docker Engine API, tagged by content, and pushed to Amazon ECR (or any registry).
//!
//! # What it does
//!
//! - **Renders** the training image of the blueprint ([`TrainingImage`]), a TensorBoard image
//!   with no password inside ([`TensorboardImage`]) and a staging image carrying the
//!   `trnkit-stage` binary ([`StagerImage`]) from typed definitions whose fields pin every
//!   version ([`dockerfile`] is the small Dockerfile model underneath). No rendered Dockerfile
//!   may hold a secret-looking `ARG` or `ENV`.
//! - **Packs build contexts** ([`BuildContext`]): a directory honouring `.dockerignore` with the
//!   Docker CLI's rules, or a rendered definition. The tar is deterministic and its
//!   [`ContextDigest`] covers paths, modes and contents.
//! - **Tags by content** ([`content_tag`]): the tag derives from the context digest (which
//!   covers the Dockerfile) and the build options, so "same tag" means "same build".
//! - **Publishes** ([`build_and_push`]): if the registry already holds the content tag, nothing
//!   is built or pushed; otherwise the context is streamed to the engine, built for
//!   `linux/amd64`, and pushed with retries on transient failures; human tags such as `latest`
//!   can be moved too. The pushed manifest digest is returned.
//! - **Talks to ECR** ([`ensure_repository`], [`registry_credentials`]): creates the repository
//!   if missing (scan-on-push, tag mutability, resource tags) and turns an authorization token
//!   into [`RegistryCredentials`], whose password is never printed, logged or `Debug`-formatted.
//!
//! # What it does not do
//!
//! It reads no environment variables, prints nothing (progress goes to a [`Progress`]
//! implementation, logs to `tracing`), and builds no AWS or Docker client configuration: the
//! caller passes an `aws_sdk_ecr::Client` (region, credentials and `AWS_ENDPOINT_URL` come from
//! the caller's `aws-config` chain) and a connected [`bollard::Docker`] (see [`connect`]). It
//! does not build `trnkit-stage` itself, and it uses the engine's classic builder (the
//! Debian `docker.io` engine trnkit supports serves API 1.41).
//!
//! # Entry points
//!
//! - [`TrainingImage::definition`], [`TensorboardImage::definition`], [`StagerImage::definition`]
//!   → [`ImageDefinition`] → [`ImageDefinition::context`].
//! - [`BuildContext::from_directory`] for users' own images.
//! - [`connect`], [`ensure_repository`], [`registry_credentials`], [`build_and_push`],
//!   [`build_local`], [`remote_digest`].
//!
//! # Example
//!
//! ```no_run
//! use ecr_image::{
//!     BuildOptions, NoProgress, PublishRequest, RepositorySpec, RetryPolicy, TrainingImage,
//! };
//!
//! # async fn example(ecr: aws_sdk_ecr::Client) -> ecr_image::Result<()> {
//! // Render the training image with its pinned defaults.
//! let definition = TrainingImage::default().definition()?;
//! println!("{}", definition.dockerfile.render());
//!
//! // Make sure the repository exists, and get registry credentials from ECR.
//! let repository = ecr_image::ensure_repository(&ecr, &RepositorySpec::new("trnkit/training")).await?;
//! let credentials = ecr_image::registry_credentials(&ecr).await?;
//!
//! // Build and push unless the registry already has this exact content.
//! let docker = ecr_image::connect("unix:///var/run/docker.sock").await?;
//! let request = PublishRequest {
//!     context: definition.context()?,
//!     options: BuildOptions::default(),
//!     registry: repository.registry.clone(),
//!     repository: repository.name.clone(),
//!     credentials,
//!     extra_tags: vec!["latest".to_owned()],
//!     retry: RetryPolicy::default(),
//!     force: false,
//! };
//! let published = ecr_image::build_and_push(&docker, &request, &NoProgress).await?;
//! println!("{} ({})", published.reference, published.digest);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod build;
mod context;
pub mod dockerfile;
mod dockerignore;
mod ecr;
mod engine;
mod error;
mod images;
mod progress;
mod publish;
mod push;
mod reference;

/// The AWS SDK for ECR, re-exported so callers build the client with the same version.
pub use aws_sdk_ecr;
pub use build::{BuiltImage, build};
pub use context::{BuildContext, ContextDigest, ContextFile, FileSource};
pub use dockerignore::Dockerignore;
pub use ecr::{
    RegistryCredentials, Repository, RepositorySpec, TagMutability, ensure_repository,
    registry_credentials,
};
pub use engine::{connect, local_image_exists, remote_digest};
pub use error::{Error, Result};
pub use images::{
    GitSource, ImageDefinition, NeuronAptPackages, STAGE_BINARY_NAME, STAGER_BINARY_PATH,
    StagerImage, TENSORBOARD_HTPASSWD_DIR, TENSORBOARD_HTPASSWD_FILE, TENSORBOARD_LOGDIR_ENV,
    TENSORBOARD_PORT, TensorboardImage, TrainingImage, default_dockerfiles, validate_commit,
};
pub use progress::{Event, NoProgress, Progress};
pub use publish::{
    LocalImage, PublishRequest, Published, PublishedTag, build_and_push, build_local,
};
pub use push::{RetryPolicy, push};
pub use reference::{
    BuildOptions, DEFAULT_PLATFORM, ImageReference, content_tag, validate_registry,
    validate_repository, validate_tag,
};
pub use secrecy::SecretString;
