//! Unit and snapshot tests of the builder, the presets and validation.

use serde_json::{Value, json};

use crate::llama2::{self, Llama2Config, Llama2Paths};
use crate::{
    Error, LauncherGate, MPIJob, Mpirun, OperatorCrd, TrainiumJobConfig, build, builder, schema,
};

fn paths() -> Llama2Paths {
    Llama2Paths {
        mount_path: "/mnt/fs".to_owned(),
        workdir: "/mnt/fs/code/examples/".to_owned(),
        tokenizer_path: "/mnt/fs/tokenizer".to_owned(),
        dataset_path: "/mnt/fs/data/corpus_text_document".to_owned(),
        compile_cache_url: "/mnt/fs/cache".to_owned(),
    }
}

fn config() -> Llama2Config {
    Llama2Config::new(
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/neuronx_nemo:latest",
        paths(),
    )
}

/// Builds an invalid configuration and returns the problems as `path: message` lines.
fn problems(config: &TrainiumJobConfig) -> Vec<String> {
    match build(config) {
        Ok(_) => panic!("expected the configuration to be rejected"),
        Err(Error::Invalid { problems, .. }) => problems.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("unexpected error {other}"),
    }
}

fn check_rejected(config: &TrainiumJobConfig, path: &str, fragment: &str) {
    let problems = problems(config);
    assert!(
        problems
            .iter()
            .any(|problem| problem.starts_with(path) && problem.contains(fragment)),
        "no problem at {path} containing {fragment:?} in {problems:#?}"
    );
}

fn launcher_container(job: &MPIJob) -> &k8s_openapi::api::core::v1::Container {
    &job.spec.mpi_replica_specs["Launcher"]
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

fn launcher_command(job: &MPIJob) -> Vec<String> {
    launcher_container(job).command.clone().unwrap()
}

#[test]
fn compile_job_snapshot() {
    insta::assert_yaml_snapshot!(llama2::compile_job(&config()).unwrap());
}

#[test]
fn train_job_snapshot() {
    insta::assert_yaml_snapshot!(llama2::train_job(&config()).unwrap());
}

#[test]
fn init_container_gate_snapshot() {
    let mut config = config();
    config.launcher_gate = LauncherGate::InitContainer;
    insta::assert_yaml_snapshot!(llama2::train_job(&config).unwrap());
}

#[test]
fn presets_carry_the_blueprint_values() {
    let config = config();
    let compile = llama2::compile_job(&config).unwrap();
    let train = llama2::train_job(&config).unwrap();
    assert_eq!(compile.metadata.name.as_deref(), Some("test-mpi-compile"));
    assert_eq!(train.metadata.name.as_deref(), Some("test-mpi-train"));
    for job in [&compile, &train] {
        let value = serde_json::to_value(job).unwrap();
        assert_eq!(value["spec"]["slotsPerWorker"], 1);
        assert_eq!(value["spec"]["runPolicy"]["backoffLimit"], 20);
        assert_eq!(value["spec"]["runPolicy"]["cleanPodPolicy"], "Running");
        assert_eq!(value["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"], 4);
        let worker =
            &value["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0];
        for kind in ["requests", "limits"] {
            assert_eq!(worker["resources"][kind]["aws.amazon.com/neuron"], "16");
            assert_eq!(worker["resources"][kind]["vpc.amazonaws.com/efa"], "8");
        }
        assert_eq!(worker["volumeMounts"][0]["mountPath"], "/mnt/fs");
        assert_eq!(worker["volumeMounts"][1]["mountPath"], "/dev/shm");
        let launcher =
            &value["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0];
        assert_eq!(
            launcher["env"][0],
            json!({"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}})
        );
    }
    let compile_command = launcher_command(&compile);
    let train_command = launcher_command(&train);
    assert_eq!(
        compile_command[..9],
        [
            "mpirun",
            "--allow-run-as-root",
            "-np",
            "4",
            "-bind-to",
            "none",
            "-map-by",
            "slot",
            "-x"
        ]
    );
    assert!(
        compile_command
            .windows(2)
            .any(|pair| pair == ["-x", "COMPILE=1"])
    );
    assert!(
        !train_command
            .iter()
            .any(|word| word.starts_with("COMPILE="))
    );
    for command in [&compile_command, &train_command] {
        let tail: Vec<_> = command.iter().rev().take(3).rev().cloned().collect();
        assert_eq!(tail, ["-wdir", "/mnt/fs/code/examples/", "./llama_7b.sh"]);
        for forwarded in [
            "TOKENIZER_PATH",
            "DATASET_PATH",
            "NEURON_COMPILE_CACHE_URL",
            "NEURON_CC_FLAGS",
            "POD_UID",
        ] {
            assert!(
                command
                    .windows(2)
                    .any(|pair| pair[0] == "-x" && pair[1] == forwarded),
                "{forwarded} not forwarded"
            );
        }
    }
    // Both jobs carry the same compiler flags and cache.
    let env_of = |job: &MPIJob| launcher_container(job).env.clone();
    assert_eq!(env_of(&compile), env_of(&train));
}

#[test]
fn np_is_derived_from_workers_and_slots() {
    let mut config = config();
    config.workers = 8;
    config.slots_per_worker = 2;
    let command = launcher_command(&llama2::train_job(&config).unwrap());
    assert_eq!(command[2..4], ["-np", "16"]);
}

#[test]
fn zero_workers_are_rejected() {
    let mut config = config().job_config(false);
    config.workers = 0;
    check_rejected(
        &config,
        "spec.mpiReplicaSpecs.Worker.replicas",
        "at least 1 worker",
    );
}

#[test]
fn bad_images_are_rejected() {
    for image in [
        "repo/name:latest\n",
        "repo name:latest",
        "Repo/Upper:tag",
        "repo/name:bad tag",
        "",
    ] {
        let mut config = config().job_config(false);
        config.image = image.to_owned();
        check_rejected(
            &config,
            "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].image",
            "",
        );
        check_rejected(
            &config,
            "spec.mpiReplicaSpecs.Worker.template.spec.containers[0].image",
            "",
        );
    }
}

#[test]
fn names_too_long_for_derived_pods_are_rejected() {
    let mut config = config().job_config(false);
    // 50 characters: valid alone, but `<name>-launcher-xxxxx` has 65.
    config.name = "a".repeat(50);
    let problems = problems(&config);
    assert!(
        problems.iter().any(|p| p.starts_with("metadata.name")
            && p.contains("launcher pod")
            && p.contains("at most 48 characters")),
        "{problems:#?}"
    );
    config.name = "Test_Job".to_owned();
    check_rejected(&config, "metadata.name", "DNS-1035");
}

#[test]
fn smuggled_shell_metacharacters_and_newlines_are_rejected() {
    let mut config = config();
    config.script_args = vec!["--steps=10;rm".to_owned()];
    check_rejected(
        &config.job_config(false),
        "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].command[",
        "shell metacharacter ';'",
    );
    let mut config = self::config();
    config.paths.workdir = "/mnt/fs/a b".to_owned();
    check_rejected(
        &config.job_config(false),
        "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].command[",
        "whitespace",
    );
    let mut config = self::config();
    config.extra_env = vec![
        ("BAD NAME".to_owned(), "1".to_owned()),
        ("GOOD".to_owned(), "x\ny".to_owned()),
    ];
    let job = config.job_config(false);
    check_rejected(
        &job,
        "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].env[5].name",
        "not a valid environment variable name",
    );
    check_rejected(
        &job,
        "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].env[6].value",
        "control character",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut config = config().job_config(false);
    config.workers = 0;
    config.image = "bad image".to_owned();
    config.name = "x".repeat(70);
    let problems = problems(&config);
    assert!(problems.len() >= 4, "{problems:#?}");
}

#[test]
fn operator_rules_on_hand_written_jobs() {
    let mut job = llama2::train_job(&config()).unwrap();
    job.spec
        .mpi_replica_specs
        .get_mut("Launcher")
        .unwrap()
        .replicas = Some(2);
    job.spec
        .mpi_replica_specs
        .get_mut("Worker")
        .unwrap()
        .restart_policy = Some(crate::RestartPolicy::Always);
    let launcher = job.spec.mpi_replica_specs.get_mut("Launcher").unwrap();
    let command = launcher.template.spec.as_mut().unwrap().containers[0]
        .command
        .as_mut()
        .unwrap();
    command[3] = "5".to_owned();
    let problems: Vec<String> = crate::validate::rules(&job)
        .iter()
        .map(ToString::to_string)
        .collect();
    for expected in [
        "spec.mpiReplicaSpecs.Launcher.replicas: is Some(2); the launcher must have exactly 1 replica",
        "spec.mpiReplicaSpecs.Worker.restartPolicy: is Always; the MPI Operator accepts only Never or OnFailure",
        "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].command: mpirun -np is 5 but workers (4) x slotsPerWorker (1) = 4",
    ] {
        assert!(
            problems.iter().any(|p| p == expected),
            "missing {expected:?} in {problems:#?}"
        );
    }
}

#[test]
fn quantities_and_extended_resources() {
    let mut job = llama2::train_job(&config()).unwrap();
    let worker = job.spec.mpi_replica_specs.get_mut("Worker").unwrap();
    let resources = worker.template.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap();
    resources.requests.as_mut().unwrap().insert(
        "aws.amazon.com/neuron".into(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("8".into()),
    );
    resources.limits.as_mut().unwrap().insert(
        "memory".into(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("12 GB".into()),
    );
    let problems: Vec<String> = crate::validate::rules(&job)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(problems.iter().any(|p| p.contains("requests.aws.amazon.com/neuron") && p.contains("request == limit")), "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("limits.memory") && p.contains("not a Kubernetes quantity")),
        "{problems:#?}"
    );
}

#[test]
fn schema_rejects_unknown_fields_and_bad_enums() {
    let job = llama2::train_job(&config()).unwrap();
    let mut value = serde_json::to_value(&job).unwrap();
    assert!(schema::validate_value(&value).is_empty());
    value["spec"]["slotPerWorker"] = json!(1);
    value["spec"]["mpiImplementation"] = json!("OpenMpi");
    value["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resourcs"] =
        json!({});
    let problems: Vec<String> = schema::validate_value(&value)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("spec:") && p.contains("slotPerWorker")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("spec.mpiImplementation")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p
            .starts_with("spec.mpiReplicaSpecs.Worker.template.spec.containers.0")
            && p.contains("resourcs")),
        "{problems:#?}"
    );
}

#[test]
fn embedded_crd_is_the_upstream_file() {
    use sha2::Digest;
    // sha256 of shared/schemas/kubeflow.org_mpijobs.yaml as recorded in its README.
    let expected = "78b0131f931fcc8d99f6ce0407281f41b62527e443ec691d26d9634b390ad3bb";
    assert_eq!(
        hex::encode(sha2::Sha256::digest(schema::CRD_YAML.as_bytes())),
        expected
    );
}

/// Makes the fullest instance the schema allows: every property, one entry in every map and
/// list, a valid value for every leaf.
fn maximal(schema: &Value, path: &str) -> Value {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values[0].clone();
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return json!("1");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut object = serde_json::Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, child) in properties {
                    object.insert(key.clone(), maximal(child, &format!("{path}.{key}")));
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                let key = if path.ends_with("mpiReplicaSpecs") {
                    "Worker"
                } else {
                    "key"
                };
                object.insert(
                    key.to_owned(),
                    maximal(additional, &format!("{path}.{key}")),
                );
            }
            Value::Object(object)
        }
        Some("array") => json!([maximal(&schema["items"], &format!("{path}[]"))]),
        Some("string") => match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2026-11-27T12:00:00Z"),
            Some("byte") => json!("aGVsbG8="),
            _ => json!("x"),
        },
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        _ => json!("x"),
    }
}

/// Every field of the CRD, at every depth, survives deserialize -> serialize unchanged.
#[test]
fn every_crd_field_round_trips() {
    let schema = schema::strict_schema().unwrap();
    let mut document = maximal(&schema, "");
    document["apiVersion"] = json!("kubeflow.org/v2beta1");
    document["kind"] = json!("MPIJob");
    document["metadata"] = json!({"name": "x", "namespace": "default"});
    // Values whose Rust types are enums must be valid variants.
    document["spec"]["mpiReplicaSpecs"]["Worker"]["restartPolicy"] = json!("Never");
    document["spec"]["runPolicy"]["cleanPodPolicy"] = json!("Running");
    document["spec"]["launcherCreationPolicy"] = json!("WaitForWorkersReady");
    let job: MPIJob = serde_json::from_value(document.clone()).unwrap();
    let back = serde_json::to_value(&job).unwrap();
    let mut differences = Vec::new();
    diff(&document, &back, "", &mut differences);
    assert!(
        differences.is_empty(),
        "fields that do not round-trip:\n{}",
        differences.join("\n")
    );
    assert!(
        schema::validate_value(&back).is_empty(),
        "{}",
        schema::validate_value(&back)
    );
}

fn diff(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => diff(value, other, &format!("{path}.{key}"), out),
                    None => out.push(format!("{path}.{key}: dropped")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &format!("{path}[{index}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

#[test]
fn init_container_gate_waits_for_every_worker() {
    let mut config = config();
    config.launcher_gate = LauncherGate::InitContainer;
    config.workers = 6;
    let job = llama2::train_job(&config).unwrap();
    assert_eq!(
        job.spec.launcher_creation_policy,
        Some(crate::LauncherCreationPolicy::AtStartup)
    );
    let pod = job.spec.mpi_replica_specs["Launcher"]
        .template
        .spec
        .clone()
        .unwrap();
    let init = &pod.init_containers.unwrap()[0];
    assert_eq!(init.name, builder::WAIT_FOR_WORKERS_CONTAINER);
    assert!(init.command.as_ref().unwrap()[2].contains("expected=6"));
}

#[test]
fn generic_builder_example() {
    let config = TrainiumJobConfig::new("small", "example.com/img:1", 1, Mpirun::new("./run.sh"));
    let job = build(&config).unwrap();
    assert_eq!(
        launcher_command(&job),
        [
            "mpirun",
            "--allow-run-as-root",
            "-np",
            "1",
            "-bind-to",
            "none",
            "-map-by",
            "slot",
            "./run.sh"
        ]
    );
}

#[test]
fn embedded_v0_4_0_crd_is_the_upstream_file() {
    use sha2::Digest;
    // sha256 of shared/schemas/kubeflow.org_mpijobs-v0.4.0.yaml as recorded in its README.
    let expected = "23baa6c3775ab6e5fb09a6aa557827f98a235ecc6c42b355bf80d7e959bb0773";
    assert_eq!(
        hex::encode(sha2::Sha256::digest(schema::CRD_V0_4_0_YAML.as_bytes())),
        expected
    );
    assert!(!OperatorCrd::V0_4_0.declares_spec_field("launcherCreationPolicy"));
    assert!(!OperatorCrd::V0_4_0.declares_spec_field("runLauncherAsWorker"));
    assert!(OperatorCrd::V0_8_2.declares_spec_field("launcherCreationPolicy"));
    assert_eq!(
        OperatorCrd::matching(OperatorCrd::V0_4_0.crd()),
        OperatorCrd::V0_4_0
    );
    assert_eq!(
        OperatorCrd::matching(OperatorCrd::V0_8_2.crd()),
        OperatorCrd::V0_8_2
    );
}

/// The jobs for the blueprint's v0.4.0 operator (init-container gate) pass its CRD strictly and
/// carry no field it lacks; the default jobs pass v0.8.2's CRD and would be refused by v0.4.0's.
#[test]
fn jobs_pass_the_strict_schema_of_the_operator_they_are_built_for() {
    let mut old = config();
    old.launcher_gate = LauncherGate::InitContainer;
    old.operator_crd = OperatorCrd::V0_4_0;
    for job in [
        llama2::compile_job(&old).unwrap(),
        llama2::train_job(&old).unwrap(),
    ] {
        let value = serde_json::to_value(&job).unwrap();
        for field in ["launcherCreationPolicy", "runLauncherAsWorker"] {
            assert!(value["spec"].get(field).is_none(), "{field} was sent");
        }
        let problems = schema::validate_against(OperatorCrd::V0_4_0, &value);
        assert!(problems.is_empty(), "{problems}");
    }

    for job in [
        llama2::compile_job(&config()).unwrap(),
        llama2::train_job(&config()).unwrap(),
    ] {
        let value = serde_json::to_value(&job).unwrap();
        assert_eq!(
            value["spec"]["launcherCreationPolicy"],
            "WaitForWorkersReady"
        );
        let problems = schema::validate_against(OperatorCrd::V0_8_2, &value);
        assert!(problems.is_empty(), "{problems}");
        let refused: Vec<String> = schema::validate_against(OperatorCrd::V0_4_0, &value)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            refused.iter().any(|problem| problem.starts_with("spec:")
                && problem.contains("launcherCreationPolicy")
                && problem.contains("v0.4.0")),
            "{refused:#?}"
        );
    }
}

#[test]
fn init_container_gate_for_v0_4_0_snapshot() {
    let mut config = config();
    config.launcher_gate = LauncherGate::InitContainer;
    config.operator_crd = OperatorCrd::V0_4_0;
    let job = llama2::train_job(&config).unwrap();
    let spec = serde_json::to_value(&job).unwrap()["spec"].clone();
    let mut spec = spec.as_object().unwrap().clone();
    spec.remove("mpiReplicaSpecs");
    // Keys sorted, whatever serde_json's `preserve_order` in this build (a workspace build
    // switches it on through other crates), so the snapshot is the same in every build.
    let mut spec = serde_json::Value::Object(spec);
    spec.sort_all_objects();
    insta::assert_yaml_snapshot!(spec);
}

#[test]
fn wait_for_workers_ready_is_refused_for_a_v0_4_0_operator() {
    let mut config = config().job_config(false);
    config.operator_crd = OperatorCrd::V0_4_0;
    check_rejected(
        &config,
        "spec.launcherCreationPolicy",
        "does not declare it (it came with v0.5.0); use the init-container launcher gate",
    );
}

#[test]
fn pod_annotations_reach_both_pod_templates() {
    let mut config = config();
    config.pod_annotations.insert(
        builder::DO_NOT_DISRUPT_ANNOTATION.to_owned(),
        "true".to_owned(),
    );
    let job = llama2::train_job(&config).unwrap();
    for role in ["Launcher", "Worker"] {
        let annotations = job.spec.mpi_replica_specs[role]
            .template
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.annotations.clone())
            .unwrap_or_default();
        assert_eq!(
            annotations
                .get("karpenter.sh/do-not-disrupt")
                .map(String::as_str),
            Some("true"),
            "{role}"
        );
    }
    let problems = schema::validate_value(&serde_json::to_value(&job).unwrap());
    assert!(problems.is_empty(), "{problems}");
}

/// Progress bars redraw in place with `\r`: each redraw is a record of its own, so a follower
/// sees progress as it is written, not only at the next newline.
#[tokio::test]
async fn log_records_split_on_carriage_returns_and_newlines() {
    use futures::StreamExt as _;
    let log =
        "Epoch 0:  1%| 1/100 [00:14<23:06, 14.00s/it]\rEpoch 0:  2%| 2/100\r\n\nstep done\nlast";
    let reader = futures::io::BufReader::with_capacity(7, futures::io::Cursor::new(log.as_bytes()));
    let records: Vec<String> = crate::io::log_records(reader)
        .map(|record| record.unwrap())
        .collect()
        .await;
    assert_eq!(
        records,
        [
            "Epoch 0:  1%| 1/100 [00:14<23:06, 14.00s/it]",
            "Epoch 0:  2%| 2/100",
            "step done",
            "last"
        ]
    );
}
