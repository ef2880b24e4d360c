//! The cluster preflight: the MPI Operator (its CRD decides the launcher gate and which MPIJob
//! fields may be sent), the FSx CSI driver, the Neuron and EFA device plugins, Trainium nodes.
//!
//! [`evaluate`] is pure: it turns fetched [`ClusterFacts`] into [`Preflight`] checks, each
//! failure saying what to install or fix. [`fetch_facts`] reads them with a `kube::Client`.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSIDriver;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use mpijob::{LauncherGate, OperatorCrd};
use serde_json::Value;

/// The MPI Operator's CRD.
pub const MPIJOB_CRD: &str = "mpijobs.kubeflow.org";
/// The FSx for Lustre CSI driver's name.
pub const FSX_CSI_DRIVER: &str = "fsx.csi.aws.com";
/// The extended resource of Trainium devices.
pub const NEURON_RESOURCE: &str = "aws.amazon.com/neuron";
/// The extended resource of EFA interfaces.
pub const EFA_RESOURCE: &str = "vpc.amazonaws.com/efa";
/// The MPI Operator release whose install command the fix messages give.
pub const MPI_OPERATOR_RELEASE: &str = "v0.8.2";

/// A fetched list, or why it could not be read (for example `forbidden`).
pub type Fetched<T> = Result<Vec<T>, String>;

/// What preflight reads from the cluster.
#[derive(Clone, Debug)]
pub struct ClusterFacts {
    /// The `mpijobs.kubeflow.org` CRD, if installed (empty list when not).
    pub mpijob_crd: Fetched<CustomResourceDefinition>,
    /// Deployments in all namespaces (the operator's controller is one).
    pub deployments: Fetched<Deployment>,
    /// DaemonSets in all namespaces (device plugins and the CSI node plugin).
    pub daemonsets: Fetched<DaemonSet>,
    /// `storage.k8s.io/v1` CSIDrivers.
    pub csi_drivers: Fetched<CSIDriver>,
    /// Nodes.
    pub nodes: Fetched<Node>,
    /// Karpenter's `karpenter.sh/v1` NodePools (empty when Karpenter is not installed).
    pub node_pools: Fetched<Value>,
}

/// What the job needs from the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirements {
    /// Worker nodes.
    pub nodes: usize,
    /// Allocatable `aws.amazon.com/neuron` per node.
    pub neuron_devices: i64,
    /// Allocatable `vpc.amazonaws.com/efa` per node.
    pub efa_interfaces: i64,
    /// The launcher gate the configuration forces; `None` lets the installed CRD decide.
    pub launcher_gate: Option<LauncherGate>,
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// A stable id: `mpi-operator-crd`, `mpi-operator-controller`, `launcher-gate`,
    /// `fsx-csi-driver`, `neuron-device-plugin`, `efa-device-plugin`, `trainium-nodes`,
    /// `karpenter-consolidation`.
    pub id: &'static str,
    /// Whether it passed (a warning passes: it does not stop deploy).
    pub passed: bool,
    /// Whether it passed with a warning: deploy goes on, but `fix` says what to change.
    pub warning: bool,
    /// What was found.
    pub detail: String,
    /// What to install or fix, for failures.
    pub fix: Option<String>,
}

impl Check {
    /// One line: `id: what was found — what to do`.
    pub fn line(&self) -> String {
        format!(
            "{}: {} — {}",
            self.id,
            self.detail,
            self.fix.as_deref().unwrap_or_default()
        )
    }

    fn pass(id: &'static str, detail: impl Into<String>) -> Self {
        Self {
            id,
            passed: true,
            warning: false,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(id: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            id,
            passed: true,
            warning: true,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(id: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            id,
            passed: false,
            warning: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, and what the cluster decides for the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preflight {
    /// The checks, in a fixed order.
    pub checks: Vec<Check>,
    /// The operator's version from its image tag (`0.5.0`), when the tag is a version.
    pub operator_version: Option<(u64, u64, u64)>,
    /// How the launcher must wait for the workers with this operator; `None` when the operator
    /// is missing.
    pub launcher_gate: Option<LauncherGate>,
    /// Why that gate was chosen.
    pub launcher_gate_reason: String,
    /// The embedded MPIJob CRD the installed one matches (which fields a job may carry);
    /// `None` when no usable CRD is installed.
    pub operator_crd: Option<OperatorCrd>,
}

impl Preflight {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.passed)
    }

    /// The checks that passed with a warning.
    pub fn warnings(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| check.warning)
    }
}

/// Parses a version out of an image reference's tag: `mpioperator/mpi-operator:0.5.0` and
/// `...:v0.5.0-rc.1` give `(0, 5, 0)`; `:master`, `:latest` and digests give `None`.
pub fn image_version(image: &str) -> Option<(u64, u64, u64)> {
    let without_digest = image.split('@').next()?;
    let last_segment = without_digest.rsplit('/').next()?;
    let (_, tag) = last_segment.split_once(':')?;
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let core = tag.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn is_operator_image(image: &str) -> bool {
    image.contains("mpi-operator")
}

fn containers_images(template: Option<&k8s_openapi::api::core::v1::PodSpec>) -> Vec<String> {
    template
        .map(|spec| {
            spec.containers
                .iter()
                .filter_map(|container| container.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The embedded CRD the installed one matches: what its `v2beta1` schema declares decides.
fn installed_crd(crd: &CustomResourceDefinition) -> OperatorCrd {
    serde_json::to_value(crd)
        .map(|value| OperatorCrd::matching(&value))
        .unwrap_or(OperatorCrd::V0_4_0)
}

fn ready_daemonset(
    daemonsets: &[DaemonSet],
    matches: impl Fn(&DaemonSet) -> bool,
) -> (Option<&DaemonSet>, i32) {
    let found: Vec<&DaemonSet> = daemonsets
        .iter()
        .filter(|daemonset| matches(daemonset))
        .collect();
    let ready = |daemonset: &DaemonSet| {
        daemonset
            .status
            .as_ref()
            .map_or(0, |status| status.number_ready)
    };
    let best = found
        .iter()
        .copied()
        .max_by_key(|daemonset| ready(daemonset));
    (best, best.map_or(0, ready))
}

fn daemonset_matches(daemonset: &DaemonSet, needle: &str) -> bool {
    let name = daemonset.metadata.name.as_deref().unwrap_or_default();
    let images = containers_images(
        daemonset
            .spec
            .as_ref()
            .and_then(|spec| spec.template.spec.as_ref()),
    );
    name.contains(needle) || images.iter().any(|image| image.contains(needle))
}

fn qualified(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        metadata.namespace.as_deref().unwrap_or_default(),
        metadata.name.as_deref().unwrap_or_default()
    )
}

fn allocatable(node: &Node, resource: &str) -> i64 {
    node.status
        .as_ref()
        .and_then(|status| status.allocatable.as_ref())
        .and_then(|allocatable| allocatable.get(resource))
        .and_then(|quantity| quantity.0.parse::<i64>().ok())
        .unwrap_or(0)
}

fn node_ready(node: &Node) -> bool {
    let schedulable = !node
        .spec
        .as_ref()
        .and_then(|spec| spec.unschedulable)
        .unwrap_or(false);
    let ready = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True")
        });
    schedulable && ready
}

/// What the operator checks decide.
struct Operator {
    version: Option<(u64, u64, u64)>,
    gate: Option<LauncherGate>,
    reason: String,
    crd: Option<OperatorCrd>,
}

fn operator_checks(facts: &ClusterFacts, checks: &mut Vec<Check>) -> Operator {
    let install = format!(
        "install the MPI Operator: kubectl apply --server-side -f https://raw.githubusercontent.com/kubeflow/mpi-operator/{MPI_OPERATOR_RELEASE}/deploy/v2beta1/mpi-operator.yaml"
    );
    let crd = match &facts.mpijob_crd {
        Err(reason) => {
            checks.push(Check::fail("mpi-operator-crd", format!("cannot read CRD {MPIJOB_CRD}: {reason}"), "grant this identity read access to customresourcedefinitions, or check the kube context"));
            None
        }
        Ok(crds) => match crds.first() {
            None => {
                checks.push(Check::fail(
                    "mpi-operator-crd",
                    format!("CRD {MPIJOB_CRD} is not installed"),
                    install.clone(),
                ));
                None
            }
            Some(crd)
                if !crd
                    .spec
                    .versions
                    .iter()
                    .any(|version| version.name == "v2beta1" && version.served) =>
            {
                let versions: Vec<&str> = crd
                    .spec
                    .versions
                    .iter()
                    .map(|version| version.name.as_str())
                    .collect();
                checks.push(Check::fail(
                    "mpi-operator-crd",
                    format!("CRD {MPIJOB_CRD} serves {versions:?}, not v2beta1 (the Kubeflow training-operator's kubeflow.org/v1 MPIJob?)"),
                    format!("the two MPIJob CRDs cannot coexist: remove the training-operator's MPIJob support, then {install}"),
                ));
                None
            }
            Some(crd) => {
                checks.push(Check::pass(
                    "mpi-operator-crd",
                    format!("CRD {MPIJOB_CRD} serves v2beta1"),
                ));
                Some(crd)
            }
        },
    };

    let mut version = None;
    match &facts.deployments {
        Err(reason) => checks.push(Check::fail("mpi-operator-controller", format!("cannot list deployments: {reason}"), "grant this identity list access to deployments in all namespaces, or check the kube context")),
        Ok(deployments) => {
            let controller = deployments.iter().find(|deployment| {
                let images = containers_images(deployment.spec.as_ref().and_then(|spec| spec.template.spec.as_ref()));
                deployment.metadata.name.as_deref() == Some("mpi-operator") || images.iter().any(|image| is_operator_image(image))
            });
            match controller {
                None => checks.push(Check::fail("mpi-operator-controller", "no mpi-operator Deployment found in any namespace", install.clone())),
                Some(deployment) => {
                    let name = qualified(&deployment.metadata);
                    let images = containers_images(deployment.spec.as_ref().and_then(|spec| spec.template.spec.as_ref()));
                    let image = images.iter().find(|image| is_operator_image(image)).or(images.first()).cloned().unwrap_or_default();
                    version = image_version(&image);
                    let available = deployment.status.as_ref().and_then(|status| status.available_replicas).unwrap_or(0);
                    if available > 0 {
                        checks.push(Check::pass("mpi-operator-controller", format!("Deployment {name} is available ({available} replica(s)), image {image}")));
                    } else {
                        let (namespace, short) = name.split_once('/').unwrap_or(("", &name));
                        checks.push(Check::fail(
                            "mpi-operator-controller",
                            format!("Deployment {name} has no available replica (image {image})"),
                            format!("see why: kubectl -n {namespace} describe deployment {short}; kubectl -n {namespace} logs deployment/{short}"),
                        ));
                    }
                }
            }
        }
    }

    // The installed CRD decides what a job may carry: an operator upgraded without its CRD
    // (or the blueprint's v0.4.0) refuses `launcherCreationPolicy`, whatever its image says.
    let found = crd.map(installed_crd);
    let (gate, reason) = match (version, found) {
        (_, None) => (None, "no usable MPIJob CRD".to_owned()),
        (Some(found), Some(OperatorCrd::V0_4_0)) if found >= (0, 5, 0) => (
            Some(LauncherGate::InitContainer),
            format!(
                "operator v{}.{}.{} runs with an older CRD that does not declare launcherCreationPolicy (the CRD was not upgraded); the launcher waits in an init container (to use WaitForWorkersReady, apply the CRD of the operator's release: kubectl apply --server-side -f https://raw.githubusercontent.com/kubeflow/mpi-operator/v{}.{}.{}/deploy/v2beta1/mpi-operator.yaml)",
                found.0, found.1, found.2, found.0, found.1, found.2
            ),
        ),
        (Some(found), Some(_)) if found >= (0, 5, 0) => (
            Some(LauncherGate::WaitForWorkersReady),
            format!("operator v{}.{}.{} and its CRD support launcherCreationPolicy: WaitForWorkersReady (v0.5.0+)", found.0, found.1, found.2),
        ),
        (Some(found), Some(_)) => (
            Some(LauncherGate::InitContainer),
            format!("operator v{}.{}.{} predates launcherCreationPolicy (v0.5.0); the launcher waits in an init container", found.0, found.1, found.2),
        ),
        (None, Some(OperatorCrd::V0_8_2)) => (
            Some(LauncherGate::WaitForWorkersReady),
            "the operator's image tag is not a version, but its CRD accepts launcherCreationPolicy".to_owned(),
        ),
        (None, Some(_)) => (
            Some(LauncherGate::InitContainer),
            "the operator's image tag is not a version and its CRD has no launcherCreationPolicy (pre-v0.5.0); the launcher waits in an init container".to_owned(),
        ),
    };
    Operator {
        version,
        gate,
        reason,
        crd: found,
    }
}

fn fsx_check(facts: &ClusterFacts) -> Check {
    let fix = "install the FSx for Lustre CSI driver (helm repo add aws-fsx-csi-driver https://kubernetes-sigs.github.io/aws-fsx-csi-driver; helm upgrade --install aws-fsx-csi-driver aws-fsx-csi-driver/aws-fsx-csi-driver -n kube-system --set 'node.tolerations[0].operator=Exists' so its node plugin also runs on tainted Trainium nodes)";
    if let Ok(drivers) = &facts.csi_drivers
        && drivers
            .iter()
            .any(|driver| driver.metadata.name.as_deref() == Some(FSX_CSI_DRIVER))
    {
        return Check::pass(
            "fsx-csi-driver",
            format!("CSIDriver {FSX_CSI_DRIVER} is registered"),
        );
    }
    match &facts.daemonsets {
        Ok(daemonsets) => match ready_daemonset(daemonsets, |daemonset| {
            daemonset_matches(daemonset, "fsx-csi")
        }) {
            (Some(daemonset), ready) if ready > 0 => Check::pass(
                "fsx-csi-driver",
                format!(
                    "DaemonSet {} has {ready} ready node plugin(s)",
                    qualified(&daemonset.metadata)
                ),
            ),
            (Some(daemonset), _) => Check::fail(
                "fsx-csi-driver",
                format!(
                    "DaemonSet {} has no ready pod",
                    qualified(&daemonset.metadata)
                ),
                format!(
                    "see why: kubectl -n {} describe daemonset {}",
                    daemonset.metadata.namespace.as_deref().unwrap_or_default(),
                    daemonset.metadata.name.as_deref().unwrap_or_default()
                ),
            ),
            (None, _) => Check::fail(
                "fsx-csi-driver",
                format!("neither CSIDriver {FSX_CSI_DRIVER} nor an fsx-csi DaemonSet was found"),
                fix,
            ),
        },
        Err(reason) => Check::fail(
            "fsx-csi-driver",
            format!(
                "CSIDriver {FSX_CSI_DRIVER} not found and daemonsets cannot be listed: {reason}"
            ),
            fix,
        ),
    }
}

fn plugin_check(
    facts: &ClusterFacts,
    id: &'static str,
    needle: &str,
    what: &str,
    fix: &str,
) -> Check {
    match &facts.daemonsets {
        Err(reason) => Check::fail(
            id,
            format!("cannot list daemonsets: {reason}"),
            "grant this identity list access to daemonsets in all namespaces, or check the kube context",
        ),
        Ok(daemonsets) => {
            match ready_daemonset(daemonsets, |daemonset| daemonset_matches(daemonset, needle)) {
                (Some(daemonset), ready) if ready > 0 => Check::pass(
                    id,
                    format!(
                        "{what} DaemonSet {} has {ready} ready pod(s)",
                        qualified(&daemonset.metadata)
                    ),
                ),
                (Some(daemonset), _) => Check::fail(
                    id,
                    format!(
                        "{what} DaemonSet {} has no ready pod",
                        qualified(&daemonset.metadata)
                    ),
                    format!(
                        "check that it tolerates the Trainium nodes' taints and selects trn1 instance types: kubectl -n {} describe daemonset {}",
                        daemonset.metadata.namespace.as_deref().unwrap_or_default(),
                        daemonset.metadata.name.as_deref().unwrap_or_default()
                    ),
                ),
                (None, _) => Check::fail(id, format!("no {what} DaemonSet found"), fix),
            }
        }
    }
}

fn nodes_check(facts: &ClusterFacts, requirements: &Requirements) -> Check {
    let id = "trainium-nodes";
    let nodes = match &facts.nodes {
        Err(reason) => {
            return Check::fail(
                id,
                format!("cannot list nodes: {reason}"),
                "grant this identity list access to nodes, or check the kube context",
            );
        }
        Ok(nodes) => nodes,
    };
    let mut fit = Vec::new();
    let mut short = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let neuron = allocatable(node, NEURON_RESOURCE);
        let efa = allocatable(node, EFA_RESOURCE);
        if neuron == 0 && efa == 0 {
            continue;
        }
        if !node_ready(node) {
            short.push(format!("{name} is not Ready or is cordoned"));
        } else if neuron < requirements.neuron_devices || efa < requirements.efa_interfaces {
            short.push(format!(
                "{name} has {neuron} {NEURON_RESOURCE} and {efa} {EFA_RESOURCE}"
            ));
        } else {
            fit.push(name);
        }
    }
    let need = format!(
        "{} {NEURON_RESOURCE} and {} {EFA_RESOURCE} allocatable",
        requirements.neuron_devices, requirements.efa_interfaces
    );
    let mut detail = format!(
        "{} of {} required node(s) are Ready with {need}",
        fit.len(),
        requirements.nodes
    );
    if !fit.is_empty() {
        detail.push_str(&format!(": {}", fit.join(", ")));
    }
    if !short.is_empty() {
        detail.push_str(&format!("; {}", short.join("; ")));
    }
    if fit.len() >= requirements.nodes {
        Check::pass(id, detail)
    } else {
        Check::fail(
            id,
            detail,
            format!(
                "scale the trn1.32xlarge node group to at least {} nodes (aws eks update-nodegroup-config --scaling-config desiredSize={}); nodes that show no {NEURON_RESOURCE} or {EFA_RESOURCE} need the Neuron and EFA device plugins running on them",
                requirements.nodes, requirements.nodes
            ),
        )
    }
}

/// Turns fetched facts into checks and the launcher gate. Pure.
pub fn evaluate(facts: &ClusterFacts, requirements: &Requirements) -> Preflight {
    let mut checks = Vec::new();
    let operator = operator_checks(facts, &mut checks);
    if requirements.launcher_gate == Some(LauncherGate::WaitForWorkersReady)
        && operator.crd == Some(OperatorCrd::V0_4_0)
    {
        // Found now rather than when the compile job is applied, hours later.
        checks.push(Check::fail(
            "launcher-gate",
            format!("[training] launcher_gate = \"wait-for-workers-ready\", but the installed CRD {MPIJOB_CRD} does not declare launcherCreationPolicy (MPI Operator before v0.5.0), and the API server refuses a job that carries it"),
            format!("set [training] launcher_gate = \"auto\" or \"init-container\", or upgrade the operator and its CRD: kubectl apply --server-side -f https://raw.githubusercontent.com/kubeflow/mpi-operator/{MPI_OPERATOR_RELEASE}/deploy/v2beta1/mpi-operator.yaml"),
        ));
    }
    checks.push(fsx_check(facts));
    checks.push(plugin_check(
        facts,
        "neuron-device-plugin",
        "neuron-device-plugin",
        "Neuron device plugin",
        "install the Neuron device plugin: helm upgrade --install neuron-helm-chart oci://public.ecr.aws/neuron/neuron-helm-chart -n kube-system (it must tolerate the aws.amazon.com/neuron taint)",
    ));
    checks.push(plugin_check(
        facts,
        "efa-device-plugin",
        "efa-k8s-device-plugin",
        "EFA device plugin",
        "install the EFA device plugin: helm repo add eks https://aws.github.io/eks-charts; helm upgrade --install aws-efa-k8s-device-plugin eks/aws-efa-k8s-device-plugin -n kube-system --set 'tolerations[0].operator=Exists'",
    ));
    checks.push(nodes_check(facts, requirements));
    if let Some(check) = consolidation_check(facts) {
        checks.push(check);
    }
    Preflight {
        checks,
        operator_version: operator.version,
        launcher_gate: operator.gate,
        launcher_gate_reason: operator.reason,
        operator_crd: operator.crd,
    }
}

/// Whether a Karpenter NodePool provisions Trainium nodes: it requires a `trn*` instance type
/// or family, taints `aws.amazon.com/neuron`, or is named for Trainium or Neuron.
fn is_neuron_pool(pool: &Value) -> bool {
    let name = pool
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    let requires_trainium = pool
        .pointer("/spec/template/spec/requirements")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|requirement| requirement.get("values").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .any(|value| value.starts_with("trn"));
    let neuron_taint = pool
        .pointer("/spec/template/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|taint| taint.get("key").and_then(Value::as_str) == Some(NEURON_RESOURCE));
    requires_trainium
        || neuron_taint
        || ["trainium", "neuron", "trn1", "trn2"]
            .iter()
            .any(|word| name.contains(word))
}

/// Whether a disruption budget stops consolidation at all times: `nodes: "0"` (or `0%`) with no
/// schedule, for every reason or for `Underutilized`.
fn blocks_consolidation(budget: &Value) -> bool {
    let nodes = budget
        .get("nodes")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let always = budget.get("schedule").is_none();
    let reasons = budget.get("reasons").and_then(Value::as_array);
    let underutilized = reasons.is_none_or(|reasons| {
        reasons
            .iter()
            .any(|reason| reason.as_str() == Some("Underutilized"))
    });
    matches!(nodes, "0" | "0%") && always && underutilized
}

/// A warning when a Karpenter NodePool of Trainium nodes may consolidate them:
/// `consolidationPolicy: WhenEmptyOrUnderutilized` (Karpenter v1's default) without a budget
/// that stops it. Consolidation evicts running workers, and one evicted worker fails the MPIJob.
/// `None` when no such pool is listed (or NodePools cannot be read).
fn consolidation_check(facts: &ClusterFacts) -> Option<Check> {
    let id = "karpenter-consolidation";
    let pools = facts.node_pools.as_ref().ok()?;
    let neuron: Vec<&Value> = pools.iter().filter(|pool| is_neuron_pool(pool)).collect();
    if neuron.is_empty() {
        return None;
    }
    let consolidating: Vec<String> = neuron
        .iter()
        .filter(|pool| {
            let disruption = pool.pointer("/spec/disruption");
            let policy = disruption
                .and_then(|disruption| disruption.get("consolidationPolicy"))
                .and_then(Value::as_str)
                .unwrap_or("WhenEmptyOrUnderutilized");
            let budgeted = disruption
                .and_then(|disruption| disruption.get("budgets"))
                .and_then(Value::as_array)
                .is_some_and(|budgets| budgets.iter().any(blocks_consolidation));
            policy == "WhenEmptyOrUnderutilized" && !budgeted
        })
        .map(|pool| {
            pool.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let names = |pools: &[&Value]| {
        pools
            .iter()
            .filter_map(|pool| pool.pointer("/metadata/name").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if consolidating.is_empty() {
        return Some(Check::pass(
            id,
            format!(
                "Karpenter NodePool(s) {} do not consolidate underutilized Trainium nodes",
                names(&neuron)
            ),
        ));
    }
    Some(Check::warn(
        id,
        format!(
            "Karpenter NodePool(s) {} may consolidate Trainium nodes (consolidationPolicy: WhenEmptyOrUnderutilized, no budget with nodes: \"0\"); an evicted worker fails the MPIJob",
            consolidating.join(", ")
        ),
        format!(
            "keep [training] do_not_disrupt = true (the pods then carry {}: \"true\"), and set spec.disruption.consolidationPolicy: WhenEmpty or add the budget {{nodes: \"0\", reasons: [Underutilized]}} to the NodePool",
            mpijob::builder::DO_NOT_DISRUPT_ANNOTATION
        ),
    ))
}

fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.reason, status.message),
        other => other.to_string(),
    }
}

/// Karpenter's NodePools; none when the cluster does not serve `karpenter.sh/v1` NodePools.
async fn node_pools(client: &kube::Client) -> Fetched<Value> {
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "nodepools");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .map(|pool| serde_json::to_value(pool).map_err(|error| error.to_string()))
            .collect(),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(Vec::new()),
        Err(error) => Err(reason(&error)),
    }
}

/// Reads what [`evaluate`] needs. A list that cannot be read (RBAC, a kind not served) becomes
/// that check's failure rather than an error, so one run reports every problem.
pub async fn fetch_facts(client: &kube::Client) -> ClusterFacts {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mpijob_crd = match crds.get_opt(MPIJOB_CRD).await {
        Ok(found) => Ok(found.into_iter().collect()),
        Err(error) => Err(reason(&error)),
    };
    async fn list<K>(client: &kube::Client) -> Fetched<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api = Api::<K>::all(client.clone());
        api.list(&ListParams::default())
            .await
            .map(|list| list.items)
            .map_err(|error| reason(&error))
    }
    ClusterFacts {
        mpijob_crd,
        deployments: list::<Deployment>(client).await,
        daemonsets: list::<DaemonSet>(client).await,
        csi_drivers: list::<CSIDriver>(client).await,
        nodes: list::<Node>(client).await,
        node_pools: node_pools(client).await,
    }
}
