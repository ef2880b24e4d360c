//! The check Jobs' answers: when the cache check lets the compile job be skipped, and what a
//! log that does not end with an answer gives.

use neuron_cache::Coverage;

use super::{compile_skip, effective_neuron_cc_flags, parse_cache_check};

fn coverage(compiler: Option<&str>, complete: usize, failed: usize) -> Coverage {
    Coverage {
        flags_keys: vec!["725887e1".to_owned(), "1e902bcd".to_owned()],
        compiler_version: compiler.map(str::to_owned),
        complete,
        failed,
        ..Coverage::default()
    }
}

#[test]
fn the_compile_job_is_skipped_only_for_the_images_compiler_and_recorded_inputs() {
    let ready = coverage(Some("2.16.345.0"), 12, 0);
    let verdict = compile_skip(&ready, "2.16.345.0", Some("abc"), "abc").unwrap();
    assert!(
        verdict.contains("12 complete entries") && verdict.contains("2.16.345.0"),
        "{verdict}"
    );

    let cases = [
        // Entries counted for another compiler, or for every compiler.
        (
            coverage(Some("2.15.128.0"), 12, 0),
            Some("abc"),
            "neuronx-cc 2.15.128.0",
        ),
        (coverage(None, 12, 0), Some("abc"), "every compiler version"),
        // No compile recorded, or one with other inputs (another GBS, sequence length, image).
        (ready.clone(), None, "no successful compile is recorded"),
        (
            ready.clone(),
            Some("other"),
            "changed since the last successful compile",
        ),
        // Not ready whatever the record says.
        (
            coverage(Some("2.16.345.0"), 12, 1),
            Some("abc"),
            "prune --failed",
        ),
        (
            coverage(Some("2.16.345.0"), 0, 0),
            Some("abc"),
            "compile job is needed",
        ),
    ];
    for (coverage, recorded, why) in cases {
        let error = compile_skip(&coverage, "2.16.345.0", recorded, "abc").unwrap_err();
        assert!(error.contains(why), "{why:?} not in {error:?}");
    }
}

#[test]
fn the_effective_flags_are_training_envs_when_set() {
    let mut training = crate::config::Config::default().training;
    assert_eq!(
        effective_neuron_cc_flags(&training),
        training.neuron_cc_flags
    );
    training.env.insert(
        "NEURON_CC_FLAGS".to_owned(),
        "--model-type=transformer".to_owned(),
    );
    assert_eq!(
        effective_neuron_cc_flags(&training),
        "--model-type=transformer"
    );
}

#[test]
fn a_log_without_an_answer_gives_none_whatever_its_bytes() {
    for log in [
        "",
        "\n\n",
        "error: no such file",
        "{\"coverage\": 1}",
        "{\"coverage\": {\"complete\": -1}}",
        "{\"coverage\": {\"flags_keys\": [], \"complete\": 18446744073709551616}}",
        &"[".repeat(10_000),
        "\u{0}\u{feff}{",
    ] {
        assert_eq!(parse_cache_check(log), None, "{log:?}");
    }
    let line = serde_json::json!({
        "coverage": coverage(Some("2.16.345.0"), 3, 0),
        "flags_mismatch": null,
    })
    .to_string();
    let log = format!("warning: something\n{line}\ntrailing noise");
    assert_eq!(
        parse_cache_check(&log),
        Some(coverage(Some("2.16.345.0"), 3, 0)),
        "the last line that parses"
    );
}

#[test]
fn the_checkout_commit_is_read_from_git_files_detached_branch_or_packed() {
    let dir = tempfile::tempdir().unwrap();
    let git = dir.path().join(".git");
    fs_err::create_dir_all(git.join("refs/heads")).unwrap();
    let commit = "f4743cef5a1c8dc9eeb6b3d128e01693e041a9be";
    fs_err::write(git.join("HEAD"), format!("{commit}\n")).unwrap();
    assert_eq!(super::checkout_commit(dir.path()).unwrap(), commit);
    fs_err::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    fs_err::write(
        git.join("packed-refs"),
        format!("# pack-refs\n{commit} refs/heads/main\n"),
    )
    .unwrap();
    assert_eq!(super::checkout_commit(dir.path()).unwrap(), commit);
    fs_err::write(
        git.join("refs/heads/main"),
        "0123456789abcdef0123456789abcdef01234567\n",
    )
    .unwrap();
    assert_eq!(
        super::checkout_commit(dir.path()).unwrap(),
        "0123456789abcdef0123456789abcdef01234567"
    );
    let error = super::checkout_commit(&dir.path().join("nope")).unwrap_err();
    assert!(
        format!("{error:#}").contains("not a git checkout"),
        "{error:#}"
    );
}

#[test]
fn staging_records_the_tokenizer_files_and_the_commit_so_a_change_restages() {
    let with = |sha: &str, commit: &str| super::Fingerprints {
        datasets: Vec::new(),
        tokenizer: [("tokenizer.json".to_owned(), sha.to_owned())].into(),
        checkout_commit: Some(commit.to_owned()),
    };
    let recorded = super::dataset_outputs(&with("aa", "c1"));
    assert_eq!(recorded["tokenizer/tokenizer.json"], "sha256 aa");
    assert_ne!(recorded, super::dataset_outputs(&with("bb", "c1")));
    assert_ne!(recorded, super::dataset_outputs(&with("aa", "c2")));
}
