//! Unit tests for decoding ECR authorization tokens, and for keeping the password out of sight.

use base64::Engine as _;

use super::*;

fn token(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn decodes_a_token_into_credentials() {
    let credentials = decode_token(
        &token("AWS:eyJwYXlsb2FkIjoi-very-secret"),
        "https://123456789012.dkr.ecr.us-west-2.amazonaws.com",
    )
    .unwrap();
    assert_eq!(
        credentials.server(),
        "123456789012.dkr.ecr.us-west-2.amazonaws.com"
    );
    assert_eq!(credentials.username(), "AWS");
    let docker = credentials.docker();
    assert_eq!(
        docker.password.as_deref(),
        Some("eyJwYXlsb2FkIjoi-very-secret")
    );
    assert_eq!(
        docker.serveraddress.as_deref(),
        Some("123456789012.dkr.ecr.us-west-2.amazonaws.com")
    );
}

#[test]
fn debug_output_never_shows_the_password() {
    let credentials = decode_token(&token("AWS:hunter2-secret"), "https://r.example").unwrap();
    let debug = format!(
        "{credentials:?} {:?}",
        credentials.clone().for_server("127.0.0.1:5000")
    );
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
}

#[test]
fn a_malformed_token_is_reported_without_its_content() {
    for bad in [
        "not base64 !!".to_owned(),
        token("no-colon-here"),
        token("AWS:"),
        token(":pw"),
    ] {
        let error = decode_token(&bad, "https://r.example").unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::MalformedToken { .. }), "{message}");
        assert!(
            !message.contains("no-colon-here") && !message.contains(&bad),
            "{message}"
        );
    }
}
