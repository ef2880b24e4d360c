//! AWS calls are bounded: an endpoint that accepts connections and never answers is an error
//! within the bounds, with each failed attempt said.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn a_silent_endpoint_ends_within_the_bounds() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
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
    assert!(
        matches!(error, aws_sdk_sts::error::SdkError::TimeoutError(_)),
        "{}",
        aws_sdk_sts::error::DisplayErrorContext(&error)
    );
    holder.abort();
}
