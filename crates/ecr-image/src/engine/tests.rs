//! Unit tests for classifying engine and registry messages.

use super::*;

#[test]
fn classifies_registry_messages() {
    for (message, expected) in [
        (
            "unauthorized: authentication required",
            Failure::Unauthorized,
        ),
        (
            "denied: Your authorization token has expired. Reauthenticate and try again.",
            Failure::Unauthorized,
        ),
        ("no basic auth credentials", Failure::Unauthorized),
        (
            "tag invalid: The image tag 'latest' already exists in the 'x' repository and cannot be overwritten because the repository is immutable.",
            Failure::Immutable,
        ),
        ("manifest unknown: manifest unknown", Failure::NotFound),
        ("errors:\nmanifest unknown", Failure::NotFound),
        (
            "Get \"http://127.0.0.1:5000/v2/\": net/http: TLS handshake timeout",
            Failure::Transient,
        ),
        (
            "read tcp 10.0.0.1:1234->52.1.1.1:443: read: connection reset by peer",
            Failure::Transient,
        ),
        (
            "received unexpected HTTP status: 503 Service Unavailable",
            Failure::Transient,
        ),
        ("toomanyrequests: Rate exceeded", Failure::Transient),
        ("blob upload invalid", Failure::Other),
    ] {
        assert_eq!(classify(message), expected, "{message}");
    }
}

/// An engine that accepts the connection and never answers is an error naming it within the
/// handshake bound, not a 10-minute hang.
#[tokio::test]
async fn a_silent_engine_is_an_error_within_the_handshake_bound() {
    let silent = test_support::silent::SilentEndpoint::start().await;
    let endpoint = format!("tcp://{}", silent.address());
    let Err(error) = super::connect(&endpoint).await else {
        panic!("a silent engine is refused")
    };
    assert!(
        matches!(&error, crate::Error::DockerSilent { endpoint: e, .. } if *e == endpoint),
        "{error}"
    );
    assert!(error.to_string().contains("DOCKER_HOST"), "{error}");
}
