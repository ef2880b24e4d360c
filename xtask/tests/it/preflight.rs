//! The cluster preflight: the pure evaluation over hand-made facts, and the fetch against the
//! FAKE API server.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSIDriver;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use mpijob::LauncherGate;
use serde_json::{Value, json};
use test_support::fake_apiserver::FakeApiServer;
use xtask::kube_apply::{ClusterFacts, Requirements, evaluate, fetch_facts, image_version};

const NEED: Requirements = Requirements {
    nodes: 2,
    neuron_devices: 16,
    efa_interfaces: 8,
};

fn crd(version: &str, with_policy: bool) -> Value {
    let spec_properties = if with_policy {
        json!({ "launcherCreationPolicy": { "type": "string" } })
    } else {
        json!({ "slotsPerWorker": { "type": "integer" } })
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "mpijobs.kubeflow.org" },
        "spec": {
            "group": "kubeflow.org", "scope": "Namespaced",
            "names": { "kind": "MPIJob", "plural": "mpijobs" },
            "versions": [{ "name": version, "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": { "spec": { "type": "object", "properties": spec_properties } } } } }],
        },
    })
}

fn operator(image: &str, available: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "mpi-operator", "namespace": "mpi-operator" },
        "spec": { "selector": { "matchLabels": { "app": "mpi-operator" } },
                  "template": { "spec": { "containers": [{ "name": "mpi-operator", "image": image }] } } },
        "status": { "availableReplicas": available },
    })
}

fn daemonset(name: &str, image: &str, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": name, "namespace": "kube-system" },
        "spec": { "selector": { "matchLabels": { "app": name } },
                  "template": { "spec": { "containers": [{ "name": name, "image": image }] } } },
        "status": { "numberReady": ready, "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberMisscheduled": 0 },
    })
}

fn node(name: &str, neuron: &str, efa: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node", "metadata": { "name": name },
        "status": {
            "allocatable": { "aws.amazon.com/neuron": neuron, "vpc.amazonaws.com/efa": efa, "cpu": "128" },
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
        },
    })
}

fn csi_driver() -> Value {
    json!({ "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": { "name": "fsx.csi.aws.com" }, "spec": {} })
}

fn parse<T: serde::de::DeserializeOwned>(values: Vec<Value>) -> Result<Vec<T>, String> {
    Ok(values
        .into_iter()
        .map(|value| serde_json::from_value(value).expect("a valid object"))
        .collect())
}

/// CRDs, Deployments, DaemonSets, CSIDrivers and Nodes, as the API returns them.
type Parts = (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>);

fn healthy() -> Parts {
    (
        vec![crd("v2beta1", true)],
        vec![operator("mpioperator/mpi-operator:0.6.0", 1)],
        vec![
            daemonset(
                "neuron-device-plugin",
                "public.ecr.aws/neuron/neuron-device-plugin:2.22.4.0",
                2,
            ),
            daemonset(
                "aws-efa-k8s-device-plugin",
                "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/aws-efa-k8s-device-plugin:v0.5.3",
                2,
            ),
            daemonset(
                "fsx-csi-node",
                "public.ecr.aws/fsx-csi-driver/aws-fsx-csi-driver:v1.9.0",
                3,
            ),
        ],
        vec![csi_driver()],
        vec![
            node("trn1-a", "16", "8", true),
            node("trn1-b", "16", "8", true),
            node("cpu-a", "0", "0", true),
        ],
    )
}

fn facts(parts: Parts) -> ClusterFacts {
    let (crds, deployments, daemonsets, csi_drivers, nodes) = parts;
    ClusterFacts {
        mpijob_crd: parse::<CustomResourceDefinition>(crds),
        deployments: parse::<Deployment>(deployments),
        daemonsets: parse::<DaemonSet>(daemonsets),
        csi_drivers: parse::<CSIDriver>(csi_drivers),
        nodes: parse::<Node>(nodes),
    }
}

fn failed_ids(preflight: &xtask::kube_apply::Preflight) -> Vec<&'static str> {
    preflight.failures().map(|check| check.id).collect()
}

#[test]
fn image_versions_come_from_semver_tags_only() {
    assert_eq!(
        image_version("mpioperator/mpi-operator:0.5.0"),
        Some((0, 5, 0))
    );
    assert_eq!(
        image_version("registry:5000/kubeflow/mpi-operator:v0.8.2-rc.1"),
        Some((0, 8, 2))
    );
    assert_eq!(image_version("mpioperator/mpi-operator:master"), None);
    assert_eq!(image_version("mpioperator/mpi-operator"), None);
    assert_eq!(
        image_version("registry:5000/mpi-operator@sha256:abcd"),
        None
    );
}

#[test]
fn a_healthy_cluster_passes_and_a_new_operator_waits_for_workers() {
    let preflight = evaluate(&facts(healthy()), &NEED);
    assert!(preflight.passed(), "{:#?}", preflight.checks);
    assert_eq!(preflight.checks.len(), 6);
    assert_eq!(preflight.operator_version, Some((0, 6, 0)));
    assert_eq!(
        preflight.launcher_gate,
        Some(LauncherGate::WaitForWorkersReady)
    );
    let nodes = preflight
        .checks
        .iter()
        .find(|check| check.id == "trainium-nodes")
        .unwrap();
    assert!(
        nodes.detail.contains("2 of 2") && nodes.detail.contains("trn1-a, trn1-b"),
        "{}",
        nodes.detail
    );
}

#[test]
fn the_operator_version_decides_the_launcher_gate() {
    let gate = |image: &str, with_policy: bool| {
        let mut parts = healthy();
        parts.0 = vec![crd("v2beta1", with_policy)];
        parts.1 = vec![operator(image, 1)];
        let preflight = evaluate(&facts(parts), &NEED);
        (preflight.launcher_gate, preflight.launcher_gate_reason)
    };
    assert_eq!(
        gate("mpioperator/mpi-operator:v0.4.0", true).0,
        Some(LauncherGate::InitContainer)
    );
    assert_eq!(
        gate("mpioperator/mpi-operator:0.5.0", false).0,
        Some(LauncherGate::WaitForWorkersReady)
    );
    // The blueprint's operator runs `:master`: the CRD's schema tells what the API accepts.
    let (master_new, reason) = gate("mpioperator/mpi-operator:master", true);
    assert_eq!(master_new, Some(LauncherGate::WaitForWorkersReady));
    assert!(reason.contains("not a version"), "{reason}");
    assert_eq!(
        gate("mpioperator/mpi-operator:master", false).0,
        Some(LauncherGate::InitContainer)
    );
}

#[test]
fn an_empty_cluster_fails_every_check_with_what_to_install() {
    let preflight = evaluate(&facts((vec![], vec![], vec![], vec![], vec![])), &NEED);
    assert_eq!(
        failed_ids(&preflight),
        [
            "mpi-operator-crd",
            "mpi-operator-controller",
            "fsx-csi-driver",
            "neuron-device-plugin",
            "efa-device-plugin",
            "trainium-nodes",
        ]
    );
    assert_eq!(preflight.launcher_gate, None);
    let fix = |id: &str| {
        preflight
            .checks
            .iter()
            .find(|check| check.id == id)
            .unwrap()
            .fix
            .clone()
            .unwrap()
    };
    assert!(fix("mpi-operator-crd").contains(
        "kubectl apply --server-side -f https://raw.githubusercontent.com/kubeflow/mpi-operator/"
    ));
    assert!(fix("fsx-csi-driver").contains("aws-fsx-csi-driver"));
    assert!(fix("neuron-device-plugin").contains("neuron-helm-chart"));
    assert!(fix("efa-device-plugin").contains("aws-efa-k8s-device-plugin"));
    assert!(fix("trainium-nodes").contains("desiredSize=2"));
}

#[test]
fn partial_problems_are_named() {
    let mut parts = healthy();
    parts.0 = vec![crd("v1", true)];
    parts.1 = vec![operator("mpioperator/mpi-operator:0.6.0", 0)];
    parts.2[0] = daemonset(
        "neuron-device-plugin",
        "public.ecr.aws/neuron/neuron-device-plugin:2.22.4.0",
        0,
    );
    parts.3 = vec![];
    parts.4 = vec![
        node("trn1-a", "16", "8", true),
        node("trn1-b", "16", "4", true),
        node("trn1-c", "16", "8", false),
    ];
    let preflight = evaluate(&facts(parts), &NEED);
    assert_eq!(
        failed_ids(&preflight),
        [
            "mpi-operator-crd",
            "mpi-operator-controller",
            "neuron-device-plugin",
            "trainium-nodes"
        ]
    );
    let detail = |id: &str| {
        preflight
            .checks
            .iter()
            .find(|check| check.id == id)
            .unwrap()
            .detail
            .clone()
    };
    assert!(
        detail("mpi-operator-crd").contains("training-operator"),
        "{}",
        detail("mpi-operator-crd")
    );
    assert!(detail("mpi-operator-controller").contains("no available replica"));
    assert!(
        detail("fsx-csi-driver").contains("fsx-csi-node"),
        "the DaemonSet stands in for a missing CSIDriver object"
    );
    let nodes = detail("trainium-nodes");
    assert!(
        nodes.contains("1 of 2")
            && nodes.contains("trn1-b has 16 aws.amazon.com/neuron and 4 vpc.amazonaws.com/efa")
            && nodes.contains("trn1-c is not Ready"),
        "{nodes}"
    );

    let unreadable = ClusterFacts {
        nodes: Err("Forbidden (nodes is forbidden)".into()),
        ..facts(healthy())
    };
    let preflight = evaluate(&unreadable, &NEED);
    assert_eq!(failed_ids(&preflight), ["trainium-nodes"]);
}

#[tokio::test]
async fn fetch_reads_what_evaluate_needs_from_the_api() {
    let fake = FakeApiServer::start().await;
    let (crds, deployments, daemonsets, csi_drivers, nodes) = healthy();
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "mpi-operator" } });
    for value in std::iter::once(namespace)
        .chain(crds)
        .chain(deployments)
        .chain(daemonsets)
        .chain(csi_drivers)
        .chain(nodes)
    {
        fake.insert_value(value);
    }
    let preflight = evaluate(&fetch_facts(&fake.client()).await, &NEED);
    assert!(preflight.passed(), "{:#?}", preflight.checks);
    assert_eq!(
        preflight.launcher_gate,
        Some(LauncherGate::WaitForWorkersReady)
    );
    let lists: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|request| request.method == "GET")
        .map(|request| request.path)
        .collect();
    assert!(
        lists.contains(
            &"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/mpijobs.kubeflow.org"
                .to_owned()
        ),
        "{lists:?}"
    );
    assert!(
        lists.contains(&"/api/v1/nodes".to_owned())
            && lists.contains(&"/apis/apps/v1/daemonsets".to_owned()),
        "{lists:?}"
    );

    let empty = FakeApiServer::start().await;
    let preflight = evaluate(&fetch_facts(&empty.client()).await, &NEED);
    assert_eq!(preflight.failures().count(), 6);
}
