//! The Docker engine: connecting, asking a registry (through the engine) for a tag's digest,
//! tagging and pulling, and classifying the engine's error messages.
//!
//! Registry queries go through the engine's `/distribution/{name}/json` endpoint, so the engine
//! does the registry's token dance and treats loopback registries as plain HTTP, exactly as it
//! does when pushing.

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{CreateImageOptionsBuilder, TagImageOptionsBuilder};
use futures::StreamExt as _;

use crate::ecr::RegistryCredentials;
use crate::error::{Error, Result};
use crate::reference::ImageReference;

/// How long one request to the engine may take before its response starts. Builds and pushes
/// stream their output after that, so they are not bounded by it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The bound of the first calls (ping, version negotiation), which answer at once from a
/// healthy engine.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects to the engine at `endpoint` (`unix:///var/run/docker.sock`, a socket path,
/// `tcp://host:port` or `http://host:port`) and checks that it answers.
pub async fn connect(endpoint: &str) -> Result<Docker> {
    let unreachable = |source| Error::DockerUnreachable {
        endpoint: endpoint.to_owned(),
        source,
    };
    let timeout = REQUEST_TIMEOUT.as_secs();
    let docker = if let Some(address) = endpoint.strip_prefix("tcp://") {
        Docker::connect_with_http(
            &format!("http://{address}"),
            timeout,
            bollard::API_DEFAULT_VERSION,
        )
    } else if endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, timeout, bollard::API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_socket(endpoint, timeout, bollard::API_DEFAULT_VERSION)
    }
    .map_err(unreachable)?;
    // The first calls are bounded tightly: an engine that accepts the connection and never
    // answers is an error now, not after the long bound of builds and pushes.
    let silent = || Error::DockerSilent {
        endpoint: endpoint.to_owned(),
        seconds: HANDSHAKE_TIMEOUT.as_secs(),
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, docker.ping())
        .await
        .map_err(|_| silent())?
        .map_err(unreachable)?;
    // Speak the engine's API version (Debian's docker.io 20.10 serves API 1.41).
    let docker = tokio::time::timeout(HANDSHAKE_TIMEOUT, docker.negotiate_version())
        .await
        .map_err(|_| silent())?
        .map_err(unreachable)?;
    Ok(docker)
}

/// What an engine or registry message means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The registry refused the credentials.
    Unauthorized,
    /// The tag or repository does not exist.
    NotFound,
    /// The tag exists and the repository refuses to overwrite it.
    Immutable,
    /// Worth trying again: timeouts, resets, 5xx, throttling.
    Transient,
    /// Anything else.
    Other,
}

/// Classifies a message from the engine or a registry (case-insensitive substring rules).
pub(crate) fn classify(message: &str) -> Failure {
    let message = message.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|needle| message.contains(needle));
    if any(&["immutable", "cannot be overwritten"]) {
        Failure::Immutable
    } else if any(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "authorization token has expired",
        "incorrect username or password",
    ]) {
        Failure::Unauthorized
    } else if any(&[
        "manifest unknown",
        "not found",
        "name unknown",
        "no such image",
        "does not exist",
    ]) {
        Failure::NotFound
    } else if any(&[
        "timeout",
        "timed out",
        "connection reset",
        "connection refused",
        "broken pipe",
        "unexpected eof",
        "eof",
        "toomanyrequests",
        "too many requests",
        "service unavailable",
        "bad gateway",
        "gateway timeout",
        "internal server error",
        "502",
        "503",
        "504",
        "temporary",
        "tls handshake",
        "no such host",
        "i/o timeout",
    ]) {
        Failure::Transient
    } else {
        Failure::Other
    }
}

/// The message and HTTP status of an engine error, when it has them.
pub(crate) fn engine_message(error: &DockerError) -> Option<(Option<u16>, &str)> {
    match error {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => Some((Some(*status_code), message)),
        DockerError::DockerStreamError { error } => Some((None, error)),
        _ => None,
    }
}

/// The manifest digest the registry holds for `reference`, or `None` if it has no such tag.
#[tracing::instrument(skip_all, fields(reference = %reference))]
pub async fn remote_digest(
    docker: &Docker,
    reference: &ImageReference,
    credentials: &RegistryCredentials,
) -> Result<Option<String>> {
    match docker
        .inspect_registry_image(&reference.to_string(), Some(credentials.docker()))
        .await
    {
        Ok(inspect) => Ok(inspect.descriptor.digest),
        Err(error) => {
            let Some((status, message)) = engine_message(&error) else {
                return Err(Error::Docker {
                    operation: "inspect in the registry",
                    target: reference.to_string(),
                    source: error,
                });
            };
            let kind = match status {
                Some(404) => Failure::NotFound,
                Some(401 | 403) => Failure::Unauthorized,
                _ => classify(message),
            };
            match kind {
                Failure::NotFound => Ok(None),
                Failure::Unauthorized => Err(Error::RegistryUnauthorized {
                    registry: reference.registry().to_owned(),
                    reference: reference.to_string(),
                    message: message.to_owned(),
                }),
                _ => Err(Error::Docker {
                    operation: "inspect in the registry",
                    target: reference.to_string(),
                    source: error,
                }),
            }
        }
    }
}

/// Whether the engine holds an image under `reference`.
pub async fn local_image_exists(docker: &Docker, reference: &str) -> Result<bool> {
    match docker.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(source) => Err(Error::Docker {
            operation: "inspect",
            target: reference.to_owned(),
            source,
        }),
    }
}

/// The engine's id of a local image.
pub(crate) async fn local_image_id(docker: &Docker, reference: &str) -> Result<Option<String>> {
    match docker.inspect_image(reference).await {
        Ok(image) => Ok(image.id),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(Error::Docker {
            operation: "inspect",
            target: reference.to_owned(),
            source,
        }),
    }
}

/// Gives the local image `source` the additional name `target`.
pub(crate) async fn tag(docker: &Docker, source: &str, target: &ImageReference) -> Result<()> {
    let options = TagImageOptionsBuilder::default()
        .repo(&target.name())
        .tag(target.tag())
        .build();
    docker
        .tag_image(source, Some(options))
        .await
        .map_err(|source_error| Error::Docker {
            operation: "tag",
            target: target.to_string(),
            source: source_error,
        })
}

/// Pulls `reference` from its registry.
pub(crate) async fn pull(
    docker: &Docker,
    reference: &ImageReference,
    credentials: &RegistryCredentials,
    platform: &str,
) -> Result<()> {
    let options = CreateImageOptionsBuilder::default()
        .from_image(&reference.name())
        .tag(reference.tag())
        .platform(platform)
        .build();
    let mut stream = docker.create_image(Some(options), None, Some(credentials.docker()));
    while let Some(item) = stream.next().await {
        if let Err(error) = item {
            if let Some((_, message)) = engine_message(&error)
                && classify(message) == Failure::Unauthorized
            {
                return Err(Error::RegistryUnauthorized {
                    registry: reference.registry().to_owned(),
                    reference: reference.to_string(),
                    message: message.to_owned(),
                });
            }
            return Err(Error::Docker {
                operation: "pull",
                target: reference.to_string(),
                source: error,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
