//! Validation that reports every problem at once, each with its field path.
//!
//! Three layers: the MPI Operator's own rules (from its `validation.go` and controller), the
//! names and values trnkit puts into pods and remote shells, and the CRD's OpenAPI schema with
//! unknown fields rejected (see `schema`).

use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::error::{Error, Problems, Result};
use crate::names;
use crate::schema::OperatorCrd;
use crate::types::{LAUNCHER, MPIJob, RestartPolicy, WORKER};
use crate::{mpirun, schema};

/// Volumes that the MPI Operator adds to the pods itself, so mounts may name them.
const OPERATOR_VOLUMES: &[&str] = &["mpi-job-config", "ssh-auth"];

/// Validates an MPIJob: the operator's rules, names and values, and the v0.8.2 CRD's schema.
pub fn validate(job: &MPIJob) -> Result<()> {
    validate_for(job, OperatorCrd::V0_8_2)
}

/// Validates an MPIJob for the operator whose CRD is `crd`: the operator's rules, names and
/// values, and that CRD's schema with unknown fields rejected.
pub fn validate_for(job: &MPIJob, crd: OperatorCrd) -> Result<()> {
    let mut problems = rules(job);
    if job.spec.launcher_creation_policy.is_some()
        && !crd.declares_spec_field("launcherCreationPolicy")
    {
        problems.push(
            "spec.launcherCreationPolicy",
            format!(
                "the MPIJob CRD of MPI Operator {} does not declare it (it came with v0.5.0); use the init-container launcher gate, or upgrade the operator and its CRD",
                crd.release()
            ),
        );
    }
    let value = serde_json::to_value(job).map_err(|source| Error::Serialize {
        name: job_name(job),
        source,
    })?;
    problems.0.extend(schema::validate_against(crd, &value).0);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid {
            name: job_name(job),
            problems,
        })
    }
}

fn job_name(job: &MPIJob) -> String {
    job.metadata
        .name
        .clone()
        .unwrap_or_else(|| "<unnamed>".to_owned())
}

/// The operator's rules and trnkit's checks of names and values, without the schema.
pub fn rules(job: &MPIJob) -> Problems {
    let mut problems = Problems::default();
    let spec = &job.spec;
    let name = job.metadata.name.as_deref().unwrap_or("");
    if let Err(message) = names::dns1035_label(name) {
        problems.push("metadata.name", message);
    }
    if let Some(namespace) = &job.metadata.namespace
        && let Err(message) = names::dns1123_label(namespace)
    {
        problems.push("metadata.namespace", message);
    }

    let slots = spec.slots_per_worker.unwrap_or(1);
    if slots < 0 {
        problems.push(
            "spec.slotsPerWorker",
            format!("is {slots}; it must be 0 or more"),
        );
    }
    for key in spec.mpi_replica_specs.keys() {
        if key != LAUNCHER && key != WORKER {
            problems.push(
                format!("spec.mpiReplicaSpecs.{key}"),
                format!("unknown replica type {key:?}; the MPI Operator knows only {LAUNCHER:?} and {WORKER:?}"),
            );
        }
    }
    let run_launcher_as_worker = spec.run_launcher_as_worker.unwrap_or(false);
    let mut workers = 0;
    match spec.mpi_replica_specs.get(LAUNCHER) {
        None => problems.push(
            "spec.mpiReplicaSpecs",
            "has no Launcher; an MPIJob needs exactly one launcher",
        ),
        Some(launcher) => {
            if launcher.replicas != Some(1) {
                problems.push(
                    "spec.mpiReplicaSpecs.Launcher.replicas",
                    format!(
                        "is {:?}; the launcher must have exactly 1 replica",
                        launcher.replicas
                    ),
                );
            }
        }
    }
    match spec.mpi_replica_specs.get(WORKER) {
        None if !run_launcher_as_worker => problems.push(
            "spec.mpiReplicaSpecs",
            "has no Worker; add workers (at least 1) or set runLauncherAsWorker",
        ),
        None => {}
        Some(worker) => match worker.replicas {
            Some(replicas) if replicas >= 1 => workers = replicas,
            other => problems.push(
                "spec.mpiReplicaSpecs.Worker.replicas",
                format!("is {other:?}; at least 1 worker is needed"),
            ),
        },
    }
    for (key, replica) in &spec.mpi_replica_specs {
        let path = format!("spec.mpiReplicaSpecs.{key}");
        match replica.restart_policy {
            None | Some(RestartPolicy::Never | RestartPolicy::OnFailure) => {}
            Some(other) => problems.push(
                format!("{path}.restartPolicy"),
                format!("is {other:?}; the MPI Operator accepts only Never or OnFailure"),
            ),
        }
        match &replica.template.spec {
            None => problems.push(
                format!("{path}.template.spec"),
                "is missing; a pod spec with at least one container is needed",
            ),
            Some(pod) => pod_spec(&mut problems, &format!("{path}.template.spec"), pod),
        }
    }
    if let Some(policy) = &spec.run_policy {
        for (field, value) in [
            ("backoffLimit", policy.backoff_limit.map(i64::from)),
            (
                "ttlSecondsAfterFinished",
                policy.ttl_seconds_after_finished.map(i64::from),
            ),
            ("activeDeadlineSeconds", policy.active_deadline_seconds),
        ] {
            if let Some(value) = value
                && value < 0
            {
                problems.push(
                    format!("spec.runPolicy.{field}"),
                    format!("is {value}; it must be 0 or more"),
                );
            }
        }
    }
    if let Some(path) = &spec.ssh_auth_mount_path
        && !path.starts_with('/')
    {
        problems.push(
            "spec.sshAuthMountPath",
            format!("{path:?} must be an absolute path"),
        );
    }

    // The names the operator derives from the job's name must be valid too: the Service `<name>`,
    // the worker pods `<name>-worker-<i>` (also their hostnames), the launcher Job
    // `<name>-launcher` and its pods `<name>-launcher-<5 random characters>`.
    if !name.is_empty() {
        let mut derived = vec![
            ("Service", name.to_owned()),
            ("launcher pod", format!("{name}-launcher-xxxxx")),
        ];
        if workers > 0 {
            derived.push(("worker pod", format!("{name}-worker-{}", workers - 1)));
        }
        for (what, derived_name) in derived {
            if derived_name.len() > names::MAX_LABEL {
                let longest = name.len() - (derived_name.len() - names::MAX_LABEL);
                problems.push(
                    "metadata.name",
                    format!(
                        "{name:?} is too long: the operator derives the {what} name {derived_name:?} \
                         ({} characters) from it, and that must be a DNS-1035 label of at most {} \
                         characters; use a name of at most {longest} characters",
                        derived_name.len(),
                        names::MAX_LABEL,
                    ),
                );
            }
        }
    }

    // `mpirun -np` must match the hostfile's slots.
    if let Some(launcher) = spec.mpi_replica_specs.get(LAUNCHER)
        && let Some(container) = launcher
            .template
            .spec
            .as_ref()
            .and_then(|pod| pod.containers.first())
        && let Some(command) = &container.command
        && command
            .first()
            .is_some_and(|program| program == "mpirun" || program.ends_with("/mpirun"))
    {
        let hosts = workers + i32::from(run_launcher_as_worker);
        let expected = hosts.saturating_mul(slots);
        let path = "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].command".to_owned();
        match mpirun::processes_in(command) {
            None => problems.push(&path, format!("mpirun has no -np; it must be {expected} (workers x slotsPerWorker)")),
            Some(Err(message)) => problems.push(&path, message),
            Some(Ok(np)) if np != expected => problems.push(
                &path,
                format!("mpirun -np is {np} but workers ({hosts}) x slotsPerWorker ({slots}) = {expected}"),
            ),
            Some(Ok(_)) => {}
        }
        let mut words = command.iter().enumerate().skip(1);
        while let Some((index, word)) = words.next() {
            if let Err(message) = names::command_word(word) {
                problems.push(format!("{path}[{index}]"), message);
            }
            if word == "-x"
                && let Some((index, variable)) = words.next()
            {
                let (variable_name, value) = match variable.split_once('=') {
                    Some((variable_name, value)) => (variable_name, Some(value)),
                    None => (variable.as_str(), None),
                };
                if let Err(message) = names::env_name(variable_name) {
                    problems.push(format!("{path}[{index}]"), message);
                }
                if let Some(value) = value
                    && let Err(message) = names::command_word(value)
                {
                    problems.push(format!("{path}[{index}]"), message);
                }
            }
        }
    }
    problems
}

fn pod_spec(problems: &mut Problems, path: &str, pod: &PodSpec) {
    if pod.containers.is_empty() {
        problems.push(
            format!("{path}.containers"),
            "is empty; at least one container is needed",
        );
    }
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|volume| volume.name.as_str())
        .collect();
    for (index, volume) in pod.volumes.iter().flatten().enumerate() {
        if let Err(message) = names::dns1123_label(&volume.name) {
            problems.push(format!("{path}.volumes[{index}].name"), message);
        }
        if let Some(claim) = &volume.persistent_volume_claim
            && let Err(message) = names::dns1123_subdomain(&claim.claim_name)
        {
            problems.push(
                format!("{path}.volumes[{index}].persistentVolumeClaim.claimName"),
                message,
            );
        }
    }
    if let Some(priority_class) = &pod.priority_class_name
        && let Err(message) = names::dns1123_subdomain(priority_class)
    {
        problems.push(format!("{path}.priorityClassName"), message);
    }
    for (field, containers) in [
        ("containers", Some(&pod.containers)),
        ("initContainers", pod.init_containers.as_ref()),
    ] {
        for (index, container) in containers.into_iter().flatten().enumerate() {
            container_problems(
                problems,
                &format!("{path}.{field}[{index}]"),
                container,
                &volumes,
            );
        }
    }
}

fn container_problems(
    problems: &mut Problems,
    path: &str,
    container: &Container,
    volumes: &[&str],
) {
    if let Err(message) = names::dns1123_label(&container.name) {
        problems.push(format!("{path}.name"), message);
    }
    match &container.image {
        None => problems.push(format!("{path}.image"), "is missing"),
        Some(image) => {
            if let Err(message) = names::image_reference(image) {
                problems.push(format!("{path}.image"), message);
            }
        }
    }
    for (index, variable) in container.env.iter().flatten().enumerate() {
        if let Err(message) = names::env_name(&variable.name) {
            problems.push(format!("{path}.env[{index}].name"), message);
        }
        if let Some(value) = &variable.value
            && let Err(message) = names::env_value(value)
        {
            problems.push(format!("{path}.env[{index}].value"), message);
        }
    }
    if let Some(resources) = &container.resources {
        for (field, map) in [
            ("requests", &resources.requests),
            ("limits", &resources.limits),
        ] {
            for (resource, quantity) in map.iter().flatten() {
                if let Err(message) = names::quantity(&quantity.0) {
                    problems.push(format!("{path}.resources.{field}.{resource}"), message);
                }
            }
        }
        // Kubernetes does not overcommit extended resources: a request must equal its limit.
        if let (Some(requests), Some(limits)) = (&resources.requests, &resources.limits) {
            for (resource, limit) in limits {
                if resource.contains('/')
                    && !resource.starts_with("kubernetes.io/")
                    && let Some(request) = requests.get(resource)
                    && request != limit
                {
                    problems.push(
                        format!("{path}.resources.requests.{resource}"),
                        format!(
                            "is {} but the limit is {}; extended resources need request == limit",
                            request.0, limit.0
                        ),
                    );
                }
            }
        }
    }
    for (index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        if !volumes.contains(&mount.name.as_str())
            && !OPERATOR_VOLUMES.contains(&mount.name.as_str())
        {
            problems.push(
                format!("{path}.volumeMounts[{index}].name"),
                format!("{:?} is not a volume of this pod", mount.name),
            );
        }
        if !mount.mount_path.starts_with('/') {
            problems.push(
                format!("{path}.volumeMounts[{index}].mountPath"),
                format!("{:?} must be an absolute path", mount.mount_path),
            );
        }
    }
    for (field, words) in [("command", &container.command), ("args", &container.args)] {
        for (index, word) in words.iter().flatten().enumerate() {
            if word.contains('\0') {
                problems.push(
                    format!("{path}.{field}[{index}]"),
                    "contains a NUL character",
                );
            }
        }
    }
}
