//! The one AWS SDK configuration every command uses: the standard credential chain, an HTTPS
//! client on rustls with ring (the TLS stack kube uses too, so the process builds one), and
//! bounded calls: a connect timeout, a per-attempt and a whole-operation timeout, and a few
//! retries with backoff.
//!
//! `AWS_ENDPOINT_URL` is honoured by the chain; that is how the tests point it at moto.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_smithy_http_client::tls;

/// The bounds of every AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Establishing the TCP and TLS connection.
    pub connect: Duration,
    /// One attempt of an operation, from request to the whole response.
    pub attempt: Duration,
    /// The operation as a whole, retries included.
    pub operation: Duration,
    /// Attempts in all (the first one included).
    pub attempts: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            attempt: Duration::from_secs(30),
            operation: Duration::from_secs(120),
            attempts: 3,
        }
    }
}

/// The SDK configuration from the standard chain: `region` when given, else the chain's, else
/// `fallback_region` (the configuration's `[cluster] region`).
pub async fn sdk_config(region: Option<&str>, fallback_region: &str) -> aws_config::SdkConfig {
    let bounds = Bounds::default();
    // The HTTPS client: rustls with ring. The SDK hands it the timeouts configured here.
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(bounds.connect)
                .read_timeout(bounds.attempt)
                .operation_attempt_timeout(bounds.attempt)
                .operation_timeout(bounds.operation)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(bounds.attempts));
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    let sdk = loader.load().await;
    if sdk.region().is_some() {
        return sdk;
    }
    sdk.into_builder()
        .region(Region::new(fallback_region.to_owned()))
        .build()
}
