//! The node check: a short Job with one pod on each Trainium node the training job will use,
//! run before the compile step, that checks the node's Neuron devices and EFA interfaces.
//!
//! A node whose Neuron driver is wedged or whose EFA interfaces are missing fails a training
//! job only after the compile job (hours) or at the first collective, with an error that does
//! not name the node. The check Job runs the training image on the same nodes the workers
//! would take, with the workers' node selector, tolerations, priority class and device
//! requests (it is built from the rendered train MPIJob's worker template): an Indexed Job of
//! `workers` pods, at most one per node (pod anti-affinity on the hostname). Each pod runs
//! [`SCRIPT`]: the Neuron devices the pod was given are visible in `/dev` and answer to
//! `neuron-ls`, and `fi_info -p efa` lists as many EFA interfaces as requested. It prints one
//! result line ([`OK_PREFIX`] or [`FAIL_PREFIX`]) that names its node (`spec.nodeName`,
//! through the downward API as `NODE_NAME`) and exits 1 on failure.
//!
//! The cluster executor runs the Job at the start of the compile step and reads every pod's
//! log; [`verdict`] (pure) turns them into the nodes that failed, so the step fails naming
//! them and the compile job is not applied. `[training] node_check = false` leaves it out.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use mpijob::MPIJob;

/// The Job's name.
pub const JOB_NAME: &str = "trnkit-node-check";

/// The container's name.
pub const CONTAINER: &str = "node-check";

/// The label every pod of the check carries, which the anti-affinity selects on.
const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The start of a pod's result line when its node passed.
pub const OK_PREFIX: &str = "trnkit-node-check: OK";

/// The start of a pod's result line when its node failed.
pub const FAIL_PREFIX: &str = "trnkit-node-check: FAIL";

/// The check every pod runs (bash). `EXPECTED_NEURON_DEVICES` and `EXPECTED_EFA_INTERFACES`
/// are the worker's requests; `NODE_NAME` its node.
pub const SCRIPT: &str = r#"set -u
export PATH="/opt/aws/neuron/bin:/opt/amazon/efa/bin:$PATH"
node="${NODE_NAME:-unknown}"
fail() {
    echo "trnkit-node-check: FAIL node=$node: $*"
    exit 1
}
last_lines() {
    printf '%s\n' "$1" | tail -n 3 | tr '\n' ' '
}
# Where the device plugin puts the devices (another directory only in trnkit's tests).
dev="${TRNKIT_NODE_CHECK_DEV:-/dev}"
visible=$(ls -d "$dev"/neuron[0-9]* 2>/dev/null | wc -l)
if [ "$visible" -lt "$EXPECTED_NEURON_DEVICES" ]; then
    fail "$visible Neuron device(s) in $dev, $EXPECTED_NEURON_DEVICES requested (is the Neuron device plugin running on this node?)"
fi
command -v neuron-ls >/dev/null 2>&1 || fail "neuron-ls is not in the image"
listing=$(neuron-ls --json-output 2>&1) || fail "neuron-ls failed: $(last_lines "$listing")"
usable=$(printf '%s\n' "$listing" | grep -o '"neuron_device"' | wc -l)
if [ "$usable" -lt "$EXPECTED_NEURON_DEVICES" ]; then
    fail "neuron-ls lists $usable Neuron device(s), $EXPECTED_NEURON_DEVICES requested (the Neuron driver does not answer for the others)"
fi
efa=0
if [ "$EXPECTED_EFA_INTERFACES" -gt 0 ]; then
    command -v fi_info >/dev/null 2>&1 || fail "fi_info is not in the image"
    providers=$(fi_info -p efa -t FI_EP_RDM 2>&1) || fail "fi_info -p efa failed: $(last_lines "$providers")"
    efa=$(printf '%s\n' "$providers" | awk '$1 == "domain:" { print $2 }' | sort -u | wc -l)
    if [ "$efa" -lt "$EXPECTED_EFA_INTERFACES" ]; then
        fail "fi_info -p efa lists $efa EFA interface(s), $EXPECTED_EFA_INTERFACES requested (is the EFA device plugin running on this node?)"
    fi
fi
echo "trnkit-node-check: OK node=$node neuron_devices=$usable efa_interfaces=$efa"
"#;

/// The check Job for the workers of `train` (the rendered train MPIJob): its worker
/// template's image, scheduling and device requests, `workers` pods, one per node. `None`
/// when the job has no worker template.
pub fn job(train: &MPIJob) -> Option<Job> {
    let worker = train.spec.mpi_replica_specs.get(mpijob::types::WORKER)?;
    let workers = worker.replicas.unwrap_or(1);
    let template = worker.template.spec.as_ref()?;
    let trainer = template.containers.first()?;
    let requested = |resource: &str| {
        trainer
            .resources
            .as_ref()
            .and_then(|resources| resources.limits.as_ref())
            .and_then(|limits| limits.get(resource))
            .map_or_else(|| "0".to_owned(), |quantity| quantity.0.clone())
    };
    let labels = BTreeMap::from([
        (NAME_LABEL.to_owned(), JOB_NAME.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "trnkit".to_owned(),
        ),
    ]);
    let env = vec![
        EnvVar {
            name: "NODE_NAME".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".to_owned(),
                    api_version: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "EXPECTED_NEURON_DEVICES".to_owned(),
            value: Some(requested(mpijob::builder::NEURON_RESOURCE)),
            ..Default::default()
        },
        EnvVar {
            name: "EXPECTED_EFA_INTERFACES".to_owned(),
            value: Some(requested(mpijob::builder::EFA_RESOURCE)),
            ..Default::default()
        },
    ];
    let container = Container {
        name: CONTAINER.to_owned(),
        image: trainer.image.clone(),
        image_pull_policy: trainer.image_pull_policy.clone(),
        command: Some(vec!["bash".to_owned(), "-c".to_owned(), SCRIPT.to_owned()]),
        env: Some(env),
        resources: trainer.resources.clone(),
        ..Default::default()
    };
    // One pod per node: no two pods of the check on the same hostname.
    let affinity = Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        NAME_LABEL.to_owned(),
                        JOB_NAME.to_owned(),
                    )])),
                    match_expressions: None,
                }),
                topology_key: "kubernetes.io/hostname".to_owned(),
                ..Default::default()
            }]),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        ..Default::default()
    };
    Some(Job {
        metadata: ObjectMeta {
            name: Some(JOB_NAME.to_owned()),
            namespace: train.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".to_owned()),
            completions: Some(workers),
            parallelism: Some(workers),
            // A failed check is an answer, not a flake: no retry of a failed pod, and the other
            // pods run to their own result (a Job-wide `backoffLimit: 0` would stop them at
            // the first failure, and their nodes would look failed). A cluster without
            // per-index backoff (before 1.29) retries a failed pod and keeps the other pods
            // running too; [`failures`] names each node once.
            backoff_limit_per_index: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    restart_policy: Some("Never".to_owned()),
                    node_selector: template.node_selector.clone(),
                    tolerations: template.tolerations.clone(),
                    priority_class_name: template.priority_class_name.clone(),
                    affinity: Some(affinity),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// What one pod of the check reported, as the executor read it from the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodReport {
    /// The pod's name.
    pub pod: String,
    /// The node it ran on (`spec.nodeName`), if it was scheduled.
    pub node: Option<String>,
    /// The check container's exit code, if it terminated.
    pub exit_code: Option<i32>,
    /// The check container's log.
    pub log: String,
}

/// The result line of a log, if it has one.
fn result_line(log: &str) -> Option<&str> {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with(OK_PREFIX) || line.starts_with(FAIL_PREFIX))
}

/// The nodes that failed, one line each: the node, why (the pod's result line, or its exit
/// code and last lines when it printed none), and the pod.
pub fn failures(reports: &[PodReport]) -> Vec<String> {
    let mut failed: Vec<String> = reports
        .iter()
        .filter_map(|report| {
            let node = report.node.as_deref().unwrap_or("(not scheduled)");
            match result_line(&report.log) {
                Some(line) if line.starts_with(FAIL_PREFIX) => {
                    // `trnkit-node-check: FAIL node=NAME: why`
                    let why = line
                        .split_once(": ")
                        .and_then(|(_, rest)| rest.split_once(": "))
                        .map_or(line, |(_, why)| why);
                    Some(format!("{node}: {why} (pod {})", report.pod))
                }
                _ => match report.exit_code {
                    Some(code) if code != 0 => Some(format!(
                        "{node}: the check exited with code {code} (pod {}); last lines: {}",
                        report.pod,
                        last_lines(&report.log)
                    )),
                    _ => None,
                },
            }
        })
        .collect();
    failed.sort();
    // One line per node (a retried pod reports the same node again).
    failed.dedup_by(|later, earlier| node_of(later) == node_of(earlier));
    failed
}

/// The node a line of [`failures`] starts with.
fn node_of(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(node, _)| node)
}

/// The step's error for these [`failures`].
pub fn failure_message(failed: &[String]) -> String {
    format!(
        "{} node(s) failed the node check, so nothing was compiled:\n  - {}\ncordon or replace them (`kubectl cordon NODE`), then run `cargo xtask deploy` again",
        failed.len(),
        failed.join("\n  - ")
    )
}

/// Which nodes passed, or why the check failed (naming each node that did). `workers` is the
/// number of nodes the training job needs: fewer passing nodes is a failure too.
pub fn verdict(reports: &[PodReport], workers: i32) -> Result<String, String> {
    let failed = failures(reports);
    if !failed.is_empty() {
        return Err(failure_message(&failed));
    }
    let mut passed: Vec<&str> = reports
        .iter()
        .filter(|report| result_line(&report.log).is_some_and(|line| line.starts_with(OK_PREFIX)))
        .map(|report| report.node.as_deref().unwrap_or("(not scheduled)"))
        .collect();
    passed.sort_unstable();
    passed.dedup();
    let needed = usize::try_from(workers).unwrap_or(0);
    if passed.len() < needed {
        return Err(format!(
            "only {} of {needed} node(s) reported a node check result ({}); see `kubectl logs -l {NAME_LABEL}={JOB_NAME}`",
            passed.len(),
            passed.join(", ")
        ));
    }
    Ok(format!(
        "{} node(s) passed the node check (Neuron devices and EFA interfaces): {}",
        passed.len(),
        passed.join(", ")
    ))
}

fn last_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

#[cfg(test)]
mod tests;
