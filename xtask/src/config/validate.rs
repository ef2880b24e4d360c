//! Checks of configuration values, each reported with its key.
//!
//! These run before anything is built, so a bad value is reported in the user's terms (the key
//! in the file) rather than as a field of a generated object.

use mpijob::names;

use super::{Config, StorageMode, Target, TolerationOperator, upstream};

struct Checker {
    problems: Vec<(String, String)>,
}

impl Checker {
    fn check(&mut self, key: &str, result: Result<(), String>) {
        if let Err(message) = result {
            self.problems.push((key.to_owned(), message));
        }
    }

    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push((key.to_owned(), message.into()));
    }

    fn prefixed_id(&mut self, key: &str, value: &str, prefix: &str) {
        let valid = value.strip_prefix(prefix).is_some_and(|hex| {
            (8..=17).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !valid {
            self.fail(
                key,
                format!("{value:?} is not an id of the form {prefix}<8 to 17 hex digits>"),
            );
        }
    }
}

fn no_control(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(bad) => Err(format!("{value:?} contains the control character {bad:?}")),
        None => Ok(()),
    }
}

fn path_component(value: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{value:?} must be a file name of letters, digits, '.', '_' and '-'"
        ))
    }
}

fn label_key(value: &str) -> Result<(), String> {
    let name = match value.rsplit_once('/') {
        Some((prefix, name)) => {
            names::dns1123_subdomain(prefix)?;
            name
        }
        None => value,
    };
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid label key"))
    }
}

fn label_value(value: &str) -> Result<(), String> {
    let valid = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if valid {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid label value"))
    }
}

/// A trn1.32xlarge's Neuron devices (`aws.amazon.com/neuron`).
pub(crate) const NEURON_DEVICES_PER_NODE: u32 = 16;
/// A trn1.32xlarge's EFA interfaces (`vpc.amazonaws.com/efa`).
pub(crate) const EFA_INTERFACES_PER_NODE: u32 = 8;

/// Every problem of the configuration, as `(key, message)`, section by section.
pub(super) fn problems(config: &Config) -> Vec<(String, String)> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    cluster(&mut c, config);
    image(&mut c, config);
    storage(&mut c, config);
    data(&mut c, config);
    training(&mut c, config);
    tensorboard(&mut c, config);
    cost(&mut c, config);
    kubernetes_expansion(&mut c, config);
    c.problems
}

/// What a command that contacts nothing (`deploy --dry-run`, `render`) needs besides
/// [`problems`]: the account naming the ECR registry, which deploy would ask STS for.
pub(super) fn offline_problems(config: &Config) -> Vec<(String, String)> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    if config.cluster.target == Target::Eks
        && config.cluster.account_id.is_empty()
        && config.image.registry.is_empty()
    {
        c.fail(
            "cluster.account_id",
            "names the ECR registry in the rendered manifests; deploy asks STS for it, but --dry-run and render contact nothing: set it (`aws sts get-caller-identity --query Account`), or set image.registry",
        );
    }
    c.problems
}

fn cluster(c: &mut Checker, config: &Config) {
    let cluster = &config.cluster;
    c.check(
        "cluster.namespace",
        names::dns1123_label(&cluster.namespace),
    );
    let region_ok = {
        let parts: Vec<&str> = cluster.region.split('-').collect();
        parts.len() >= 3
            && parts.iter().all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            })
            && parts
                .last()
                .is_some_and(|last| last.chars().all(|ch| ch.is_ascii_digit()))
    };
    if !region_ok {
        c.fail(
            "cluster.region",
            format!(
                "{:?} is not an AWS region such as us-west-2",
                cluster.region
            ),
        );
    }
    let account_ok = cluster.account_id.is_empty()
        || (cluster.account_id.len() == 12
            && cluster.account_id.chars().all(|ch| ch.is_ascii_digit()));
    if !account_ok {
        c.fail(
            "cluster.account_id",
            format!("{:?} is not a 12-digit AWS account id", cluster.account_id),
        );
    }
    c.check("cluster.kube_context", no_control(&cluster.kube_context));
    c.check("cluster.name", names::dns1123_subdomain(&cluster.name));
    if cluster.field_manager.is_empty() || cluster.field_manager.len() > 128 {
        c.fail("cluster.field_manager", "must be 1 to 128 characters");
    }
    c.check("cluster.field_manager", no_control(&cluster.field_manager));
    if cluster.work_dir.as_os_str().is_empty() {
        c.fail("cluster.work_dir", "must not be empty");
    }
}

fn image(c: &mut Checker, config: &Config) {
    let image = &config.image;
    let repository_ok = (2..=256).contains(&image.repository.len())
        && image.repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && part.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && part.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        });
    if !repository_ok {
        c.fail("image.repository", format!("{:?} is not an ECR repository name (lowercase letters, digits, '.', '_', '-', '/')", image.repository));
    }
    if !image.registry.is_empty() {
        c.check(
            "image.registry",
            names::image_reference(&format!("{}/probe", image.registry))
                .map_err(|_| format!("{:?} is not a registry host[:port]", image.registry)),
        );
    }
    if !image.human_tag.is_empty() {
        c.check(
            "image.human_tag",
            names::image_reference(&format!("probe:{}", image.human_tag))
                .map_err(|_| format!("{:?} is not a valid image tag", image.human_tag)),
        );
    }
    // The training image's own check, so a configuration that validates always renders.
    c.check(
        "image.nemo_ref",
        crate::images::check_nemo_ref(&image.nemo_ref),
    );
}

fn storage(c: &mut Checker, config: &Config) {
    let storage = &config.storage;
    c.check(
        "storage.claim_name",
        names::dns1123_subdomain(&storage.claim_name),
    );
    c.check(
        "storage.storage_class",
        names::dns1123_subdomain(&storage.storage_class),
    );
    if !(storage.capacity_gib == 1200
        || (storage.capacity_gib >= 2400 && storage.capacity_gib.is_multiple_of(2400)))
    {
        c.fail(
            "storage.capacity_gib",
            format!(
                "{} GiB is not a Lustre size: use 1200, 2400 or a multiple of 2400",
                storage.capacity_gib
            ),
        );
    }
    let throughputs = storage.deployment_type.valid_throughputs();
    if !throughputs.contains(&storage.per_unit_storage_throughput) {
        c.fail(
            "storage.per_unit_storage_throughput",
            format!(
                "{} MB/s/TiB is not offered for {}: use one of {throughputs:?}",
                storage.per_unit_storage_throughput,
                storage.deployment_type.as_str()
            ),
        );
    }
    let versions = storage.deployment_type.valid_lustre_versions();
    if !versions.contains(&storage.lustre_version.as_str()) {
        c.fail(
            "storage.lustre_version",
            format!(
                "{:?} is not offered for {}: use one of {}",
                storage.lustre_version,
                storage.deployment_type.as_str(),
                versions.join(", ")
            ),
        );
    }
    if !storage.file_system_id.is_empty() {
        c.prefixed_id("storage.file_system_id", &storage.file_system_id, "fs-");
    }
    if !storage.subnet_id.is_empty() {
        c.prefixed_id("storage.subnet_id", &storage.subnet_id, "subnet-");
    }
    for (index, group) in storage.security_group_ids.iter().enumerate() {
        c.prefixed_id(
            &format!("storage.security_group_ids[{index}]"),
            group,
            "sg-",
        );
    }
    if storage.automatic_backup_retention_days > 90 {
        c.fail("storage.automatic_backup_retention_days", "must be 0 to 90");
    }
    let hh_mm = |value: &str| {
        let parts: Vec<&str> = value.split(':').collect();
        parts.len() == 2
            && parts[0].parse::<u8>().is_ok_and(|h| h < 24)
            && parts[1].len() == 2
            && parts[1].parse::<u8>().is_ok_and(|m| m < 60)
    };
    if !hh_mm(&storage.daily_automatic_backup_start_time) {
        c.fail(
            "storage.daily_automatic_backup_start_time",
            format!(
                "{:?} is not HH:MM",
                storage.daily_automatic_backup_start_time
            ),
        );
    }
    let weekly_ok = storage
        .weekly_maintenance_start_time
        .split_once(':')
        .is_some_and(|(day, time)| {
            day.parse::<u8>().is_ok_and(|d| (1..=7).contains(&d)) && hh_mm(time)
        });
    if !weekly_ok {
        c.fail(
            "storage.weekly_maintenance_start_time",
            format!(
                "{:?} is not d:HH:MM (d = 1 for Monday to 7)",
                storage.weekly_maintenance_start_time
            ),
        );
    }
    if storage.mode == StorageMode::Dynamic && config.cluster.target == Target::Eks {
        if storage.subnet_id.is_empty() {
            c.fail("storage.subnet_id", "the dynamic mode needs the subnet of the Trainium nodes (the FSx CSI driver creates the file system there)");
        }
        if storage.security_group_ids.is_empty() {
            c.fail("storage.security_group_ids", "the dynamic mode needs a security group admitting TCP 988 and 1021-1023 from the nodes");
        }
    }
    if storage.mode == StorageMode::Static
        && config.cluster.target == Target::Eks
        && storage.file_system_id.is_empty()
        && storage.subnet_id.is_empty()
    {
        c.fail("storage.file_system_id", "the static mode needs a file system: set file_system_id, or subnet_id (and security_group_ids) to create one");
    }
}

fn data(c: &mut Checker, config: &Config) {
    let data = &config.data;
    for (key, value) in [
        ("data.tokenizer", &data.tokenizer),
        ("data.dataset", &data.dataset),
    ] {
        if value.is_empty() {
            c.fail(key, "must not be empty");
        }
        c.check(key, no_control(value));
    }
    c.check(
        "data.tokenizer_revision",
        path_component(&data.tokenizer_revision),
    );
    c.check(
        "data.dataset_revision",
        path_component(&data.dataset_revision),
    );
    c.check("data.dataset_name", path_component(&data.dataset_name));
    if data.json_keys.is_empty() {
        c.fail(
            "data.json_keys",
            "must name at least one key, such as \"text\"",
        );
    }
    for (index, key) in data.json_keys.iter().enumerate() {
        c.check(&format!("data.json_keys[{index}]"), path_component(key));
        if let Some(first) = data.json_keys[..index]
            .iter()
            .position(|other| other == key)
        {
            c.fail(
                &format!("data.json_keys[{index}]"),
                format!("{key:?} is listed twice (also data.json_keys[{first}]); each key is tokenized into its own files, so list it once"),
            );
        }
    }
    if data.shards == 0 {
        c.fail("data.shards", "must be at least 1");
    }
    if data.tokenize_workers == 0 {
        c.fail("data.tokenize_workers", "must be at least 1");
    }
    c.check(
        "data.hf_token_secret",
        names::dns1123_subdomain(&data.hf_token_secret),
    );
}

/// The most whole-job restarts `[training] max_restarts` may allow.
const MAX_RESTARTS: u32 = 100;

fn training(c: &mut Checker, config: &Config) {
    let training = &config.training;
    if training.workers < 1 {
        c.fail(
            "training.workers",
            format!("is {}; at least 1 worker is needed", training.workers),
        );
    }
    if !(1..=NEURON_DEVICES_PER_NODE).contains(&training.neuron_devices_per_worker) {
        c.fail(
            "training.neuron_devices_per_worker",
            format!(
                "is {}; a worker runs on one trn1.32xlarge, which has {NEURON_DEVICES_PER_NODE} Neuron devices: use 1 to {NEURON_DEVICES_PER_NODE}",
                training.neuron_devices_per_worker
            ),
        );
    }
    if training.efa_interfaces_per_worker > EFA_INTERFACES_PER_NODE {
        c.fail(
            "training.efa_interfaces_per_worker",
            format!(
                "is {}; a worker runs on one trn1.32xlarge, which has {EFA_INTERFACES_PER_NODE} EFA interfaces: use at most {EFA_INTERFACES_PER_NODE}",
                training.efa_interfaces_per_worker
            ),
        );
    }
    if training.slots_per_worker < 1 {
        c.fail(
            "training.slots_per_worker",
            format!("is {}; it must be at least 1", training.slots_per_worker),
        );
    }
    if training.backoff_limit < 0 {
        c.fail("training.backoff_limit", "must be 0 or more");
    }
    if training.max_restarts > MAX_RESTARTS {
        c.fail(
            "training.max_restarts",
            format!(
                "is {}; use at most {MAX_RESTARTS} (each restart reloads the run from its last checkpoint; a run that fails that often needs its cause fixed)",
                training.max_restarts
            ),
        );
    }
    if training.ttl_seconds_after_finished < 0 {
        c.fail(
            "training.ttl_seconds_after_finished",
            "must be 0 (keep) or more",
        );
    }
    if training.active_deadline_seconds < 0 {
        c.fail(
            "training.active_deadline_seconds",
            "must be 0 (no limit) or more",
        );
    }
    c.check(
        "training.neuron_cc_flags",
        names::env_value(&training.neuron_cc_flags),
    );
    c.check("training.script", names::command_word(&training.script));
    c.check(
        "training.run_name",
        crate::run_identity::check_name(&training.run_name),
    );
    if training.script.starts_with('-') {
        c.fail(
            "training.script",
            format!(
                "{:?} starts with '-', so mpirun would take it for an option: name the script, such as ./llama_7b.sh",
                training.script
            ),
        );
    }
    for (index, argument) in training.script_args.iter().enumerate() {
        c.check(
            &format!("training.script_args[{index}]"),
            names::command_word(argument),
        );
    }
    job_names(c, training);
    for (name, value) in &training.env {
        let key = format!("training.env.{name}");
        c.check(
            &key,
            names::env_name(name).and_then(|()| names::env_value(value)),
        );
        if let Some(message) = env_without_effect(name, &training.script) {
            c.fail(&key, message);
        }
    }
    for (key, value) in &training.node_selector {
        c.check(
            &format!("training.node_selector.{key:?}"),
            label_key(key).and_then(|()| label_value(value)),
        );
    }
    for (index, toleration) in training.tolerations.iter().enumerate() {
        let key = format!("training.tolerations[{index}]");
        if !toleration.key.is_empty() {
            c.check(&format!("{key}.key"), label_key(&toleration.key));
        } else if toleration.operator == TolerationOperator::Equal {
            c.fail(
                &format!("{key}.operator"),
                "an empty key tolerates every taint only with operator = \"Exists\": set operator, or name the taint's key",
            );
        }
        if toleration.operator == TolerationOperator::Exists && !toleration.value.is_empty() {
            c.fail(
                &format!("{key}.value"),
                "must be empty with operator \"Exists\"",
            );
        }
        if !toleration.value.is_empty() {
            c.check(&format!("{key}.value"), label_value(&toleration.value));
        }
    }
    if !training.priority_class.is_empty() {
        c.check(
            "training.priority_class",
            names::dns1123_subdomain(&training.priority_class),
        );
    }
}

/// Variables trnkit sets on every rank itself.
const TRNKIT_VARIABLES: &[(&str, &str)] = &[
    (
        "POD_UID",
        "the launcher pod's UID, which names the experiment directory",
    ),
    (
        "TOKENIZER_PATH",
        "the staged tokenizer on the shared file system",
    ),
    (
        "DATASET_PATH",
        "the tokenized dataset on the shared file system",
    ),
    (
        "NEURON_COMPILE_CACHE_URL",
        "the compile cache on the shared file system",
    ),
    ("COMPILE", "1 in the compile job only"),
    (
        crate::run_identity::RUN_ID_VARIABLE,
        "[training] run_name, which names the experiment directory",
    ),
    (
        crate::run_identity::OVERRIDES_VARIABLE,
        "the resume settings ([training] resume)",
    ),
    (
        crate::render::rank::FLAGS_VARIABLE,
        "[training] neuron_cc_flags, for the compiler",
    ),
];

/// Why a `[training] env` variable would never reach the training command, if it would not.
fn env_without_effect(name: &str, script: &str) -> Option<String> {
    if name == "NEURON_CC_FLAGS" {
        return Some(
            "set [training] neuron_cc_flags instead: train_setup.sh exports NEURON_CC_FLAGS outright, and trnkit hands neuron_cc_flags to the compiler after it has run (and checks the compile cache for the same flags)"
                .to_owned(),
        );
    }
    if let Some((_, what)) = TRNKIT_VARIABLES.iter().find(|(known, _)| *known == name) {
        return Some(format!(
            "trnkit sets {name} on every rank ({what}); remove it"
        ));
    }
    let variable = upstream::overwritten(name, script)?;
    Some(format!(
        "{} line {} (neuronx-nemo-megatron at the pinned commit) sets {name} outright after the environment is read, so this value would never reach the training command; remove it, or run a script of your own as training.script",
        variable.script, variable.line
    ))
}

fn job_names(c: &mut Checker, training: &super::Training) {
    for (key, name) in [
        ("training.compile_job_name", &training.compile_job_name),
        ("training.train_job_name", &training.train_job_name),
    ] {
        match names::dns1035_label(name) {
            Err(message) => c.fail(key, message),
            Ok(()) => {
                let longest = [
                    format!("{name}-launcher-xxxxx"),
                    format!("{name}-worker-{}", training.workers.max(1) - 1),
                ]
                .into_iter()
                .max_by_key(String::len)
                .unwrap_or_default();
                if longest.len() > names::MAX_LABEL {
                    c.fail(
                        key,
                        format!(
                            "{name:?} is too long: the MPI Operator derives the pod name {longest:?} ({} characters) from it, and pod hostnames have at most {}; use at most {} characters",
                            longest.len(),
                            names::MAX_LABEL,
                            name.len() - (longest.len() - names::MAX_LABEL)
                        ),
                    );
                }
            }
        }
    }
    if training.compile_job_name == training.train_job_name {
        c.fail(
            "training.train_job_name",
            "must differ from training.compile_job_name",
        );
    }
}

fn tensorboard(c: &mut Checker, config: &Config) {
    let tensorboard = &config.tensorboard;
    if tensorboard.enabled && tensorboard.replicas < 1 {
        c.fail(
            "tensorboard.replicas",
            "must be at least 1 (or set tensorboard.enabled = false)",
        );
    }
    let user_ok = !tensorboard.user.is_empty()
        && tensorboard
            .user
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
    if !user_ok {
        c.fail(
            "tensorboard.user",
            format!(
                "{:?} must be letters, digits, '.', '_' or '-'",
                tensorboard.user
            ),
        );
    }
    c.check(
        "tensorboard.secret_name",
        names::dns1123_subdomain(&tensorboard.secret_name),
    );
}

fn cost(c: &mut Checker, config: &Config) {
    let hourly = config.cost.instance_hourly_usd;
    if !(hourly.is_finite() && hourly >= 0.0) {
        c.fail(
            "cost.instance_hourly_usd",
            format!("{hourly} must be a price in USD per hour, 0 or more"),
        );
    }
}

/// Kubernetes expands `$(NAME)` in a container's `command`, `args` and `env` values with the
/// container's variables, the Secret-backed `HF_TOKEN` among them: a dataset named
/// `org/$(HF_TOKEN)` would carry the token into a command line, a log and the Hub's request
/// log. Values reach those fields in many places, so `$(` is refused in every string value.
fn kubernetes_expansion(c: &mut Checker, config: &Config) {
    let Ok(toml::Value::Table(root)) = toml::Value::try_from(config) else {
        return;
    };
    let mut found = Vec::new();
    expansions(&toml::Value::Table(root), String::new(), &mut found);
    for key in found {
        c.fail(
            &key,
            "contains \"$(\", which Kubernetes expands in command, args and env values (\"$(HF_TOKEN)\" would become the HuggingFace token): remove it",
        );
    }
}

fn expansions(value: &toml::Value, key: String, found: &mut Vec<String>) {
    match value {
        toml::Value::String(text) if text.contains("$(") => found.push(key),
        toml::Value::Table(table) => {
            for (name, inner) in table {
                let inner_key = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                if name.contains("$(") {
                    found.push(inner_key.clone());
                }
                expansions(inner, inner_key, found);
            }
        }
        toml::Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                expansions(inner, format!("{key}[{index}]"), found);
            }
        }
        _ => {}
    }
}
