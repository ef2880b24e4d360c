//! Unit tests for `.dockerignore` matching, checked against the Docker CLI's documented rules.

use std::path::Path;

use super::*;

fn check(patterns: &str, cases: &[(&str, bool)]) {
    let ignore = Dockerignore::parse(patterns, Path::new(".dockerignore")).unwrap();
    for (path, excluded) in cases {
        assert_eq!(
            ignore.is_excluded(path),
            *excluded,
            "patterns {patterns:?}, path {path:?}"
        );
    }
}

#[test]
fn patterns_are_anchored_at_the_root() {
    check(
        "foo",
        &[
            ("foo", true),
            ("foo/bar.txt", true),
            ("a/foo", false),
            ("foobar", false),
        ],
    );
    check("/foo", &[("foo", true), ("a/foo", false)]);
    check("./foo/../bar", &[("bar", true), ("foo", false)]);
}

#[test]
fn star_does_not_cross_directories_but_double_star_does() {
    check("*.md", &[("README.md", true), ("docs/a.md", false)]);
    check(
        "**/*.md",
        &[
            ("README.md", true),
            ("docs/a.md", true),
            ("docs/x/b.md", true),
            ("a.txt", false),
        ],
    );
    check(
        "docs/**",
        &[("docs/a", true), ("docs/x/y", true), ("doc", false)],
    );
    check(
        "*/temp*",
        &[("a/temporary", true), ("temp", false), ("a/b/temp", false)],
    );
    check(
        "temp?",
        &[("temp1", true), ("temp", false), ("temp12", false)],
    );
}

#[test]
fn the_last_matching_pattern_wins() {
    check(
        "target\n!target/keep",
        &[("target/x", true), ("target/keep", false), ("target", true)],
    );
    check(
        "*\n!src",
        &[("src", false), ("src/main.rs", false), ("Cargo.toml", true)],
    );
    check(
        "*.md\n!README*.md\nREADME-secret.md",
        &[
            ("a.md", true),
            ("README.md", false),
            ("README-secret.md", true),
        ],
    );
}

#[test]
fn comments_and_blank_lines_are_ignored() {
    check(
        "# comment\n\n   \n  build  \n",
        &[("build", true), ("# comment", false)],
    );
    let ignore = Dockerignore::parse("# only a comment\n", Path::new(".dockerignore")).unwrap();
    assert!(!ignore.has_exclusions());
    assert!(!ignore.is_excluded("anything"));
}

#[test]
fn an_invalid_pattern_names_the_file_and_pattern() {
    let error = Dockerignore::parse("ok\n[unclosed\n", Path::new("ctx/.dockerignore")).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("[unclosed") && message.contains("ctx/.dockerignore"),
        "{message}"
    );
}
