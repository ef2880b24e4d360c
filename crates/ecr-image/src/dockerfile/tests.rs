//! Unit tests for the Dockerfile model: rendering and the secret check.

use super::*;

#[test]
fn renders_every_instruction() {
    let mut file = Dockerfile::new();
    file.comment("first line\n\nthird line")
        .arg("BASE_IMAGE", "scratch")
        .from_image("${BASE_IMAGE}")
        .blank()
        .label([("org.opencontainers.image.title", "demo")])
        .env([
            ("A", "plain"),
            ("B", "with \"quotes\" and \\ backslash"),
            ("PATH", "/x:${PATH}"),
        ])
        .run(["apt-get update", "apt-get install -y curl"])
        .copy("a.txt", "/a.txt")
        .workdir("/")
        .expose(80)
        .push(Instruction::User("nobody".to_owned()))
        .entrypoint(["/bin/tool", "--flag"])
        .cmd(["arg with space"]);
    insta::assert_snapshot!(file.render());
}

fn check_name(name: &str, secret: bool) {
    assert_eq!(looks_like_secret_name(name), secret, "{name}");
}

#[test]
fn secret_looking_names() {
    for name in [
        "TB_PASSWORD",
        "HF_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "registry_auth",
        "API-KEY",
        "htpasswd",
    ] {
        check_name(name, true);
    }
    for name in [
        "PATH",
        "LD_LIBRARY_PATH",
        "PIP_VERSION",
        "NEURONX_CC_VERSION",
        "PASSAGE",
        "KEYRING_DIR2",
        "TOKENIZER_PATH",
    ] {
        check_name(name, false);
    }
}

#[test]
fn secret_looking_values() {
    assert!(looks_like_secret_value("AKIAABCDEFGHIJKLMNOP"));
    assert!(looks_like_secret_value(
        "--token=hf_abcdefghijklmnopqrstuvwxyz0123"
    ));
    assert!(!looks_like_secret_value("2.16.345.0"));
    assert!(!looks_like_secret_value("hf_short"));
}

#[test]
fn refuses_a_secret_arg_or_env() {
    let mut file = Dockerfile::new();
    file.from_image("scratch").arg("TB_PASSWORD", "");
    let error = file.check_no_secrets().unwrap_err();
    assert!(
        matches!(&error, Error::SecretInImage { name } if name == "TB_PASSWORD"),
        "{error:?}"
    );

    let mut file = Dockerfile::new();
    file.from_image("scratch")
        .env([("SETTING", "AKIAABCDEFGHIJKLMNOP")]);
    assert!(file.check_no_secrets().is_err());

    let mut file = Dockerfile::new();
    file.from_image("scratch")
        .env([("SETTING", "value")])
        .arg("VERSION", "1");
    file.check_no_secrets().unwrap();
}
