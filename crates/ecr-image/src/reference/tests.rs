//! Unit tests for references and content tags.

use super::*;

fn digest(text: &str) -> ContextDigest {
    ContextDigest(format!("sha256:{}", hex::encode(Sha256::digest(text))))
}

#[test]
fn content_tags_are_stable() {
    // A changed scheme would make every user rebuild and push every image: change this value
    // only on purpose, together with the "trnkit-image-v1" prefix.
    let tag = content_tag(&digest("context"), "Dockerfile", &BuildOptions::default());
    assert_eq!(tag, "sha256-ae8a72e9a328bbac0ba8");
}

#[test]
fn content_tags_depend_on_every_build_input() {
    let base = BuildOptions::default();
    let tag = content_tag(&digest("context"), "Dockerfile", &base);
    assert!(tag.starts_with("sha256-") && tag.len() == 27, "{tag}");
    validate_tag(&tag).unwrap();

    let mut with_arg = base.clone();
    with_arg.build_args.insert("VERSION".into(), "2".into());
    let mut arm = base.clone();
    arm.platform = "linux/arm64".into();
    let mut target = base.clone();
    target.target = Some("runtime".into());
    let mut no_cache = base.clone();
    no_cache.no_cache = true;

    let others = [
        content_tag(&digest("context2"), "Dockerfile", &base),
        content_tag(&digest("context"), "other/Dockerfile", &base),
        content_tag(&digest("context"), "Dockerfile", &with_arg),
        content_tag(&digest("context"), "Dockerfile", &arm),
        content_tag(&digest("context"), "Dockerfile", &target),
    ];
    for other in &others {
        assert_ne!(other, &tag);
    }
    assert_eq!(
        content_tag(&digest("context"), "Dockerfile", &no_cache),
        tag
    );
}

#[test]
fn build_options_refuse_secret_arguments() {
    let mut options = BuildOptions::default();
    options.build_args.insert("HF_TOKEN".into(), "x".into());
    assert!(matches!(options.check(), Err(Error::SecretInImage { name }) if name == "HF_TOKEN"));
}

#[test]
fn validates_references() {
    for good in ["neuronx_nemo", "trnkit/training", "a.b-c/d__e", "x1"] {
        validate_repository(good).unwrap();
    }
    for bad in ["", "Upper", "a//b", "-a", "a-", "a b", "a/"] {
        assert!(validate_repository(bad).is_err(), "{bad:?}");
    }
    for good in ["latest", "sha256-0123", "v1.2_3", "_x"] {
        validate_tag(good).unwrap();
    }
    for bad in ["", ".x", "-x", "a:b", &"x".repeat(129)] {
        assert!(validate_tag(bad).is_err(), "{bad:?}");
    }
    for good in [
        "127.0.0.1:5000",
        "123456789012.dkr.ecr.us-west-2.amazonaws.com",
        "localhost",
    ] {
        validate_registry(good).unwrap();
    }
    for bad in [
        "",
        "https://r.example",
        "r.example/path",
        "r.example:port",
        "a b",
    ] {
        assert!(validate_registry(bad).is_err(), "{bad:?}");
    }
    let reference = ImageReference::new("127.0.0.1:5000", "trnkit/training", "latest").unwrap();
    assert_eq!(
        reference.to_string(),
        "127.0.0.1:5000/trnkit/training:latest"
    );
    assert_eq!(reference.name(), "127.0.0.1:5000/trnkit/training");
    assert_eq!(reference.with_tag("v2").unwrap().tag(), "v2");
}
