//! The staging step's tokenization as the cluster runs it, with the real `trnkit-stage`: the
//! commands of the rendered Jobs, executed on a small corpus laid out like `/shared`. The
//! sharded Jobs (`data.shards = 3`: three shard pods, then the merge) must give the bytes of the
//! single staging Job's tokenization.

use std::path::Path;

use fsx::SharedLayout;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;
use xtask::config::Config;

/// Runs `argv` with the real binary; returns its stdout.
async fn run(argv: &[String], dir: &Path) -> String {
    assert_eq!(argv[0], "trnkit-stage", "{argv:?}");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_trnkit-stage"))
        .args(&argv[1..])
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{argv:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every container of the Job's pod, init containers first, as the kubelet runs them.
fn containers(job: &Job) -> Vec<Container> {
    let spec = job.spec.clone().unwrap().template.spec.unwrap();
    spec.init_containers
        .unwrap_or_default()
        .into_iter()
        .chain(spec.containers)
        .collect()
}

/// `command` + `args` with `$(JOB_COMPLETION_INDEX)` expanded as the kubelet does.
fn argv(container: &Container, index: u32) -> Vec<String> {
    container
        .command
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(container.args.clone().unwrap_or_default())
        .map(|word| word.replace("$(JOB_COMPLETION_INDEX)", &index.to_string()))
        .collect()
}

fn outputs(layout: &SharedLayout) -> Vec<Vec<u8>> {
    let prefix = layout.output_prefix().display().to_string();
    ["text", "meta_source"]
        .iter()
        .flat_map(|key| ["bin", "idx"].map(|ext| format!("{prefix}_{key}_document.{ext}")))
        .map(|path| fs_err::read(path).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_jobs_give_the_bytes_of_the_single_job() {
    let dir = tempfile::tempdir().unwrap();
    let layout = SharedLayout::new(dir.path().join("shared"));
    let corpus = xtask::deploy::sample::write_corpus(&layout.raw_data_dir(), 3, 60, 7).unwrap();
    xtask::deploy::sample::train_tokenizer(&corpus, &layout.tokenizer_dir(), 400).unwrap();
    pipeline::stage::merge_jsonl(&corpus, &layout.merged_jsonl()).unwrap();
    let mut config = Config::default();
    config.data.dataset_name = layout
        .output_prefix()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    config.data.json_keys = vec!["text".to_owned(), "meta_source".to_owned()];

    // The sample's `meta` is an object; tokenize a string key next to `text` instead.
    let merged = fs_err::read_to_string(layout.merged_jsonl()).unwrap();
    let rewritten: String = merged
        .lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["meta_source"] = value["meta"]["redpajama_set_name"].clone();
            format!("{value}\n")
        })
        .collect();
    fs_err::write(layout.merged_jsonl(), rewritten).unwrap();

    // One staging Job: its last container tokenizes.
    let single = xtask::staging::jobs(&config, &layout, "training", "stager").unwrap();
    assert_eq!(single.len(), 2, "staging, then the dataset check");
    let tokenize = containers(&single[0]).pop().unwrap();
    assert_eq!(tokenize.name, "tokenize");
    run(&argv(&tokenize, 0), dir.path()).await;
    let expected = outputs(&layout);

    // The dataset check's line, as deploy reads and records it: the datasets, the tokenizer's
    // files and the checkout's commit (a detached HEAD, as the staging Job checks it out).
    let commit = "f4743cef5a1c8dc9eeb6b3d128e01693e041a9be";
    fs_err::create_dir_all(layout.code_checkout().join(".git")).unwrap();
    fs_err::write(
        layout.code_checkout().join(".git/HEAD"),
        format!("{commit}\n"),
    )
    .unwrap();
    let check = containers(&single[1]).pop().unwrap();
    let line = run(&argv(&check, 0), dir.path()).await;
    let fingerprints = xtask::checks::parse_dataset_check(&line)
        .unwrap_or_else(|| panic!("not the check's line: {line}"));
    assert_eq!(fingerprints.datasets.len(), 2);
    assert_eq!(fingerprints.checkout_commit.as_deref(), Some(commit));
    assert_eq!(
        fingerprints.tokenizer.get("tokenizer.json"),
        Some(
            &pipeline::stage::sha256_file(&layout.tokenizer_dir().join("tokenizer.json"))
                .unwrap()
                .0
        )
    );
    let recorded = xtask::checks::dataset_outputs(&fingerprints);
    assert_eq!(recorded["checkout"], format!("commit {commit}"));
    // 3 files of 60 lines, one of them empty: NeMo mode skips it.
    let text = &fingerprints.datasets[0];
    assert!(
        text.prefix.ends_with("_text_document") && text.documents == 179,
        "{text:?}"
    );
    let idx = format!("{}.idx", text.prefix);
    assert_eq!(
        text.idx_sha256,
        pipeline::stage::sha256_file(Path::new(&idx)).unwrap().0
    );
    assert_eq!(text.bin_bytes, expected[0].len() as u64);

    // Sharded: staging (no tokenization), 3 shard pods, then the merge Job's containers.
    for key in &config.data.json_keys {
        for ext in ["bin", "idx"] {
            fs_err::remove_file(format!(
                "{}_{key}_document.{ext}",
                layout.output_prefix().display()
            ))
            .unwrap();
        }
    }
    config.data.shards = 3;
    let jobs = xtask::staging::jobs(&config, &layout, "training", "stager").unwrap();
    assert_eq!(jobs.len(), 4, "staging, shards, merge, dataset check");
    assert!(containers(&jobs[0]).iter().all(|c| c.name != "tokenize"));
    let shard = containers(&jobs[1]).pop().unwrap();
    for index in 0..3 {
        run(&argv(&shard, index), dir.path()).await;
    }
    for container in containers(&jobs[2]) {
        run(&argv(&container, 0), dir.path()).await;
    }
    assert!(
        outputs(&layout) == expected,
        "sharded output differs from the single run"
    );
}

/// Runs the real binary in `dir`; returns (success, stderr).
async fn stage(args: &[&str], dir: &Path) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_trnkit-stage"))
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Two tokenized shards `s0_text_document` and `s1_text_document` in `dir`, and their bytes.
async fn two_shards(dir: &Path) -> Vec<Vec<u8>> {
    let layout = SharedLayout::new(dir.join("shared"));
    let corpus = xtask::deploy::sample::write_corpus(&layout.raw_data_dir(), 2, 20, 3).unwrap();
    xtask::deploy::sample::train_tokenizer(&corpus, &layout.tokenizer_dir(), 300).unwrap();
    let tokenizer = layout.tokenizer_dir().display().to_string();
    for (index, file) in corpus.iter().enumerate() {
        let (ok, stderr) = stage(
            &[
                "tokenize",
                "--no-progress",
                "--input",
                &file.display().to_string(),
                "--tokenizer",
                &tokenizer,
                "--output-prefix",
                &format!("s{index}"),
            ],
            dir,
        )
        .await;
        assert!(ok, "{stderr}");
    }
    ["s0", "s1"]
        .iter()
        .flat_map(|s| ["bin", "idx"].map(|ext| dir.join(format!("{s}_text_document.{ext}"))))
        .map(|path| fs_err::read(path).unwrap())
        .collect()
}

/// Issue 12.3: `--output ./s0_text_document` is the part `s0_text_document`; comparing the
/// spellings let `--remove-parts` delete the output and every part.
#[tokio::test]
async fn remove_parts_refuses_an_output_among_the_parts() {
    let dir = tempfile::tempdir().unwrap();
    let before = two_shards(dir.path()).await;
    let (ok, stderr) = stage(
        &[
            "dataset",
            "merge",
            "--remove-parts",
            "--output",
            "./s0_text_document",
            "s0_text_document",
            "s1_text_document",
        ],
        dir.path(),
    )
    .await;
    assert!(!ok, "the merge ran: {stderr}");
    assert!(
        stderr.contains("would then delete the result") && stderr.contains("s0_text_document"),
        "{stderr}"
    );
    let after: Vec<Vec<u8>> = ["s0", "s1"]
        .iter()
        .flat_map(|s| ["bin", "idx"].map(|ext| dir.path().join(format!("{s}_text_document.{ext}"))))
        .map(|path| fs_err::read(path).unwrap())
        .collect();
    assert!(before == after, "a part changed");

    // Another output: merged, verified, then the parts go.
    let (ok, stderr) = stage(
        &[
            "dataset",
            "merge",
            "--remove-parts",
            "--output",
            "./all_text_document",
            "s0_text_document",
            "./s1_text_document",
        ],
        dir.path(),
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("after verifying"), "{stderr}");
    for part in ["s0", "s1"] {
        assert!(
            !dir.path()
                .join(format!("{part}_text_document.idx"))
                .exists()
        );
    }
    let (ok, stderr) = stage(&["dataset", "inspect", "all_text_document"], dir.path()).await;
    assert!(ok, "{stderr}");
}

/// Issue 12.2: a run on an output another process writes fails at once and names it, or
/// waits for it with `--wait`; the test process holds the lock as the other run would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_a_locked_output_fails_naming_the_holder_or_waits() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path()).await;
    let layout = SharedLayout::new(dir.path().join("shared"));
    let input = layout.raw_data_dir().join("sample_0.jsonl");
    let tokenizer = layout.tokenizer_dir().display().to_string();
    let held = pipeline::OutputLock::acquire(
        &dir.path().join("s0_text_document"),
        &pipeline::LockOptions {
            wait: false,
            command: "trnkit-stage tokenize --output-prefix s0 (the other run)".to_owned(),
        },
    )
    .unwrap();
    let input = input.display().to_string();
    let args = [
        "tokenize",
        "--no-progress",
        "--input",
        &input,
        "--tokenizer",
        &tokenizer,
        "--output-prefix",
        "s0",
    ];
    let started = std::time::Instant::now();
    let (ok, stderr) = stage(&args, dir.path()).await;
    assert!(!ok, "ran over a held lock");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20)
            && stderr.contains(&format!("pid {}", std::process::id()))
            && stderr.contains("(the other run)")
            && stderr.contains("--wait"),
        "{stderr}"
    );
    // Same for a merge into it.
    let (ok, stderr) = stage(
        &[
            "dataset",
            "merge",
            "--output",
            "s0_text_document",
            "s1_text_document",
        ],
        dir.path(),
    )
    .await;
    assert!(!ok && stderr.contains("(the other run)"), "{stderr}");

    let mut waiting = args.to_vec();
    waiting.push("--wait");
    let waiter = {
        let dir = dir.path().to_owned();
        let waiting: Vec<String> = waiting.iter().map(|s| (*s).to_owned()).collect();
        tokio::spawn(async move {
            let args: Vec<&str> = waiting.iter().map(String::as_str).collect();
            stage(&args, &dir).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!waiter.is_finished(), "--wait did not wait");
    drop(held);
    let (ok, stderr) = waiter.await.unwrap();
    assert!(ok, "{stderr}");
    let (ok, stderr) = stage(&["dataset", "inspect", "s0_text_document"], dir.path()).await;
    assert!(ok, "{stderr}");
}
