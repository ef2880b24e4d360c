//! The Hub check against a fake Hub on 127.0.0.1 that answers like huggingface.co.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::http_stub::HttpStub;

use super::{Access, check, check_bounded, is_hub_repository};
use crate::config::Config;

/// A fake Hub: the gated `meta-llama/Llama-2-7b-hf` serves `tokenizer.json` (as a redirect to
/// its CDN) to the token `hf_granted`, refuses `hf_pending` (licence not accepted, 403) and
/// any other token or none (401); `org/open` is public; the rest is 404. `silent` accepts
/// connections and never answers. Returns the endpoint and the requests seen.
async fn fake_hub(silent: bool) -> (HttpStub, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let hub = HttpStub::serve(move |head| {
        if silent {
            return None;
        }
        let line = head.lines().next().unwrap_or_default().to_owned();
        let token = head
            .lines()
            .find_map(|header| {
                header
                    .to_ascii_lowercase()
                    .starts_with("authorization:")
                    .then(|| header["authorization:".len()..].trim().to_owned())
            })
            .unwrap_or_default();
        log.lock().unwrap().push(line.clone());
        let path = line.split_whitespace().nth(1).unwrap_or_default();
        let status = match path {
            "/meta-llama/Llama-2-7b-hf/resolve/main/tokenizer.json" => match token.as_str() {
                "Bearer hf_granted" => "302 Found\r\nLocation: http://cdn.invalid/t",
                "Bearer hf_pending" => "403 Forbidden",
                _ => "401 Unauthorized",
            },
            "/org/open/resolve/main/tokenizer.json"
            | "/api/datasets/togethercomputer/RedPajama-Data-1T-Sample/tree/main" => "200 OK",
            "/api/datasets/org/gated-data/tree/main" => "401 Unauthorized",
            _ => "404 Not Found",
        };
        Some(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n"))
    })
    .await;
    (hub, seen)
}

/// The default configuration with another tokenizer and a local dataset.
fn with_tokenizer(tokenizer: &str) -> Config {
    let mut config = Config::default();
    config.data.tokenizer = tokenizer.to_owned();
    config.data.dataset = "/data/jsonl".to_owned();
    config
}

#[tokio::test]
async fn a_gated_tokenizer_without_a_token_fails_before_any_request() {
    let (hub, seen) = fake_hub(false).await;
    let endpoint = hub.url();
    let error = check(&Config::default(), &endpoint, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("meta-llama/Llama-2-7b-hf is gated") && error.contains("HF_TOKEN"),
        "{error}"
    );
    // The tokenizer is not asked for without a token (the dataset still is, so that every
    // problem shows at once).
    let seen = seen.lock().unwrap();
    assert!(
        !seen.iter().any(|request| request.contains("meta-llama")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn the_hub_says_whether_the_token_can_read_the_tokenizer_and_dataset() {
    let (hub, seen) = fake_hub(false).await;
    let endpoint = hub.url();
    let config = Config::default();
    let report = check(&config, &endpoint, Some("hf_granted")).await.unwrap();
    assert_eq!(
        report.accesses,
        [
            Access::Readable {
                key: "data.tokenizer",
                repo: "meta-llama/Llama-2-7b-hf".to_owned()
            },
            Access::Readable {
                key: "data.dataset",
                repo: "togethercomputer/RedPajama-Data-1T-Sample".to_owned()
            }
        ]
    );
    assert!(report.warnings().is_empty());
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [
            "HEAD /meta-llama/Llama-2-7b-hf/resolve/main/tokenizer.json HTTP/1.1",
            "HEAD /api/datasets/togethercomputer/RedPajama-Data-1T-Sample/tree/main HTTP/1.1"
        ]
    );
    let error = check(&config, &endpoint, Some("hf_pending"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("accept its licence") && error.contains("403"),
        "{error}"
    );
    let error = check(&config, &endpoint, Some("hf_wrong"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid or expired"), "{error}");
    assert!(!error.contains("hf_wrong"), "the token leaked: {error}");
}

#[tokio::test]
async fn other_repositories_are_asked_about_too() {
    let (hub, _) = fake_hub(false).await;
    let endpoint = hub.url();
    let open = with_tokenizer("org/open");
    let report = check(&open, &endpoint, None).await.unwrap();
    assert!(
        matches!(report.accesses.as_slice(), [Access::Readable { .. }]),
        "{report:?}"
    );
    let local = with_tokenizer("/shared/my-tokenizer");
    let report = check(&local, &endpoint, None).await.unwrap();
    assert!(report.accesses.is_empty(), "{report:?}");
    // Every repository that cannot be read is named, at once.
    let mut both = with_tokenizer("org/private");
    both.data.dataset = "org/gated-data".to_owned();
    let error = check(&both, &endpoint, None).await.unwrap_err().to_string();
    assert!(
        error.contains("data.tokenizer org/private has no tokenizer.json")
            && error.contains("data.tokenizer_revision")
            && error.contains("data.dataset org/gated-data needs a token"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_or_silent_hub_is_a_bounded_warning() {
    // Nothing listens on port 9 of 127.0.0.1: refused at once.
    let unverified = check(&Config::default(), "http://127.0.0.1:9", Some("hf_granted"))
        .await
        .unwrap();
    assert_eq!(unverified.warnings().len(), 2, "{unverified:?}");
    let (hub, _) = fake_hub(true).await;
    let endpoint = hub.url();
    let started = Instant::now();
    let unverified = check_bounded(
        &Config::default(),
        &endpoint,
        Some("hf_granted"),
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(unverified.warnings().len(), 2, "{unverified:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn hub_repositories_are_told_from_directories() {
    assert!(is_hub_repository("meta-llama/Llama-2-7b-hf"));
    for directory in ["/shared/tok", "./tok", "tok", "a/b/c", "../x"] {
        assert!(!is_hub_repository(directory), "{directory}");
    }
}

#[test]
fn deploy_help_says_hf_access_is_checked_first() {
    use clap::CommandFactory as _;
    let mut cli = crate::cli::Cli::command();
    let help = cli
        .find_subcommand_mut("deploy")
        .unwrap()
        .render_long_help()
        .to_string();
    for needle in [
        "HF_TOKEN",
        "gated",
        "before anything is pushed or created",
        "HF_ENDPOINT",
    ] {
        assert!(help.contains(needle), "{needle} missing in:\n{help}");
    }
}
