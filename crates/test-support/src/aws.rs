//! The AWS SDK configuration the tests use against moto: static test credentials, no retries,
//! and an explicit HTTP client (the workspace builds the SDK without its default client, see the
//! root `Cargo.toml`).

use aws_config::{BehaviorVersion, Region, retry::RetryConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls;

/// An SDK configuration for `endpoint` (moto's URL) in `region`.
pub async fn sdk_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}
