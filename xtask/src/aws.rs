//! The one AWS SDK configuration every command uses: the standard credential chain, an HTTPS
//! client on rustls with ring (the TLS stack kube uses too, so the process builds one), and
//! bounded calls: a connect timeout, a per-attempt and a whole-operation timeout, and a few
//! retries with backoff.
//!
//! `AWS_ENDPOINT_URL` is honoured by the chain; that is how the tests point it at moto.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

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
    sdk_config_with(region, fallback_region, Bounds::default()).await
}

/// [`sdk_config`] with other bounds.
pub async fn sdk_config_with(
    region: Option<&str>,
    fallback_region: &str,
    bounds: Bounds,
) -> aws_config::SdkConfig {
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

/// Says, as a warning, each failed attempt of an AWS call: which operation, against which
/// endpoint, attempt n of m, and why; the SDK then retries with backoff when the error allows.
#[derive(Debug, Clone, Copy)]
pub struct AttemptLogger {
    attempts: u32,
}

impl AttemptLogger {
    /// A logger for calls made with `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Self {
            attempts: bounds.attempts,
        }
    }
}

impl Intercept for AttemptLogger {
    fn name(&self) -> &'static str {
        "trnkit::AttemptLogger"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Err(error)) = context.output_or_error() else {
            return Ok(());
        };
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let operation = cfg
            .load::<Metadata>()
            .map(|metadata| format!("{}.{}", metadata.service(), metadata.name()))
            .unwrap_or_else(|| "AWS call".to_owned());
        let endpoint = context
            .request()
            .map(|request| request.uri().to_owned())
            .unwrap_or_else(|| "(no request sent)".to_owned());
        let then = if attempt < self.attempts {
            "retrying if the error allows"
        } else {
            "giving up"
        };
        tracing::warn!(
            "{operation} at {endpoint}: attempt {attempt} of {} failed ({error}); {then}",
            self.attempts
        );
        Ok(())
    }
}

/// An FSx client whose failed attempts are logged.
pub fn fsx_client(sdk: &aws_config::SdkConfig) -> fsx::aws_sdk_fsx::Client {
    fsx::aws_sdk_fsx::Client::from_conf(
        fsx::aws_sdk_fsx::config::Builder::from(sdk)
            .interceptor(AttemptLogger::new(Bounds::default()))
            .build(),
    )
}

/// An ECR client whose failed attempts are logged.
pub fn ecr_client(sdk: &aws_config::SdkConfig) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::config::Builder::from(sdk)
            .interceptor(AttemptLogger::new(Bounds::default()))
            .build(),
    )
}

/// An STS client whose failed attempts are logged.
pub fn sts_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(sdk)
            .interceptor(AttemptLogger::new(Bounds::default()))
            .build(),
    )
}

#[cfg(test)]
mod tests;
