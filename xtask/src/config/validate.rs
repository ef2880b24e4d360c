//! Checks of configuration values, each reported with its key.
//!
//! These run before anything is built, so a bad value is reported in the user's terms (the key
//! in the file) rather than as a field of a generated object.

use mpijob::names;

use super::{Config, StorageMode};

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

    fn one_of(&mut self, key: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.fail(
                key,
                format!("{value:?} is not one of {}", allowed.join(", ")),
            );
        }
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

/// Every problem of the configuration, as `(key, message)`.
pub(super) fn problems(config: &Config) -> Vec<(String, String)> {
    let mut c = Checker {
        problems: Vec::new(),
    };

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
    c.one_of(
        "image.pull_policy",
        &image.pull_policy,
        &["Always", "IfNotPresent", "Never"],
    );
    let ref_ok = !image.nemo_ref.is_empty()
        && image
            .nemo_ref
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._/-".contains(ch))
        && !image.nemo_ref.starts_with('-');
    if !ref_ok {
        c.fail(
            "image.nemo_ref",
            format!(
                "{:?} is not a git commit, tag or branch name",
                image.nemo_ref
            ),
        );
    }

    let storage = &config.storage;
    c.check(
        "storage.claim_name",
        names::dns1123_subdomain(&storage.claim_name),
    );
    c.check(
        "storage.storage_class",
        names::dns1123_subdomain(&storage.storage_class),
    );
    c.one_of(
        "storage.deployment_type",
        &storage.deployment_type,
        &["PERSISTENT_1", "PERSISTENT_2", "SCRATCH_1", "SCRATCH_2"],
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
    let throughputs: &[u32] = match storage.deployment_type.as_str() {
        "PERSISTENT_1" => &[50, 100, 200],
        "PERSISTENT_2" => &[125, 250, 500, 1000],
        _ => &[],
    };
    if !throughputs.is_empty() && !throughputs.contains(&storage.per_unit_storage_throughput) {
        c.fail(
            "storage.per_unit_storage_throughput",
            format!(
                "{} MB/s/TiB is not offered for {}: use one of {throughputs:?}",
                storage.per_unit_storage_throughput, storage.deployment_type
            ),
        );
    }
    c.one_of(
        "storage.lustre_version",
        &storage.lustre_version,
        &["2.10", "2.12", "2.15"],
    );
    c.one_of(
        "storage.data_compression_type",
        &storage.data_compression_type,
        &["NONE", "LZ4"],
    );
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
    if storage.mode == StorageMode::Dynamic && config.cluster.target == super::Target::Eks {
        if storage.subnet_id.is_empty() {
            c.fail("storage.subnet_id", "the dynamic mode needs the subnet of the Trainium nodes (the FSx CSI driver creates the file system there)");
        }
        if storage.security_group_ids.is_empty() {
            c.fail("storage.security_group_ids", "the dynamic mode needs a security group admitting TCP 988 and 1021-1023 from the nodes");
        }
    }
    if storage.mode == StorageMode::Static
        && config.cluster.target == super::Target::Eks
        && storage.file_system_id.is_empty()
        && storage.subnet_id.is_empty()
    {
        c.fail("storage.file_system_id", "the static mode needs a file system: set file_system_id, or subnet_id (and security_group_ids) to create one");
    }

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
    }
    c.one_of("data.mode", &data.mode, &["nemo", "megatron"]);
    if data.shards == 0 {
        c.fail("data.shards", "must be at least 1");
    }
    if data.tokenize_workers == 0 {
        c.fail("data.tokenize_workers", "must be at least 1");
    }
    c.check("data.staging_cpu", names::quantity(&data.staging_cpu));
    c.check("data.staging_memory", names::quantity(&data.staging_memory));
    c.check(
        "data.hf_token_secret",
        names::dns1123_subdomain(&data.hf_token_secret),
    );

    let training = &config.training;
    if training.workers < 1 {
        c.fail(
            "training.workers",
            format!("is {}; at least 1 worker is needed", training.workers),
        );
    }
    if training.neuron_devices_per_worker == 0 {
        c.fail(
            "training.neuron_devices_per_worker",
            "must be at least 1 (a trn1.32xlarge has 16)",
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
    c.one_of(
        "training.clean_pod_policy",
        &training.clean_pod_policy,
        &["None", "Running", "All"],
    );
    c.one_of(
        "training.launcher_gate",
        &training.launcher_gate,
        &["auto", "wait-for-workers-ready", "init-container"],
    );
    c.check(
        "training.neuron_cc_flags",
        names::env_value(&training.neuron_cc_flags),
    );
    c.check("training.script", names::command_word(&training.script));
    for (index, argument) in training.script_args.iter().enumerate() {
        c.check(
            &format!("training.script_args[{index}]"),
            names::command_word(argument),
        );
    }
    for key in ["compile_job_name", "train_job_name"] {
        let name = if key == "compile_job_name" {
            &training.compile_job_name
        } else {
            &training.train_job_name
        };
        let full_key = format!("training.{key}");
        match names::dns1035_label(name) {
            Err(message) => c.fail(&full_key, message),
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
                        &full_key,
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
    if let Err(error) = humantime::parse_duration(&training.compile_timeout) {
        c.fail(
            "training.compile_timeout",
            format!(
                "{:?} is not a duration such as 90m or 2h: {error}",
                training.compile_timeout
            ),
        );
    }
    for (name, value) in &training.env {
        c.check(
            &format!("training.env.{name}"),
            names::env_name(name).and_then(|()| names::env_value(value)),
        );
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
        }
        c.one_of(
            &format!("{key}.operator"),
            &toleration.operator,
            &["Exists", "Equal"],
        );
        c.one_of(
            &format!("{key}.effect"),
            &toleration.effect,
            &["", "NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
    if !training.priority_class.is_empty() {
        c.check(
            "training.priority_class",
            names::dns1123_subdomain(&training.priority_class),
        );
    }

    let tensorboard = &config.tensorboard;
    if tensorboard.enabled && tensorboard.replicas < 1 {
        c.fail(
            "tensorboard.replicas",
            "must be at least 1 (or set tensorboard.enabled = false)",
        );
    }
    c.one_of(
        "tensorboard.service_type",
        &tensorboard.service_type,
        &["LoadBalancer", "ClusterIP"],
    );
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
    c.problems
}
