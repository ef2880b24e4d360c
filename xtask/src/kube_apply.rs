//! Kubernetes IO of the deploy workflow: server-side apply of rendered objects in dependency
//! order, and the cluster preflight (MPI Operator, FSx CSI driver, device plugins, Trainium
//! nodes).
//!
//! The decisions are pure functions: [`apply_rank`] orders objects, [`resolve_static`] maps a kind
//! to its REST resource, and [`evaluate`] turns fetched [`ClusterFacts`] into [`Preflight`] checks,
//! each failure saying what to install or fix. The IO ([`apply_all`], [`delete_all`],
//! [`fetch_facts`]) is thin and takes a `kube::Client`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSIDriver;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use mpijob::LauncherGate;
use serde_json::Value;

/// What went wrong while applying or reading cluster objects.
#[derive(Debug, thiserror::Error)]
pub enum KubeApplyError {
    /// A rendered object lacks `apiVersion`, `kind` or `metadata.name`.
    #[error(
        "rendered object #{index} has no {field}; every manifest needs apiVersion, kind and metadata.name"
    )]
    MissingField {
        /// Position in the input.
        index: usize,
        /// The missing field.
        field: &'static str,
    },
    /// The cluster does not serve the object's kind.
    #[error(
        "the cluster does not serve {api_version} {kind} (needed by {name}); install the CRD or operator that provides it"
    )]
    UnknownKind {
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
        /// The object's name.
        name: String,
        /// The discovery error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Reading the object before applying it failed.
    #[error("cannot read {kind} {name} before applying it")]
    Get {
        /// `kind`.
        kind: String,
        /// `namespace/name` or `name`.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The server-side apply was refused.
    #[error("cannot apply {kind} {name}; the server's reason follows")]
    Apply {
        /// `kind`.
        kind: String,
        /// `namespace/name` or `name`.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A delete failed (other than the object being absent).
    #[error("cannot delete {kind} {name}")]
    Delete {
        /// `kind`.
        kind: String,
        /// `namespace/name` or `name`.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
}

/// The order in which kinds are applied: what others depend on comes first.
///
/// Namespaces, then CRDs, then other cluster-scoped objects (storage classes, volumes, RBAC),
/// then service accounts and namespaced RBAC, secrets and config maps, claims, services,
/// workloads, and last custom resources such as MPIJobs (whose CRD must exist and whose pods
/// mount the claims and secrets above).
pub fn apply_rank(api_version: &str, kind: &str) -> u8 {
    match (api_version, kind) {
        ("v1", "Namespace") => 0,
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => 1,
        (
            _,
            "StorageClass" | "CSIDriver" | "PersistentVolume" | "ClusterRole"
            | "ClusterRoleBinding" | "PriorityClass",
        ) => 2,
        (_, "ServiceAccount" | "Role" | "RoleBinding") => 3,
        ("v1", "Secret" | "ConfigMap") => 4,
        ("v1", "PersistentVolumeClaim") => 5,
        ("v1", "Service") => 6,
        ("apps/v1", "Deployment" | "DaemonSet" | "StatefulSet")
        | ("batch/v1", "Job")
        | ("v1", "Pod") => 7,
        _ => 8,
    }
}

/// The REST resource and scope of the kinds trnkit renders, without asking the cluster.
pub fn resolve_static(api_version: &str, kind: &str) -> Option<(ApiResource, Scope)> {
    use Scope::{Cluster, Namespaced};
    let (plural, scope) = match (api_version, kind) {
        ("v1", "Namespace") => ("namespaces", Cluster),
        ("v1", "Node") => ("nodes", Cluster),
        ("v1", "PersistentVolume") => ("persistentvolumes", Cluster),
        ("v1", "PersistentVolumeClaim") => ("persistentvolumeclaims", Namespaced),
        ("v1", "Pod") => ("pods", Namespaced),
        ("v1", "Service") => ("services", Namespaced),
        ("v1", "ServiceAccount") => ("serviceaccounts", Namespaced),
        ("v1", "ConfigMap") => ("configmaps", Namespaced),
        ("v1", "Secret") => ("secrets", Namespaced),
        ("apps/v1", "Deployment") => ("deployments", Namespaced),
        ("apps/v1", "DaemonSet") => ("daemonsets", Namespaced),
        ("apps/v1", "StatefulSet") => ("statefulsets", Namespaced),
        ("batch/v1", "Job") => ("jobs", Namespaced),
        ("storage.k8s.io/v1", "StorageClass") => ("storageclasses", Cluster),
        ("storage.k8s.io/v1", "CSIDriver") => ("csidrivers", Cluster),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            ("customresourcedefinitions", Cluster)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => ("roles", Namespaced),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => ("rolebindings", Namespaced),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => ("clusterroles", Cluster),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => ("clusterrolebindings", Cluster),
        ("kubeflow.org/v2beta1", "MPIJob") => ("mpijobs", Namespaced),
        _ => return None,
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some((ApiResource::from_gvk_with_plural(&gvk, plural), scope))
}

/// One object to apply, read from a rendered manifest.
#[derive(Clone, Debug)]
struct Target {
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    object: Value,
}

fn target(index: usize, object: &Value) -> Result<Target, KubeApplyError> {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    let missing = |field| KubeApplyError::MissingField { index, field };
    Ok(Target {
        api_version: text("/apiVersion").ok_or(missing("apiVersion"))?.to_owned(),
        kind: text("/kind").ok_or(missing("kind"))?.to_owned(),
        name: text("/metadata/name")
            .ok_or(missing("metadata.name"))?
            .to_owned(),
        namespace: text("/metadata/namespace").map(str::to_owned),
        object: object.clone(),
    })
}

/// What an apply did, as `kubectl apply` words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The object did not exist.
    Created,
    /// The object existed and changed.
    Configured,
    /// The object existed and the apply changed nothing (its `resourceVersion` is unchanged).
    Unchanged,
}

/// One applied object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// `kind`.
    pub kind: String,
    /// The namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// What the apply did.
    pub outcome: ApplyOutcome,
    /// `metadata.uid` as stored.
    pub uid: Option<String>,
}

impl Applied {
    /// `kind namespace/name`, for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

struct Resolved {
    target: Target,
    resource: ApiResource,
    scope: Scope,
}

async fn resolve(
    client: &kube::Client,
    objects: &[Value],
    default_namespace: &str,
) -> Result<Vec<Resolved>, KubeApplyError> {
    let mut discovered: BTreeMap<(String, String), (ApiResource, Scope)> = BTreeMap::new();
    let mut resolved = Vec::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        let mut target = target(index, object)?;
        let key = (target.api_version.clone(), target.kind.clone());
        let (resource, scope) = match resolve_static(&target.api_version, &target.kind) {
            Some(found) => found,
            None => match discovered.get(&key) {
                Some(found) => found.clone(),
                None => {
                    let (group, version) = target
                        .api_version
                        .split_once('/')
                        .unwrap_or(("", &target.api_version));
                    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
                    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
                        .await
                        .map_err(|source| KubeApplyError::UnknownKind {
                            api_version: target.api_version.clone(),
                            kind: target.kind.clone(),
                            name: target.name.clone(),
                            source: Box::new(source),
                        })?;
                    discovered.insert(key, (resource.clone(), capabilities.scope.clone()));
                    (resource, capabilities.scope)
                }
            },
        };
        if scope == Scope::Namespaced && target.namespace.is_none() {
            target.namespace = Some(default_namespace.to_owned());
            target.object["metadata"]["namespace"] = Value::String(default_namespace.to_owned());
        }
        if scope == Scope::Cluster {
            target.namespace = None;
        }
        resolved.push(Resolved {
            target,
            resource,
            scope,
        });
    }
    resolved
        .sort_by_key(|resolved| apply_rank(&resolved.target.api_version, &resolved.target.kind));
    Ok(resolved)
}

fn api_for(client: &kube::Client, resolved: &Resolved) -> Api<DynamicObject> {
    match (&resolved.scope, &resolved.target.namespace) {
        (Scope::Namespaced, Some(namespace)) => {
            Api::namespaced_with(client.clone(), namespace, &resolved.resource)
        }
        _ => Api::all_with(client.clone(), &resolved.resource),
    }
}

fn display_name(target: &Target) -> String {
    match &target.namespace {
        Some(namespace) => format!("{namespace}/{}", target.name),
        None => target.name.clone(),
    }
}

/// Applies every object by server-side apply with `field_manager` (forcing ownership: trnkit is
/// the author of what it renders), in [`apply_rank`] order (stable for equal ranks). Namespaced
/// objects without a namespace go to `default_namespace`. Kinds outside [`resolve_static`] are
/// looked up by discovery. Stops at the first refusal.
pub async fn apply_all(
    client: &kube::Client,
    objects: &[Value],
    default_namespace: &str,
    field_manager: &str,
) -> Result<Vec<Applied>, KubeApplyError> {
    let params = PatchParams::apply(field_manager).force();
    let mut applied = Vec::with_capacity(objects.len());
    for resolved in resolve(client, objects, default_namespace).await? {
        let api = api_for(client, &resolved);
        let target = &resolved.target;
        let name = display_name(target);
        let before = api
            .get_opt(&target.name)
            .await
            .map_err(|source| KubeApplyError::Get {
                kind: target.kind.clone(),
                name: name.clone(),
                source: Box::new(source),
            })?;
        tracing::debug!(kind = target.kind, name, "server-side apply");
        let after = api
            .patch(&target.name, &params, &Patch::Apply(&target.object))
            .await
            .map_err(|source| KubeApplyError::Apply {
                kind: target.kind.clone(),
                name: name.clone(),
                source: Box::new(source),
            })?;
        let outcome = match before {
            None => ApplyOutcome::Created,
            Some(before) if before.metadata.resource_version == after.metadata.resource_version => {
                ApplyOutcome::Unchanged
            }
            Some(_) => ApplyOutcome::Configured,
        };
        applied.push(Applied {
            kind: target.kind.clone(),
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            outcome,
            uid: after.metadata.uid,
        });
    }
    Ok(applied)
}

/// Deletes every object, in the reverse of the apply order (custom resources and workloads first,
/// namespaces last), in the background (owners' dependents go with them). Returns the objects
/// that existed; absent ones are skipped.
pub async fn delete_all(
    client: &kube::Client,
    objects: &[Value],
    default_namespace: &str,
) -> Result<Vec<String>, KubeApplyError> {
    let mut resolved = resolve(client, objects, default_namespace).await?;
    resolved.reverse();
    let mut deleted = Vec::new();
    for resolved in resolved {
        let api = api_for(client, &resolved);
        let target = &resolved.target;
        let name = display_name(target);
        match api.delete(&target.name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(format!("{} {name}", target.kind)),
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => {
                return Err(KubeApplyError::Delete {
                    kind: target.kind.clone(),
                    name,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(deleted)
}

// ---------------------------------------------------------------------------------------------
// Preflight.

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
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// A stable id: `mpi-operator-crd`, `mpi-operator-controller`, `fsx-csi-driver`,
    /// `neuron-device-plugin`, `efa-device-plugin`, `trainium-nodes`.
    pub id: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was found.
    pub detail: String,
    /// What to install or fix, for failures.
    pub fix: Option<String>,
}

impl Check {
    fn pass(id: &'static str, detail: impl Into<String>) -> Self {
        Self {
            id,
            passed: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(id: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            id,
            passed: false,
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

fn crd_schema_has_launcher_policy(crd: &CustomResourceDefinition) -> bool {
    crd.spec
        .versions
        .iter()
        .filter(|version| version.name == "v2beta1")
        .any(|version| {
            version
                .schema
                .as_ref()
                .and_then(|schema| schema.open_api_v3_schema.as_ref())
                .and_then(|schema| schema.properties.as_ref())
                .and_then(|properties| properties.get("spec"))
                .and_then(|spec| spec.properties.as_ref())
                .is_some_and(|spec| spec.contains_key("launcherCreationPolicy"))
        })
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

fn operator_checks(
    facts: &ClusterFacts,
    checks: &mut Vec<Check>,
) -> (Option<(u64, u64, u64)>, Option<LauncherGate>, String) {
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

    let (gate, reason) = match (version, crd) {
        (_, None) => (None, "no usable MPIJob CRD".to_owned()),
        (Some(found), Some(_)) if found >= (0, 5, 0) => (
            Some(LauncherGate::WaitForWorkersReady),
            format!("operator v{}.{}.{} supports launcherCreationPolicy: WaitForWorkersReady (v0.5.0+)", found.0, found.1, found.2),
        ),
        (Some(found), Some(_)) => (
            Some(LauncherGate::InitContainer),
            format!("operator v{}.{}.{} predates launcherCreationPolicy (v0.5.0); the launcher waits in an init container", found.0, found.1, found.2),
        ),
        (None, Some(crd)) if crd_schema_has_launcher_policy(crd) => (
            Some(LauncherGate::WaitForWorkersReady),
            "the operator's image tag is not a version, but its CRD accepts launcherCreationPolicy".to_owned(),
        ),
        (None, Some(_)) => (
            Some(LauncherGate::InitContainer),
            "the operator's image tag is not a version and its CRD has no launcherCreationPolicy (pre-v0.5.0); the launcher waits in an init container".to_owned(),
        ),
    };
    (version, gate, reason)
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
    let (operator_version, launcher_gate, launcher_gate_reason) =
        operator_checks(facts, &mut checks);
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
    Preflight {
        checks,
        operator_version,
        launcher_gate,
        launcher_gate_reason,
    }
}

fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.reason, status.message),
        other => other.to_string(),
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
    }
}
