//! `apply_all` and `delete_all` against the FAKE API server: one server-side apply per object, in
//! dependency order, reported as created, configured or unchanged.

use serde_json::{Value, json};
use test_support::fake_apiserver::{FakeApiServer, KindInfo};
use xtask::kube::apply::{ApplyOutcome, KubeApplyError, apply_all, delete_all};

const MANAGER: &str = "trnkit";
const NS: &str = "trnkit";

fn object(api_version: &str, kind: &str, name: &str, extra: Value) -> Value {
    let mut object =
        json!({ "apiVersion": api_version, "kind": kind, "metadata": { "name": name } });
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            object[key] = value;
        }
    }
    object
}

fn namespaced(mut value: Value) -> Value {
    value["metadata"]["namespace"] = json!(NS);
    value
}

/// Every kind the deploy workflow renders, deliberately out of order.
fn bundle() -> Vec<Value> {
    let template = json!({ "metadata": { "labels": { "app": "x" } }, "spec": { "containers": [{ "name": "x", "image": "x:1" }] } });
    vec![
        namespaced(object(
            "kubeflow.org/v2beta1",
            "MPIJob",
            "llama",
            json!({ "spec": { "slotsPerWorker": 1, "mpiReplicaSpecs": {} } }),
        )),
        namespaced(object(
            "apps/v1",
            "Deployment",
            "tensorboard",
            json!({ "spec": { "selector": { "matchLabels": { "app": "x" } }, "template": template } }),
        )),
        namespaced(object(
            "batch/v1",
            "Job",
            "stage-data",
            json!({ "spec": { "template": template } }),
        )),
        namespaced(object(
            "v1",
            "Service",
            "tensorboard",
            json!({ "spec": { "ports": [{ "port": 80 }] } }),
        )),
        namespaced(object(
            "v1",
            "PersistentVolumeClaim",
            "fsx-claim",
            json!({ "spec": { "volumeName": "fsx-pv", "storageClassName": "" } }),
        )),
        namespaced(object(
            "v1",
            "ConfigMap",
            "trnkit-state",
            json!({ "data": { "step": "images" } }),
        )),
        namespaced(object(
            "v1",
            "Secret",
            "hf-token",
            json!({ "type": "Opaque", "stringData": { "token": "redacted-in-tests" } }),
        )),
        namespaced(object(
            "apps/v1",
            "DaemonSet",
            "warmup",
            json!({ "spec": { "selector": { "matchLabels": { "app": "x" } }, "template": template } }),
        )),
        object(
            "v1",
            "PersistentVolume",
            "fsx-pv",
            json!({ "spec": { "capacity": { "storage": "1200Gi" } } }),
        ),
        object(
            "storage.k8s.io/v1",
            "StorageClass",
            "fsx",
            json!({ "provisioner": "fsx.csi.aws.com" }),
        ),
        object(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "widgets.example.com",
            json!({ "spec": { "group": "example.com" } }),
        ),
        object("v1", "Namespace", NS, json!({})),
    ]
}

#[tokio::test]
async fn every_kind_is_server_side_applied_in_dependency_order() {
    let fake = FakeApiServer::start().await;
    let applied = apply_all(&fake.client(), &bundle(), "default", MANAGER)
        .await
        .unwrap();

    let kinds: Vec<&str> = applied
        .iter()
        .map(|applied| applied.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "PersistentVolume",
            "StorageClass",
            "ConfigMap",
            "Secret",
            "PersistentVolumeClaim",
            "Service",
            "Deployment",
            "Job",
            "DaemonSet",
            "MPIJob",
        ]
    );
    assert!(
        applied
            .iter()
            .all(|applied| applied.outcome == ApplyOutcome::Created && applied.uid.is_some())
    );

    let patches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|request| request.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 12);
    for patch in &patches {
        assert!(
            patch.is_apply(),
            "{} is not a server-side apply: {:?}",
            patch.path,
            patch.content_type
        );
        assert_eq!(patch.query("fieldManager"), Some(MANAGER), "{}", patch.path);
        assert_eq!(patch.query("force"), Some("true"), "{}", patch.path);
    }
    let paths: Vec<&str> = patches.iter().map(|patch| patch.path.as_str()).collect();
    assert_eq!(paths[0], "/api/v1/namespaces/trnkit");
    assert_eq!(
        paths[1],
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    );
    assert_eq!(
        paths[6],
        "/api/v1/namespaces/trnkit/persistentvolumeclaims/fsx-claim"
    );
    assert_eq!(
        paths[11],
        "/apis/kubeflow.org/v2beta1/namespaces/trnkit/mpijobs/llama"
    );
    assert!(fake.get_value("v1", "Secret", NS, "hf-token").is_some());
}

#[tokio::test]
async fn reapplying_is_unchanged_and_a_changed_object_is_configured() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    apply_all(&client, &bundle(), "default", MANAGER)
        .await
        .unwrap();
    let version = fake.resource_version();

    let again = apply_all(&client, &bundle(), "default", MANAGER)
        .await
        .unwrap();
    assert!(
        again
            .iter()
            .all(|applied| applied.outcome == ApplyOutcome::Unchanged),
        "{again:?}"
    );
    assert_eq!(
        fake.resource_version(),
        version,
        "an idempotent re-apply writes nothing"
    );

    let mut changed = bundle();
    changed[5]["data"]["step"] = json!("storage");
    let third = apply_all(&client, &changed, "default", MANAGER)
        .await
        .unwrap();
    let configured: Vec<String> = third
        .iter()
        .filter(|applied| applied.outcome == ApplyOutcome::Configured)
        .map(|applied| applied.describe())
        .collect();
    assert_eq!(configured, ["ConfigMap trnkit/trnkit-state"]);
    assert_eq!(
        fake.get_value("v1", "ConfigMap", NS, "trnkit-state")
            .unwrap()["data"]["step"],
        "storage"
    );
}

#[tokio::test]
async fn objects_without_a_namespace_go_to_the_default_one() {
    let fake = FakeApiServer::start().await;
    let objects = [
        object("v1", "ConfigMap", "settings", json!({})),
        object("storage.k8s.io/v1", "StorageClass", "fsx", json!({})),
    ];
    let applied = apply_all(&fake.client(), &objects, "kube-public", MANAGER)
        .await
        .unwrap();
    assert_eq!(applied[0].describe(), "StorageClass fsx");
    assert_eq!(applied[1].describe(), "ConfigMap kube-public/settings");
    assert!(
        fake.get_value("v1", "ConfigMap", "kube-public", "settings")
            .is_some()
    );
}

#[tokio::test]
async fn kinds_outside_the_table_are_found_by_discovery() {
    let fake = FakeApiServer::builder()
        .kind(KindInfo::new(
            "example.com",
            "v1",
            "Widget",
            "widgets",
            true,
            false,
        ))
        .start()
        .await;
    let applied = apply_all(
        &fake.client(),
        &[object(
            "example.com/v1",
            "Widget",
            "w",
            json!({ "spec": {} }),
        )],
        "default",
        MANAGER,
    )
    .await
    .unwrap();
    assert_eq!(applied[0].describe(), "Widget default/w");
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|request| request.path == "/apis/example.com/v1"),
        "discovery asked for the group version"
    );
    assert!(requests.iter().any(|request| request.is_apply()
        && request.path == "/apis/example.com/v1/namespaces/default/widgets/w"));

    let error = apply_all(
        &fake.client(),
        &[object("nowhere.io/v1", "Gadget", "g", json!({}))],
        "default",
        MANAGER,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, KubeApplyError::UnknownKind { kind, .. } if kind == "Gadget"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_refused_apply_names_the_object_and_stops() {
    let fake = FakeApiServer::start().await;
    // No Namespace object: the real server (and the FAKE) refuses objects in a missing namespace.
    let objects = [
        namespaced(object("v1", "ConfigMap", "a", json!({}))),
        namespaced(object("v1", "Service", "b", json!({}))),
    ];
    let error = apply_all(&fake.client(), &objects, "default", MANAGER)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, KubeApplyError::Apply { kind, name, .. } if kind == "ConfigMap" && name == "trnkit/a"),
        "{error:?}"
    );
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|request| request.is_apply())
            .count(),
        1,
        "stops at the first refusal"
    );

    let error = apply_all(
        &fake.client(),
        &[json!({ "apiVersion": "v1", "kind": "ConfigMap" })],
        "default",
        MANAGER,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            KubeApplyError::MissingField {
                index: 0,
                field: "metadata.name"
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn delete_all_goes_in_reverse_order_and_skips_absent_objects() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let objects = bundle();
    apply_all(&client, &objects, "default", MANAGER)
        .await
        .unwrap();
    fake.clear_requests();
    let deleted = delete_all(&client, &objects, "default").await.unwrap();
    // Deleting the namespace first would take its contents; the reverse order deletes them one by one.
    assert_eq!(
        deleted.first().map(String::as_str),
        Some("MPIJob trnkit/llama")
    );
    assert_eq!(deleted.last().map(String::as_str), Some("Namespace trnkit"));
    assert_eq!(deleted.len(), 12);
    assert!(
        delete_all(&client, &objects, "default")
            .await
            .unwrap()
            .is_empty()
    );
}

/// What the real server refuses reaches the user through `KubeApplyError::Apply` with the
/// server's words: a changed StorageClass parameter (immutable), an MPIJob field the installed
/// CRD does not declare.
#[tokio::test]
async fn the_servers_refusals_name_the_object_and_the_field() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let class = |deployment_type: &str| {
        object(
            "storage.k8s.io/v1",
            "StorageClass",
            "fsx",
            json!({ "provisioner": "fsx.csi.aws.com", "parameters": { "deploymentType": deployment_type } }),
        )
    };
    apply_all(&client, &[class("PERSISTENT_2")], "default", MANAGER)
        .await
        .unwrap();
    let error = apply_all(&client, &[class("SCRATCH_2")], "default", MANAGER)
        .await
        .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert!(
        chain.starts_with("cannot apply StorageClass fsx")
            && chain.contains("parameters: Forbidden: updates to parameters are forbidden."),
        "{chain}"
    );

    fake.insert_value(mpijob::OperatorCrd::V0_4_0.crd().clone());
    let job = object(
        "kubeflow.org/v2beta1",
        "MPIJob",
        "llama",
        json!({ "spec": { "launcherCreationPolicy": "WaitForWorkersReady", "mpiReplicaSpecs": {} } }),
    );
    let error = apply_all(&client, &[job], "default", MANAGER)
        .await
        .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert!(
        chain.starts_with("cannot apply MPIJob default/llama")
            && chain.contains(".spec.launcherCreationPolicy: field not declared in schema"),
        "{chain}"
    );
}
