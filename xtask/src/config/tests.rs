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
