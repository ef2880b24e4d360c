//! Server-side apply of rendered objects in dependency order, and their deletion in reverse.
//!
//! The decisions are pure functions: [`apply_rank`] orders objects and [`resolve_static`] maps a
//! kind to its REST resource. The IO ([`apply_all`], [`delete_all`]) is thin and takes a
//! `kube::Client`.

use std::collections::BTreeMap;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
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
