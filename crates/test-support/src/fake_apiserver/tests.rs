//! Tests of the FAKE API server through a real `kube::Client`, plus its pure parts.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::selector::{FieldSelector, LabelSelector};
use super::{FakeApiServer, WriteVerb, ssa};

fn configmap(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "labels": { "app": "trnkit" } },
        "data": data,
    }))
    .unwrap()
}

fn api_status(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn label_selectors_match_like_the_api_server() {
    let object = json!({ "metadata": { "labels": { "role": "launcher", "job": "llama" } } });
    let check = |selector: &str, expected: bool| {
        let parsed = LabelSelector::parse(selector).unwrap();
        assert_eq!(parsed.matches(&object), expected, "{selector}");
    };
    check("", true);
    check("role=launcher", true);
    check("role==launcher,job=llama", true);
    check("role=launcher,job=other", false);
    check("role!=worker", true);
    check("job", true);
    check("!job", false);
    check("role in (worker, launcher)", true);
    check("role notin (launcher)", false);
    check("missing notin (a,b),role=launcher", true);
    assert!(LabelSelector::parse("role in worker").is_err());
}

#[test]
fn field_selectors_support_name_and_namespace_only() {
    let object = json!({ "metadata": { "name": "llama", "namespace": "train" } });
    assert!(
        FieldSelector::parse("metadata.name=llama")
            .unwrap()
            .matches(&object)
    );
    assert!(
        FieldSelector::parse("metadata.name=llama,metadata.namespace=train")
            .unwrap()
            .matches(&object)
    );
    assert!(
        !FieldSelector::parse("metadata.name!=llama")
            .unwrap()
            .matches(&object)
    );
    assert!(FieldSelector::parse("status.phase=Running").is_err());
}

#[test]
fn apply_conflicts_with_another_manager_unless_forced() {
    let now = "2026-01-01T00:00:00Z";
    let alice = ssa::Writer {
        manager: "alice",
        subresource: None,
        api_version: "v1",
        now,
    };
    let bob = ssa::Writer {
        manager: "bob",
        ..alice
    };
    let first = ssa::apply(
        &Value::Null,
        &json!({ "data": { "a": "1", "b": "2" } }),
        &alice,
        false,
    )
    .unwrap();
    let conflicts = ssa::apply(&first, &json!({ "data": { "a": "9" } }), &bob, false).unwrap_err();
    assert_eq!(
        conflicts,
        vec![ssa::Conflict {
            path: vec!["data".into(), "a".into()],
            manager: "alice".into()
        }]
    );
    // The same value is shared ownership, not a conflict.
    assert!(ssa::apply(&first, &json!({ "data": { "a": "1" } }), &bob, false).is_ok());
    let forced = ssa::apply(&first, &json!({ "data": { "a": "9" } }), &bob, true).unwrap();
    assert_eq!(forced["data"], json!({ "a": "9", "b": "2" }));
    let owners = ssa::read_managed(&forced);
    let alice_paths = &owners
        .iter()
        .find(|entry| entry.manager == "alice")
        .unwrap()
        .paths;
    assert_eq!(
        alice_paths.iter().collect::<Vec<_>>(),
        vec![&vec!["data".to_owned(), "b".to_owned()]]
    );
    // Alice drops `b`: nobody else owns it, so it goes.
    let dropped = ssa::apply(&forced, &json!({ "data": {} }), &alice, false).unwrap();
    assert_eq!(dropped["data"], json!({ "a": "9" }));
}

#[tokio::test]
async fn get_create_conflict_and_not_found_statuses() {
    let fake = FakeApiServer::start().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(fake.client(), "default");

    let (code, reason) = api_status(configmaps.get("settings").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    let created = configmaps
        .create(
            &PostParams::default(),
            &configmap("settings", json!({ "k": "v" })),
        )
        .await
        .unwrap();
    let metadata = &created.metadata;
    assert!(metadata.uid.is_some());
    assert!(metadata.creation_timestamp.is_some());
    assert_eq!(metadata.generation, Some(1));
    assert_eq!(metadata.namespace.as_deref(), Some("default"));
    let (code, reason) = api_status(
        configmaps
            .create(&PostParams::default(), &configmap("settings", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let fetched = configmaps.get("settings").await.unwrap();
    assert_eq!(fetched.data.unwrap()["k"], "v");

    let (code, _) = api_status(
        configmaps
            .delete("absent", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);
    configmaps
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    assert!(configmaps.get_opt("settings").await.unwrap().is_none());
    assert!(fake.get::<ConfigMap>("default", "settings").is_none());
}

#[tokio::test]
async fn writes_into_a_missing_namespace_fail_like_a_real_server() {
    let fake = FakeApiServer::start().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(fake.client(), "nowhere");
    let (code, _) = api_status(
        configmaps
            .create(&PostParams::default(), &configmap("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);
    let namespaces: Api<Namespace> = Api::all(fake.client());
    let namespace: Namespace = serde_json::from_value(
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "nowhere" } }),
    )
    .unwrap();
    namespaces
        .patch(
            "nowhere",
            &PatchParams::apply("test"),
            &Patch::Apply(&namespace),
        )
        .await
        .unwrap();
    configmaps
        .create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    // Deleting the namespace deletes what is in it.
    namespaces
        .delete("nowhere", &DeleteParams::default())
        .await
        .unwrap();
    assert!(fake.get::<ConfigMap>("nowhere", "a").is_none());
}

#[tokio::test]
async fn list_filters_by_labels_and_fields_across_namespaces() {
    let fake = FakeApiServer::start().await;
    for (namespace, name, role) in [
        ("default", "a", "launcher"),
        ("default", "b", "worker"),
        ("kube-system", "c", "launcher"),
    ] {
        fake.insert_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": namespace, "labels": { "role": role } },
        }));
    }
    let names = |pods: kube::core::ObjectList<Pod>| {
        pods.items
            .into_iter()
            .map(|pod| pod.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    let all: Api<Pod> = Api::all(fake.client());
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("role=launcher"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    let default: Api<Pod> = Api::default_namespaced(fake.client());
    assert_eq!(
        names(default.list(&ListParams::default()).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        names(
            default
                .list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    let request = fake
        .requests()
        .into_iter()
        .rfind(|request| request.method == "GET")
        .unwrap();
    assert_eq!(request.path, "/api/v1/namespaces/default/pods");
    assert_eq!(request.query("fieldSelector"), Some("metadata.name=b"));
}

#[tokio::test]
async fn server_side_apply_creates_merges_records_managers_and_is_idempotent() {
    let fake = FakeApiServer::start().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let params = PatchParams::apply("trnkit").force();

    let first = configmaps
        .patch(
            "settings",
            &params,
            &Patch::Apply(&configmap("settings", json!({ "a": "1" }))),
        )
        .await
        .unwrap();
    let version = first.metadata.resource_version.clone().unwrap();
    let managed = first.metadata.managed_fields.clone().unwrap();
    assert_eq!(managed[0].manager.as_deref(), Some("trnkit"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));

    let request = fake
        .requests()
        .into_iter()
        .rfind(|request| request.method == "PATCH")
        .unwrap();
    assert!(request.is_apply());
    assert_eq!(request.query("fieldManager"), Some("trnkit"));
    assert_eq!(request.query("force"), Some("true"));

    let again = configmaps
        .patch(
            "settings",
            &params,
            &Patch::Apply(&configmap("settings", json!({ "a": "1" }))),
        )
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version.as_deref(),
        Some(version.as_str()),
        "a no-op apply keeps the version"
    );

    let other = PatchParams::apply("someone-else");
    let conflict = configmaps
        .patch(
            "settings",
            &other,
            &Patch::Apply(&configmap("settings", json!({ "a": "2" }))),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(conflict), (409, "Conflict".to_owned()));
    let taken = configmaps
        .patch(
            "settings",
            &other.force(),
            &Patch::Apply(&configmap("settings", json!({ "a": "2" }))),
        )
        .await
        .unwrap();
    assert_eq!(taken.data.unwrap()["a"], "2");
}

#[tokio::test]
async fn apply_needs_a_field_manager_and_matching_kind() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let request = axum::http::Request::patch("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&configmap("x", json!({}))).unwrap())
        .unwrap();
    let error = client.request::<ConfigMap>(request).await.unwrap_err();
    assert_eq!(api_status(error).0, 400);
    let wrong_kind = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "x" } });
    let configmaps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let error = configmaps
        .patch("x", &PatchParams::apply("t"), &Patch::Apply(&wrong_kind))
        .await
        .unwrap_err();
    assert_eq!(api_status(error).0, 400);
}

#[tokio::test]
async fn status_is_a_subresource_and_generation_counts_spec_changes() {
    let fake = FakeApiServer::start().await;
    let deployments: Api<Deployment> = Api::default_namespaced(fake.client());
    let deployment = |replicas: i32| -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "tensorboard" },
            "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "tb" } },
                      "template": { "metadata": { "labels": { "app": "tb" } }, "spec": { "containers": [{ "name": "tb", "image": "tb:1" }] } } },
            "status": { "replicas": 99 },
        }))
        .unwrap()
    };
    let params = PatchParams::apply("trnkit");
    let created = deployments
        .patch("tensorboard", &params, &Patch::Apply(&deployment(1)))
        .await
        .unwrap();
    assert!(
        created.status.is_none(),
        "status in an apply to the main resource is ignored"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let status = json!({ "status": { "readyReplicas": 1, "replicas": 1 } });
    let patched = deployments
        .patch_status(
            "tensorboard",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().ready_replicas, Some(1));
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "a status write is not a spec change"
    );

    let scaled = deployments
        .patch("tensorboard", &params, &Patch::Apply(&deployment(2)))
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
    assert_eq!(
        scaled.status.unwrap().ready_replicas,
        Some(1),
        "a spec write keeps the status"
    );
}

#[tokio::test]
async fn watcher_sees_changes_and_recovers_from_gone() {
    let fake = FakeApiServer::start().await;
    let configmaps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    fake.insert(&configmap("one", json!({})));
    let config = watcher::Config::default().fields("metadata.name=two");
    let mut stream = std::pin::pin!(watcher(configmaps.clone(), config).applied_objects());

    let writer = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fake.insert(&configmap("two", json!({ "step": "1" })));
            fake.compact_history();
            fake.close_watches();
            tokio::time::sleep(Duration::from_millis(50)).await;
            fake.insert(&configmap("two", json!({ "step": "2" })));
        })
    };
    let mut steps = Vec::new();
    while steps.last().map(String::as_str) != Some("2") {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("watch event in time");
        let object = next.unwrap().unwrap();
        assert_eq!(object.metadata.name.as_deref(), Some("two"));
        steps.push(object.data.unwrap()["step"].clone());
    }
    writer.await.unwrap();
    assert_eq!(steps.first().map(String::as_str), Some("1"));
    assert!(
        fake.requests()
            .iter()
            .filter(|request| request.is_watch())
            .count()
            >= 2,
        "the watcher re-watched"
    );
}

#[tokio::test]
async fn raw_watch_replays_from_a_resource_version() {
    let fake = FakeApiServer::start().await;
    let configmaps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let created = configmaps
        .create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    let version = created.metadata.resource_version.unwrap();
    configmaps
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "x": "1" } })),
        )
        .await
        .unwrap();
    configmaps
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    let params = kube::api::WatchParams::default().timeout(1);
    let events: Vec<_> = configmaps
        .watch(&params, &version)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| match event {
            kube::api::WatchEvent::Added(_) => "ADDED",
            kube::api::WatchEvent::Modified(_) => "MODIFIED",
            kube::api::WatchEvent::Deleted(_) => "DELETED",
            kube::api::WatchEvent::Bookmark(_) => "BOOKMARK",
            kube::api::WatchEvent::Error(_) => "ERROR",
        })
        .collect();
    assert_eq!(kinds, ["MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn pod_logs_follow_appended_lines_until_closed() {
    let fake = FakeApiServer::start().await;
    fake.insert_value(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "launcher", "namespace": "default" } }));
    fake.append_log("default", "launcher", "first");
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    assert_eq!(
        pods.logs("launcher", &LogParams::default()).await.unwrap(),
        "first\n"
    );

    let follow = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = pods.log_stream("launcher", &follow).await.unwrap().lines();
    assert_eq!(lines.try_next().await.unwrap().as_deref(), Some("first"));
    let appender = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            fake.append_log("default", "launcher", "second");
            tokio::time::sleep(Duration::from_millis(20)).await;
            fake.close_log("default", "launcher");
        })
    };
    assert_eq!(lines.try_next().await.unwrap().as_deref(), Some("second"));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), lines.try_next())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    appender.await.unwrap();

    let (code, _) = api_status(
        pods.logs("absent", &LogParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);
    let _: Pod = fake.set_status("default", "launcher", json!({ "phase": "Pending" }));
    let (code, _) = api_status(
        pods.logs("launcher", &LogParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400, "a container that has not started has no log yet");
}

#[tokio::test]
async fn hooks_script_a_controller() {
    let fake = FakeApiServer::start().await;
    fake.on_write("ConfigMap", |fake, event| {
        if event.verb == WriteVerb::Apply {
            fake.insert_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": format!("{}-pod", event.name()), "namespace": event.namespace(), "uid": "pod-uid-1" },
            }));
        }
    });
    let configmaps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    configmaps
        .patch(
            "job",
            &PatchParams::apply("t"),
            &Patch::Apply(&configmap("job", json!({}))),
        )
        .await
        .unwrap();
    let pod = fake
        .get::<Pod>("default", "job-pod")
        .expect("the hook created the pod");
    assert_eq!(pod.metadata.uid.as_deref(), Some("pod-uid-1"));
}

#[tokio::test]
async fn discovery_finds_core_and_custom_kinds() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v2beta1", "MPIJob");
    let (resource, capabilities) = discovery.resolve_gvk(&gvk).expect("MPIJob is discoverable");
    assert_eq!(resource.plural, "mpijobs");
    assert_eq!(capabilities.scope, Scope::Namespaced);
    let nodes = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Node"))
        .unwrap();
    assert_eq!(nodes.1.scope, Scope::Cluster);

    let jobs: Api<DynamicObject> =
        Api::default_namespaced_with(client, &ApiResource::from_gvk_with_plural(&gvk, "mpijobs"));
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": { "name": "llama" }, "spec": { "slotsPerWorker": 1 },
    }))
    .unwrap();
    let applied = jobs
        .patch("llama", &PatchParams::apply("t"), &Patch::Apply(&job))
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["slotsPerWorker"], 1);
}

#[tokio::test]
async fn cluster_scoped_objects_and_typed_handle_helpers() {
    let fake = FakeApiServer::start().await;
    fake.insert_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": { "name": "trn1-a" },
        "status": { "allocatable": { "aws.amazon.com/neuron": "16" } },
    }));
    let nodes: Api<Node> = Api::all(fake.client());
    let node = nodes.get("trn1-a").await.unwrap();
    assert_eq!(
        node.status.unwrap().allocatable.unwrap()["aws.amazon.com/neuron"].0,
        "16"
    );
    let updated: Node = fake.set_status(
        "",
        "trn1-a",
        json!({ "allocatable": { "aws.amazon.com/neuron": "0" } }),
    );
    assert_eq!(
        updated.metadata.uid, node.metadata.uid,
        "the handle keeps identity"
    );
    assert!(fake.delete::<Node>("", "trn1-a"));
    assert!(!fake.delete::<Node>("", "trn1-a"));
}

/// A small MPIJob CRD: `spec` declares `slotsPerWorker`, `mpiReplicaSpecs` (a map of replica
/// specs whose containers are a list keyed by `name`) and `extra`, which keeps unknown fields.
fn mpijob_crd() -> Value {
    let containers = json!({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": { "type": "object", "properties": { "name": { "type": "string" }, "image": { "type": "string" } } },
    });
    let replica = json!({ "type": "object", "properties": {
        "replicas": { "type": "integer" },
        "template": { "type": "object", "properties": { "spec": { "type": "object", "properties": { "containers": containers } } } },
    } });
    let spec = json!({ "type": "object", "properties": {
        "slotsPerWorker": { "type": "integer" },
        "extra": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
        "mpiReplicaSpecs": { "type": "object", "additionalProperties": replica },
    } });
    let schema = json!({
        "type": "object",
        "properties": {
            "apiVersion": { "type": "string" }, "kind": { "type": "string" }, "metadata": { "type": "object" },
            "spec": spec,
            "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
        },
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "mpijobs.kubeflow.org" },
        "spec": {
            "group": "kubeflow.org", "scope": "Namespaced",
            "names": { "kind": "MPIJob", "plural": "mpijobs" },
            "versions": [{ "name": "v2beta1", "served": true, "storage": true, "schema": { "openAPIV3Schema": schema } }],
        },
    })
}

fn mpijob(name: &str, spec: Value) -> Value {
    json!({ "apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": { "name": name }, "spec": spec })
}

fn mpijobs(fake: &FakeApiServer) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v2beta1", "MPIJob");
    Api::default_namespaced_with(
        fake.client(),
        &ApiResource::from_gvk_with_plural(&gvk, "mpijobs"),
    )
}

fn api_error(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn apply_of_a_custom_resource_refuses_fields_its_crd_does_not_declare() {
    let fake = FakeApiServer::start().await;
    let jobs = mpijobs(&fake);
    let params = PatchParams::apply("trnkit").force();
    let with_policy = mpijob(
        "llama",
        json!({ "slotsPerWorker": 1, "launcherCreationPolicy": "WaitForWorkersReady" }),
    );
    let apply = |object: Value| {
        let jobs = jobs.clone();
        let params = params.clone();
        async move { jobs.patch("llama", &params, &Patch::Apply(&object)).await }
    };
    // Without the CRD, nothing is checked.
    apply(with_policy.clone()).await.unwrap();
    jobs.delete("llama", &DeleteParams::default())
        .await
        .unwrap();
    fake.collect_garbage();

    fake.insert_value(mpijob_crd());
    let error = api_error(apply(with_policy).await.unwrap_err());
    assert_eq!(error.code, 500);
    assert_eq!(error.reason, "", "a real server gives no reason");
    assert_eq!(
        error.message,
        "failed to create typed patch object (default/llama; kubeflow.org/v2beta1, Kind=MPIJob): .spec.launcherCreationPolicy: field not declared in schema"
    );
    assert!(jobs.get_opt("llama").await.unwrap().is_none());

    let misspelt = mpijob(
        "llama",
        json!({ "slotPerWorker": 1, "mpiReplicaSpecs": { "Worker": { "replicas": 2, "template": { "spec": {
            "containers": [{ "name": "main", "image": "x", "resourcs": {} }] } } } } }),
    );
    let error = api_error(apply(misspelt).await.unwrap_err());
    assert_eq!(
        error.message,
        "failed to create typed patch object (default/llama; kubeflow.org/v2beta1, Kind=MPIJob): errors:\n  .spec.mpiReplicaSpecs.Worker.template.spec.containers[name=\"main\"].resourcs: field not declared in schema\n  .spec.slotPerWorker: field not declared in schema"
    );

    let valid = mpijob(
        "llama",
        json!({ "slotsPerWorker": 1, "extra": { "anything": { "goes": true } },
                "mpiReplicaSpecs": { "Worker": { "replicas": 2, "template": { "spec": {
                    "containers": [{ "name": "main", "image": "x" }] } } } } }),
    );
    let stored = apply(valid).await.unwrap();
    assert_eq!(stored.data["spec"]["slotsPerWorker"], 1);
}

#[tokio::test]
async fn immutable_fields_are_refused_like_a_real_server() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let params = PatchParams::apply("trnkit").force();
    let apply = |api_version: &str, plural: &str, namespaced: bool, object: Value| {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
        let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = if namespaced {
            Api::default_namespaced_with(client.clone(), &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let params = params.clone();
        async move { api.patch(&name, &params, &Patch::Apply(&object)).await }
    };
    let invalid = |result: Result<DynamicObject, kube::Error>| {
        let status = api_error(result.unwrap_err());
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
        status.message
    };

    let class = |parameters: Value, labels: Value| {
        json!({ "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": { "name": "fsx", "labels": labels },
                "provisioner": "fsx.csi.aws.com", "parameters": parameters })
    };
    let sc = |object| apply("storage.k8s.io/v1", "storageclasses", false, object);
    sc(class(
        json!({ "deploymentType": "PERSISTENT_2" }),
        json!({}),
    ))
    .await
    .unwrap();
    sc(class(
        json!({ "deploymentType": "PERSISTENT_2" }),
        json!({ "a": "b" }),
    ))
    .await
    .unwrap();
    assert_eq!(
        invalid(sc(class(json!({ "deploymentType": "SCRATCH_2" }), json!({}))).await),
        "StorageClass.storage.k8s.io \"fsx\" is invalid: parameters: Forbidden: updates to parameters are forbidden."
    );

    let job = |command: &str, parallelism: i32| {
        json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "stage" },
                "spec": { "parallelism": parallelism, "template": { "spec": { "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": "x", "command": [command] }] } } } })
    };
    let jobs = |object| apply("batch/v1", "jobs", true, object);
    jobs(job("true", 1)).await.unwrap();
    jobs(job("true", 2)).await.unwrap();
    let message = invalid(jobs(job("false", 2)).await);
    assert!(
        message.starts_with("Job.batch \"stage\" is invalid: spec.template: Invalid value: ")
            && message.ends_with(": field is immutable"),
        "{message}"
    );

    let volume = |handle: &str, capacity: &str| {
        json!({ "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": "fsx-pv" },
                "spec": { "capacity": { "storage": capacity }, "accessModes": ["ReadWriteMany"],
                          "csi": { "driver": "fsx.csi.aws.com", "volumeHandle": handle } } })
    };
    let pv = |object| apply("v1", "persistentvolumes", false, object);
    pv(volume("fs-1", "1200Gi")).await.unwrap();
    pv(volume("fs-1", "2400Gi")).await.unwrap();
    let message = invalid(pv(volume("fs-2", "2400Gi")).await);
    assert!(
        message.starts_with("PersistentVolume \"fsx-pv\" is invalid: spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation\n"),
        "{message}"
    );

    let claim = |class: &str, size: &str| {
        json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": "fsx-claim" },
                "spec": { "accessModes": ["ReadWriteMany"], "storageClassName": class,
                          "resources": { "requests": { "storage": size } } } })
    };
    let pvc = |object| apply("v1", "persistentvolumeclaims", true, object);
    pvc(claim("fsx", "1200Gi")).await.unwrap();
    pvc(claim("fsx", "2400Gi")).await.unwrap();
    let message = invalid(pvc(claim("other", "2400Gi")).await);
    assert!(
        message.starts_with("PersistentVolumeClaim \"fsx-claim\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests"),
        "{message}"
    );
    // A refused change leaves the object as it was.
    let stored: k8s_openapi::api::core::v1::PersistentVolume = fake.get("", "fsx-pv").unwrap();
    assert_eq!(
        stored.spec.unwrap().csi.unwrap().volume_handle,
        "fs-1",
        "the refused change was not stored"
    );
}

/// A Job `stage` and two pods it owns; the second pod holds a finalizer when `hold` is set.
async fn job_with_pods(fake: &FakeApiServer, hold: bool) -> Api<k8s_openapi::api::batch::v1::Job> {
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::default_namespaced(fake.client());
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "stage" },
        "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "x" }] } } },
    }))
    .unwrap();
    let job = jobs.create(&PostParams::default(), &job).await.unwrap();
    let uid = job.metadata.uid.unwrap();
    for (index, name) in ["stage-aaaaa", "stage-bbbbb"].into_iter().enumerate() {
        let finalizers = if hold && index == 1 {
            json!(["example.com/hold"])
        } else {
            json!([])
        };
        fake.insert_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "default", "finalizers": finalizers,
                          "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "Job", "name": "stage", "uid": uid, "controller": true, "blockOwnerDeletion": true }] },
            "status": { "phase": "Running" },
        }));
    }
    jobs
}

fn pod_names(fake: &FakeApiServer) -> Vec<String> {
    fake.list::<Pod>(Some("default"))
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect()
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_its_dependents_are_gone() {
    let fake = FakeApiServer::start().await;
    let jobs = job_with_pods(&fake, true).await;
    let pending = jobs
        .delete("stage", &DeleteParams::foreground())
        .await
        .unwrap()
        .left()
        .expect("the object, still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(
        pending.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_owned()])
    );
    assert!(jobs.get_opt("stage").await.unwrap().is_some());

    // The collector deletes the pods; the held one stays (being deleted), and so does the Job.
    fake.collect_garbage();
    assert_eq!(pod_names(&fake), ["stage-bbbbb"]);
    let held: Pod = fake.get("default", "stage-bbbbb").unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(jobs.get_opt("stage").await.unwrap().is_some());

    // The pod's last finalizer goes: so does the pod, and then the Job.
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    pods.patch(
        "stage-bbbbb",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    assert!(pod_names(&fake).is_empty());
    let gone = |job: Option<&k8s_openapi::api::batch::v1::Job>| job.is_none();
    tokio::time::timeout(
        Duration::from_secs(5),
        kube::runtime::wait::await_condition(jobs.clone(), "stage", gone),
    )
    .await
    .expect("the collector finishes the deletion")
    .unwrap();
}

#[tokio::test]
async fn background_deletion_collects_dependents_and_orphaning_keeps_them() {
    let fake = FakeApiServer::start().await;
    let jobs = job_with_pods(&fake, false).await;
    // A batch/v1 Job deleted without a policy orphans its pods, as on a real server.
    jobs.delete("stage", &DeleteParams::default())
        .await
        .unwrap();
    fake.collect_garbage();
    assert!(jobs.get_opt("stage").await.unwrap().is_none());
    let pods = fake.list::<Pod>(Some("default"));
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|pod| {
        pod.metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .is_empty()
    }));
    for pod in &pods {
        fake.delete::<Pod>("default", pod.metadata.name.as_deref().unwrap());
    }

    let jobs = job_with_pods(&fake, false).await;
    jobs.delete("stage", &DeleteParams::background())
        .await
        .unwrap();
    assert!(jobs.get_opt("stage").await.unwrap().is_none());
    fake.collect_garbage();
    assert!(pod_names(&fake).is_empty(), "{:?}", pod_names(&fake));
}
