//! Tests of the shared file-system layout: every path of the blueprint, and name validation.

use std::path::Path;

use crate::{Error, SharedLayout};

fn check(actual: impl AsRef<Path>, expected: &str) {
    assert_eq!(actual.as_ref().to_str(), Some(expected));
}

#[test]
fn in_cluster_paths_match_the_blueprint() {
    let layout = SharedLayout::in_cluster();
    assert!(layout.is_in_cluster());
    check(layout.root(), "/shared");
    check(layout.tokenizer_dir(), "/shared/llama7b_tokenizer");
    check(
        layout.raw_data_dir(),
        "/shared/data/RedPajama-Data-1T-Sample",
    );
    check(layout.merged_jsonl(), "/shared/redpajama_sample.jsonl");
    check(layout.output_prefix(), "/shared/data/redpajama_sample");
    check(
        layout.dataset_prefix("text").unwrap(),
        "/shared/data/redpajama_sample_text_document",
    );
    check(layout.code_checkout(), "/shared/neuronx-nemo-megatron");
    check(
        layout.training_workdir(),
        "/shared/neuronx-nemo-megatron/nemo/examples/nlp/language_modeling/",
    );
    check(layout.compile_cache(), "/shared/neuron_cache");
    check(layout.experiments(), "/shared/nemo_experiments");
    let uid = "5c8e1e6e-3b0b-4f8e-9a0e-2a7f0d3c1b9a";
    check(
        layout.run_dir(uid).unwrap(),
        &format!("/shared/nemo_experiments/{uid}"),
    );
    check(
        layout.rank_log(uid, 3).unwrap(),
        &format!("/shared/nemo_experiments/{uid}/3/log"),
    );
    check(
        layout.checkpoints(uid).unwrap(),
        &format!("/shared/nemo_experiments/{uid}/checkpoints"),
    );
    assert_eq!(
        layout.run_dir_shell("POD_UID").unwrap(),
        "/shared/nemo_experiments/${POD_UID}"
    );
}

#[test]
fn training_workdir_keeps_its_trailing_slash_but_compares_without_it() {
    let workdir = SharedLayout::in_cluster().training_workdir();
    assert!(workdir.to_str().unwrap().ends_with('/'));
    assert_eq!(
        workdir,
        Path::new("/shared/neuronx-nemo-megatron/nemo/examples/nlp/language_modeling")
    );
}

#[test]
fn rebase_keeps_the_layout_under_another_root() {
    let cluster = SharedLayout::in_cluster()
        .with_dataset_name("books")
        .unwrap();
    let local = cluster.rebase("./.trnkit/shared");
    assert!(!local.is_in_cluster());
    assert_eq!(local.dataset_name(), "books");
    check(local.merged_jsonl(), "./.trnkit/shared/books.jsonl");
    check(local.output_prefix(), "./.trnkit/shared/data/books");
    assert_eq!(local.rebase("/shared"), cluster);
    let new = SharedLayout::new("/mnt/fsx");
    check(new.compile_cache(), "/mnt/fsx/neuron_cache");
}

#[test]
fn unsafe_names_are_rejected_with_the_reason() {
    let layout = SharedLayout::in_cluster();
    let cases = [
        ("", "empty"),
        ("..", "`.` and `..`"),
        (".", "`.` and `..`"),
        ("a/b", "'/'"),
        ("a\0b", "'\\0'"),
        ("a\nb", "'\\n'"),
        ("$(reboot)", "'$'"),
        ("a b", "' '"),
        ("a;b", "';'"),
        ("-rf", "starts with `-`"),
        ("é", "'é'"),
    ];
    for (name, reason) in cases {
        let error = layout.run_dir(name).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(
                error,
                Error::InvalidName {
                    what: "launcher pod uid",
                    ..
                }
            ),
            "{message}"
        );
        assert!(message.contains(reason), "{name:?}: {message}");
        assert!(
            !message.contains('\n'),
            "the message escapes control characters: {message}"
        );
    }
    let long = "a".repeat(256);
    assert!(
        layout
            .dataset_prefix(&long)
            .unwrap_err()
            .to_string()
            .contains("256 bytes")
    );
    assert!(layout.dataset_prefix(&"a".repeat(255)).is_ok());
    assert!(
        SharedLayout::in_cluster()
            .with_dataset_name("../etc")
            .is_err()
    );
    assert!(layout.run_dir_shell("1X").is_err());
    assert!(layout.run_dir_shell("POD-UID").is_err());
}

#[test]
fn serde_round_trips_and_validates() {
    let layout = SharedLayout::new("/mnt/shared")
        .with_dataset_name("books")
        .unwrap();
    let json = serde_json::to_string(&layout).unwrap();
    assert_eq!(json, r#"{"root":"/mnt/shared","dataset_name":"books"}"#);
    assert_eq!(serde_json::from_str::<SharedLayout>(&json).unwrap(), layout);
    let defaulted: SharedLayout = serde_json::from_str(r#"{"root":"/shared"}"#).unwrap();
    assert_eq!(defaulted, SharedLayout::in_cluster());
    let error =
        serde_json::from_str::<SharedLayout>(r#"{"root":"/x","dataset_name":"a/b"}"#).unwrap_err();
    assert!(
        error.to_string().contains("invalid dataset name"),
        "{error}"
    );
    assert!(serde_json::from_str::<SharedLayout>(r#"{"root":"/x","extra":1}"#).is_err());
}
