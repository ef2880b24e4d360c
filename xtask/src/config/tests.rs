//! Tests of parsing, defaults, suggestions and value checks.

use super::{Config, ConfigError, EXAMPLE, Target};

fn parse_error(text: &str) -> String {
    match Config::parse(text, "trnkit.toml") {
        Ok(_) => panic!("expected {text:?} to be rejected"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn the_example_documents_the_defaults() {
    let local = EXAMPLE.replace("target = \"eks\"", "target = \"local\"");
    let example = Config::parse(&local, "example").unwrap();
    assert_eq!(example, Config::default());
}

#[test]
fn the_example_asks_for_what_only_the_user_knows() {
    // For EKS, the dynamic storage mode needs the nodes' subnet and security group.
    let error = Config::parse(EXAMPLE, "example").unwrap_err();
    let ConfigError::Invalid { problems, .. } = &error else {
        panic!("{error}")
    };
    let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["storage.subnet_id", "storage.security_group_ids"]);
    let filled = EXAMPLE
        .replace(
            "subnet_id = \"\"",
            "subnet_id = \"subnet-0123456789abcdef0\"",
        )
        .replace(
            "security_group_ids = []",
            "security_group_ids = [\"sg-0123456789abcdef0\"]",
        );
    let config = Config::parse(&filled, "example").unwrap();
    assert_eq!(config.cluster.target, Target::Eks);
}

#[test]
fn the_example_mentions_every_key() {
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    for (section, table) in defaults.as_table().unwrap() {
        assert!(
            EXAMPLE.contains(&format!("[{section}]")),
            "section {section} is not in the example"
        );
        for key in table.as_table().unwrap().keys() {
            assert!(
                EXAMPLE.contains(&format!("\n{key} = ")),
                "{section}.{key} is not in the example"
            );
        }
    }
}

#[test]
fn empty_file_is_the_blueprint() {
    let config = Config::parse("", "empty").unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.training.workers, 4);
    assert_eq!(config.storage.claim_name, "fsx-claim");
}

#[test]
fn unknown_keys_name_the_key_line_and_closest_key() {
    let message = parse_error("[training]\nworkerz = 4\n");
    assert!(message.contains("trnkit.toml"), "{message}");
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("unknown field `workerz`"), "{message}");
    assert!(message.contains("did you mean `workers`?"), "{message}");
    let message = parse_error("[trainin]\n");
    assert!(message.contains("did you mean `training`?"), "{message}");
}

#[test]
fn wrong_types_name_the_line() {
    let message = parse_error("[training]\nworkers = \"four\"\n");
    assert!(
        message.contains("line 2") && message.contains("invalid type"),
        "{message}"
    );
}

#[test]
fn bad_values_name_their_keys_and_all_are_reported() {
    let text = r#"
[image]
repository = "Bad Repo"
[training]
workers = 0
train_job_name = "a-very-long-training-job-name-that-cannot-fit-pods"
[data]
json_keys = []
staging_cpu = "three"
tokenize_workers = 0
"#;
    let error = Config::parse(text, "trnkit.toml").unwrap_err();
    let ConfigError::Invalid { problems, .. } = &error else {
        panic!("{error}")
    };
    let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
    for key in [
        "image.repository",
        "training.workers",
        "training.train_job_name",
        "data.json_keys",
        "data.staging_cpu",
        "data.tokenize_workers",
    ] {
        assert!(keys.contains(&key), "{key} missing in {keys:?}");
    }
    let message = error.to_string();
    assert!(message.contains("at least 1 worker"), "{message}");
    assert!(message.contains("use at most"), "{message}");
}

#[test]
fn smuggled_newlines_are_rejected() {
    let message = parse_error("[training]\nneuron_cc_flags = \"--x\\nrm -rf /\"\n");
    assert!(
        message.contains("training.neuron_cc_flags") && message.contains("control character"),
        "{message}"
    );
    let message = parse_error("[training]\nscript_args = [\"a;b\"]\n");
    assert!(message.contains("training.script_args[0]"), "{message}");
}

#[test]
fn lustre_sizes_and_throughputs() {
    let message =
        parse_error("[storage]\ncapacity_gib = 1000\nper_unit_storage_throughput = 125\n");
    assert!(message.contains("storage.capacity_gib"), "{message}");
    assert!(
        message.contains("storage.per_unit_storage_throughput"),
        "{message}"
    );
    assert!(Config::parse("[storage]\ndeployment_type = \"PERSISTENT_2\"\nper_unit_storage_throughput = 125\ncapacity_gib = 4800\n", "x").is_ok());
}

fn problems_of(text: &str) -> Vec<(String, String)> {
    match Config::parse(text, "trnkit.toml") {
        Ok(_) => panic!("expected {text:?} to be rejected"),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(error) => panic!("expected invalid values, got: {error}"),
    }
}

/// Every message about `key`, one per line.
fn message_for(problems: &[(String, String)], key: &str) -> String {
    let messages: Vec<&str> = problems
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, message)| message.as_str())
        .collect();
    assert!(
        !messages.is_empty(),
        "no problem for {key} in {problems:#?}"
    );
    messages.join("\n")
}

#[test]
fn every_bad_value_is_reported_at_once_with_its_key_and_line() {
    let text = r#"
[image]
pull_policy = "Sometimes"
[storage]
deployment_type = "SCRATCH_2"
[data]
staging_cpu = "-1"
[training]
launcher_gate = "auto-detect"
workers = 0
compile_timeout = "soon"
workerz = 3
tolerations = [{ key = "a", operator = "Exists", effect = "NoScheduel" }]
[tensorboard]
service_type = "NodePort"
"#;
    let problems = problems_of(text);
    for (key, line) in [
        ("image.pull_policy", 3),
        ("storage.deployment_type", 5),
        ("data.staging_cpu", 7),
        ("training.launcher_gate", 9),
        ("training.compile_timeout", 11),
        ("training.workerz", 12),
        ("training.tolerations[0].effect", 13),
        ("tensorboard.service_type", 15),
    ] {
        let message = message_for(&problems, key);
        assert!(
            message.contains(&format!("(line {line}, column")),
            "{key}: {message}"
        );
    }
    // Validation of the keys that did deserialize still runs, and points into the file too.
    assert!(message_for(&problems, "training.workers").contains("at least 1 worker"));
    assert!(message_for(&problems, "training.workers").contains("(line 10, column 11)"));
    assert!(message_for(&problems, "image.pull_policy").contains("`IfNotPresent`"));
    assert!(message_for(&problems, "training.workerz").contains("did you mean `workers`?"));
    assert!(
        message_for(&problems, "training.tolerations[0].effect")
            .contains("did you mean `NoSchedule`?")
    );
    assert!(message_for(&problems, "data.staging_cpu").contains("negative"));
}

#[test]
fn scratch_file_systems_and_mismatched_lustre_versions_are_refused() {
    // These used to pass validation and render as PERSISTENT_1 / fail at the FSx API.
    let problems = problems_of("[storage]\ndeployment_type = \"SCRATCH_2\"\n");
    assert!(message_for(&problems, "storage.deployment_type").contains("PERSISTENT_1"));
    let problems = problems_of("[storage]\nlustre_version = \"2.15\"\n");
    assert!(message_for(&problems, "storage.lustre_version").contains("2.10, 2.12"));
}

#[test]
fn values_parse_into_their_types() {
    use super::{
        CleanPodPolicy, DataCompression, DeploymentType, ImagePullPolicy, LauncherGateSetting,
        ServiceType, TaintEffect, TokenizeMode, TolerationOperator,
    };
    let config = Config::parse(
        r#"
[image]
pull_policy = "IfNotPresent"
[storage]
deployment_type = "PERSISTENT_2"
per_unit_storage_throughput = 125
data_compression_type = "LZ4"
[data]
mode = "megatron"
staging_cpu = "500m"
[training]
clean_pod_policy = "All"
launcher_gate = "init-container"
compile_timeout = "90m"
tolerations = [{ key = "aws.amazon.com/neuron", operator = "Exists" }]
[tensorboard]
service_type = "ClusterIP"
"#,
        "x",
    )
    .unwrap();
    assert_eq!(config.image.pull_policy, ImagePullPolicy::IfNotPresent);
    assert_eq!(config.storage.deployment_type, DeploymentType::Persistent2);
    assert_eq!(config.storage.data_compression_type, DataCompression::Lz4);
    assert_eq!(config.data.mode, TokenizeMode::Megatron);
    assert_eq!(config.data.pipeline_mode(), pipeline::Mode::Megatron);
    assert_eq!(config.data.staging_cpu.as_str(), "500m");
    assert_eq!(config.training.clean_pod_policy, CleanPodPolicy::All);
    assert_eq!(
        config.training.launcher_gate,
        LauncherGateSetting::InitContainer
    );
    assert_eq!(
        config.training.compile_timeout.duration(),
        std::time::Duration::from_secs(5400)
    );
    assert_eq!(config.training.compile_timeout.to_string(), "90m");
    let toleration = &config.training.tolerations[0];
    assert_eq!(toleration.operator, TolerationOperator::Exists);
    assert_eq!(toleration.effect, TaintEffect::All);
    assert_eq!(config.tensorboard.service_type, ServiceType::ClusterIp);
    // And back: the file's spellings survive a round trip.
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("service_type = \"ClusterIP\""), "{text}");
    assert!(
        text.contains("launcher_gate = \"init-container\""),
        "{text}"
    );
    assert_eq!(Config::parse(&text, "round trip").unwrap(), config);
}

#[test]
fn kubernetes_variable_references_are_refused_wherever_they_are() {
    // The staging container has HF_TOKEN from the Secret: Kubernetes would put the token into
    // the command line of a dataset named like this.
    let problems = problems_of(
        r#"
[data]
dataset = "org/$(HF_TOKEN)"
[training]
neuron_cc_flags = "--x=$(HF_TOKEN)"
env = { GBS = "$(HF_TOKEN)" }
"#,
    );
    for key in [
        "data.dataset",
        "training.env.GBS",
        "training.neuron_cc_flags",
    ] {
        assert!(
            message_for(&problems, key).contains("Kubernetes expands"),
            "{key}: {problems:?}"
        );
    }
    assert!(Config::parse("[data]\ndataset = \"org/a$b\"\n", "x").is_ok());
}

#[test]
fn resources_beyond_a_trn1_node_and_odd_values_are_refused() {
    let problems = problems_of(
        r#"
[data]
json_keys = ["text", "meta", "text"]
staging_memory = "0"
[training]
neuron_devices_per_worker = 17
efa_interfaces_per_worker = 9
script = "-np"
"#,
    );
    assert!(message_for(&problems, "training.neuron_devices_per_worker").contains("16"));
    assert!(message_for(&problems, "training.efa_interfaces_per_worker").contains("8"));
    assert!(message_for(&problems, "training.script").contains("starts with '-'"));
    assert!(message_for(&problems, "data.json_keys[2]").contains("listed twice"));
    assert!(message_for(&problems, "data.json_keys[2]").contains("(line 3, column 30)"));
    assert!(message_for(&problems, "data.staging_memory").contains("zero"));
    assert!(
        Config::parse(
            "[training]\nneuron_devices_per_worker = 16\nefa_interfaces_per_worker = 8\n",
            "x"
        )
        .is_ok()
    );
}

#[test]
fn a_dry_run_of_the_example_reports_every_missing_value_at_once() {
    // `init` then `deploy --dry-run`: the subnet, the security group and the account (which
    // names the ECR registry and which only STS could tell otherwise), in one run.
    let error = Config::parse_offline(EXAMPLE, "trnkit.toml").unwrap_err();
    let ConfigError::Invalid { problems, .. } = &error else {
        panic!("{error}")
    };
    let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "storage.subnet_id",
            "storage.security_group_ids",
            "cluster.account_id"
        ]
    );
    let filled = EXAMPLE
        .replace("account_id = \"\"", "account_id = \"123456789012\"")
        .replace(
            "subnet_id = \"\"",
            "subnet_id = \"subnet-0123456789abcdef0\"",
        )
        .replace(
            "security_group_ids = []",
            "security_group_ids = [\"sg-0123456789abcdef0\"]",
        );
    Config::parse_offline(&filled, "trnkit.toml").unwrap();
}

#[test]
fn trnkit_toml_in_the_working_directory_is_found_and_the_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(super::find(None, dir.path()), None);
    let file = dir.path().join("trnkit.toml");
    fs_err::write(&file, "").unwrap();
    assert_eq!(super::find(None, dir.path()), Some(file));
    let flag = std::path::Path::new("other.toml");
    assert_eq!(
        super::find(Some(flag), dir.path()),
        Some(flag.to_path_buf())
    );
}

#[test]
fn env_the_scripts_overwrite_is_refused_with_the_script_line() {
    let problems = problems_of(
        r#"
[training]
env = { TP = "4", NEURON_CC_FLAGS = "--x", FI_PROVIDER = "tcp", GBS = "512", POD_UID = "u" }
"#,
    );
    assert!(message_for(&problems, "training.env.TP").contains("llama_7b.sh line 5"));
    assert!(message_for(&problems, "training.env.FI_PROVIDER").contains("train_setup.sh line 8"));
    assert!(
        message_for(&problems, "training.env.NEURON_CC_FLAGS")
            .contains("set [training] neuron_cc_flags instead")
    );
    assert!(message_for(&problems, "training.env.POD_UID").contains("trnkit sets"));
    assert!(!problems.iter().any(|(key, _)| key == "training.env.GBS"));
    // test_llama.sh only defaults TP; with it as the script, TP from the environment wins.
    Config::parse(
        "[training]\nscript = \"./test_llama.sh\"\nenv = { TP = \"4\", GBS = \"512\" }\n",
        "x",
    )
    .unwrap();
}

#[test]
fn tolerations_are_checked_as_kubernetes_would() {
    let problems = problems_of(
        "[training]\ntolerations = [{ effect = \"NoSchedule\" }, { key = \"k\", operator = \"Exists\", value = \"v\" }]\n",
    );
    assert!(message_for(&problems, "training.tolerations[0].operator").contains("Exists"));
    assert!(message_for(&problems, "training.tolerations[1].value").contains("must be empty"));
    Config::parse(
        "[training]\ntolerations = [{ operator = \"Exists\" }, { key = \"k\", value = \"v\" }]\n",
        "x",
    )
    .unwrap();
}

#[test]
fn max_restarts_is_bounded_and_a_negative_one_is_a_type_error() {
    let problems = problems_of("[training]\nmax_restarts = 101\n");
    assert!(message_for(&problems, "training.max_restarts").contains("at most 100"));
    let config = Config::parse("[training]\nmax_restarts = 0\n", "x").unwrap();
    assert_eq!(config.training.max_restarts, 0);
    assert_eq!(Config::default().training.max_restarts, 3);
    assert!(Config::parse("[training]\nmax_restarts = -1\n", "x").is_err());
}

#[test]
fn an_endless_or_huge_file_is_refused_after_the_limit_naming_it() {
    // `-c /dev/zero` (a slip of the hand) must not read forever.
    let error = Config::load(std::path::Path::new("/dev/zero")).unwrap_err();
    let message = format!("{:#}", anyhow::Error::from(error));
    assert!(
        message.contains("/dev/zero") && message.contains("larger than 1048576 bytes"),
        "{message}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trnkit.toml");
    fs_err::write(&path, b"[cluster]\ntarget = \"local\"\n\xff\n").unwrap();
    let message = format!(
        "{:#}",
        anyhow::Error::from(Config::load(&path).unwrap_err())
    );
    assert!(
        message.contains("trnkit.toml") && message.contains("not UTF-8 text: byte 28 "),
        "{message}"
    );
    // Just under the limit is read (and then judged on its content).
    let mut text = "[cluster]\ntarget = \"local\"\n".to_owned();
    text.push_str(&"#".repeat(super::MAX_CONFIG_BYTES as usize - text.len() - 1));
    text.push('\n');
    fs_err::write(&path, &text).unwrap();
    Config::load(&path).unwrap();
}
