//! The parsers of bytes that come from outside (entry and folder names, flags files, lock file
//! names and times, `NEURON_CC_FLAGS`, the cache check's counts): malformed input gives `None`
//! or an error, never a panic.

use std::time::{Duration, SystemTime};

use crate::{
    Coverage, compiler_version_matches, is_lock_name, lock_age, parse_entry_name, parse_flags_file,
    parse_neuron_cc_flags, parse_version_folder,
};

#[test]
fn entry_names_are_accepted_only_in_their_two_forms() {
    assert_eq!(
        parse_entry_name("MODULE_50a122f44c378e1567a4+725887e1"),
        Some(("50a122f44c378e1567a4", "725887e1"))
    );
    assert_eq!(
        parse_entry_name("MODULE_9219523464496887986+2c2d707e"),
        Some(("9219523464496887986", "2c2d707e"))
    );
    let long = format!("MODULE_{}+725887e1", "a".repeat(65));
    let malformed = [
        "",
        "MODULE_",
        "MODULE_+",
        "MODULE_+725887e1",
        "MODULE_1+",
        "MODULE_1+725887e",
        "MODULE_1+725887e1f",
        "MODULE_1+725887g1",
        "MODULE_1+7258+87e1",
        "MODULE_1++725887e1",
        "MODULE_xyz+725887e1",
        "module_1+725887e1",
        "MODULE_1 +725887e1",
        "MODULE_١+725887e1", // a non-ASCII digit
        "MODULE_1+７２５８８７e1",
        "MODULE_1+725887é",
        long.as_str(),
    ];
    for name in malformed {
        assert_eq!(parse_entry_name(name), None, "{name:?}");
    }
}

#[test]
fn version_folders_need_a_version() {
    assert_eq!(
        parse_version_folder("neuronxcc-2.21.33363.0+82129205"),
        Some("2.21.33363.0+82129205")
    );
    for name in [
        "neuronxcc-",
        "neuronxcc",
        "",
        "NEURONXCC-2.1",
        "neuron-compile-cache",
    ] {
        assert_eq!(parse_version_folder(name), None, "{name:?}");
    }
}

#[test]
fn compiler_versions_match_with_or_without_the_build_suffix() {
    assert!(compiler_version_matches(
        "2.16.345.0+8b9c8a7e",
        "2.16.345.0"
    ));
    assert!(compiler_version_matches(
        "2.16.345.0+8b9c8a7e",
        "2.16.345.0+8b9c8a7e"
    ));
    assert!(compiler_version_matches("2.16.345.0", "2.16.345.0"));
    assert!(!compiler_version_matches("2.16.345.0+8b9c8a7e", "2.16.34"));
    assert!(!compiler_version_matches(
        "2.16.345.0+8b9c8a7e",
        "2.16.345.0+8b9c8a7f"
    ));
    assert!(!compiler_version_matches("2.16.345.01", "2.16.345.0"));
    assert!(!compiler_version_matches(
        "2.21.33363.0+82129205",
        "2.16.345.0"
    ));
    assert!(!compiler_version_matches("2.16.345.0", ""));
    assert!(!compiler_version_matches("", "2.16.345.0"));
}

#[test]
fn flags_files_that_are_not_lists_of_strings_are_problems_not_panics() {
    assert_eq!(
        parse_flags_file("compile_flags.json", br#"["--model-type", "transformer"]"#),
        Ok(vec!["--model-type".to_owned(), "transformer".to_owned()])
    );
    assert_eq!(
        parse_flags_file("compile_flags.txt", b" --a=1\n--b \t"),
        Ok(vec!["--a=1".to_owned(), "--b".to_owned()])
    );
    let deep = "[".repeat(100_000);
    let huge = vec![b' '; (1 << 20) + 1];
    let malformed: [(&str, &[u8]); 10] = [
        ("compile_flags.json", b""),
        ("compile_flags.json", b"{}"),
        ("compile_flags.json", b"[1, 2]"),
        ("compile_flags.json", b"[\"a\", null]"),
        ("compile_flags.json", b"[\"unterminated"),
        ("compile_flags.json", b"[\"\\ud800\"]"), // a lone surrogate
        ("compile_flags.json", deep.as_bytes()),
        ("compile_flags.json", b"\xff\xfe[]"),
        ("compile_flags.txt", b"--a \xc3\x28"),
        ("compile_flags.txt", &huge),
    ];
    for (name, bytes) in malformed {
        let problem = parse_flags_file(name, bytes).unwrap_err();
        assert!(problem.contains(name), "{problem}");
    }
}

#[test]
fn lock_names_and_ages_never_overflow() {
    assert!(is_lock_name(b"model.hlo_module.pb.lock"));
    assert!(!is_lock_name(b"model.hlo_module.pb"));
    assert!(!is_lock_name(b"lock"));
    assert!(!is_lock_name(b""));
    assert!(!is_lock_name(b"model.lock\xff"));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert_eq!(
        lock_age(now, now - Duration::from_secs(90)),
        Duration::from_secs(90)
    );
    // Another node's clock ahead of ours: the age is zero (young), not a panic or a wrap.
    assert_eq!(
        lock_age(now, now + Duration::from_secs(3600)),
        Duration::ZERO
    );
    assert_eq!(lock_age(SystemTime::UNIX_EPOCH, now), Duration::ZERO);
}

#[test]
fn neuron_cc_flags_that_do_not_split_are_errors() {
    for value in [
        "'unterminated",
        "\"unterminated",
        "--a \\",
        "\"\\",
        "--cache_dir",
    ] {
        let error = parse_neuron_cc_flags(value).unwrap_err();
        assert!(error.to_string().contains("NEURON_CC_FLAGS"), "{error}");
    }
    for value in ["", "   ", "\u{0}", "'' \"\"", "--a=\u{1F600}", "\\\n--b"] {
        let flags = parse_neuron_cc_flags(value).unwrap();
        // Keys are always 8 hex digits.
        assert_eq!(flags.key().len(), 8, "{value:?}");
        assert_eq!(flags.legacy_key().len(), 8, "{value:?}");
    }
}

#[test]
fn coverage_counts_from_outside_never_overflow() {
    // The cache check's counts are read back from a pod's log.
    let coverage: Coverage = serde_json::from_value(serde_json::json!({
        "flags_keys": ["725887e1"], "compiler_version": null,
        "complete": usize::MAX, "failed": usize::MAX, "locked": 0, "stale_lock": 0, "incomplete": 0,
    }))
    .unwrap();
    assert!(!coverage.is_ready());
    assert!(
        coverage.verdict().contains("failed"),
        "{}",
        coverage.verdict()
    );
    let empty = Coverage::default();
    assert!(
        empty.verdict().contains("compile job is needed"),
        "{}",
        empty.verdict()
    );
}
