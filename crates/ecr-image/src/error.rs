//! The crate's one error type.
//!
//! Variants are named by the operation that failed and carry the context a user needs (a path,
//! an image reference, a registry). `Display` never repeats the source; callers print the chain.
//! No variant ever carries a password or token.

use std::path::PathBuf;

/// Everything that can go wrong while rendering, building, pushing or talking to ECR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A typed image definition holds a value that cannot go into a Dockerfile.
    #[error("invalid value {value:?} for {parameter} of the {image} image: {reason}")]
    InvalidParameter {
        /// The image being rendered (`training`, `tensorboard`, `stager`).
        image: String,
        /// The parameter, as named in the Rust definition.
        parameter: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A build argument or Dockerfile variable looks like it carries a secret.
    #[error(
        "{name} looks like a secret: build arguments and ENV values are stored in the image \
         history for anyone who can pull it; pass secrets at run time (a Kubernetes Secret) instead"
    )]
    SecretInImage {
        /// The variable's name.
        name: String,
    },

    /// An image reference, repository name or tag is not valid.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidReference {
        /// `repository`, `tag` or `registry`.
        what: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The build context directory does not exist or is not a directory.
    #[error(
        "the build context {path} is not a directory: pass an existing directory with --context"
    )]
    ContextNotFound {
        /// The path given.
        path: PathBuf,
    },

    /// The Dockerfile does not exist.
    #[error(
        "no Dockerfile at {path}: add one to the context, or name the context's Dockerfile in the build options"
    )]
    DockerfileNotFound {
        /// Where it was looked for.
        path: PathBuf,
    },

    /// Reading a file of the build context failed.
    #[error("could not read {path} of the build context")]
    ReadContext {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },

    /// A `.dockerignore` pattern could not be parsed.
    #[error("invalid pattern {pattern:?} in {path}")]
    DockerignorePattern {
        /// The `.dockerignore` file.
        path: PathBuf,
        /// The pattern as written.
        pattern: String,
        /// The glob parser's error.
        #[source]
        source: globset::Error,
    },

    /// A file of the context changed between hashing it and sending it to the engine.
    #[error(
        "the build context {path} changed while it was being sent to the docker engine: \
         run again once nothing writes to it"
    )]
    ContextChanged {
        /// The context root.
        path: PathBuf,
    },

    /// A file given to an image definition (e.g. the staging binary) is not usable.
    #[error("{path} cannot go into the {image} image: {reason}")]
    InvalidInputFile {
        /// The image.
        image: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The Docker engine could not be reached.
    #[error(
        "cannot reach the docker engine at {endpoint}: start dockerd, or point DOCKER_HOST at \
         a running engine"
    )]
    DockerUnreachable {
        /// The socket or URL that was tried.
        endpoint: String,
        /// What the client reported.
        #[source]
        source: bollard::errors::Error,
    },

    /// The Docker engine accepted the connection but did not answer in time.
    #[error(
        "the docker engine at {endpoint} did not answer within {seconds}s: check that dockerd is \
         running and healthy (`docker info`), or point DOCKER_HOST at another engine"
    )]
    DockerSilent {
        /// The socket or URL that was tried.
        endpoint: String,
        /// The bound.
        seconds: u64,
    },

    /// A Docker Engine API call failed for a reason other than the ones below.
    #[error("the docker engine failed to {operation} {target}")]
    Docker {
        /// What was being done (`build`, `tag`, `inspect`, `pull`, `push`).
        operation: &'static str,
        /// The image or reference concerned.
        target: String,
        /// The engine's error.
        #[source]
        source: bollard::errors::Error,
    },

    /// A build instruction failed.
    #[error("{}", build_failed_message(image, step.as_deref(), message, tail))]
    BuildFailed {
        /// The image being built (its local reference).
        image: String,
        /// The failing instruction, e.g. `Step 2/3 : RUN make`, when known.
        step: Option<String>,
        /// The engine's error message.
        message: String,
        /// The last lines of build output before the failure.
        tail: Vec<String>,
    },

    /// The registry refused the credentials.
    #[error(
        "the registry {registry} refused the credentials for {reference} ({message}): check the \
         user and password, or fetch a fresh ECR authorization token"
    )]
    RegistryUnauthorized {
        /// The registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// The registry's message, as relayed by the engine.
        message: String,
    },

    /// A tag cannot be moved because the repository's tags are immutable.
    #[error(
        "cannot move {reference}: the repository's tags are immutable; make the repository's \
         tags MUTABLE or do not ask to move human tags such as `latest`"
    )]
    TagImmutable {
        /// The reference that could not be overwritten.
        reference: String,
        /// The registry's message.
        message: String,
    },

    /// Pushing failed (after retrying transient failures).
    #[error("pushing {reference} failed after {attempts} attempt(s): {message}")]
    Push {
        /// The reference being pushed.
        reference: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error's message.
        message: String,
    },

    /// The push finished but the engine did not report the pushed digest.
    #[error("the docker engine pushed {reference} but reported no digest")]
    PushedDigestMissing {
        /// The reference that was pushed.
        reference: String,
    },

    /// Describing the ECR repository failed.
    #[error("could not describe the ECR repository {name}")]
    DescribeRepository {
        /// The repository name.
        name: String,
        /// The AWS error.
        #[source]
        source: Box<aws_sdk_ecr::Error>,
    },

    /// Creating the ECR repository failed.
    #[error("could not create the ECR repository {name}")]
    CreateRepository {
        /// The repository name.
        name: String,
        /// The AWS error.
        #[source]
        source: Box<aws_sdk_ecr::Error>,
    },

    /// Updating the settings or tags of an existing ECR repository failed.
    #[error("could not update the {setting} of the ECR repository {name}")]
    ConfigureRepository {
        /// The repository name.
        name: String,
        /// Which setting (`scan-on-push`, `tag mutability`, `tags`).
        setting: &'static str,
        /// The AWS error.
        #[source]
        source: Box<aws_sdk_ecr::Error>,
    },

    /// ECR answered without a field the crate needs.
    #[error("ECR answered {operation} without {field}")]
    EcrResponse {
        /// The API operation.
        operation: &'static str,
        /// The missing or malformed field.
        field: &'static str,
    },

    /// Getting an ECR authorization token failed.
    #[error("could not get an ECR authorization token")]
    AuthorizationToken {
        /// The AWS error.
        #[source]
        source: Box<aws_sdk_ecr::Error>,
    },

    /// The ECR authorization token is not `base64(user:password)`.
    #[error("the ECR authorization token is malformed: {reason}")]
    MalformedToken {
        /// What is wrong with it (never the token itself).
        reason: &'static str,
    },
}

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn build_failed_message(image: &str, step: Option<&str>, message: &str, tail: &[String]) -> String {
    let mut text = match step {
        Some(step) => format!("building {image} failed at `{step}`: {message}"),
        None => format!("building {image} failed: {message}"),
    };
    if !tail.is_empty() {
        text.push_str("\nlast lines of the build output:");
        for line in tail {
            text.push_str("\n  | ");
            text.push_str(line);
        }
    }
    text
}

impl Error {
    pub(crate) fn invalid_parameter(
        image: &str,
        parameter: &str,
        value: &str,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidParameter {
            image: image.to_owned(),
            parameter: parameter.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}
