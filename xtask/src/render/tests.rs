//! Snapshots of every rendered object, and validation of the written YAML by real readers:
//! the MPIJob CRD schema (strict) and `kubernetes-validate --strict` for built-in kinds.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::deploy::bundle;
use crate::render::{self, Manifest};

fn manifests(config: &Config) -> Vec<Manifest> {
    bundle::render_all(config, None, None, Path::new("/nonexistent/trnkit-stage"))
        .unwrap()
        .all_manifests()
}

#[test]
fn every_rendered_object_snapshot() {
    let _tags = crate::images::snapshot_settings().bind_to_scope();
    for manifest in manifests(&Config::default()) {
        insta::assert_snapshot!(
            format!("{}-{}", manifest.kind.to_lowercase(), manifest.name),
            manifest.to_yaml()
        );
    }
}

/// A configuration that tokenizes in 4 shards, with two JSON keys.
fn sharded() -> Config {
    let mut config = Config::default();
    config.data.shards = 4;
    config.data.json_keys = vec!["text".to_owned(), "title".to_owned()];
    config
}

/// With `data.shards` > 1 the staging step is four Jobs: staging (checkout, stage), the Indexed
/// Job of the shards, the merge, and the dataset check.
#[test]
fn sharded_staging_jobs_snapshot() {
    let _tags = crate::images::snapshot_settings().bind_to_scope();
    let all = manifests(&sharded());
    let jobs: Vec<&Manifest> = all
        .iter()
        .filter(|manifest| {
            manifest.kind == "Job"
                && manifest.name != crate::staging::CACHE_CHECK_JOB_NAME
                && manifest.name != crate::node_check::JOB_NAME
        })
        .collect();
    let names: Vec<&str> = jobs.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "trnkit-staging",
            "trnkit-tokenize",
            "trnkit-merge",
            "trnkit-dataset-check"
        ]
    );
    for job in jobs {
        insta::assert_snapshot!(format!("sharded-job-{}", job.name), job.to_yaml());
    }
}

#[test]
fn mpijobs_carry_the_blueprint_paths_from_the_layout() {
    let all = manifests(&Config::default());
    let train = all
        .iter()
        .find(|manifest| manifest.name == "test-mpi-train")
        .unwrap();
    let launcher =
        &train.value["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0];
    let command: Vec<&str> = launcher["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|word| word.as_str().unwrap())
        .collect();
    assert!(
        command.windows(2).any(|pair| pair
            == [
                "-wdir",
                "/shared/neuronx-nemo-megatron/nemo/examples/nlp/language_modeling/"
            ]),
        "{command:?}"
    );
    let env = launcher["env"].as_array().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|variable| variable["name"] == name)
            .and_then(|variable| variable["value"].as_str())
            .unwrap()
    };
    assert_eq!(value("TOKENIZER_PATH"), "/shared/llama7b_tokenizer");
    assert_eq!(
        value("DATASET_PATH"),
        "/shared/data/redpajama_sample_text_document"
    );
    assert_eq!(value("NEURON_COMPILE_CACHE_URL"), "/shared/neuron_cache");
}

#[test]
fn written_yaml_reads_back_and_mpijobs_pass_the_strict_crd_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("manifests");
    let all = manifests(&Config::default());
    let written = render::write(&out, &all).unwrap();
    assert_eq!(written.len(), all.len() + 1);
    for (manifest, path) in all.iter().zip(&written) {
        let text = fs_err::read_to_string(path).unwrap();
        let value: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            value,
            manifest.value,
            "{} does not read back unchanged",
            path.display()
        );
        if manifest.kind == "MPIJob" {
            let problems = mpijob::schema::validate_value(&value);
            assert!(problems.is_empty(), "{problems}");
        }
    }
    // A second write replaces what the first wrote, but never a file trnkit did not write.
    render::write(&out, &all).unwrap();
    fs_err::write(out.join("notes.md"), "x").unwrap();
    let error = render::write(&out, &all).unwrap_err();
    assert!(error.to_string().contains("notes.md"), "{error}");
    assert_eq!(fs_err::read_to_string(out.join("notes.md")).unwrap(), "x");
}

/// Built-in kinds pass `kubernetes-validate --strict` (PyPI; `scripts/test` installs it) for the
/// oldest supported Kubernetes, read from the YAML files exactly as written.
#[tokio::test]
async fn built_in_kinds_pass_kubernetes_validate_strict() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (name, config) in [("default", Config::default()), ("sharded", sharded())] {
        let all = manifests(&config);
        let written = render::write(&dir.path().join(name), &all).unwrap();
        files.extend(
            all.iter()
                .zip(&written)
                .filter(|(manifest, _)| manifest.kind != "MPIJob")
                .map(|(_, path)| path.clone()),
        );
    }
    assert!(files.len() >= 12);
    let Some(output) = test_support::services::kubernetes_validate_strict(dir.path(), &files).await
    else {
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches(" passed for resource ").count(),
        files.len(),
        "{stdout}"
    );
}

/// Runs what a rank of `manifest` runs, on copies of the real scripts in `dir` with `torchrun`
/// and `neuron_parallel_compile` stubbed, and returns the `NEURON_CC_FLAGS` the training
/// command saw. `through_wrapper = false` runs the script directly, as trnkit did before.
fn flags_the_training_command_sees(
    manifest: &Manifest,
    dir: &Path,
    through_wrapper: bool,
) -> String {
    render::rank_harness::run_rank(manifest, dir, through_wrapper, Vec::new(), None)
        .trim()
        .to_owned()
}

#[test]
fn the_configured_compiler_flags_reach_the_training_command_of_the_real_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/upstream");
    for script in crate::config::upstream::SCRIPTS {
        fs_err::copy(upstream.join(script), dir.path().join(script)).unwrap();
    }
    fs_err::write(dir.path().join("trnkit-rank"), render::rank::SCRIPT).unwrap();
    fs_err::create_dir(dir.path().join("stubs")).unwrap();
    for stub in ["torchrun", "neuron_parallel_compile"] {
        fs_err::write(
            dir.path().join("stubs").join(stub),
            "#!/bin/sh\nprintf '%s\\n' \"$NEURON_CC_FLAGS\" > \"$SEEN\"\n",
        )
        .unwrap();
    }
    #[allow(clippy::disallowed_methods)]
    let chmod = std::process::Command::new("chmod")
        .arg("+x")
        .args([
            "llama_7b.sh",
            "test_llama.sh",
            "train_setup.sh",
            "trnkit-rank",
        ])
        .args(["stubs/torchrun", "stubs/neuron_parallel_compile"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(chmod.success());

    let mut config = Config::default();
    let flags = "--model-type transformer --distribution-strategy=llm-training --auto-cast none";
    config.training.neuron_cc_flags = flags.to_owned();
    let all = manifests(&config);
    for name in [
        &config.training.compile_job_name,
        &config.training.train_job_name,
    ] {
        let job = all
            .iter()
            .find(|manifest| manifest.kind == "MPIJob" && &manifest.name == name)
            .unwrap();
        assert_eq!(
            flags_the_training_command_sees(job, dir.path(), true),
            flags,
            "{name}"
        );
        // Without trnkit-rank, train_setup.sh's own flags win: the bug this guards against.
        assert_eq!(
            flags_the_training_command_sees(job, dir.path(), false),
            mpijob::llama2::DEFAULT_NEURON_CC_FLAGS,
            "{name}"
        );
    }
}

#[test]
fn the_training_image_carries_trnkit_rank() {
    let image =
        crate::images::image(&Config::default(), crate::images::ImageName::Training, None).unwrap();
    let dockerfile = image.definition.dockerfile.render();
    assert!(
        dockerfile.contains(&format!("COPY trnkit-rank {}", render::rank::PATH)),
        "{dockerfile}"
    );
    assert!(image.context.paths().any(|path| path == "trnkit-rank"));
}
