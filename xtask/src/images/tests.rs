//! Tests of the one image builder: `image.nemo_ref` validation agrees with the training image,
//! the written Dockerfiles hold Dockerfiles, manifests name the images step's tags, and the
//! staging binary is built only when the images step runs after preflight.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::Config;
use crate::deploy::bundle;

/// A file with the ELF header of a Linux x86-64 executable: enough for the stager's checks.
pub(crate) fn fake_stage_binary(dir: &Path) -> PathBuf {
    let mut header = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    header.resize(16, 0);
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&0x3eu16.to_le_bytes());
    header.resize(64, 0);
    header.extend_from_slice(b"trnkit-stage for tests");
    let path = dir.join(ecr_image::STAGE_BINARY_NAME);
    fs_err::write(&path, header).unwrap();
    path
}

#[test]
fn nemo_ref_validation_and_the_training_image_agree() {
    for (value, valid) in [
        ("f4743cef5a1c8dc9eeb6b3d128e01693e041a9be", true),
        ("0123456789abcdef0123456789abcdef01234567", true),
        ("main", false),
        ("2.21_release", false),
        ("f4743ce", false),
        ("F4743CEF5A1C8DC9EEB6B3D128E01693E041A9BE", false),
        ("v1.0.0", false),
        ("", false),
    ] {
        let mut config = Config::default();
        config.image.nemo_ref = value.to_owned();
        let problem = config
            .problems()
            .into_iter()
            .find(|(key, _)| key == "image.nemo_ref");
        let rendered = image(&config, ImageName::Training, None);
        assert_eq!(problem.is_none(), valid, "{value:?}: {problem:?}");
        assert_eq!(rendered.is_ok(), valid, "{value:?}");
        if let Some((_, message)) = problem {
            assert!(message.contains("full 40-digit commit id"), "{message}");
        }
    }
}

/// The Dockerfiles `deploy --dry-run` and the local profile write under `images/*/` are the
/// rendered Dockerfiles (they once held the word `Dockerfile`, the file's name in the context).
#[tokio::test]
async fn dry_run_writes_each_image_s_dockerfile() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let config_file = dir.path().join("trnkit.toml");
    fs_err::write(
        &config_file,
        format!("[cluster]\nwork_dir = {:?}\n", work.display().to_string()),
    )
    .unwrap();
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
        std::ffi::OsStr::new("cargo xtask"),
        std::ffi::OsStr::new("-c"),
        config_file.as_os_str(),
        std::ffi::OsStr::new("deploy"),
        std::ffi::OsStr::new("--dry-run"),
    ])
    .unwrap();
    let (global, crate::cli::Command::Deploy(args)) = (cli.global, cli.command) else {
        panic!("parsed as deploy")
    };
    crate::cli::deploy::run(args, &global).await.unwrap();

    let config = Config::load(&config_file).unwrap();
    for name in ImageName::ALL {
        let written =
            fs_err::read_to_string(work.join("images").join(name.name()).join("Dockerfile"))
                .unwrap();
        let expected = image(&config, name, None).unwrap();
        assert_eq!(written, expected.definition.dockerfile.render(), "{name:?}");
        assert!(
            written.contains("\nFROM ${BASE_IMAGE}"),
            "{name:?}: {written}"
        );
        let reference =
            fs_err::read_to_string(work.join("images").join(name.name()).join("REFERENCE"))
                .unwrap();
        assert!(
            reference
                .trim_end()
                .ends_with(&format!(":{}", expected.tag)),
            "{reference}"
        );
    }
}

fn image_fields<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("image", serde_json::Value::String(image)) => out.push(image),
                    _ => image_fields(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| image_fields(item, out)),
        _ => {}
    }
}

/// Every image a manifest names is one the images step publishes, under its content tag (the
/// snapshots redact the tags, so this is where they are checked).
#[test]
fn manifests_name_the_images_step_s_tags() {
    let dir = tempfile::tempdir().unwrap();
    let binary = fake_stage_binary(dir.path());
    let config = Config::default();
    let rendered = bundle::render_all(&config, None, None, &binary).unwrap();
    let built = images(&config, Some(&binary)).unwrap();
    let registry = crate::render::registry(&config).unwrap();
    let published: Vec<String> = built
        .iter()
        .map(|image| image.reference(&registry, &config.image.repository))
        .collect();
    let mut named = Vec::new();
    let manifests = rendered.all_manifests();
    for manifest in &manifests {
        image_fields(&manifest.value, &mut named);
    }
    assert!(named.len() >= 5, "{named:?}");
    for reference in &named {
        assert!(
            published.iter().any(|p| p == reference),
            "{reference} is not published: {published:?}"
        );
    }
    // The stager's tag covers the binary it carries.
    let without = image(&config, ImageName::Stager, None).unwrap();
    assert_ne!(without.tag, built[2].tag);
    assert!(named.iter().any(|name| name.ends_with(&built[2].tag)));
}

#[test]
fn snapshot_settings_redact_content_tags_only() {
    let settings = snapshot_settings();
    settings.bind(|| {
        insta::assert_snapshot!(
            "redacted_references",
            "localhost:5000/neuronx_nemo:sha256-2bbe04d8f339395bf059\n\
             ubuntu:jammy@sha256:b8b6ee6aa931ecd9d0d952abc34dc0e5f7c6a30c6bb71b079fe399fde0329c02\n"
        );
    });
}

/// Runs [`stage_binary_for_run`] with a builder that records whether it was called.
async fn resolve(
    given: Option<&Path>,
    selection: Selection,
    preflight_passed: bool,
) -> (PathBuf, bool) {
    let built = Cell::new(false);
    let path = stage_binary_for_run(given, &selection, preflight_passed, || async {
        built.set(true);
        Ok(PathBuf::from("/built/trnkit-stage"))
    })
    .await
    .unwrap();
    (path, built.get())
}

#[tokio::test]
async fn the_staging_binary_is_built_only_when_the_images_step_runs_after_preflight() {
    use crate::deploy::plan::StepId;
    let only = |id| Selection {
        only: Some(id),
        ..Selection::default()
    };
    let from = |id| Selection {
        from: Some(id),
        ..Selection::default()
    };
    // --only preflight never builds, whether preflight passes or not.
    for passed in [true, false] {
        let (path, built) = resolve(None, only(StepId::Preflight), passed).await;
        assert!(!built);
        assert_eq!(path, default_stage_binary());
    }
    // A whole run builds once preflight passed, and not when it failed (the run stops there).
    assert!(resolve(None, Selection::default(), true).await.1);
    assert!(!resolve(None, Selection::default(), false).await.1);
    // Without preflight in the run, the images step decides.
    assert!(resolve(None, only(StepId::Images), false).await.1);
    assert!(resolve(None, from(StepId::Images), false).await.1);
    assert!(!resolve(None, from(StepId::Storage), true).await.1);
    assert!(!resolve(None, only(StepId::Tensorboard), true).await.1);
    // --stage-binary is taken as it is, and must exist.
    let dir = tempfile::tempdir().unwrap();
    let given = fake_stage_binary(dir.path());
    let (path, built) = resolve(Some(&given), Selection::default(), true).await;
    assert_eq!((path, built), (given, false));
    let error = stage_binary_for_run(
        Some(Path::new("/nonexistent/trnkit-stage")),
        &Selection::default(),
        true,
        || async { Ok(PathBuf::new()) },
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("--stage-binary /nonexistent/trnkit-stage"),
        "{error}"
    );
}
