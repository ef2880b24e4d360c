//! The log model against real excerpts (`testdata/`, each with its source URL on its first
//! line), the made-up line of the issue, and the decisions taken on them.

use std::time::Duration;

use serde_json::json;

use super::analysis::{Analyzer, Fatal, Network, analyze};
use super::decide::{self, Policy, Verdict};
use super::{line, live};

/// Every excerpt, by file name. A test below checks each is listed and has its source.
const EXCERPTS: &[(&str, &str)] = &[
    (
        "nemo_progress_llama_trn1.log",
        include_str!("testdata/nemo_progress_llama_trn1.log"),
    ),
    (
        "nemo_progress_without_throughput.log",
        include_str!("testdata/nemo_progress_without_throughput.log"),
    ),
    (
        "tqdm_iterations_per_second.log",
        include_str!("testdata/tqdm_iterations_per_second.log"),
    ),
    (
        "trainer_loss_nan.log",
        include_str!("testdata/trainer_loss_nan.log"),
    ),
    (
        "trainer_loss_dict.log",
        include_str!("testdata/trainer_loss_dict.log"),
    ),
    (
        "cached_neff_and_ofi_failed.log",
        include_str!("testdata/cached_neff_and_ofi_failed.log"),
    ),
    (
        "cached_neff_neuron_cc_wrapper.log",
        include_str!("testdata/cached_neff_neuron_cc_wrapper.log"),
    ),
    (
        "cached_failed_neff.log",
        include_str!("testdata/cached_failed_neff.log"),
    ),
    (
        "parallel_compile_locked.log",
        include_str!("testdata/parallel_compile_locked.log"),
    ),
    (
        "efa_selected.log",
        include_str!("testdata/efa_selected.log"),
    ),
    (
        "efa_selected_then_ofi_failed.log",
        include_str!("testdata/efa_selected_then_ofi_failed.log"),
    ),
    (
        "socket_fallback.log",
        include_str!("testdata/socket_fallback.log"),
    ),
    (
        "bootstrap_timeout_retrying.log",
        include_str!("testdata/bootstrap_timeout_retrying.log"),
    ),
    (
        "nrt_load_failed.log",
        include_str!("testdata/nrt_load_failed.log"),
    ),
    (
        "nrt_resource_in_nrt_load.log",
        include_str!("testdata/nrt_resource_in_nrt_load.log"),
    ),
    (
        "neff_invalid.log",
        include_str!("testdata/neff_invalid.log"),
    ),
    (
        "neff_parse_unsupported_version.log",
        include_str!("testdata/neff_parse_unsupported_version.log"),
    ),
    (
        "device_memory_oom.log",
        include_str!("testdata/device_memory_oom.log"),
    ),
    (
        "compilation_failed.log",
        include_str!("testdata/compilation_failed.log"),
    ),
    (
        "internal_compiler_error.log",
        include_str!("testdata/internal_compiler_error.log"),
    ),
    (
        "torchrun_traceback.log",
        include_str!("testdata/torchrun_traceback.log"),
    ),
    (
        "collective_watchdog_timeout.log",
        include_str!("testdata/collective_watchdog_timeout.log"),
    ),
];

fn excerpt(name: &str) -> &'static str {
    EXCERPTS
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("no excerpt {name}"))
}

/// The analysis of `text`, as `logs analyze -o json` prints it, against `expected`: only the
/// keys `expected` names are compared, and the object must have exactly the ten keys.
fn check(text: &str, expected: serde_json::Value) {
    let actual = serde_json::to_value(analyze(text)).unwrap();
    // Sorted: the order of a JSON object's keys means nothing, and depends on whether this
    // build's serde_json preserves insertion order (a workspace build switches that on).
    let mut keys: Vec<&String> = actual.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cache",
            "consumed_samples",
            "fatal",
            "last_global_step",
            "loss",
            "nan_loss",
            "network",
            "seconds_per_step",
            "throughput",
            "total_steps"
        ]
    );
    for (key, value) in expected.as_object().unwrap() {
        let got = &actual[key];
        match (got.as_f64(), value.as_f64()) {
            (Some(got), Some(want)) if value.is_f64() => {
                assert!(
                    (got - want).abs() < 1e-6,
                    "{key}: {got} != {want}\n{actual:#}"
                )
            }
            _ => assert_eq!(got, value, "{key}\n{actual:#}"),
        }
    }
}

fn no_cache() -> serde_json::Value {
    json!({ "cached_neff_hits": 0, "cached_failed": 0, "locked": null })
}

#[test]
fn every_excerpt_names_its_source_and_is_listed() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/observe/testdata");
    let mut files: Vec<String> = fs_err::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = EXCERPTS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    listed.sort();
    assert_eq!(files, listed);
    for (name, text) in EXCERPTS {
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("# source: http"),
            "{name} must start with its source URL: {first}"
        );
    }
}

#[test]
fn the_issues_example_line() {
    check(
        "Epoch 0:  1%| 120/10000 [28:00<38:25:00, 14.00s/it, reduced_train_loss=5.210, global_step=119.0, consumed_samples=3.07e+4, throughput=18.30]",
        json!({
            "last_global_step": 119,
            "total_steps": 10000,
            "seconds_per_step": 14.0,
            "loss": 5.21,
            "throughput": 18.3,
            "consumed_samples": 30700.0,
            "network": null,
            "cache": no_cache(),
            "fatal": null,
            "nan_loss": false,
        }),
    );
}

#[test]
fn nemo_progress_on_trn1_the_bars_loss_is_not_the_training_loss() {
    // The bar's running `loss=nan` is not the training loss: reduced_train_loss is.
    check(
        excerpt("nemo_progress_llama_trn1.log"),
        json!({
            "last_global_step": 565,
            "total_steps": 20101,
            "seconds_per_step": 14.05,
            "loss": 4.0,
            "throughput": 19.0,
            "consumed_samples": 145000.0,
            "network": null,
            "cache": no_cache(),
            "fatal": null,
            "nan_loss": false,
        }),
    );
}

#[test]
fn nemo_progress_without_throughput_leaves_it_null() {
    check(
        excerpt("nemo_progress_without_throughput.log"),
        json!({
            "last_global_step": 794,
            "total_steps": 77225,
            "seconds_per_step": 41.36,
            "loss": 3.09,
            "throughput": null,
            "consumed_samples": 1_630_000.0,
            "nan_loss": false,
        }),
    );
}

#[test]
fn iterations_per_second_are_inverted() {
    check(
        excerpt("tqdm_iterations_per_second.log"),
        json!({
            "last_global_step": null,
            "total_steps": 2120,
            "seconds_per_step": 1.0 / 1.43,
            "loss": null,
            "fatal": null,
        }),
    );
}

#[test]
fn the_trainers_nan_loss_counts_without_reduced_train_loss() {
    check(
        excerpt("trainer_loss_nan.log"),
        json!({
            "total_steps": 5_900_000,
            "seconds_per_step": 1.0 / 1.36,
            "loss": null,
            "nan_loss": true,
        }),
    );
}

#[test]
fn the_trainers_loss_dictionary() {
    check(
        excerpt("trainer_loss_dict.log"),
        json!({ "loss": 0.604829, "nan_loss": false, "total_steps": null }),
    );
}

#[test]
fn cached_neffs_and_a_failed_ofi_plugin_mean_tcp() {
    check(
        excerpt("cached_neff_and_ofi_failed.log"),
        json!({
            "cache": { "cached_neff_hits": 2, "cached_failed": 0, "locked": null },
            "network": "tcp",
            "total_steps": 290,
            "seconds_per_step": 2.63,
            "fatal": null,
        }),
    );
}

#[test]
fn cached_neffs_of_the_neuron_cc_wrapper() {
    check(
        excerpt("cached_neff_neuron_cc_wrapper.log"),
        json!({ "cache": { "cached_neff_hits": 2, "cached_failed": 0, "locked": null }, "fatal": null }),
    );
}

#[test]
fn a_cached_failed_neff_is_counted() {
    check(
        excerpt("cached_failed_neff.log"),
        json!({ "cache": { "cached_neff_hits": 0, "cached_failed": 1, "locked": null }, "fatal": null }),
    );
}

#[test]
fn neuron_parallel_compile_reports_the_last_lock_count() {
    check(
        excerpt("parallel_compile_locked.log"),
        json!({ "cache": { "cached_neff_hits": 0, "cached_failed": 0, "locked": 2 }, "fatal": null }),
    );
}

#[test]
fn the_efa_provider_selected() {
    check(
        excerpt("efa_selected.log"),
        json!({ "network": "efa", "fatal": null }),
    );
}

#[test]
fn efa_selected_then_the_plugin_failed_is_tcp() {
    check(
        excerpt("efa_selected_then_ofi_failed.log"),
        json!({ "network": "tcp", "fatal": null }),
    );
}

#[test]
fn a_fallback_to_sockets_is_tcp() {
    check(
        excerpt("socket_fallback.log"),
        json!({ "network": "tcp", "fatal": null }),
    );
}

#[test]
fn a_retrying_bootstrap_timeout_is_fatal() {
    check(
        excerpt("bootstrap_timeout_retrying.log"),
        json!({ "network": "tcp", "fatal": "collectives_timeout" }),
    );
}

#[test]
fn a_failed_neff_load_is_a_runtime_failure() {
    check(
        excerpt("nrt_load_failed.log"),
        json!({ "fatal": "runtime" }),
    );
    check(
        excerpt("nrt_resource_in_nrt_load.log"),
        json!({ "fatal": "runtime" }),
    );
}

#[test]
fn invalid_neffs() {
    check(
        excerpt("neff_invalid.log"),
        json!({ "fatal": "neff_invalid" }),
    );
    check(
        excerpt("neff_parse_unsupported_version.log"),
        json!({ "fatal": "neff_invalid" }),
    );
}

#[test]
fn device_memory_exhausted_before_the_traceback() {
    check(excerpt("device_memory_oom.log"), json!({ "fatal": "oom" }));
}

#[test]
fn compiler_failures() {
    check(
        excerpt("compilation_failed.log"),
        json!({ "fatal": "compile_failed" }),
    );
    check(
        excerpt("internal_compiler_error.log"),
        json!({ "fatal": "compile_failed" }),
    );
}

#[test]
fn any_other_traceback() {
    check(
        excerpt("torchrun_traceback.log"),
        json!({ "fatal": "traceback" }),
    );
}

#[test]
fn a_collective_watchdog_timeout() {
    check(
        excerpt("collective_watchdog_timeout.log"),
        json!({ "fatal": "collectives_timeout" }),
    );
}

#[test]
fn carriage_returns_colours_and_rank_prefixes_are_tolerated() {
    let plain = excerpt("nemo_progress_llama_trn1.log");
    let mut decorated = String::new();
    for raw in plain.lines() {
        // mpirun's tag, a colour around the bar, and each redraw after a carriage return.
        let redraws = raw.replace(", Epoch 0:", ",\r\u{1b}[32mEpoch 0:\u{1b}[0m");
        decorated.push_str(&format!("[1,0]<stdout>:{redraws}\r\n"));
    }
    assert_eq!(analyze(&decorated), analyze(plain));
    assert_eq!(
        line::clean("[1,12]<stderr>:\u{1b}[1;31mTraceback\u{1b}[0m"),
        "Traceback"
    );
    assert_eq!(line::clean("[not a rank] text"), "[not a rank] text");
}

#[test]
fn feeding_lines_one_by_one_gives_the_same_analysis() {
    for (name, text) in EXCERPTS {
        let mut analyzer = Analyzer::default();
        for raw in text.lines() {
            analyzer.feed(raw);
        }
        assert_eq!(analyzer.analysis(), analyze(text), "{name}");
    }
}

#[test]
fn progress_records_are_reported() {
    let mut analyzer = Analyzer::default();
    assert!(
        !analyzer
            .feed("2023-Jul-07 CCOM WARN OFI plugin initNet() failed")
            .progress
    );
    assert!(
        analyzer
            .feed(
                excerpt("nemo_progress_without_throughput.log")
                    .lines()
                    .nth(1)
                    .unwrap()
            )
            .progress
    );
}

fn analyzer_of(name: &str) -> Analyzer {
    let mut analyzer = Analyzer::default();
    for raw in excerpt(name).lines() {
        analyzer.feed(raw);
    }
    analyzer
}

#[test]
fn tcp_stops_the_run_with_its_evidence_unless_efa_is_optional() {
    let analyzer = analyzer_of("socket_fallback.log");
    assert_eq!(analyzer.analysis().network, Some(Network::Tcp));
    let Verdict::Stop { reason, evidence } =
        decide::verdict(&analyzer, Duration::ZERO, &Policy::default())
    else {
        panic!("TCP must stop the run");
    };
    assert!(reason.starts_with("tcp:"), "{reason}");
    assert!(
        evidence[0].contains("aws-ofi-nccl initialization failed"),
        "{evidence:?}"
    );
    assert!(
        evidence
            .iter()
            .any(|line| line.contains("Using network Socket"))
    );

    let optional = Policy {
        require_efa: false,
        ..Policy::default()
    };
    assert!(matches!(
        decide::verdict(&analyzer, Duration::ZERO, &optional),
        Verdict::Warn { .. }
    ));
    assert_eq!(
        decide::verdict(
            &analyzer_of("efa_selected.log"),
            Duration::ZERO,
            &Policy::default()
        ),
        Verdict::Continue
    );
}

#[test]
fn a_fatal_condition_stops_the_run_with_its_category_and_lines() {
    let analyzer = analyzer_of("bootstrap_timeout_retrying.log");
    let Verdict::Stop { reason, evidence } =
        decide::verdict(&analyzer, Duration::ZERO, &Policy::default())
    else {
        panic!("a collectives timeout must stop the run");
    };
    // The fatal condition comes before the network.
    assert!(reason.starts_with("collectives_timeout:"), "{reason}");
    assert!(
        evidence
            .iter()
            .any(|line| line.contains("Timeout waiting for RX"))
    );

    let analyzer = analyzer_of("device_memory_oom.log");
    let Verdict::Stop { reason, evidence } =
        decide::verdict(&analyzer, Duration::ZERO, &Policy::default())
    else {
        panic!("an OOM must stop the run");
    };
    assert!(reason.starts_with("oom:"), "{reason}");
    assert!(
        evidence
            .iter()
            .any(|line| line.contains("Failed to alloc DEVICE memory"))
    );
}

#[test]
fn a_traceback_settles_before_it_stops_the_run() {
    let mut analyzer = analyzer_of("torchrun_traceback.log");
    assert_eq!(analyzer.analysis().fatal, Some(Fatal::Traceback));
    assert_eq!(
        decide::verdict(&analyzer, Duration::ZERO, &Policy::default()),
        Verdict::Continue
    );
    for _ in 0..decide::TRACEBACK_SETTLE {
        analyzer.feed("    frame");
    }
    let Verdict::Stop { reason, evidence } =
        decide::verdict(&analyzer, Duration::ZERO, &Policy::default())
    else {
        panic!("a settled traceback must stop the run");
    };
    assert!(reason.starts_with("traceback:"), "{reason}");
    assert!(evidence[0].contains("Traceback (most recent call last)"));
}

#[test]
fn a_garbled_step_time_in_the_log_neither_crashes_the_watch_nor_disables_hang_detection() {
    // A rate no run has (a corrupted line, a bar of another tool): 10 × it overflows a
    // Duration, which used to panic `watch` and the follow step.
    for line in [
        "Epoch 0:   0%|          | 1/20101 [00:14<78:26:14, 99999999999999999999999999.0s/it]",
        "Epoch 0:   0%|          | 1/20101 [00:14<78:26:14, 0.0000000000000000000000001it/s]",
    ] {
        let analyzer = Analyzer::default();
        let mut analyzer = analyzer;
        analyzer.feed(line);
        let seconds = analyzer.analysis().seconds_per_step;
        assert!(seconds.is_some_and(|s| s > 1e20), "{seconds:?}");
        assert_eq!(decide::hang_bound(seconds, None), decide::MAX_HANG_BOUND);
        let Verdict::Hung { .. } = decide::verdict(
            &analyzer,
            Duration::from_secs(25 * 3600),
            &Policy::default(),
        ) else {
            panic!("a day without progress is a hang, whatever the log claimed");
        };
    }
}

#[test]
fn hang_bound_is_ten_steps_at_least_thirty_minutes_or_configured() {
    assert_eq!(decide::hang_bound(None, None), Duration::from_secs(1800));
    assert_eq!(
        decide::hang_bound(Some(14.05), None),
        Duration::from_secs(1800)
    );
    assert_eq!(
        decide::hang_bound(Some(600.0), None),
        Duration::from_secs(6000)
    );
    assert_eq!(
        decide::hang_bound(Some(600.0), Some(Duration::from_secs(60))),
        Duration::from_secs(60)
    );
    let analyzer = analyzer_of("nemo_progress_llama_trn1.log");
    assert_eq!(
        decide::verdict(&analyzer, Duration::from_secs(29 * 60), &Policy::default()),
        Verdict::Continue
    );
    let Verdict::Hung { reason } =
        decide::verdict(&analyzer, Duration::from_secs(31 * 60), &Policy::default())
    else {
        panic!("31 minutes without progress is a hang");
    };
    assert!(reason.contains("31m"), "{reason}");
}

#[test]
fn live_figures_eta_and_cost_estimate() {
    let analysis = analyze(excerpt("nemo_progress_llama_trn1.log"));
    let live = live::live(&analysis, Duration::from_secs(2 * 3600), 4, 21.50);
    assert_eq!(live.step, Some(565));
    let eta = live.eta_seconds.unwrap();
    assert!((eta - (20101.0 - 565.0) * 14.05).abs() < 1e-6, "{eta}");
    assert_eq!(live.cost.so_far_usd, 172.0);
    let projected = live.cost.projected_usd.unwrap();
    assert!((projected - 4.0 * 21.5 * (2.0 + eta / 3600.0)).abs() < 0.01);
    let summary = live::summary(&live);
    assert!(
        summary.starts_with("step 565/20101 · loss 4.000 · 19.00 samples/s · 14.05 s/step"),
        "{summary}"
    );
    assert!(summary.contains("~$172 so far"), "{summary}");
    assert!(summary.contains("(estimate)"), "{summary}");

    let unknown = live::live(&analyze(""), Duration::from_secs(60), 4, 21.50);
    assert_eq!(unknown.eta_seconds, None);
    assert_eq!(unknown.cost.projected_usd, None);
    assert!(live::summary(&unknown).starts_with("step ?/?"));
}

#[test]
fn a_watch_decides_once_and_starts_afresh_on_a_new_launcher() {
    use super::watch::Watch;
    let start = std::time::Instant::now();
    let mut watch = Watch::new(Policy::default(), start);
    let progress = excerpt("nemo_progress_without_throughput.log")
        .lines()
        .nth(1)
        .unwrap();
    assert_eq!(watch.line(progress, start), None);
    // 31 minutes without a line: hung, once.
    let later = start + Duration::from_secs(31 * 60);
    assert!(matches!(watch.tick(later), Some(Verdict::Hung { .. })));
    assert_eq!(watch.tick(later + Duration::from_secs(60)), None);
    // A new launcher: a fresh analysis, and a TCP fallback stops it.
    watch.reattached(later);
    assert_eq!(watch.analyzer().analysis().last_global_step, None);
    let mut verdicts = Vec::new();
    for raw in excerpt("socket_fallback.log").lines() {
        verdicts.extend(watch.line(raw, later));
    }
    assert!(
        matches!(verdicts.as_slice(), [Verdict::Stop { .. }]),
        "{verdicts:?}"
    );
    assert_eq!(watch.elapsed(later), Duration::from_secs(31 * 60));

    // With require_efa = false, TCP warns once and the run goes on.
    let optional = Policy {
        require_efa: false,
        ..Policy::default()
    };
    let mut watch = Watch::new(optional, start);
    let mut verdicts = Vec::new();
    for raw in excerpt("socket_fallback.log").lines() {
        verdicts.extend(watch.line(raw, start));
    }
    assert!(
        matches!(verdicts.as_slice(), [Verdict::Warn { .. }]),
        "{verdicts:?}"
    );
}

#[test]
fn a_failed_jobs_log_is_diagnosed() {
    let diagnosis = decide::diagnosis(&analyzer_of("bootstrap_timeout_retrying.log")).unwrap();
    assert!(
        diagnosis.starts_with("the log shows collectives_timeout: "),
        "{diagnosis}"
    );
    assert!(diagnosis.contains("Timeout waiting for RX"), "{diagnosis}");
    assert!(
        diagnosis.contains("the log also shows tcp: ")
            && diagnosis.contains("OFI plugin initNet() failed"),
        "{diagnosis}"
    );
    let diagnosis = decide::diagnosis(&analyzer_of("cached_failed_neff.log")).unwrap();
    assert!(
        diagnosis.contains("1 cached failed NEFF(s)") && diagnosis.contains("prune --failed"),
        "{diagnosis}"
    );
    assert!(
        decide::diagnosis(&analyzer_of("trainer_loss_nan.log"))
            .unwrap()
            .contains("the training loss was NaN")
    );
    assert_eq!(decide::diagnosis(&analyzer_of("efa_selected.log")), None);
}
