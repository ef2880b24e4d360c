//! Unit tests for push output parsing and the retry policy.

use std::time::Duration;

use super::*;

#[test]
fn finds_the_pushed_digest() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        parse_pushed_digest(&format!("latest: digest: {digest} size: 528")),
        Some(digest)
    );
    assert_eq!(parse_pushed_digest("Pushed"), None);
    assert_eq!(
        parse_pushed_digest("latest: digest: sha256:abc size: 1"),
        None
    );
    assert_eq!(
        parse_pushed_digest(&format!("x: digest: md5:{} size: 1", "ab".repeat(32))),
        None
    );
}

#[test]
fn delays_double_up_to_the_maximum() {
    let policy = RetryPolicy {
        attempts: 6,
        initial_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(10),
    };
    let delays: Vec<u64> = (1..=5)
        .map(|attempt| policy.delay(attempt).as_secs())
        .collect();
    assert_eq!(delays, [2, 4, 8, 10, 10]);
}
