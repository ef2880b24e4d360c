//! The run identity: the settings derived from the real scripts, the name's lifecycle, and the
//! rendered train job run on copies of the real scripts with `torchrun` stubbed.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::deploy::state::{Status, StepRecord};
use crate::render::{self, Manifest};

/// The three scripts at the pinned commit, unmodified (Apache-2.0, `tests/data/upstream/`).
const SOURCES: [(&str, &str); 3] = [
    (
        "llama_7b.sh",
        include_str!("../../tests/data/upstream/llama_7b.sh"),
    ),
    (
        "test_llama.sh",
        include_str!("../../tests/data/upstream/test_llama.sh"),
    ),
    (
        "train_setup.sh",
        include_str!("../../tests/data/upstream/train_setup.sh"),
    ),
];

fn source(name: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|(script, _)| *script == name)
        .map(|(_, text)| *text)
        .unwrap()
}

/// The words of the training command in `test_llama.sh` (from `torchrun` to the pipe).
fn training_command() -> Vec<&'static str> {
    let text = source("test_llama.sh");
    let start = text.find("torchrun $DISTRIBUTED_ARGS").unwrap();
    let end = start + text[start..].find("| tee").unwrap();
    text[start..end]
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter(|word| !word.is_empty())
        .collect()
}

#[test]
fn the_scripts_key_the_experiment_on_the_launcher_uid_and_never_resume() {
    // What trnkit replaces, as the pinned scripts have it.
    let setup = source("train_setup.sh");
    let mpi = &setup[setup.find("elif [ -v OMPI_COMM_WORLD_RANK ]").unwrap()..];
    let mpi = &mpi[..mpi.find("\nelse").unwrap()];
    assert!(
        mpi.contains("export EXPLICIT_LOGDIR=/shared/nemo_experiments/$POD_UID"),
        "{mpi}"
    );
    assert!(mpi.contains("LOG_PATH=$EXPLICIT_LOGDIR/$NODEID/"), "{mpi}");
    let command = training_command();
    for setting in [
        "exp_manager.resume_if_exists=False",
        "exp_manager.resume_ignore_no_checkpoint=False",
        "exp_manager.create_checkpoint_callback=$CHECKPOINT_CALLBACK",
        "exp_manager.explicit_log_dir=$EXPLICIT_LOGDIR",
        "+model.load_xser=True",
    ] {
        assert!(command.contains(&setting), "{setting} in {command:?}");
    }
    // `+model.save_xser=True\` has no space before the backslash upstream.
    assert!(command.contains(&"+model.save_xser=True"), "{command:?}");
    // The command takes no "$@": overrides cannot be passed as the script's arguments, so
    // trnkit-rank puts them on torchrun's command line.
    assert!(!source("test_llama.sh").contains("\"$@\""));
    assert!(!source("llama_7b.sh").contains("\"$@\""));
    // Each resume override replaces a setting the command carries, except save_last, which
    // the script leaves at the YAML's `False` and is appended.
    for override_ in resume_overrides(true) {
        let key = override_.split_once('=').unwrap().0;
        let in_script = command
            .iter()
            .any(|word| word.starts_with(&format!("{key}=")));
        assert_eq!(
            in_script,
            key != "exp_manager.checkpoint_callback_params.save_last",
            "{key}"
        );
    }
    // The script's checkpoint interval, which `[training] checkpoint_interval` replaces.
    assert!(
        command.contains(
            &format!(
                "+exp_manager.checkpoint_callback_params.train_time_interval={SCRIPT_CHECKPOINT_SECONDS}"
            )
            .as_str()
        ),
        "{command:?}"
    );
    // The checkpoint callback is on in the train job and off in the compile job.
    assert!(setup.contains("export CHECKPOINT_CALLBACK=True"));
    assert!(setup.contains("    CHECKPOINT_CALLBACK=False"));
}

#[test]
fn a_generated_name_is_the_job_and_the_utc_time() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_963_274); // 2026-11-29T14:41:14Z
    assert_eq!(
        generate("test-mpi-train", at),
        "test-mpi-train-20261129-144114"
    );
    assert_eq!(check_name(&generate("test-mpi-train", at)), Ok(()));
}

fn state_with_run(run: &str) -> State {
    let mut state = State::default();
    state.steps.insert(
        StepId::Train,
        StepRecord {
            digest: "d".to_owned(),
            status: Status::Done,
            finished_at: "2026-11-29T14:41:14Z".to_owned(),
            message: String::new(),
            outputs: [(OUTPUT_KEY.to_owned(), run.to_owned())].into(),
        },
    );
    state
}

#[test]
fn the_name_is_configured_else_recorded_else_new() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_963_274);
    let mut config = Config::default();
    assert_eq!(
        resolve(&config, &State::default(), now),
        "test-mpi-train-20261129-144114"
    );
    // A re-deploy, a day later, keeps the recorded name.
    let later = now + Duration::from_secs(86_400);
    let state = state_with_run("test-mpi-train-20261129-144114");
    assert_eq!(
        resolve(&config, &state, later),
        "test-mpi-train-20261129-144114"
    );
    assert_eq!(
        with_run_name(&config, &state, later).training.run_name,
        "test-mpi-train-20261129-144114"
    );
    config.training.run_name = "second-run".to_owned();
    assert_eq!(resolve(&config, &state, later), "second-run");
}

#[test]
fn names_that_would_break_the_scripts_are_refused() {
    assert_eq!(check_name(""), Ok(()));
    assert_eq!(check_name("llama-7b.run_2"), Ok(()));
    for bad in ["a b", "A", "-x", ".hidden", "a/b", "a$b", "a*"] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
    assert!(check_name(&"a".repeat(101)).is_err());
    let mut config = Config::default();
    config.training.run_name = "my run".to_owned();
    let problems = config.problems();
    assert!(
        problems.iter().any(|(key, _)| key == "training.run_name"),
        "{problems:?}"
    );
}

#[test]
fn only_the_train_job_carries_the_run_and_the_resume_settings() {
    let mut config = Config::default();
    config.training.run_name = "llama-run-1".to_owned();
    let all = manifests(&config);
    let job = |name: &str| {
        all.iter()
            .find(|manifest| manifest.kind == "MPIJob" && manifest.name == name)
            .unwrap()
    };
    let train = job(&config.training.train_job_name);
    let compile = job(&config.training.compile_job_name);
    assert_eq!(in_manifest(&train.value).as_deref(), Some("llama-run-1"));
    assert_eq!(in_manifest(&compile.value), None);
    let (command, env) = launcher(train);
    for name in [RUN_ID_VARIABLE, OVERRIDES_VARIABLE] {
        assert!(env.iter().any(|(known, _)| known == name), "{env:?}");
        let forwarded = command.windows(2).any(|pair| pair == ["-x", name]);
        assert!(forwarded, "{command:?}");
    }
    // The blueprint's interval is the script's own: no override for it.
    let (_, env) = launcher(train);
    let overrides = &env
        .iter()
        .find(|(name, _)| name == OVERRIDES_VARIABLE)
        .unwrap()
        .1;
    assert!(!overrides.contains("train_time_interval"), "{overrides}");
    config.training.resume = false;
    let (_, env) = launcher(
        manifests(&config)
            .iter()
            .find(|manifest| manifest.name == config.training.train_job_name)
            .unwrap(),
    );
    assert!(!env.iter().any(|(name, _)| name == OVERRIDES_VARIABLE));
    // Without a configured name, rendering (which reads no state) shows the job's name.
    assert_eq!(rendered_name(&Config::default()), "test-mpi-train");
}

fn manifests(config: &Config) -> Vec<Manifest> {
    crate::deploy::bundle::render_all(config, None, None, Path::new("/nonexistent/trnkit-stage"))
        .unwrap()
        .all_manifests()
}

use crate::render::rank_harness::launcher;

/// Copies of the real scripts in `dir`, with the two absolute paths of the MPI branch moved
/// into `dir` (`/nodelist_helper.py` and `/shared/`); `torchrun`, `neuron_parallel_compile`
/// and the node list helper stubbed; and `trnkit-rank`.
fn sandbox(dir: &Path) {
    let shared = format!("{}/shared/", dir.display());
    let helper = format!("{}/stubs/nodelist_helper.py", dir.display());
    for (name, text) in SOURCES {
        let moved = text
            .replace("/nodelist_helper.py", &helper)
            .replace("/shared/", &shared);
        if name == "train_setup.sh" {
            // Both replacements took place: the MPI branch really runs.
            assert_eq!(moved.matches(&helper).count(), 1);
            assert_eq!(moved.matches(&shared).count(), 2);
        }
        fs_err::write(dir.join(name), moved).unwrap();
    }
    fs_err::write(dir.join("trnkit-rank"), render::rank::SCRIPT).unwrap();
    fs_err::create_dir_all(dir.join("stubs")).unwrap();
    let printer = "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$SEEN\"\n";
    for (stub, text) in [
        ("torchrun", printer),
        ("neuron_parallel_compile", printer),
        ("nodelist_helper.py", "#!/bin/sh\necho localhost\n"),
    ] {
        fs_err::write(dir.join("stubs").join(stub), text).unwrap();
    }
    #[allow(clippy::disallowed_methods)]
    let chmod = std::process::Command::new("chmod")
        .arg("+x")
        .args(crate::config::upstream::SCRIPTS)
        .args([
            "trnkit-rank",
            "stubs/torchrun",
            "stubs/neuron_parallel_compile",
            "stubs/nodelist_helper.py",
        ])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(chmod.success());
}

/// Runs rank 0 of `manifest` in the sandbox as mpirun would under a launcher whose UID is
/// `launcher_uid`, and returns the training command's words. `through_wrapper = false` runs
/// the script directly, as the blueprint does.
fn training_words(
    manifest: &Manifest,
    dir: &Path,
    launcher_uid: &str,
    through_wrapper: bool,
) -> Vec<String> {
    let rank_env = vec![
        ("OMPI_COMM_WORLD_RANK".to_owned(), "0".to_owned()),
        ("OMPI_COMM_WORLD_SIZE".to_owned(), "4".to_owned()),
    ];
    crate::render::rank_harness::run_rank(
        manifest,
        dir,
        through_wrapper,
        rank_env,
        Some(launcher_uid),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn setting<'a>(words: &'a [String], key: &str) -> Vec<&'a str> {
    words
        .iter()
        .filter_map(|word| word.strip_prefix(&format!("{key}=")))
        .collect()
}

#[test]
fn the_train_job_resumes_in_the_runs_directory_on_the_real_scripts() {
    let dir = tempfile::tempdir().unwrap();
    sandbox(dir.path());
    let mut config = Config::default();
    config.training.run_name = "llama-run-1".to_owned();
    config.training.checkpoint_interval = crate::config::Timeout::parse("1h").unwrap();
    let all = manifests(&config);
    let job = |name: &str| {
        all.iter()
            .find(|manifest| manifest.kind == "MPIJob" && manifest.name == name)
            .unwrap()
    };
    let train = job(&config.training.train_job_name);
    let run_dir = format!(
        "{}/shared/nemo_experiments/llama-run-1",
        dir.path().display()
    );

    // Two launchers (a retry, a re-deploy): two UIDs, one experiment directory.
    for uid in ["launcher-uid-a", "launcher-uid-b"] {
        let words = training_words(train, dir.path(), uid, true);
        assert_eq!(
            setting(&words, "exp_manager.explicit_log_dir"),
            [run_dir.as_str()],
            "{words:?}"
        );
        assert!(!words.iter().any(|word| word.contains(uid)), "{words:?}");
        for override_ in resume_overrides(true) {
            let (key, value) = override_.split_once('=').unwrap();
            // Exactly once: in place of the script's own value, not beside it.
            assert_eq!(setting(&words, key), [value], "{key} in {words:?}");
        }
        // The checkpoint interval replaces the script's, `+` kept.
        assert_eq!(
            setting(
                &words,
                "+exp_manager.checkpoint_callback_params.train_time_interval"
            ),
            ["3600"]
        );
        assert!(
            !words.iter().any(|word| word
                .starts_with("exp_manager.checkpoint_callback_params.train_time_interval")),
            "{words:?}"
        );
        // The script's other settings are untouched.
        assert_eq!(setting(&words, "+model.load_xser"), ["True"]);
        assert_eq!(
            setting(&words, "exp_manager.create_checkpoint_callback"),
            ["True"]
        );
    }
    // Each node's log is the run's too (test_llama.sh tees into $LOG_PATH/log).
    assert!(Path::new(&run_dir).join("0/log").is_file());
    assert!(
        !dir.path()
            .join("shared/nemo_experiments/launcher-uid-a")
            .exists()
    );

    // The blueprint's way (no trnkit-rank): the launcher's UID and no resume.
    let words = training_words(train, dir.path(), "launcher-uid-c", false);
    assert_eq!(
        setting(&words, "exp_manager.explicit_log_dir"),
        [format!(
            "{}/shared/nemo_experiments/launcher-uid-c",
            dir.path().display()
        )
        .as_str()]
    );
    assert_eq!(setting(&words, "exp_manager.resume_if_exists"), ["False"]);
    assert_eq!(
        setting(
            &words,
            "+exp_manager.checkpoint_callback_params.train_time_interval"
        ),
        ["36000"]
    );

    // The compile job keeps its own directory and does not resume.
    let compile = job(&config.training.compile_job_name);
    let words = training_words(compile, dir.path(), "compile-uid", true);
    assert_eq!(words[0], "torchrun", "{words:?}");
    assert_eq!(setting(&words, "exp_manager.resume_if_exists"), ["False"]);
    assert_eq!(
        setting(&words, "exp_manager.explicit_log_dir"),
        [format!(
            "{}/shared/nemo_experiments/compile-uid",
            dir.path().display()
        )
        .as_str()]
    );
    assert_eq!(
        setting(&words, "exp_manager.create_checkpoint_callback"),
        ["False"]
    );
}

#[test]
fn the_experiment_directory_of_a_launcher_is_its_run_else_its_uid() {
    let mut config = Config::default();
    config.training.run_name = "llama-run-1".to_owned();
    let all = manifests(&config);
    let launcher = |name: &str| -> k8s_openapi::api::core::v1::Pod {
        let job = all
            .iter()
            .find(|manifest| manifest.kind == "MPIJob" && manifest.name == name)
            .unwrap();
        let mut pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{name}-launcher-abcde"), "uid": "launcher-uid-a"},
            "spec": job.value["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"].clone(),
        }))
        .unwrap();
        pod.metadata.uid = Some("launcher-uid-a".to_owned());
        pod
    };
    assert_eq!(
        experiment_name(&launcher(&config.training.train_job_name)).as_deref(),
        Some("llama-run-1")
    );
    assert_eq!(
        experiment_name(&launcher(&config.training.compile_job_name)).as_deref(),
        Some("launcher-uid-a")
    );
}
