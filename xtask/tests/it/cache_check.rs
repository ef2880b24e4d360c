//! The compile-cache check as deploy runs it in the cluster: the command of the rendered Job,
//! executed with the real `trnkit-stage` binary on a cache tree, and its output read back by
//! the parser deploy uses.

use fsx::SharedLayout;
use xtask::checks::parse_cache_check;
use xtask::config::Config;

/// Runs the rendered Job's command (its cache root moved to `layout`) and parses the log.
async fn check(layout: &SharedLayout, config: &Config) -> neuron_cache::Coverage {
    let job = xtask::staging::cache_check_job(config, layout, "stager:test");
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let command = container.command.clone().unwrap();
    assert_eq!(command[0], "trnkit-stage");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_trnkit-stage"))
        .args(&command[1..])
        .current_dir(layout.root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    parse_cache_check(&stdout).unwrap_or_else(|| panic!("not the check's line: {stdout}"))
}

/// An entry under the training image's neuronx-cc (the version the check pins).
fn entry(layout: &SharedLayout, flags_key: &str, graph: &str, files: &[(&str, &[u8])]) {
    let version = xtask::images::training_image(&Config::default()).neuronx_cc_version;
    entry_of(
        layout,
        &format!("{version}+82129205"),
        flags_key,
        graph,
        files,
    );
}

fn entry_of(
    layout: &SharedLayout,
    version: &str,
    flags_key: &str,
    graph: &str,
    files: &[(&str, &[u8])],
) {
    let dir = layout
        .compile_cache()
        .join(format!("neuronxcc-{version}"))
        .join(format!("MODULE_{graph}+{flags_key}"));
    fs_err::create_dir_all(&dir).unwrap();
    for (name, contents) in files {
        fs_err::write(dir.join(name), contents).unwrap();
    }
}

#[tokio::test]
async fn the_rendered_check_reads_the_cache_with_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let layout = SharedLayout::new(dir.path().join("shared"));
    let config = Config::default();
    let key = neuron_cache::parse_neuron_cc_flags(&config.training.neuron_cc_flags)
        .unwrap()
        .key();
    fs_err::create_dir_all(layout.compile_cache()).unwrap();

    let empty = check(&layout, &config).await;
    assert_eq!(empty.complete, 0);
    assert!(!empty.is_ready());

    let done: &[(&str, &[u8])] = &[
        ("model.hlo_module.pb", b"hlo"),
        ("model.neff", b"neff"),
        ("model.done", b""),
    ];
    entry(&layout, &key, "1111111111111111111", done);
    entry(&layout, &key, "2222222222222222222", done);
    entry(&layout, "ffffffff", "3333333333333333333", done);
    // Another compiler's complete entry for the same flags does not count.
    entry_of(
        &layout,
        "2.21.33363.0+82129205",
        &key,
        "5555555555555555555",
        done,
    );
    let warm = check(&layout, &config).await;
    assert_eq!(warm.complete, 2, "{warm:?}");
    assert!(warm.is_ready());

    entry(
        &layout,
        &key,
        "4444444444444444444",
        &[
            ("model.hlo_module.pb", b"hlo"),
            ("model.log", b"Failed compilation"),
        ],
    );
    let failed = check(&layout, &config).await;
    assert_eq!((failed.complete, failed.failed), (2, 1));
    assert!(!failed.is_ready());
}

#[test]
fn the_parser_takes_the_last_json_line_and_refuses_other_logs() {
    assert!(parse_cache_check("").is_none());
    assert!(parse_cache_check("error: the cache root does not exist\n").is_none());
    assert!(parse_cache_check("{\"coverage\": 3}\n").is_none());
    let line = r#"{"coverage":{"flags_keys":["a","b"],"compiler_version":null,"complete":1,"failed":0,"locked":0,"stale_lock":0,"incomplete":0},"flags_mismatch":null}"#;
    let coverage = parse_cache_check(&format!("warning: x\n{line}\n")).unwrap();
    assert_eq!(coverage.complete, 1);
}
