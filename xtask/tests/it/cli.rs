//! The installed command line as a user meets it: `trnkit` completions through bash's own
//! completion machinery, exit codes, and `--out` protecting what trnkit did not write.

use std::path::Path;
use std::process::Output;

async fn trnkit(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_trnkit"))
        .args(args)
        .current_dir(dir)
        .env_remove("TRNKIT_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("trnkit runs")
}

/// Completes `words` (the last one being completed) with the generated bash script, as bash
/// does on TAB: `COMP_WORDS`, `COMP_CWORD`, then the function `complete -p trnkit` names.
async fn complete(dir: &Path, words: &[&str]) -> Vec<String> {
    let script = trnkit(dir, &["completions", "bash"]).await;
    assert!(script.status.success(), "{script:?}");
    let script_path = dir.join("trnkit.bash");
    fs_err::write(&script_path, &script.stdout).unwrap();
    let quoted: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    let program = format!(
        r#"source '{}'
function_name=$(complete -p trnkit | sed -E 's/.*-F ([^ ]+).*/\1/')
COMP_WORDS=({})
COMP_CWORD={}
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$function_name" trnkit "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script_path.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let output = tokio::process::Command::new("bash")
        .args(["--norc", "-c", &program])
        .current_dir(dir)
        .output()
        .await
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn bash_completes_subcommands_and_flag_values_of_trnkit() {
    let dir = tempfile::tempdir().unwrap();
    let steps = complete(dir.path(), &["trnkit", "deploy", "--only", ""]).await;
    for step in [
        "preflight",
        "images",
        "storage",
        "staging",
        "compile",
        "train",
    ] {
        assert!(
            steps.contains(&step.to_owned()),
            "{step} missing from {steps:?}"
        );
    }
    let cache = complete(dir.path(), &["trnkit", "cache", ""]).await;
    for command in ["inspect", "prune", "verify"] {
        assert!(
            cache.contains(&command.to_owned()),
            "{command} missing from {cache:?}"
        );
    }
    let top = complete(dir.path(), &["trnkit", "dep"]).await;
    assert_eq!(top, ["deploy"]);
}

#[tokio::test]
async fn usage_errors_exit_2_and_failures_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let usage = trnkit(dir.path(), &["deploy", "--only", "nonsense"]).await;
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    let usage = trnkit(dir.path(), &["deploy", "--nonsense"]).await;
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    let stderr = String::from_utf8_lossy(&usage.stderr);
    assert!(stderr.contains("Usage: trnkit deploy"), "{stderr}");
    let failure = trnkit(dir.path(), &["-c", "missing.toml", "render", "--check"]).await;
    assert_eq!(failure.status.code(), Some(1), "{failure:?}");
}

#[tokio::test]
async fn render_out_never_deletes_what_trnkit_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    fs_err::create_dir(&out).unwrap();
    fs_err::write(out.join("notes.md"), "mine").unwrap();
    let refused = trnkit(dir.path(), &["render", "--out", "d"]).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("notes.md"));
    assert_eq!(
        fs_err::read_to_string(out.join("notes.md")).unwrap(),
        "mine"
    );

    // `--out -` is one YAML stream on stdout, every object a document.
    let stream = trnkit(dir.path(), &["render", "--out", "-"]).await;
    assert!(stream.status.success(), "{stream:?}");
    let text = String::from_utf8(stream.stdout).unwrap();
    let documents: Vec<serde_json::Value> = text
        .split("---\n")
        .filter(|document| !document.trim().is_empty())
        .map(|document| serde_yaml::from_str(document).unwrap())
        .collect();
    assert!(
        documents
            .iter()
            .any(|document| document["kind"] == "MPIJob"),
        "{text}"
    );
    assert!(
        documents
            .iter()
            .all(|document| document["metadata"]["name"].is_string())
    );

    // A fresh directory, then the same again: replaced, since trnkit wrote it.
    for _ in 0..2 {
        let written = trnkit(dir.path(), &["render", "--out", "fresh"]).await;
        assert!(written.status.success(), "{written:?}");
    }
}

#[tokio::test]
async fn dry_run_plan_is_one_json_document_and_the_work_directory_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let output = trnkit(dir.path(), &["deploy", "--dry-run", "-o", "json"]).await;
    assert!(output.status.success(), "{output:?}");
    let plan: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document");
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps[0]["id"], "preflight");
    assert!(
        steps
            .iter()
            .all(|step| step["digest"].as_str().is_some_and(|d| d.len() >= 12))
    );
    assert_eq!(plan["contacted"], false);
    let readme = fs_err::read_to_string(dir.path().join(".trnkit/README")).unwrap();
    for entry in fs_err::read_dir(dir.path().join(".trnkit")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "README" {
            assert!(
                readme.contains(&name),
                "README does not explain {name}:\n{readme}"
            );
        }
    }
}

/// Under a pseudo-terminal (`script`), errors and log lines are coloured unless `NO_COLOR` is
/// set.
#[tokio::test]
async fn no_color_is_honoured_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_trnkit");
    let run = |no_color: bool| {
        let mut command = tokio::process::Command::new("script");
        command
            .args([
                "-q",
                "-c",
                &format!("'{exe}' -c missing.toml render --check"),
                "/dev/null",
            ])
            .current_dir(dir.path())
            .env_remove("NO_COLOR")
            .env("TERM", "xterm");
        if no_color {
            command.env("NO_COLOR", "1");
        }
        command.output()
    };
    let coloured = run(false).await.expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&coloured.stdout);
    assert!(text.contains("\u{1b}["), "a terminal gets colour: {text}");
    let plain = run(true).await.unwrap();
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(!text.contains("\u{1b}["), "NO_COLOR gets none: {text}");
}

#[tokio::test]
async fn status_says_in_plain_words_what_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let empty = trnkit(dir.path(), &["status"]).await;
    assert!(empty.status.success(), "{empty:?}");
    let text = String::from_utf8_lossy(&empty.stdout);
    assert!(
        text.contains("no deploy is recorded") && text.contains("cargo xtask deploy"),
        "{text}"
    );

    let deploy = trnkit(dir.path(), &["deploy", "--workers", "2"]).await;
    assert!(
        deploy.status.success(),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    let status = trnkit(dir.path(), &["status"]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("the local profile under .trnkit"), "{text}");
    assert!(
        text.contains("staging") && text.contains(" done "),
        "{text}"
    );
    for debug_casing in ["Done", "Local", "Running", "Failed"] {
        assert!(!text.contains(debug_casing), "{debug_casing} in {text}");
    }
    let json = trnkit(dir.path(), &["status", "-o", "json"]).await;
    let report: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!(report["steps"]["staging"]["status"], "done");
    let yaml = trnkit(dir.path(), &["status", "-o", "yaml"]).await;
    let report: serde_json::Value =
        serde_yaml::from_slice(&yaml.stdout).expect("one YAML document");
    assert_eq!(report["target"], "local");
}

/// Every command's `--help` shows at least one example (`Example:` or `Examples:`), down to
/// the last subcommand.
#[test]
fn every_command_help_shows_an_example() {
    fn walk(command: &mut clap::Command, path: &str, missing: &mut Vec<String>, seen: &mut usize) {
        for sub in command.get_subcommands_mut() {
            let name = sub.get_name().to_owned();
            if name == "help" {
                continue;
            }
            let path = format!("{path} {name}");
            *seen += 1;
            let help = sub.render_long_help().to_string();
            if !help.contains("Example") {
                missing.push(path.clone());
            }
            walk(sub, &path, missing, seen);
        }
    }
    let mut root = <xtask::cli::Cli as clap::CommandFactory>::command();
    root.build();
    let (mut missing, mut seen) = (Vec::new(), 0);
    walk(&mut root, "trnkit", &mut missing, &mut seen);
    assert!(seen >= 30, "walked only {seen} commands");
    assert!(missing.is_empty(), "no example in the help of: {missing:?}");
}

/// Runs `trnkit args` in `dir`, expects success, and parses stdout as one JSON document.
async fn json_of(dir: &Path, args: &[&str]) -> serde_json::Value {
    let output = trnkit(dir, args).await;
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{args:?} printed no single JSON document ({error}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `tokenize`, `dataset inspect` and `cache inspect|prune|verify` print one documented JSON
/// document with `-o json` (durations in seconds), the same as YAML with `-o yaml`, and the
/// older `--json` still means `-o json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_one_json_or_yaml_document() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = xtask::deploy::sample::write_corpus(&dir.path().join("raw"), 2, 20, 3).unwrap();
    xtask::deploy::sample::train_tokenizer(&corpus, &dir.path().join("tok"), 300).unwrap();

    let report = json_of(
        dir.path(),
        &[
            "tokenize",
            "--input",
            "raw",
            "--tokenizer",
            "tok",
            "--output-prefix",
            "out/corpus",
            "--no-progress",
            "-o",
            "json",
        ],
    )
    .await;
    assert!(report["elapsed_seconds"].is_f64(), "{report}");
    assert!(report.get("elapsed").is_none(), "{report}");
    assert_eq!(report["outputs"].as_array().unwrap().len(), 1, "{report}");
    let documents = report["documents"].as_u64().unwrap();
    assert!(documents > 0, "{report}");

    let prefix = "out/corpus_text_document";
    let inspected = json_of(dir.path(), &["dataset", "inspect", prefix, "-o", "json"]).await;
    assert_eq!(
        inspected["documents"].as_u64(),
        Some(documents),
        "{inspected}"
    );
    assert_eq!(inspected["report"]["problems"], serde_json::json!([]));
    let alias = json_of(dir.path(), &["dataset", "inspect", prefix, "--json"]).await;
    assert_eq!(alias, inspected, "--json is -o json");
    let yaml = trnkit(dir.path(), &["dataset", "inspect", prefix, "-o", "yaml"]).await;
    let from_yaml: serde_json::Value =
        serde_yaml::from_slice(&yaml.stdout).expect("one YAML document");
    assert_eq!(from_yaml, inspected);
    let text = trnkit(dir.path(), &["dataset", "inspect", prefix]).await;
    assert!(String::from_utf8_lossy(&text.stdout).contains("consistent   yes"));

    // A compile cache with one failed entry.
    let root = dir.path().join("cache");
    let entry = root.join("neuronxcc-2.16.345.0+8b9c8a7e/MODULE_00000000000000000002+725887e1");
    fs_err::create_dir_all(&entry).unwrap();
    fs_err::write(entry.join("model.hlo_module.pb"), b"hlo").unwrap();
    fs_err::write(entry.join("model.log"), b"Failed compilation").unwrap();
    let root_arg = root.to_str().unwrap();
    let cache = json_of(
        dir.path(),
        &["cache", "inspect", "--root", root_arg, "-o", "json"],
    )
    .await;
    assert_eq!(cache["entries"][0]["state"], "failed", "{cache}");
    assert!(cache["coverage"].is_object(), "{cache}");
    // deploy's cache-check Job: one line of JSON.
    let line = trnkit(
        dir.path(),
        &[
            "cache",
            "inspect",
            "--root",
            root_arg,
            "--coverage-only",
            "--json",
        ],
    )
    .await;
    let line = String::from_utf8(line.stdout).unwrap();
    assert_eq!(line.trim_end().lines().count(), 1, "{line}");
    let coverage: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(coverage["coverage"].is_object(), "{line}");
    let verify = json_of(
        dir.path(),
        &["cache", "verify", "--root", root_arg, "-o", "json"],
    )
    .await;
    assert_eq!(verify["problems"], serde_json::json!([]), "{verify}");

    // prune's preview: exit 0, nothing removed, the preview fields of every destructive command.
    let preview = json_of(
        dir.path(),
        &[
            "cache", "prune", "--root", root_arg, "--failed", "-o", "json",
        ],
    )
    .await;
    assert_eq!(preview["command"], "cache prune", "{preview}");
    assert_eq!(preview["dry_run"], true, "{preview}");
    assert_eq!(
        preview["would_remove"].as_array().unwrap().len(),
        1,
        "{preview}"
    );
    assert!(entry.exists(), "a preview removes nothing");
    let text = trnkit(
        dir.path(),
        &["cache", "prune", "--root", root_arg, "--failed"],
    )
    .await;
    assert_eq!(text.status.code(), Some(0), "{text:?}");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("cache prune would remove 1 item(s):")
            && text.contains("nothing was removed: run again with --yes (-y)"),
        "{text}"
    );
    assert!(entry.exists(), "a preview removes nothing");
    let pruned = json_of(
        dir.path(),
        &[
            "cache", "prune", "--root", root_arg, "--failed", "-y", "-o", "json",
        ],
    )
    .await;
    assert_eq!(pruned["removed"], 1, "{pruned}");
    assert!(pruned.get("would_remove").is_none(), "{pruned}");
    assert!(!entry.exists());
}

/// `fsx delete` previews without `--yes` (exit 0, the file system still there), in the one
/// wording of destructive commands, and deletes with `-y`; `fsx create|describe|delete` print
/// one document with `-o json|yaml`. Against moto.
#[tokio::test]
async fn fsx_delete_previews_and_reports_are_documents() {
    let Some(moto) = test_support::services::moto_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!(
        "cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let fsx = |args: &[&str]| {
        let mut argv = vec!["fsx"];
        argv.extend_from_slice(args);
        argv.extend(["--name", &name, "--region", "us-west-2"]);
        tokio::process::Command::new(env!("CARGO_BIN_EXE_trnkit"))
            .args(argv)
            .current_dir(dir.path())
            .env_remove("TRNKIT_CONFIG")
            .env("NO_COLOR", "1")
            .env("AWS_ENDPOINT_URL", &moto)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_PROFILE")
            .output()
    };
    let parse = |output: &Output| -> serde_json::Value {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("one JSON document")
    };

    let created = parse(
        &fsx(&[
            "create",
            "--subnet-id",
            "subnet-0a1b2c3d4e5f60718",
            "--security-group-id",
            "sg-0123456789abcdef0",
            "--no-wait",
            "-o",
            "json",
        ])
        .await
        .unwrap(),
    );
    assert_eq!(created["created"], true, "{created}");
    let id = created["file_system_id"].as_str().unwrap().to_owned();
    let described = fsx(&["describe", "-o", "yaml"]).await.unwrap();
    let described: serde_json::Value =
        serde_yaml::from_slice(&described.stdout).expect("one YAML document");
    assert_eq!(described["file_system_id"], id.as_str());

    let preview = fsx(&["delete"]).await.unwrap();
    assert_eq!(preview.status.code(), Some(0), "{preview:?}");
    let text = String::from_utf8_lossy(&preview.stdout);
    assert!(
        text.contains("fsx delete would remove 1 item(s):")
            && text.contains(&id)
            && text.contains("nothing was removed: run again with --yes (-y)"),
        "{text}"
    );
    let preview = parse(&fsx(&["delete", "-o", "json"]).await.unwrap());
    assert_eq!(preview["command"], "fsx delete");
    assert_eq!(preview["removed"], false);
    assert!(preview["would_remove"][0].as_str().unwrap().contains(&id));
    let still = parse(&fsx(&["describe", "-o", "json"]).await.unwrap());
    assert_eq!(
        still["file_system_id"],
        id.as_str(),
        "a preview deletes nothing"
    );

    let deleted = parse(&fsx(&["delete", "-y", "-o", "json"]).await.unwrap());
    assert_eq!(deleted["removed"], true, "{deleted}");
    assert_eq!(deleted["file_system_id"], id.as_str());
}

/// `image build -o json` prints one document with the local reference, the image id and
/// whether it was built; a second run finds it built. Needs the Docker engine.
#[tokio::test]
async fn image_build_reports_one_json_document() {
    let Some(socket) = test_support::services::docker() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    fs_err::create_dir_all(&context).unwrap();
    fs_err::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\n",
    )
    .unwrap();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    fs_err::write(context.join("hello"), &nonce).unwrap();
    let build = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_trnkit"))
            .args([
                "--quiet",
                "image",
                "build",
                "--dir",
                "ctx",
                "--repository",
                "trnkit-test/cli-output",
                "-o",
                "json",
            ])
            .current_dir(dir.path())
            .env_remove("TRNKIT_CONFIG")
            .env("DOCKER_HOST", &socket)
            .output()
    };
    let first = build().await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).expect("one document");
    assert_eq!(report["built"], true, "{report}");
    assert!(
        report["reference"]
            .as_str()
            .unwrap()
            .starts_with("trnkit-test/cli-output:"),
        "{report}"
    );
    assert!(!report["image_id"].as_str().unwrap().is_empty(), "{report}");
    let again: serde_json::Value =
        serde_json::from_slice(&build().await.unwrap().stdout).expect("one document");
    assert_eq!(again["built"], false, "{again}");
    assert_eq!(again["reference"], report["reference"]);
}

/// `cleanup` without `--yes` previews in the wording `fsx delete` and `cache prune` share, as
/// text or as one document, and exits 0.
#[tokio::test]
async fn cleanup_previews_in_the_one_wording() {
    let dir = tempfile::tempdir().unwrap();
    let text = trnkit(dir.path(), &["cleanup", "--storage"]).await;
    assert_eq!(text.status.code(), Some(0), "{text:?}");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("cleanup would remove ")
            && text.contains("kept: ")
            && text.contains("nothing was removed: run again with --yes (-y)"),
        "{text}"
    );
    let yaml = trnkit(dir.path(), &["cleanup", "-o", "yaml"]).await;
    let preview: serde_json::Value =
        serde_yaml::from_slice(&yaml.stdout).expect("one YAML document");
    assert_eq!(preview["command"], "cleanup");
    assert_eq!(preview["removed"], false);
    assert!(
        preview["would_remove"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item.as_str().unwrap().starts_with("MPIJob ")),
        "{preview}"
    );
}

#[tokio::test]
async fn deploy_region_overrides_the_configuration_for_one_run_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    // An EKS configuration: its images live in ECR, whose host names the region.
    fs_err::write(
        dir.path().join("trnkit.toml"),
        "[cluster]\ntarget = \"eks\"\naccount_id = \"123456789012\"\n\n[storage]\nsubnet_id = \"subnet-0123456789abcdef0\"\nsecurity_group_ids = [\"sg-0123456789abcdef0\"]\n",
    )
    .unwrap();
    let plan = trnkit(
        dir.path(),
        &[
            "deploy",
            "--dry-run",
            "--region",
            "eu-north-1",
            "--out",
            "-",
        ],
    )
    .await;
    assert!(plan.status.success(), "{plan:?}");
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("eu-north-1"),
        "the region reaches the manifests: {text}"
    );
    let bad = trnkit(
        dir.path(),
        &["deploy", "--dry-run", "--region", "us west;rm"],
    )
    .await;
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an AWS region name"));
}

/// Every command's arguments are consistent once the global ones (`--context`, `-n`, `-c`, …)
/// reach it: clap panics at run time on a clash, so the whole tree is checked here.
#[test]
fn the_command_tree_has_no_clashing_arguments() {
    use clap::CommandFactory as _;
    xtask::cli::Cli::command().debug_assert();
    fn walk(command: &mut clap::Command, path: &str) {
        command.build();
        let names: Vec<String> = command
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        for name in names {
            let sub = command.find_subcommand_mut(&name).unwrap();
            walk(sub, &format!("{path} {name}"));
        }
    }
    walk(&mut xtask::cli::Cli::command(), "trnkit");
}
