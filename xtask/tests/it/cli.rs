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
