//! A silent endpoint (accepts connections, never answers) and a closed port end in bounded
//! time with errors that name the endpoint; a live one (the FAKE API server) answers.

use std::time::{Duration, Instant};

use super::*;

fn quick() -> Bounds {
    Bounds {
        connect: Duration::from_millis(500),
        response: Duration::from_millis(500),
        read: Duration::from_secs(5),
        attempts: 2,
    }
}

fn client_for(url: &str) -> kube::Client {
    bounded(kube::Config::new(url.parse().unwrap()), quick()).unwrap()
}

#[tokio::test]
async fn a_silent_endpoint_is_an_error_naming_it_within_the_bound() {
    let silent = test_support::silent::SilentEndpoint::start().await;
    let url = silent.url();
    let started = Instant::now();
    let error = ensure_reachable(&client_for(&url), &url, quick())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let message = format!("{error:#}");
    assert!(
        message.contains(&url) && message.contains("no response within"),
        "{message}"
    );
    assert!(
        message.contains("--context"),
        "says what to change: {message}"
    );
    // Two attempts of 0.5 s and one 1 s pause, with room for a loaded machine.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn a_closed_port_is_a_connection_error_not_a_credentials_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = ensure_reachable(&client_for(&url), &url, quick())
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&url), "{message}");
    assert!(!message.to_lowercase().contains("credential"), "{message}");
}

#[tokio::test]
async fn a_live_server_answers() {
    let server = test_support::fake_apiserver::FakeApiServer::start().await;
    let client = client_for(server.url());
    ensure_reachable(&client, server.url(), quick())
        .await
        .unwrap();
}
