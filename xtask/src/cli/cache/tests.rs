//! Tests of `cargo xtask cache`'s root selection and size formatting.

use std::path::PathBuf;

use crate::config::Config;

#[test]
fn the_default_root_is_the_local_profiles_compile_cache() {
    let mut config = Config::default();
    config.cluster.work_dir = PathBuf::from("/tmp/work");
    assert_eq!(
        super::cache_root(None, &config),
        PathBuf::from("/tmp/work/shared/neuron_cache")
    );
    assert_eq!(
        super::cache_root(Some(PathBuf::from("/mnt/c")), &config),
        PathBuf::from("/mnt/c")
    );
}

#[test]
fn sizes_are_readable() {
    assert_eq!(super::bytes(0), "0 B");
    assert_eq!(super::bytes(1023), "1023 B");
    assert_eq!(super::bytes(1536), "1.5 KiB");
    assert_eq!(super::bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
}

/// Parses `trnkit cache …` and runs it.
async fn cache(args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser as _;
    let mut argv = vec!["trnkit", "--quiet", "cache"];
    argv.extend_from_slice(args);
    let cli = crate::cli::Cli::try_parse_from(argv)?;
    let crate::cli::Command::Cache(command) = cli.command else {
        unreachable!("parsed a cache command")
    };
    super::run(command, &cli.global).await
}

/// A cache with one failed entry; returns the root and the entry.
fn failed_entry() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let entry = root
        .path()
        .join("neuronxcc-2.16.345.0+8b9c8a7e/MODULE_00000000000000000002+725887e1");
    fs_err::create_dir_all(&entry).unwrap();
    fs_err::write(entry.join("model.hlo_module.pb"), b"hlo").unwrap();
    fs_err::write(entry.join("model.log"), b"Failed compilation").unwrap();
    (root, entry)
}

#[tokio::test]
async fn prune_previews_by_default_and_removes_only_with_yes() {
    let (root, entry) = failed_entry();
    let root_arg = root.path().to_str().unwrap();
    cache(&["prune", "--root", root_arg, "--failed"])
        .await
        .unwrap();
    assert!(entry.exists(), "the preview changes nothing");
    cache(&["prune", "--root", root_arg, "--failed", "--json"])
        .await
        .unwrap();
    assert!(entry.exists(), "the preview changes nothing, in JSON too");
    cache(&["prune", "--root", root_arg, "--failed", "-y"])
        .await
        .unwrap();
    assert!(!entry.exists());
    assert!(
        cache(&[
            "prune",
            "--root",
            root_arg,
            "--failed",
            "--yes",
            "--dry-run"
        ])
        .await
        .is_err(),
        "--dry-run and --yes contradict each other"
    );
}

#[tokio::test]
async fn prune_refuses_an_older_than_below_the_minimum() {
    let (root, entry) = failed_entry();
    let error = cache(&[
        "prune",
        "--root",
        root.path().to_str().unwrap(),
        "--stale-locks",
        "--older-than",
        "0s",
        "--yes",
    ])
    .await
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("below the minimum of 10m"),
        "{error:#}"
    );
    assert!(entry.exists());
}
