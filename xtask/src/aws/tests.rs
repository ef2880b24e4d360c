//! AWS calls are bounded: an endpoint that accepts connections and never answers is an error
//! within the bounds, with each failed attempt said.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn a_silent_endpoint_ends_within_the_bounds() {
    let silent = test_support::silent::SilentEndpoint::start().await;
    let url = silent.url();
    let bounds = Bounds {
        connect: Duration::from_millis(500),
        attempt: Duration::from_millis(700),
        operation: Duration::from_secs(5),
        attempts: 2,
    };
    let sdk = sdk_config_with(Some("us-west-2"), "us-west-2", bounds)
        .await
        .into_builder()
        .endpoint_url(&url)
        .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
            aws_sdk_sts::config::Credentials::new("test", "test", None, None, "static"),
        ))
        .build();
    let started = Instant::now();
    let error = sts_client(&sdk)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // The attempt's bound or the read bound, whichever fires first: a timeout either way.
    let timed_out = match &error {
        aws_sdk_sts::error::SdkError::TimeoutError(_) => true,
        aws_sdk_sts::error::SdkError::DispatchFailure(failure) => failure.is_timeout(),
        _ => false,
    };
    assert!(
        timed_out,
        "{}",
        aws_sdk_sts::error::DisplayErrorContext(&error)
    );
}
