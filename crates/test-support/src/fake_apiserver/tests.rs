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
