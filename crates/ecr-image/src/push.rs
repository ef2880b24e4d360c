//! Pushing a local image to a registry, retrying transient failures.
//!
//! Pushing is idempotent (layers the registry holds are skipped), so a push that failed on a
//! timeout, a reset connection, a 5xx or throttling is simply tried again after an exponential
//! backoff. Refused credentials and immutable tags fail at once with specific errors.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::PushImageOptionsBuilder;
use futures::StreamExt as _;

use crate::ecr::RegistryCredentials;
use crate::engine::{Failure, classify, engine_message};
use crate::error::{Error, Result};
use crate::progress::{Event, Progress};
use crate::reference::ImageReference;

/// How often and how patiently to retry transient push failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub attempts: u32,
    /// The delay after the first failure; it doubles after each further failure.
    pub initial_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, waiting 2 s, 4 s, then 8 s.
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempt`-th failure (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

enum Attempt {
    Transient(String),
    Fatal(Error),
}

/// Pushes the local image `reference` and returns the manifest digest the registry stored.
#[tracing::instrument(skip_all, fields(reference = %reference))]
pub async fn push(
    docker: &Docker,
    reference: &ImageReference,
    credentials: &RegistryCredentials,
    retry: &RetryPolicy,
    progress: &dyn Progress,
) -> Result<String> {
    let attempts = retry.attempts.max(1);
    for attempt in 1..=attempts {
        progress.event(&Event::PushStarted {
            reference: reference.to_string(),
        });
        match push_once(docker, reference, credentials, progress).await {
            Ok(digest) => {
                progress.event(&Event::Pushed {
                    reference: reference.to_string(),
                    digest: digest.clone(),
                });
                return Ok(digest);
            }
            Err(Attempt::Fatal(error)) => return Err(error),
            Err(Attempt::Transient(message)) if attempt < attempts => {
                let delay = retry.delay(attempt);
                tracing::warn!(attempt, attempts, ?delay, %message, "push failed; trying again");
                progress.event(&Event::Retrying {
                    attempt,
                    attempts,
                    delay,
                    message,
                });
                tokio::time::sleep(delay).await;
            }
            Err(Attempt::Transient(message)) => {
                return Err(Error::Push {
                    reference: reference.to_string(),
                    attempts,
                    message,
                });
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

async fn push_once(
    docker: &Docker,
    reference: &ImageReference,
    credentials: &RegistryCredentials,
    progress: &dyn Progress,
) -> Result<String, Attempt> {
    let options = PushImageOptionsBuilder::default()
        .tag(reference.tag())
        .build();
    let mut stream =
        docker.push_image(&reference.name(), Some(options), Some(credentials.docker()));
    let mut digest = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                let Some(status) = info.status else { continue };
                if let Some(found) = parse_pushed_digest(&status) {
                    digest = Some(found);
                }
                let detail = info.progress_detail.unwrap_or_default();
                progress.event(&Event::PushProgress {
                    status,
                    current: detail.current.and_then(|n| u64::try_from(n).ok()),
                    total: detail.total.and_then(|n| u64::try_from(n).ok()),
                });
            }
            Err(error) => {
                let Some((status, message)) = engine_message(&error) else {
                    return Err(Attempt::Fatal(Error::Docker {
                        operation: "push",
                        target: reference.to_string(),
                        source: error,
                    }));
                };
                let message = message.trim().to_owned();
                let kind = match status {
                    Some(401 | 403) => Failure::Unauthorized,
                    Some(502..=504) => Failure::Transient,
                    _ => classify(&message),
                };
                return Err(match kind {
                    Failure::Unauthorized => Attempt::Fatal(Error::RegistryUnauthorized {
                        registry: reference.registry().to_owned(),
                        reference: reference.to_string(),
                        message,
                    }),
                    Failure::Immutable => Attempt::Fatal(Error::TagImmutable {
                        reference: reference.to_string(),
                        message,
                    }),
                    Failure::Transient => Attempt::Transient(message),
                    Failure::NotFound | Failure::Other => Attempt::Fatal(Error::Push {
                        reference: reference.to_string(),
                        attempts: 1,
                        message,
                    }),
                });
            }
        }
    }
    digest.ok_or_else(|| {
        Attempt::Fatal(Error::PushedDigestMissing {
            reference: reference.to_string(),
        })
    })
}

/// Finds the digest in the engine's last push status: `<tag>: digest: sha256:<hex> size: <n>`.
pub(crate) fn parse_pushed_digest(status: &str) -> Option<String> {
    let (_, rest) = status.split_once("digest: ")?;
    let digest = rest.split_whitespace().next()?;
    let (algorithm, hex) = digest.split_once(':')?;
    (algorithm == "sha256" && hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| digest.to_owned())
}

#[cfg(test)]
mod tests;
