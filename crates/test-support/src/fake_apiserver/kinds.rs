//! The kinds the FAKE API server serves: group, version, kind, plural, scope.
//!
//! The table is static and small on purpose: it lists the kinds trnkit reads or writes. A test
//! that needs another kind registers it with [`super::FakeApiServerBuilder::kind`].

/// One served kind, as discovery describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// API version inside the group (`v1`, `v2beta1`).
    pub version: String,
    /// `kind` (`Pod`, `MPIJob`).
    pub kind: String,
    /// URL plural (`pods`, `mpijobs`).
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether writes to the main resource ignore `status` (a `status` subresource exists).
    pub status_subresource: bool,
}

impl KindInfo {
    /// A kind served by the FAKE server.
    pub fn new(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        status_subresource: bool,
    ) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
            status_subresource,
        }
    }

    /// `apiVersion` as objects carry it (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL prefix of the group version (`/api/v1`, `/apis/apps/v1`).
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The singular discovery name: the lowercased kind.
    pub fn singular(&self) -> String {
        self.kind.to_lowercase()
    }
}

/// The kinds served unless a test registers more.
pub fn default_kinds() -> Vec<KindInfo> {
    let k = KindInfo::new;
    vec![
        k("", "v1", "Pod", "pods", true, true),
        k("", "v1", "Service", "services", true, true),
        k("", "v1", "ConfigMap", "configmaps", true, false),
        k("", "v1", "Secret", "secrets", true, false),
        k("", "v1", "ServiceAccount", "serviceaccounts", true, false),
        k("", "v1", "Event", "events", true, false),
        k(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            true,
        ),
        k(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            true,
        ),
        k("", "v1", "Node", "nodes", false, true),
        k("", "v1", "Namespace", "namespaces", false, true),
        k("apps", "v1", "Deployment", "deployments", true, true),
        k("apps", "v1", "DaemonSet", "daemonsets", true, true),
        k("apps", "v1", "StatefulSet", "statefulsets", true, true),
        k("batch", "v1", "Job", "jobs", true, true),
        k(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            false,
            false,
        ),
        k(
            "storage.k8s.io",
            "v1",
            "CSIDriver",
            "csidrivers",
            false,
            false,
        ),
        k(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            true,
        ),
        k("kubeflow.org", "v2beta1", "MPIJob", "mpijobs", true, true),
    ]
}
