//! `image build|push --image` builds and tags exactly what deploy does.

use std::path::Path;

use super::*;
use crate::images::ImageName;

fn flags(stage_binary: &Path) -> BuildFlags {
    BuildFlags {
        dockerfile: None,
        build_args: Vec::new(),
        platform: ecr_image::DEFAULT_PLATFORM.to_owned(),
        target: None,
        no_cache: false,
        force: false,
        stage_binary: Some(stage_binary.to_owned()),
        docker_host: "unix:///var/run/docker.sock".to_owned(),
    }
}

/// For the same configuration, `image push --image NAME` pushes the content tag the manifests
/// name and the human tags deploy's images step moves (it once rendered TensorBoard with another
/// log directory and moved `tensorboard`/`stager` tags deploy never used).
#[tokio::test]
async fn image_push_tags_equal_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let binary = crate::images::tests::fake_stage_binary(dir.path());
    let config_file = dir.path().join("trnkit.toml");
    fs_err::write(&config_file, "[image]\nhuman_tag = \"stable\"\n").unwrap();
    let global = <crate::cli::Cli as clap::Parser>::try_parse_from([
        std::ffi::OsStr::new("cargo xtask"),
        std::ffi::OsStr::new("-c"),
        config_file.as_os_str(),
        std::ffi::OsStr::new("render"),
        std::ffi::OsStr::new("--check"),
    ])
    .unwrap()
    .global;
    let config = super::super::load_config(&global).unwrap();
    let deploy = crate::deploy::bundle::render_all(&config, None, None, &binary).unwrap();
    let deploy_images = crate::images::images(&config, Some(&binary)).unwrap();
    let registry = crate::render::registry(&config).unwrap();
    for name in ImageName::ALL {
        let source = Source {
            image: Some(name),
            directory: None,
        };
        let (context, options) = context_and_options(&source, &flags(&binary), &global)
            .await
            .unwrap();
        // The tag `ecr_image::build_and_push` pushes for this context and these options.
        let tag =
            ecr_image::content_tag(&context.digest().unwrap(), context.dockerfile(), &options);
        assert_eq!(
            format!("{registry}/{}:{tag}", config.image.repository),
            deploy.images[name.name()].reference,
            "{name:?}"
        );
        let deployed = deploy_images
            .iter()
            .find(|image| image.name == name)
            .unwrap();
        assert_eq!(
            push_tags(&config, Some(name), &[]),
            deployed.human_tags,
            "{name:?}"
        );
    }
    assert_eq!(
        push_tags(&config, Some(ImageName::Training), &[]),
        ["stable"]
    );
    assert_eq!(
        push_tags(&config, Some(ImageName::Training), &["v1".to_owned()]),
        ["v1"]
    );
    assert!(push_tags(&config, None, &[]).is_empty());
}

#[test]
fn the_stage_binary_is_built_in_the_running_executable_s_profile() {
    for (dir, profile) in [
        ("/w/target/debug", "dev"),
        ("/w/target/debug/deps", "dev"),
        ("/w/target/release", "release"),
        ("/w/target/x86_64-unknown-linux-gnu/release", "release"),
        ("/w/target/fast", "fast"),
    ] {
        assert_eq!(cargo_profile(Path::new(dir)), profile, "{dir}");
    }
}
