//! The Kubernetes client every command uses, with every call bounded.
//!
//! - connecting (TCP) is bounded by [`Bounds::connect`];
//! - every request must see the response's head within [`Bounds::response`]: an API server that
//!   accepts the connection and never answers is an error after that long, not a hang. Streams
//!   (watches, logs) get their head at once and are not cut by this bound;
//! - a read that stalls on an open connection is bounded by [`Bounds::read`] (long enough for
//!   a watch's server-side timeout);
//! - [`ensure_reachable`] asks the API server for its version first, with visible retries, and
//!   ends with an error naming the endpoint and what to change.

use std::time::Duration;

use anyhow::Context as _;

/// The bounds of every Kubernetes call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Establishing the TCP connection.
    pub connect: Duration,
    /// From sending a request to the response's head (TLS handshake included).
    pub response: Duration,
    /// One read on an open connection.
    pub read: Duration,
    /// Attempts of the first call, which tells a silent endpoint from a slow one.
    pub attempts: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(30),
            read: Duration::from_secs(295),
            attempts: 3,
        }
    }
}

/// A client for `config`, every call bounded by `bounds`.
pub fn bounded(mut config: kube::Config, bounds: Bounds) -> anyhow::Result<kube::Client> {
    config.connect_timeout = Some(bounds.connect);
    config.read_timeout = Some(bounds.read);
    let url = config.cluster_url.to_string();
    let builder = kube::client::ClientBuilder::try_from(config)
        .with_context(|| format!("cannot build a Kubernetes client for {url}"))?;
    Ok(builder
        .with_layer(&tower::timeout::TimeoutLayer::new(bounds.response))
        .build())
}

/// Asks the API server at `url` for its version, retrying with backoff and saying so; fails
/// with an error that names the endpoint, the bound, and what to change.
pub async fn ensure_reachable(
    client: &kube::Client,
    url: &str,
    bounds: Bounds,
) -> anyhow::Result<()> {
    let mut last = String::new();
    for attempt in 1..=bounds.attempts.max(1) {
        match client.apiserver_version().await {
            Ok(_) => return Ok(()),
            Err(error) => {
                last = describe(&error, bounds);
                if attempt < bounds.attempts {
                    let delay = Duration::from_secs(1 << (attempt - 1));
                    tracing::warn!(
                        "the Kubernetes API server at {url} did not answer ({last}); attempt {attempt} of {}, retrying in {}s",
                        bounds.attempts,
                        delay.as_secs()
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    anyhow::bail!(
        "the Kubernetes API server at {url} did not answer after {} attempts ({last}): check that \
         the cluster is up and reachable from here (VPN, security groups), or choose another \
         context with --context / cluster.kube_context (`kubectl config get-contexts` lists them)",
        bounds.attempts
    )
}

fn describe(error: &kube::Error, bounds: Bounds) -> String {
    let text = format!("{error}");
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        if cause.is::<tower::timeout::error::Elapsed>() {
            return format!("no response within {}s", bounds.response.as_secs());
        }
        source = cause.source();
    }
    if text.contains("Connect") || text.contains("connect") {
        let mut chain = text;
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            chain = format!("{chain}: {cause}");
            source = cause.source();
        }
        return chain;
    }
    text
}

#[cfg(test)]
mod tests;
