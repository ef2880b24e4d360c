//! The cluster preflight: the pure evaluation over hand-made facts (the real MPIJob CRDs of
//! v0.4.0 and v0.8.2 decide the launcher gate; Karpenter pools that may consolidate Trainium
//! nodes warn), the fetch against the FAKE API server, and the jobs rendered for each operator
//! checked against its CRD, strictly and on the server.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSIDriver;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use mpijob::{LauncherGate, OperatorCrd};
use serde_json::{Value, json};
use test_support::fake_apiserver::FakeApiServer;
use xtask::kube::preflight::{ClusterFacts, Requirements, evaluate, fetch_facts, image_version};

const NEED: Requirements = Requirements {
    nodes: 2,
    neuron_devices: 16,
    efa_interfaces: 8,
    launcher_gate: None,
};

/// The MPIJob CRD of MPI Operator v0.8.2 (`with_policy`) or v0.4.0, as shipped, serving
/// `version`.
fn crd(version: &str, with_policy: bool) -> Value {
    let release = if with_policy {
        OperatorCrd::V0_8_2
    } else {
        OperatorCrd::V0_4_0
    };
    let mut crd = release.crd().clone();
    crd["spec"]["versions"][0]["name"] = json!(version);
    crd
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
        node_pools: Ok(Vec::new()),
    }
}

fn failed_ids(preflight: &xtask::kube::preflight::Preflight) -> Vec<&'static str> {
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
        gate("mpioperator/mpi-operator:0.5.0", true).0,
        Some(LauncherGate::WaitForWorkersReady)
    );
    // An operator upgraded without its CRD: the CRD decides what the API server accepts.
    let (stale, reason) = gate("mpioperator/mpi-operator:0.6.0", false);
    assert_eq!(stale, Some(LauncherGate::InitContainer));
    assert!(reason.contains("CRD was not upgraded"), "{reason}");
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

/// The blueprint's cluster (MPI Operator v0.4.0 and its CRD): preflight chooses the init-container
/// gate and the v0.4.0 CRD, and the jobs rendered for it are accepted by a server holding that
/// CRD; the jobs of the default gate are refused, by trnkit before the server.
#[tokio::test]
async fn jobs_for_a_v0_4_0_operator_pass_its_crd_on_the_server() {
    let fake = FakeApiServer::start().await;
    let (_, _, daemonsets, csi_drivers, nodes) = healthy();
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "mpi-operator" } });
    for value in [
        namespace,
        crd("v2beta1", false),
        operator("mpioperator/mpi-operator:v0.4.0", 1),
    ]
    .into_iter()
    .chain(daemonsets)
    .chain(csi_drivers)
    .chain(nodes)
    {
        fake.insert_value(value);
    }
    let preflight = evaluate(&fetch_facts(&fake.client()).await, &NEED);
    assert!(preflight.passed(), "{:#?}", preflight.checks);
    assert_eq!(preflight.launcher_gate, Some(LauncherGate::InitContainer));
    assert_eq!(preflight.operator_crd, Some(OperatorCrd::V0_4_0));

    let config = xtask::config::Config::default();
    let jobs: kube::Api<mpijob::MPIJob> = kube::Api::default_namespaced(fake.client());
    let image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/trnkit:abc";
    let gate = xtask::render::launcher_gate(&config, preflight.launcher_gate);
    let llama = xtask::render::llama2_config(&config, image, gate).unwrap();
    for job in [
        mpijob::llama2::compile_job(&llama).unwrap(),
        mpijob::llama2::train_job(&llama).unwrap(),
    ] {
        mpijob::io::apply(&jobs, &job, "trnkit").await.unwrap();
    }

    let newer =
        xtask::render::llama2_config(&config, image, LauncherGate::WaitForWorkersReady).unwrap();
    let job = mpijob::llama2::train_job(&newer).unwrap();
    let error = mpijob::io::apply(&jobs, &job, "trnkit").await.unwrap_err();
    assert!(
        error.to_string().contains("launcherCreationPolicy"),
        "{error}"
    );
}

fn node_pool(name: &str, instance_family: &str, disruption: Value) -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": name },
        "spec": {
            "template": { "spec": {
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" },
                "requirements": [{ "key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": [instance_family] }],
            } },
            "disruption": disruption,
        },
    })
}

fn consolidation(pools: Vec<Value>) -> Option<xtask::kube::preflight::Check> {
    let facts = ClusterFacts {
        node_pools: Ok(pools),
        ..facts(healthy())
    };
    let preflight = evaluate(&facts, &NEED);
    assert!(preflight.passed(), "a warning does not fail preflight");
    preflight
        .checks
        .into_iter()
        .find(|check| check.id == "karpenter-consolidation")
}

#[test]
fn a_trainium_node_pool_that_may_consolidate_is_a_warning() {
    let warned = consolidation(vec![
        node_pool(
            "trainium",
            "trn1",
            json!({ "consolidationPolicy": "WhenEmptyOrUnderutilized", "budgets": [{ "nodes": "10%" }] }),
        ),
        node_pool("cpu", "m5", json!({})),
    ])
    .expect("a check for the Trainium pool");
    assert!(warned.passed && warned.warning, "{warned:?}");
    assert!(
        warned.detail.contains("trainium") && !warned.detail.contains("cpu"),
        "{}",
        warned.detail
    );
    assert!(
        warned
            .fix
            .as_deref()
            .is_some_and(|fix| fix.contains("do_not_disrupt") && fix.contains("WhenEmpty")),
        "{warned:?}"
    );
    // Karpenter v1 consolidates underutilized nodes when the policy is not given.
    assert!(
        consolidation(vec![node_pool("trn", "trn1", json!({}))])
            .unwrap()
            .warning
    );
    for safe in [
        json!({ "consolidationPolicy": "WhenEmpty" }),
        json!({ "consolidationPolicy": "WhenEmptyOrUnderutilized", "budgets": [{ "nodes": "0" }] }),
        json!({ "budgets": [{ "nodes": "0", "reasons": ["Underutilized", "Drifted"] }] }),
    ] {
        let check = consolidation(vec![node_pool("trainium", "trn1", safe.clone())]).unwrap();
        assert!(check.passed && !check.warning, "{safe}: {check:?}");
    }
    // A scheduled budget stops consolidation only part of the time.
    let scheduled =
        json!({ "budgets": [{ "nodes": "0", "schedule": "0 9 * * 1-5", "duration": "8h" }] });
    assert!(
        consolidation(vec![node_pool("trainium", "trn1", scheduled)])
            .unwrap()
            .warning
    );
    assert_eq!(
        consolidation(vec![node_pool("cpu", "m5", json!({}))]),
        None,
        "pools of other nodes are not looked at"
    );
}

#[tokio::test]
async fn node_pools_are_read_when_karpenter_serves_them() {
    let karpenter = test_support::fake_apiserver::KindInfo::new(
        "karpenter.sh",
        "v1",
        "NodePool",
        "nodepools",
        false,
        true,
    );
    let fake = FakeApiServer::builder().kind(karpenter).start().await;
    fake.insert_value(node_pool("trainium", "trn1", json!({})));
    let facts = fetch_facts(&fake.client()).await;
    assert_eq!(facts.node_pools.as_ref().map(Vec::len), Ok(1));
    let preflight = evaluate(&facts, &NEED);
    assert!(
        preflight
            .warnings()
            .any(|check| check.id == "karpenter-consolidation"),
        "{:#?}",
        preflight.checks
    );

    // Without Karpenter there is nothing to read, and no check.
    let plain = FakeApiServer::start().await;
    assert_eq!(
        fetch_facts(&plain.client()).await.node_pools,
        Ok(Vec::new())
    );
}

/// The jobs a configuration renders validate strictly against the CRD of the operator they are
/// for: `launcher_gate = "init-container"` against v0.4.0's (and they carry none of the fields
/// it lacks), the default against v0.8.2's.
#[test]
fn rendered_jobs_pass_the_strict_crd_of_their_launcher_gate() {
    use xtask::config::{Config, LauncherGateSetting};
    let image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/trnkit:abc";
    let render = |config: &Config| {
        let gate = xtask::render::launcher_gate(config, None);
        let llama = xtask::render::llama2_config(config, image, gate).unwrap();
        [
            mpijob::llama2::compile_job(&llama).unwrap(),
            mpijob::llama2::train_job(&llama).unwrap(),
        ]
        .map(|job| serde_json::to_value(job).unwrap())
    };

    let mut old = Config::default();
    old.training.launcher_gate = LauncherGateSetting::InitContainer;
    for job in render(&old) {
        let problems = mpijob::schema::validate_against(OperatorCrd::V0_4_0, &job);
        assert!(problems.is_empty(), "{problems}");
        assert!(job["spec"].get("launcherCreationPolicy").is_none());
        assert!(job["spec"].get("runLauncherAsWorker").is_none());
    }

    for job in render(&Config::default()) {
        let problems = mpijob::schema::validate_against(OperatorCrd::V0_8_2, &job);
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(job["spec"]["launcherCreationPolicy"], "WaitForWorkersReady");
        let annotations =
            &job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["karpenter.sh/do-not-disrupt"], "true");
    }

    let mut disruptible = Config::default();
    disruptible.training.do_not_disrupt = false;
    for job in render(&disruptible) {
        let worker = &job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["metadata"];
        assert!(worker.get("annotations").is_none(), "{worker}");
    }
}

/// A configuration that forces `WaitForWorkersReady` on a v0.4.0 CRD fails preflight, naming
/// both ways out; on a v0.8.2 CRD, or with the gate left to preflight, it passes.
#[test]
fn a_forced_gate_the_installed_crd_cannot_carry_fails_preflight() {
    let forced = Requirements {
        launcher_gate: Some(LauncherGate::WaitForWorkersReady),
        ..NEED
    };
    let mut old = healthy();
    old.0 = vec![crd("v2beta1", false)];
    old.1 = vec![operator("mpioperator/mpi-operator:v0.4.0", 1)];
    let preflight = evaluate(&facts(old.clone()), &forced);
    assert_eq!(failed_ids(&preflight), ["launcher-gate"]);
    let check = preflight.failures().next().unwrap();
    assert!(
        check.detail.contains("launcherCreationPolicy")
            && check
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("init-container")
                    && fix.contains("kubectl apply --server-side")),
        "{check:?}"
    );
    assert!(evaluate(&facts(old), &NEED).passed());
    assert!(evaluate(&facts(healthy()), &forced).passed());
}
