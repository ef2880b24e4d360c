//! The flags key against the published module names (`formats.md` B.1), Python's `json.dumps`,
//! `NEURON_CC_FLAGS` parsing, and the compile/train comparison.

use crate::flags::{
    compare, flags_key, legacy_flags_key, parse_neuron_cc_flags, python_json_dumps,
};

#[test]
fn keys_match_the_published_module_names() {
    // optimum-neuron #698, neuronxcc 2.15.
    assert_eq!(
        flags_key(&[
            "--model-type=transformer",
            "--auto-cast=none",
            "--execute-repetition=1"
        ]),
        "39f12043"
    );
    // aws-neuron-sdk #1063: the blueprint's bf16SR flags, split into words.
    assert_eq!(
        flags_key(&[
            "--model-type",
            "transformer",
            "--distribution-strategy=llm-training",
            "--enable-mixed-precision-accumulation"
        ]),
        "725887e1"
    );
    // aws-neuron-sdk #825, neuronxcc 2.12: the older space-joined form.
    assert_eq!(
        legacy_flags_key(&["--model-type=transformer", "--auto-cast=none"]),
        "2c2d707e"
    );
    // No flags, older form: the MD5 of the empty string.
    assert_eq!(legacy_flags_key::<&str>(&[]), "d41d8cd9");
}

#[test]
fn json_dumps_matches_python() {
    assert_eq!(python_json_dumps::<&str>(&[]), "[]");
    assert_eq!(python_json_dumps(&["a", "b"]), r#"["a", "b"]"#);
    // Reference from CPython 3: json.dumps(['é😀"\\\n\x01/']).
    let tricky = ["é\u{1F600}\"\\\n\u{1}/"];
    assert_eq!(
        python_json_dumps(&tricky),
        r#"["\u00e9\ud83d\ude00\"\\\n\u0001/"]"#
    );
    assert_eq!(flags_key(&tricky), "68da1937");
}

#[test]
fn neuron_cc_flags_are_split_like_the_wrapper() {
    let flags = parse_neuron_cc_flags(
        "  --model-type transformer --cache_dir=/shared/neuron_cache --retry_failed_compilation \
         --distribution-strategy=llm-training --enable-mixed-precision-accumulation  ",
    )
    .unwrap();
    assert_eq!(
        flags.key(),
        "725887e1",
        "wrapper options are not part of the key"
    );
    assert_eq!(flags.cache_dir.as_deref(), Some("/shared/neuron_cache"));
    assert!(flags.retry_failed_compilation && !flags.no_cache);

    let quoted =
        parse_neuron_cc_flags(r#"--a 'b c' "d \"e\"" f\ g --cache_dir s3://x --no_cache"#).unwrap();
    assert_eq!(quoted.compiler_flags, ["--a", "b c", "d \"e\"", "f g"]);
    assert_eq!(quoted.cache_dir.as_deref(), Some("s3://x"));
    assert!(quoted.no_cache);

    for bad in ["'open", "\"open", "--cache_dir", "trailing\\"] {
        let error = parse_neuron_cc_flags(bad).unwrap_err().to_string();
        assert!(
            error.contains("cannot parse NEURON_CC_FLAGS"),
            "{bad}: {error}"
        );
    }
    assert!(parse_neuron_cc_flags("").unwrap().compiler_flags.is_empty());
}

#[test]
fn compare_explains_why_train_would_miss_the_cache() {
    let parse = |value: &str| parse_neuron_cc_flags(value).unwrap();
    let blueprint = parse("--model-type transformer --distribution-strategy=llm-training");
    assert_eq!(
        compare(
            &blueprint,
            &parse("--model-type  transformer   --distribution-strategy=llm-training")
        ),
        None
    );

    let spelled = compare(
        &blueprint,
        &parse("--model-type=transformer --distribution-strategy=llm-training"),
    )
    .unwrap();
    assert_ne!(spelled.compile_key, spelled.train_key);
    assert!(
        spelled.reasons[0].contains("spelled differently"),
        "{spelled}"
    );

    let reordered = compare(
        &blueprint,
        &parse("--distribution-strategy=llm-training --model-type transformer"),
    )
    .unwrap();
    assert!(
        reordered.reasons[0].contains("another order"),
        "{reordered}"
    );

    let extra = compare(
        &blueprint,
        &parse("--model-type transformer --distribution-strategy=llm-training -O1"),
    )
    .unwrap();
    assert!(
        extra.to_string().contains("only the train job has -O1"),
        "{extra}"
    );

    let cache = compare(
        &blueprint,
        &parse("--model-type transformer --distribution-strategy=llm-training --cache_dir=/tmp/c"),
    )
    .unwrap();
    assert!(cache.reasons[0].contains("--cache_dir differs"), "{cache}");
    assert!(
        cache.to_string().contains("training would compile again"),
        "{cache}"
    );
}
