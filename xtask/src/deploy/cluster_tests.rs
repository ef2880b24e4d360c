//! The cluster executor against the in-process FAKE Kubernetes API server: a full deploy, a
//! failed compile job and the resumed re-run, and an idempotent third run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use mpijob::MPIJob;
use mpijob::io::FollowEvent;
use serde_json::json;
use test_support::fake_apiserver::{FakeApiServer, WriteVerb};

use super::bundle;
use super::cluster::{ClusterExecutor, ImagePublisher, Timeouts};
use super::plan::{self, RenderedImage, StepId};
use super::run::{self, Event, Selection};
use super::state::{ConfigMapStore, StateStore, Status};
use crate::config::{Config, Target};

#[derive(Default)]
struct FakePublisher {
    calls: usize,
}

impl ImagePublisher for FakePublisher {
    async fn publish(
        &mut self,
        images: &BTreeMap<String, RenderedImage>,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        self.calls += 1;
        Ok(images
            .keys()
            .map(|name| (name.clone(), format!("sha256:{name}")))
            .collect())
    }
}

fn seed_healthy_cluster(fake: &FakeApiServer) {
    // The CRD as MPI Operator v0.8.2 ships it: the FAKE server (like a real one) refuses an
    // applied MPIJob with a field its schema does not declare.
    fake.insert_value(mpijob::OperatorCrd::V0_8_2.crd().clone());
    fake.insert_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "mpi-operator", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "mpi-operator"}}, "template": {"metadata": {"labels": {"app": "mpi-operator"}}, "spec": {"containers": [{"name": "mpi-operator", "image": "mpioperator/mpi-operator:0.6.0"}]}}},
        "status": {"availableReplicas": 1, "readyReplicas": 1, "replicas": 1},
    }));
    for (name, image) in [
        (
            "neuron-device-plugin",
            "public.ecr.aws/neuron/neuron-device-plugin:2.22.4.0",
        ),
        (
            "aws-efa-k8s-device-plugin",
            "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/aws-efa-k8s-device-plugin:v0.5.3",
        ),
        (
            "fsx-csi-node",
            "public.ecr.aws/fsx-csi-driver/aws-fsx-csi-driver:v1.9.0",
        ),
    ] {
        fake.insert_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": image}]}}},
            "status": {"numberReady": 4, "desiredNumberScheduled": 4, "currentNumberScheduled": 4, "numberMisscheduled": 0},
        }));
    }
    fake.insert_value(json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "fsx.csi.aws.com"}, "spec": {}}));
    for index in 0..4 {
        fake.insert_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("trn1-{index}")},
            "status": {"allocatable": {"aws.amazon.com/neuron": "16", "vpc.amazonaws.com/efa": "8"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }));
    }
}

/// What a check Job's pod prints as its last line; `None` makes the Job fail.
type CheckAnswer = Arc<Mutex<Option<String>>>;

/// The line `trnkit-stage dataset fingerprint` prints for a dataset of `documents`.
fn fingerprint_line(documents: u64) -> String {
    serde_json::to_string(&json!({"datasets": [{
        "prefix": "/shared/data/redpajama_sample_text_document",
        "idx_sha256": format!("{documents:064x}"), "bin_bytes": documents * 1000,
        "documents": documents, "tokens": documents * 500,
    }]}))
    .unwrap()
}

/// The line `trnkit-stage cache inspect --coverage-only --json` prints for these counts, when
/// asked (as the cache-check Job asks) for the training image's neuronx-cc.
fn coverage_line(complete: usize, failed: usize) -> String {
    let compiler = crate::images::training_image(&config()).neuronx_cc_version;
    coverage_line_of(Some(&compiler), complete, failed)
}

/// The same for the entries of `compiler_version` (`None`: of every version).
fn coverage_line_of(compiler_version: Option<&str>, complete: usize, failed: usize) -> String {
    serde_json::to_string(&json!({
        "coverage": {"flags_keys": ["725887e1", "00000000"], "compiler_version": compiler_version,
                     "complete": complete, "failed": failed, "locked": 0, "stale_lock": 0, "incomplete": 0},
        "flags_mismatch": null,
    }))
    .unwrap()
}

/// What the played controllers do; the tests turn these knobs.
#[derive(Clone)]
struct Knobs {
    /// Fail the compile job.
    fail_compile: Arc<AtomicBool>,
    /// How often the compile job was applied.
    compile_runs: Arc<AtomicUsize>,
    /// What the cache check prints.
    cache: CheckAnswer,
    /// What the dataset check prints.
    dataset: CheckAnswer,
    /// When set, the staging Job's pod has this status and never finishes.
    stuck: Arc<Mutex<Option<serde_json::Value>>>,
    /// When set, a compile worker has this status and the compile job never finishes.
    stuck_compile: Arc<Mutex<Option<serde_json::Value>>>,
    /// When set, the train launcher writes these lines and keeps running.
    train_log: Arc<Mutex<Option<Vec<String>>>>,
    /// The nodes whose node check fails, with the reason their pod prints.
    bad_nodes: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            fail_compile: Arc::default(),
            compile_runs: Arc::default(),
            cache: Arc::new(Mutex::new(Some(coverage_line(0, 0)))),
            dataset: Arc::new(Mutex::new(Some(fingerprint_line(27_390)))),
            stuck: Arc::default(),
            stuck_compile: Arc::default(),
            train_log: Arc::default(),
            bad_nodes: Arc::default(),
        }
    }
}

/// Plays the Job controller for the node check: one pod per node (`trn1-0` to `trn1-3`, the
/// seeded nodes), each printing its result line as the real script does; a node in `bad`
/// fails (exit code 1) and then the Job fails. The pods of an earlier run are gone, as the
/// executor deletes the Job in the foreground before applying it again.
fn play_node_check(
    fake: &FakeApiServer,
    namespace: &str,
    name: &str,
    bad: &BTreeMap<String, String>,
) {
    for pod in fake.list::<k8s_openapi::api::core::v1::Pod>(Some(namespace)) {
        let labels = pod.metadata.labels.unwrap_or_default();
        if labels
            .get("batch.kubernetes.io/job-name")
            .map(String::as_str)
            == Some(name)
        {
            fake.delete::<k8s_openapi::api::core::v1::Pod>(
                namespace,
                &pod.metadata.name.unwrap_or_default(),
            );
        }
    }
    for index in 0..4 {
        let node = format!("trn1-{index}");
        let pod = format!("{name}-{index}-x{index}z");
        let (line, exit_code) = match bad.get(&node) {
            Some(why) => (
                format!("{} node={node}: {why}", crate::node_check::FAIL_PREFIX),
                1,
            ),
            None => (
                format!(
                    "{} node={node} neuron_devices=16 efa_interfaces=8",
                    crate::node_check::OK_PREFIX
                ),
                0,
            ),
        };
        fake.insert_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": namespace,
                         "labels": {"batch.kubernetes.io/job-name": name}},
            "spec": {"nodeName": node, "containers": [{"name": crate::node_check::CONTAINER, "image": "x"}]},
            "status": {"phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
                       "containerStatuses": [{"name": crate::node_check::CONTAINER, "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                                              "state": {"terminated": {"exitCode": exit_code}}}]},
        }));
        fake.append_log(namespace, &pod, &line);
        fake.close_log(namespace, &pod);
    }
    let status = if bad.is_empty() {
        json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 4})
    } else {
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}], "succeeded": 4 - bad.len(), "failed": bad.len()})
    };
    fake.set_status::<Job>(namespace, name, status);
}

/// Plays the controllers: the CSI driver binds claims, the Job controller completes the staging
/// Jobs and runs the check Jobs (whose pods print `cache` and `dataset`; `None` fails them), the
/// MPI Operator finishes the compile job (failing it while `fail_compile` is set) and starts the
/// train job's launcher, whose log the test writes.
fn play_controllers(fake: &FakeApiServer, knobs: &Knobs) {
    let Knobs {
        fail_compile,
        compile_runs,
        cache,
        dataset,
        stuck,
        stuck_compile,
        train_log,
        bad_nodes,
    } = knobs.clone();
    let check_runs = AtomicUsize::new(0);
    fake.on_write("PersistentVolumeClaim", |fake, event| {
        if event.verb == WriteVerb::Apply && event.subresource.is_none() {
            fake.set_status::<PersistentVolumeClaim>(
                event.namespace(),
                event.name(),
                json!({"phase": "Bound"}),
            );
        }
    });
    fake.on_write("Job", move |fake, event| {
        if event.verb != WriteVerb::Apply || event.subresource.is_some() {
            return;
        }
        let (namespace, name) = (event.namespace().to_owned(), event.name().to_owned());
        if name == crate::staging::JOB_NAME
            && let Some(pod_status) = stuck.lock().unwrap().clone()
        {
            // The staging pod never starts: the Job stays active.
            fake.insert_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-stuck"), "namespace": namespace,
                             "labels": {"batch.kubernetes.io/job-name": name}},
                "spec": {"containers": [{"name": "tokenize", "image": "x"}]},
                "status": pod_status,
            }));
            return;
        }
        if name == crate::node_check::JOB_NAME {
            play_node_check(fake, &namespace, &name, &bad_nodes.lock().unwrap());
            return;
        }
        let answer = match name.as_str() {
            crate::staging::CACHE_CHECK_JOB_NAME => Some(cache.lock().unwrap().clone()),
            crate::staging::DATASET_CHECK_JOB_NAME => Some(dataset.lock().unwrap().clone()),
            _ => None,
        };
        if let Some(answer) = answer {
            let Some(line) = answer else {
                fake.set_status::<Job>(
                    &namespace,
                    &name,
                    json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
                );
                return;
            };
            // A new pod each run, as the Job controller makes, owned by the Job (so deleting
            // the Job in the foreground waits for it); the newest is read.
            let run = check_runs.fetch_add(1, Ordering::SeqCst);
            let pod = format!("{name}-{run:04}");
            fake.insert_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": namespace, "uid": format!("check-uid-{run}"),
                             "creationTimestamp": format!("2026-11-28T00:{:02}:{:02}Z", run / 60, run % 60),
                             "labels": {"batch.kubernetes.io/job-name": name},
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": event.uid(), "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"containers": [{"name": crate::staging::CHECK_CONTAINER, "image": "x"}]},
                "status": {"phase": "Succeeded"},
            }));
            fake.append_log(&namespace, &pod, "some warning on stderr");
            fake.append_log(&namespace, &pod, &line);
            fake.close_log(&namespace, &pod);
        }
        fake.set_status::<Job>(
            &namespace,
            &name,
            json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}),
        );
    });
    fake.on_write("MPIJob", move |fake, event| {
        if event.verb != WriteVerb::Apply || event.subresource.is_some() {
            return;
        }
        let (namespace, name) = (event.namespace().to_owned(), event.name().to_owned());
        if name == "test-mpi-compile" {
            compile_runs.fetch_add(1, Ordering::SeqCst);
            if let Some(pod_status) = stuck_compile.lock().unwrap().clone() {
                // A worker the scheduler cannot place; the job never finishes.
                fake.insert_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{name}-worker-3"), "namespace": namespace,
                                 "labels": {"training.kubeflow.org/job-name": name, "training.kubeflow.org/job-role": "worker"}},
                    "spec": {"containers": [{"name": "mpitest", "image": "x"}]},
                    "status": pod_status,
                }));
                return;
            }
            let condition = if fail_compile.load(Ordering::SeqCst) {
                json!({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "launcher failed 21 times"})
            } else {
                json!({"type": "Succeeded", "status": "True", "reason": "MPIJobSucceeded"})
            };
            fake.set_status::<MPIJob>(&namespace, &name, json!({"conditions": [condition]}));
        } else {
            // Owned by the MPIJob (through the launcher Job, on a real cluster): deleting the
            // job takes it along.
            let pod = format!("{name}-launcher-abcde");
            fake.insert_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": namespace, "uid": "launcher-uid-1",
                             "labels": {"training.kubeflow.org/job-name": name, "training.kubeflow.org/job-role": "launcher"},
                             "ownerReferences": [{"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "name": name, "uid": event.uid(), "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"containers": [{"name": "mpitest", "image": "x"}]},
                "status": {"phase": "Running"},
            }));
            if let Some(lines) = train_log.lock().unwrap().clone() {
                for line in lines {
                    fake.append_log(&namespace, &pod, &line);
                }
                return;
            }
            fake.append_log(&namespace, &pod, "step 1 reduced_train_loss=10.5");
            fake.append_log(&namespace, &pod, "step 2 reduced_train_loss=9.8");
            fake.close_log(&namespace, &pod);
            fake.set_status::<k8s_openapi::api::core::v1::Pod>(&namespace, &pod, json!({"phase": "Succeeded"}));
            fake.set_status::<MPIJob>(&namespace, &name, json!({"conditions": [{"type": "Succeeded", "status": "True"}]}));
        }
    });
}

fn config() -> Config {
    let mut config = Config::default();
    config.cluster.target = Target::Eks;
    config.cluster.account_id = "123456789012".to_owned();
    config.storage.subnet_id = "subnet-0123456789abcdef0".to_owned();
    config.storage.security_group_ids = vec!["sg-0123456789abcdef0".to_owned()];
    config
}

/// A fake cluster with its controllers, the plan of `config`, an executor and the state store.
struct Harness {
    fake: FakeApiServer,
    plan: plan::Plan,
    executor: ClusterExecutor<FakePublisher>,
    store: ConfigMapStore,
    knobs: Knobs,
    lines: Arc<Mutex<Vec<FollowEvent>>>,
    statuses: Arc<Mutex<Vec<String>>>,
}

async fn harness(config: Config) -> Harness {
    let fake = FakeApiServer::start().await;
    seed_healthy_cluster(&fake);
    let knobs = Knobs::default();
    play_controllers(&fake, &knobs);
    let rendered =
        bundle::render_all(&config, None, None, Path::new("/nonexistent/trnkit-stage")).unwrap();
    let plan = plan::plan(&config, &rendered);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let (seen, said) = (lines.clone(), statuses.clone());
    let executor = ClusterExecutor {
        client: fake.client(),
        config: config.clone(),
        facts: None,
        images: rendered.images.clone(),
        publisher: FakePublisher::default(),
        fsx: None,
        hf_token: Some("hf_secret_token_value".to_owned()),
        // Nothing listens there: the Hub check is a warning, refused at once.
        hf_endpoint: "http://127.0.0.1:9".to_owned(),
        timeouts: Timeouts {
            storage: Duration::from_secs(10),
            staging: Duration::from_secs(10),
            cache_check: Duration::from_secs(10),
            node_check: Duration::from_secs(10),
            pod_check: Duration::from_millis(50),
            unschedulable: Duration::from_secs(600),
            compile: Duration::from_secs(10),
            follow_poll: Duration::from_millis(50),
            hang_check: Duration::from_secs(60),
        },
        on_follow: Box::new(move |event| seen.lock().unwrap().push(event.clone())),
        on_status: Box::new(move |status| said.lock().unwrap().push(status.to_owned())),
    };
    let store = ConfigMapStore::new(fake.client(), "default", "trnkit");
    Harness {
        fake,
        plan,
        executor,
        store,
        knobs,
        lines,
        statuses,
    }
}

impl Harness {
    /// The next deploy runs with `config` (the same cluster and recorded state).
    fn replan(&mut self, config: Config) {
        let rendered =
            bundle::render_all(&config, None, None, Path::new("/nonexistent/trnkit-stage"))
                .unwrap();
        self.plan = plan::plan(&config, &rendered);
        self.executor.images = rendered.images;
        self.executor.config = config;
    }

    /// Runs the plan, which must not fail (the events are in the message when it does).
    async fn run_ok(&mut self, selection: Selection) -> Vec<Event> {
        let (report, events) = self.run(selection).await;
        assert_eq!(report.failed, None, "{events:#?}");
        events
    }

    async fn run(&mut self, selection: Selection) -> (run::Report, Vec<Event>) {
        let mut events = Vec::new();
        let report = run::run(
            &self.plan,
            &self.store,
            &mut self.executor,
            selection,
            |event| events.push(event),
        )
        .await
        .unwrap();
        (report, events)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_resumes_after_a_failed_compile_and_then_has_nothing_to_do() {
    let mut h = harness(config()).await;
    h.knobs.fail_compile.store(true, Ordering::SeqCst);
    let (fake, compile_runs, lines) = (
        h.fake.clone(),
        h.knobs.compile_runs.clone(),
        h.lines.clone(),
    );

    // First run: the compile job fails; the error carries the operator's reason.
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Compile), "{events:#?}");
    let failure = failure(&events);
    assert!(
        failure.contains("BackoffLimitExceeded") && failure.contains("resumes at compile"),
        "{failure}"
    );
    let state = h.store.load().await.unwrap();
    assert_eq!(state.get(StepId::Compile).unwrap().status, Status::Failed);
    assert_eq!(state.get(StepId::Staging).unwrap().status, Status::Done);
    assert!(
        fake.get::<MPIJob>("default", "test-mpi-train").is_none(),
        "train must wait for a successful compile"
    );
    // The token reached a Secret, and nothing else: not the state, not the Job.
    let secret: Secret = fake.get("default", "trnkit-hf-token").unwrap();
    assert!(secret.data.unwrap().contains_key("token"));
    let everything =
        serde_json::to_string(&fake.get_value("v1", "ConfigMap", "default", "trnkit-state"))
            .unwrap()
            + &serde_json::to_string(&fake.get::<Job>("default", "trnkit-staging")).unwrap();
    assert!(!everything.contains("hf_secret_token_value"));

    // Second run: resumes at compile (staging is not redone), then trains and follows.
    h.knobs.fail_compile.store(false, Ordering::SeqCst);
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, None, "{events:#?}");
    assert_eq!(
        report.ran,
        [
            StepId::Preflight,
            StepId::Compile,
            StepId::Train,
            StepId::Tensorboard,
            StepId::Follow
        ]
    );
    assert_eq!(h.executor.publisher.calls, 1, "images are not rebuilt");
    assert_eq!(compile_runs.load(Ordering::SeqCst), 2);
    let followed = lines.lock().unwrap().clone();
    assert!(
        followed.contains(&FollowEvent::Attached {
            pod: "test-mpi-train-launcher-abcde".to_owned(),
            uid: "launcher-uid-1".to_owned()
        }),
        "{followed:?}"
    );
    assert!(
        followed.contains(&FollowEvent::Line(
            "step 2 reduced_train_loss=9.8".to_owned()
        )),
        "{followed:?}"
    );
    let auth: Secret = fake.get("default", "tensorboard-auth").unwrap();
    let data = auth.data.unwrap();
    assert!(data.contains_key("password") && data.contains_key("htpasswd"));

    // Third run: nothing to do; no MPIJob is written again.
    fake.clear_requests();
    let (report, _) = h
        .run(Selection {
            skip_follow: true,
            ..Selection::default()
        })
        .await;
    assert!(report.nothing_to_do(&h.plan), "{report:?}");
    assert!(
        fake.requests()
            .iter()
            .all(|request| !(request.path.contains("mpijobs") && request.method != "GET")),
        "{:?}",
        fake.requests()
    );
    let password_before = data.get("password").cloned();
    let auth: Secret = fake.get("default", "tensorboard-auth").unwrap();
    assert_eq!(
        auth.data.unwrap().get("password").cloned(),
        password_before,
        "the password is kept"
    );
}

/// The error of the step that failed.
fn failure(events: &[Event]) -> String {
    events
        .iter()
        .find_map(|event| match event {
            Event::Failed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no step failed: {events:#?}"))
}

fn finished_summary(events: &[Event], step: StepId) -> String {
    events
        .iter()
        .find_map(|event| match event {
            Event::Finished { id, summary } if *id == step => Some(summary.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{step} did not finish: {events:#?}"))
}

/// Runs from compile on (compile runs even when up to date), without following.
fn from_compile() -> Selection {
    Selection {
        from: Some(StepId::Compile),
        skip_follow: true,
        ..Selection::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_cache_skips_the_compile_job_only_after_a_recorded_compile_with_the_same_inputs() {
    let mut h = harness(config()).await;
    *h.knobs.cache.lock().unwrap() = Some(coverage_line(12, 0));

    // A warm cache alone proves nothing: no compile with these inputs is recorded.
    h.run_ok(Selection::default()).await;
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 1);
    let recorded = h.store.load().await.unwrap();
    let compiled = recorded.get(StepId::Compile).unwrap().outputs[plan::COMPILED_INPUTS].clone();
    assert_eq!(compiled.len(), 64, "a sha256: {compiled}");

    // Same inputs after that recorded success: the compile job is skipped, training starts.
    let (report, events) = h.run(from_compile()).await;
    assert_eq!(report.failed, None, "{events:#?}");
    assert!(report.ran.contains(&StepId::Compile));
    let summary = finished_summary(&events, StepId::Compile);
    assert!(
        summary.contains("compile job skipped")
            && summary.contains("12 complete entries")
            && summary.contains("same inputs"),
        "{summary}"
    );
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 1);
    assert!(h.fake.get::<MPIJob>("default", "test-mpi-train").is_some());
    let record = h.store.load().await.unwrap();
    let record = record.get(StepId::Compile).unwrap();
    assert_eq!(record.status, Status::Done);
    assert_eq!(
        record.outputs[plan::COMPILED_INPUTS],
        compiled,
        "a skip keeps the record of the compile that filled the cache"
    );

    // The check pins the training image's compiler and the effective flags.
    let check: Job = h.fake.get("default", "trnkit-cache-check").unwrap();
    let command = check.spec.unwrap().template.spec.unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    let compiler = crate::images::training_image(&config()).neuronx_cc_version;
    assert!(
        command.starts_with(&[
            "trnkit-stage".to_owned(),
            "cache".to_owned(),
            "inspect".to_owned()
        ]) && command.contains(&"--coverage-only".to_owned())
            && command
                .windows(2)
                .any(|pair| pair == ["--compiler-version".to_owned(), compiler.clone()]),
        "{command:?}"
    );
    let statuses = h.statuses.lock().unwrap().clone();
    assert!(
        statuses
            .iter()
            .any(|status| status.starts_with("checking the compile cache")),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_counted_for_another_compiler_version_does_not_skip_the_compile_job() {
    let mut h = harness(config()).await;
    h.run_ok(from_compile()).await;
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 1);

    // Complete entries, but counted for another neuronx-cc, or for every version.
    for compiler in [Some("2.15.128.0"), None] {
        *h.knobs.cache.lock().unwrap() = Some(coverage_line_of(compiler, 12, 0));
        let before = h.knobs.compile_runs.load(Ordering::SeqCst);
        let events = h.run_ok(from_compile()).await;
        assert_eq!(
            h.knobs.compile_runs.load(Ordering::SeqCst),
            before + 1,
            "{compiler:?}: {events:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_batch_size_or_sequence_length_does_not_skip_the_compile_job() {
    let mut h = harness(config()).await;
    *h.knobs.cache.lock().unwrap() = Some(coverage_line(12, 0));
    h.run_ok(from_compile()).await;
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 1);

    // The cache still holds the old graphs' entries; the train job would trace new ones.
    let mut changed = config();
    for (name, value) in [("GBS", "512"), ("SEQ_LENGTH", "2048")] {
        changed
            .training
            .env
            .insert(name.to_owned(), value.to_owned());
        h.replan(changed.clone());
        let before = h.knobs.compile_runs.load(Ordering::SeqCst);
        let (report, events) = h
            .run(Selection {
                skip_follow: true,
                ..Selection::default()
            })
            .await;
        assert_eq!(report.failed, None, "{events:#?}");
        assert_eq!(
            h.knobs.compile_runs.load(Ordering::SeqCst),
            before + 1,
            "{name}={value}: {events:#?}"
        );
        assert!(
            finished_summary(&events, StepId::Compile).contains("succeeded"),
            "{events:#?}"
        );
    }
    // A change that alters no graph (how long finished jobs are kept) reruns the step, but the
    // compile job is skipped: these inputs were compiled.
    let mut renamed = changed;
    renamed.training.ttl_seconds_after_finished = 3600;
    h.replan(renamed);
    let before = h.knobs.compile_runs.load(Ordering::SeqCst);
    let (report, events) = h
        .run(Selection {
            skip_follow: true,
            ..Selection::default()
        })
        .await;
    assert_eq!(report.failed, None, "{events:#?}");
    assert_eq!(
        h.knobs.compile_runs.load(Ordering::SeqCst),
        before,
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_cache_runs_the_compile_job_and_says_what_it_waits_for() {
    let mut h = harness(config()).await;
    h.run_ok(Selection::default()).await;
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 1);
    let statuses = h.statuses.lock().unwrap().clone();
    for expected in [
        "waiting for the claim fsx-claim to be Bound",
        "waiting for Job trnkit-staging",
        "checking the compile cache",
        "waiting for MPIJob test-mpi-compile to succeed (at most 10s)",
    ] {
        assert!(
            statuses.iter().any(|status| status.starts_with(expected)),
            "{expected:?} not in {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_the_node_check_stops_compile_naming_it() {
    let mut h = harness(config()).await;
    h.knobs.bad_nodes.lock().unwrap().insert(
        "trn1-2".to_owned(),
        "fi_info -p efa lists 0 EFA interface(s), 8 requested".to_owned(),
    );
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Compile), "{events:#?}");
    let failure = failure(&events);
    assert!(
        failure.contains("1 node(s) failed the node check")
            && failure.contains("trn1-2: fi_info -p efa lists 0 EFA interface(s), 8 requested"),
        "{failure}"
    );
    assert!(!failure.contains("trn1-0"), "{failure}");
    // Nothing was compiled, the cache was not even asked, and training did not start.
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 0);
    assert!(
        h.fake
            .get::<MPIJob>("default", "test-mpi-compile")
            .is_none()
    );
    assert!(h.fake.get::<Job>("default", "trnkit-cache-check").is_none());
    assert!(h.fake.get::<MPIJob>("default", "test-mpi-train").is_none());
    let check: Job = h.fake.get("default", crate::node_check::JOB_NAME).unwrap();
    assert_eq!(check.spec.unwrap().completions, Some(4));

    // The node replaced: the re-run resumes at compile, checks again and compiles.
    h.knobs.bad_nodes.lock().unwrap().clear();
    h.run_ok(Selection::default()).await;
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 1);
    let statuses = h.statuses.lock().unwrap().clone();
    assert!(
        statuses
            .iter()
            .any(|status| status.starts_with("checking the Neuron devices and EFA interfaces")),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_node_check_compile_does_not_run_the_check() {
    let mut config = config();
    config.training.node_check = false;
    let mut h = harness(config).await;
    h.knobs
        .bad_nodes
        .lock()
        .unwrap()
        .insert("trn1-0".to_owned(), "broken".to_owned());
    h.run_ok(Selection::default()).await;
    assert!(
        h.fake
            .get::<Job>("default", crate::node_check::JOB_NAME)
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_is_named_once_recorded_and_kept_by_the_next_deploy() {
    let store_config = config();
    let mut h = harness(store_config.clone()).await;
    // As `deploy` does: the name resolved from the recorded state before rendering.
    let first_time = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_963_274);
    let state = h.store.load().await.unwrap();
    let named = crate::run_identity::with_run_name(&store_config, &state, first_time);
    assert_eq!(named.training.run_name, "test-mpi-train-20261129-144114");
    h.replan(named);
    h.run_ok(Selection::default()).await;
    let state = h.store.load().await.unwrap();
    let train = state.get(StepId::Train).unwrap();
    assert_eq!(
        train
            .outputs
            .get(crate::run_identity::OUTPUT_KEY)
            .map(String::as_str),
        Some("test-mpi-train-20261129-144114")
    );
    let applied: MPIJob = h.fake.get("default", "test-mpi-train").unwrap();
    assert_eq!(
        crate::run_identity::in_manifest(&serde_json::to_value(&applied).unwrap()).as_deref(),
        Some("test-mpi-train-20261129-144114")
    );

    // A day later, from another machine: the same run, so the train step is up to date.
    let later = first_time + Duration::from_secs(86_400);
    let named = crate::run_identity::with_run_name(&store_config, &state, later);
    assert_eq!(named.training.run_name, "test-mpi-train-20261129-144114");
    h.replan(named);
    let (report, events) = h
        .run(Selection {
            skip_follow: true,
            ..Selection::default()
        })
        .await;
    assert_eq!(report.failed, None, "{events:#?}");
    assert!(report.up_to_date.contains(&StepId::Train), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cache_check_does_not_block_the_compile_job() {
    let mut h = harness(config()).await;
    *h.knobs.cache.lock().unwrap() = None;
    h.run_ok(Selection::default()).await;
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 1);
    assert!(h.fake.get::<MPIJob>("default", "test-mpi-train").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_compile_failures_are_named_when_the_compile_job_fails() {
    let mut h = harness(config()).await;
    *h.knobs.cache.lock().unwrap() = Some(coverage_line(3, 2));
    h.knobs.fail_compile.store(true, Ordering::SeqCst);
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Compile));
    let failure = failure(&events);
    assert!(
        failure.contains("2 failed") && failure.contains("cache prune --failed"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_compile_runs_the_compile_job_without_asking_the_cache() {
    let mut config = config();
    config.training.force_compile = true;
    let mut h = harness(config).await;
    *h.knobs.cache.lock().unwrap() = Some(coverage_line(12, 0));
    h.run_ok(Selection::default()).await;
    assert_eq!(h.knobs.compile_runs.load(Ordering::SeqCst), 1);
    assert!(h.fake.get::<Job>("default", "trnkit-cache-check").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_staging_runs_its_three_jobs_in_order() {
    let mut config = config();
    config.data.shards = 3;
    let mut h = harness(config).await;
    h.run_ok(Selection::default()).await;
    let applied: Vec<String> = h
        .fake
        .requests()
        .iter()
        .filter(|request| request.method == "PATCH" && request.path.contains("/jobs/"))
        .filter_map(|request| request.path.rsplit('/').next().map(str::to_owned))
        .filter(|name| {
            name != crate::staging::CACHE_CHECK_JOB_NAME && name != crate::node_check::JOB_NAME
        })
        .collect();
    assert_eq!(
        applied,
        [
            "trnkit-staging",
            "trnkit-tokenize",
            "trnkit-merge",
            "trnkit-dataset-check"
        ]
    );
    let statuses = h.statuses.lock().unwrap().clone();
    assert!(
        statuses
            .iter()
            .any(|status| status.starts_with("waiting for Job trnkit-merge (3/3")),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_is_redone_when_the_dataset_on_shared_changed_or_vanished() {
    let mut h = harness(config()).await;
    let no_follow = || Selection {
        skip_follow: true,
        ..Selection::default()
    };
    h.run_ok(no_follow()).await;
    let recorded = h.store.load().await.unwrap();
    let outputs = &recorded.get(StepId::Staging).unwrap().outputs;
    assert_eq!(
        outputs
            .get("/shared/data/redpajama_sample_text_document")
            .map(String::as_str),
        Some(&*format!(
            "idx sha256 {:064x}, bin 27390000 bytes, 27390 documents, 13695000 tokens",
            27_390
        ))
    );

    // Unchanged on /shared: staging stays done (the check ran, nothing was re-staged).
    let (report, _) = h.run(no_follow()).await;
    assert!(report.up_to_date.contains(&StepId::Staging), "{report:?}");
    assert!(report.nothing_to_do(&h.plan), "{report:?}");

    // Someone changed the dataset by hand: the fingerprint differs, so staging runs again and
    // records what it produced; the later steps keep their records (their inputs are the same).
    *h.knobs.dataset.lock().unwrap() = Some(fingerprint_line(10));
    let (report, events) = h.run(no_follow()).await;
    assert_eq!(report.failed, None, "{events:#?}");
    assert!(report.ran.contains(&StepId::Staging), "{report:?}");
    assert!(!report.ran.contains(&StepId::Train), "{report:?}");
    let recorded = h.store.load().await.unwrap();
    assert!(
        recorded
            .get(StepId::Staging)
            .unwrap()
            .outputs
            .values()
            .all(|value| value.contains("10 documents")),
        "{recorded:?}"
    );

    // The dataset vanished and staging cannot bring it back: staging fails, naming the check.
    *h.knobs.dataset.lock().unwrap() = None;
    let (report, events) = h.run(no_follow()).await;
    assert_eq!(report.failed, Some(StepId::Staging), "{events:#?}");
    assert!(
        failure(&events).contains("trnkit-dataset-check"),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_cannot_pull_its_image_fails_staging_at_once() {
    let mut h = harness(config()).await;
    *h.knobs.stuck.lock().unwrap() = Some(json!({
        "phase": "Pending",
        "containerStatuses": [{"name": "tokenize", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\": 403 Forbidden"}}}],
    }));
    let started = std::time::Instant::now();
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Staging), "{events:#?}");
    let error = failure(&events);
    assert!(
        error.contains("trnkit-staging-stuck")
            && error.contains("ImagePullBackOff")
            && error.contains("403 Forbidden")
            && error.contains("kubectl describe pod"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the 10 s timeout"
    );
}

#[test]
fn pod_problems_are_what_waiting_will_not_fix() {
    use super::cluster::pod_problem;
    use k8s_openapi::api::core::v1::Pod;
    let now: k8s_openapi::jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
    let grace = Duration::from_secs(600);
    let pod = |status: serde_json::Value| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    };
    let waiting = |reason: &str| {
        pod(
            json!({"initContainerStatuses": [{"name": "stage", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": "m"}}}]}),
        )
    };
    let unschedulable = |since: &str| {
        pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.", "lastTransitionTime": since}]}),
        )
    };
    let problem = pod_problem(&waiting("ImagePullBackOff"), now, grace).unwrap();
    assert!(
        problem.contains("container stage cannot start: ImagePullBackOff: m"),
        "{problem}"
    );
    assert!(pod_problem(&waiting("CreateContainerConfigError"), now, grace).is_some());
    // Transient: retried by the kubelet.
    assert!(pod_problem(&waiting("ErrImagePull"), now, grace).is_none());
    assert!(pod_problem(&waiting("ContainerCreating"), now, grace).is_none());
    // The autoscaler gets its grace period.
    assert!(pod_problem(&unschedulable("2026-11-28T11:58:00Z"), now, grace).is_none());
    let problem = pod_problem(&unschedulable("2026-11-28T11:45:00Z"), now, grace).unwrap();
    assert!(
        problem.contains("could not be scheduled for 15m") && problem.contains("Insufficient cpu"),
        "{problem}"
    );
    assert!(pod_problem(&pod(json!({"phase": "Running"})), now, grace).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_worker_without_a_node_fails_compile_after_the_grace_period() {
    let mut h = harness(config()).await;
    *h.knobs.stuck_compile.lock().unwrap() = Some(json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/7 nodes are available: 4 Insufficient aws.amazon.com/neuron.",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }));
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Compile), "{events:#?}");
    let error = failure(&events);
    assert!(
        error.contains("test-mpi-compile-worker-3 could not be scheduled")
            && error.contains("Insufficient aws.amazon.com/neuron")
            && error.contains("training.kubeflow.org/job-name=test-mpi-compile"),
        "{error}"
    );
    assert!(h.fake.get::<MPIJob>("default", "test-mpi-train").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_falls_back_to_tcp_is_stopped_with_its_evidence() {
    let mut h = harness(config()).await;
    // Real lines, as mpirun tags them: a NeMo progress line, then the OFI plugin failing.
    let progress = "Epoch 0:   1%|          | 795/77225 [9:07:58<878:01:48, 41.36s/it, loss=3.1, v_num=, reduced_train_loss=3.090, global_step=794.0, consumed_samples=1.63e+6]";
    let mut lines = vec![format!("[1,0]<stdout>:{progress}")];
    lines.extend(
        include_str!("../observe/testdata/socket_fallback.log")
            .lines()
            .skip(1)
            .map(|line| format!("[1,0]<stdout>:{line}")),
    );
    *h.knobs.train_log.lock().unwrap() = Some(lines);
    let (fake, statuses) = (h.fake.clone(), h.statuses.clone());
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Follow), "{events:#?}");
    let failure = failure(&events);
    assert!(
        failure.contains("stopped (MPIJob deleted): tcp:"),
        "{failure}"
    );
    assert!(
        failure.contains("aws-ofi-nccl initialization failed"),
        "{failure}"
    );
    assert!(
        fake.get::<MPIJob>("default", "test-mpi-train").is_none(),
        "the train job must be deleted"
    );
    let said = statuses.lock().unwrap().clone();
    assert!(
        said.iter()
            .any(|status| status.starts_with("step 794/77225 · loss 3.090")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_progress_for_longer_than_the_bound_is_hung_and_left_running() {
    let mut config = config();
    config.training.hang_timeout = Some(crate::config::Timeout::parse("1s").unwrap());
    // No restart budget: the hang is reported at once (see `restart`).
    config.training.max_restarts = 0;
    let mut h = harness(config).await;
    h.executor.timeouts.hang_check = Duration::from_millis(100);
    // One real progress line, then silence: the launcher keeps running.
    let progress = "Epoch 0:   1%|          | 795/77225 [9:07:58<878:01:48, 41.36s/it, loss=3.1, v_num=, reduced_train_loss=3.090, global_step=794.0, consumed_samples=1.63e+6]";
    *h.knobs.train_log.lock().unwrap() = Some(vec![format!("[1,0]<stdout>:{progress}")]);
    let fake = h.fake.clone();
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Follow), "{events:#?}");
    let failure = failure(&events);
    assert!(
        failure.contains("hung: no progress line for") && failure.contains("left running"),
        "{failure}"
    );
    assert!(
        fake.get::<MPIJob>("default", "test-mpi-train").is_some(),
        "a hung job is reported, not deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_tokenizer_without_hf_token_stops_preflight_before_images_and_storage() {
    let mut h = harness(config()).await;
    h.executor.hf_token = None;
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Preflight), "{events:#?}");
    let error = failure(&events);
    assert!(
        error.contains("huggingface-hub") && error.contains("HF_TOKEN"),
        "{error}"
    );
    assert_eq!(h.executor.publisher.calls, 0, "no image was pushed");
}

/// The requests that wrote the train MPIJob: `(method, propagationPolicy of a delete)`.
fn train_job_writes(fake: &FakeApiServer) -> Vec<(String, Option<String>)> {
    fake.requests()
        .iter()
        .filter(|request| {
            request.path.ends_with("/mpijobs/test-mpi-train") && request.method != "GET"
        })
        .map(|request| {
            let policy = request.query.get("propagationPolicy").cloned().or_else(|| {
                request
                    .body
                    .as_ref()
                    .and_then(|body| body["propagationPolicy"].as_str())
                    .map(str::to_owned)
            });
            (request.method.clone(), policy)
        })
        .collect()
}

/// How often the train MPIJob was deleted in the foreground (a restart).
fn foreground_deletes(fake: &FakeApiServer) -> usize {
    train_job_writes(fake)
        .iter()
        .filter(|(method, policy)| method == "DELETE" && policy.as_deref() == Some("Foreground"))
        .count()
}

/// A train launcher that makes one step of progress and then nothing, followed with a hang
/// bound of 1 s and a budget of `max_restarts`.
async fn hung_harness(max_restarts: u32) -> Harness {
    let mut config = config();
    config.training.hang_timeout = Some(crate::config::Timeout::parse("1s").unwrap());
    config.training.max_restarts = max_restarts;
    let mut h = harness(config).await;
    h.executor.timeouts.hang_check = Duration::from_millis(100);
    let progress = "Epoch 0:   1%|          | 795/77225 [9:07:58<878:01:48, 41.36s/it, loss=3.1, v_num=, reduced_train_loss=3.090, global_step=794.0, consumed_samples=1.63e+6]";
    *h.knobs.train_log.lock().unwrap() = Some(vec![format!("[1,0]<stdout>:{progress}")]);
    h
}

/// A second `watch` process: a supervisor with nothing but the cluster and the recorded state.
async fn fresh_supervisor_run(h: &Harness) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    let manifest = h
        .plan
        .step(StepId::Follow)
        .unwrap()
        .manifests
        .iter()
        .find(|manifest| manifest.kind == "MPIJob")
        .unwrap()
        .clone();
    let store = ConfigMapStore::new(h.fake.client(), "default", "trnkit");
    let mut on_follow = |_: &FollowEvent| {};
    let on_status = |_: &str| {};
    super::supervise::Supervisor {
        client: h.fake.client(),
        config: &h.executor.config,
        manifest: &manifest,
        store: &store,
        pace: super::supervise::Pace {
            follow_poll: Duration::from_millis(50),
            hang_check: Duration::from_millis(100),
            pod_check: Duration::from_millis(50),
        },
        on_follow: &mut on_follow,
        on_status: &on_status,
    }
    .run()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_run_is_restarted_once_then_fails_with_its_history() {
    let mut h = hung_harness(1).await;
    let (report, events) = h.run(Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Follow), "{events:#?}");
    let failure = failure(&events);
    assert!(
        failure.contains("hung: no progress line for")
            && failure.contains("not restarted")
            && failure.contains("restarts: 1 of 1 — ")
            && failure.contains("left running"),
        "{failure}"
    );
    // Applied by the train step (after its delete of an earlier job, none here), deleted in
    // the foreground and re-created once by the restart.
    let writes = train_job_writes(&h.fake);
    assert_eq!(
        writes[writes.len().saturating_sub(3)..],
        [
            ("PATCH".to_owned(), None),
            ("DELETE".to_owned(), Some("Foreground".to_owned())),
            ("PATCH".to_owned(), None),
        ],
        "{writes:?}"
    );
    assert_eq!(foreground_deletes(&h.fake), 1, "{writes:?}");
    assert!(
        h.fake.get::<MPIJob>("default", "test-mpi-train").is_some(),
        "a hung job whose budget is spent is left running"
    );
    // Recorded under the run's name, with the follow step's own record beside it.
    let state = h.store.load().await.unwrap();
    let record = state.runs.get("test-mpi-train").expect("the run's record");
    assert_eq!(record.restarts.len(), 1, "{record:?}");
    assert!(
        record.restarts[0]
            .reason
            .starts_with("hung: no progress line for"),
        "{record:?}"
    );
    assert!(record.gave_up.is_some(), "{record:?}");
    assert_eq!(state.get(StepId::Follow).unwrap().status, Status::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_budget_survives_a_new_trnkit_process() {
    let mut h = hung_harness(2).await;
    // This deploy is stopped (--no-follow); a first watch restarts the hung job twice.
    let (report, events) = h
        .run(Selection {
            skip_follow: true,
            ..Selection::default()
        })
        .await;
    assert_eq!(report.failed, None, "{events:#?}");
    let error = fresh_supervisor_run(&h).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("restarts: 2 of 2"),
        "{error:#}"
    );
    assert_eq!(foreground_deletes(&h.fake), 2);

    // Another watch, from a fresh process state: it reads the recorded count and refuses to
    // restart again.
    h.fake.clear_requests();
    let error = format!("{:#}", fresh_supervisor_run(&h).await.unwrap_err());
    assert!(
        error.contains("not restarted: run test-mpi-train has had 2 restart(s)"),
        "{error}"
    );
    assert_eq!(
        train_job_writes(&h.fake),
        [],
        "the job is neither deleted nor re-created"
    );
    let state = h.store.load().await.unwrap();
    assert_eq!(state.runs["test-mpi-train"].restarts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_worker_pod_restarts_the_job() {
    let mut h = harness(config()).await;
    // The launcher runs and writes nothing more; a worker is Failed, which the operator leaves.
    *h.knobs.train_log.lock().unwrap() = Some(vec!["[1,0]<stdout>:starting".to_owned()]);
    let (report, events) = h
        .run(Selection {
            skip_follow: true,
            ..Selection::default()
        })
        .await;
    assert_eq!(report.failed, None, "{events:#?}");
    h.fake.insert_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "test-mpi-train-worker-1", "namespace": "default",
                     "labels": {"training.kubeflow.org/job-name": "test-mpi-train", "training.kubeflow.org/job-role": "worker"}},
        "spec": {"containers": [{"name": "mpitest", "image": "x"}]},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "mpitest", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]},
    }));
    h.executor.config.training.max_restarts = 1;
    // Not owned by the job, the failed pod outlives the restart: the second look spends the
    // budget.
    let error = format!("{:#}", fresh_supervisor_run(&h).await.unwrap_err());
    assert!(
        error.contains("test-mpi-train failed: worker failed: pod test-mpi-train-worker-1: container mpitest exited with 137 (OOMKilled)"),
        "{error}"
    );
    let state = h.store.load().await.unwrap();
    let record = &state.runs["test-mpi-train"];
    assert_eq!(record.restarts.len(), 1, "{record:?}");
    assert!(
        record.restarts[0]
            .reason
            .contains("test-mpi-train-worker-1"),
        "{record:?}"
    );
}

/// Another tool can drive a deploy from its own runtime: the whole run is a `Send` future that
/// `tokio::spawn` takes onto a worker thread (nothing blocks the runtime or needs the caller's
/// thread), and it deploys as the tests above do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_runs_as_a_task_spawned_on_another_runtime_thread() {
    let h = harness(config()).await;
    let Harness {
        fake: _fake,
        plan,
        mut executor,
        store,
        ..
    } = h;
    let report = tokio::spawn(async move {
        super::run::run(&plan, &store, &mut executor, Selection::default(), |_| {}).await
    })
    .await
    .expect("the deploy task ran")
    .expect("the deploy ran");
    assert_eq!(report.failed, None, "{report:?}");
}

/// The EKS sequence end to end, short of building images: the AWS identity from STS (moto)
/// names the account, preflight reads the cluster, `--only preflight` builds no staging
/// binary, the run holds the deploy Lease while it runs and lets go after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eks_sequence_checks_identity_and_preflight_under_the_lease_and_builds_nothing_for_preflight()
 {
    let Some(moto) = test_support::services::moto_url() else {
        return;
    };
    let fake = FakeApiServer::builder()
        .kind(test_support::fake_apiserver::KindInfo::new(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            false,
        ))
        .start()
        .await;
    seed_healthy_cluster(&fake);
    let mut config = config();
    // Moto's STS answers for this account: the configured one must match it.
    config.cluster.account_id = "123456789012".to_owned();
    let builds = Arc::new(AtomicUsize::new(0));
    let counted = builds.clone();
    let notes = Arc::new(Mutex::new(Vec::new()));
    let noted = notes.clone();
    let on_note = move |note: &str| noted.lock().unwrap().push(note.to_owned());
    let mut events = Vec::new();
    let mut on_event = |event: Event| events.push(event);
    let outcome = super::eks::deploy(
        &config,
        Selection {
            only: Some(StepId::Preflight),
            ..Selection::default()
        },
        super::eks::Edge {
            // The default tokenizer is gated: a token is needed; nothing answers at this Hub,
            // which is a warning only.
            hf_token: Some("hf_secret_token_value".to_owned()),
            hf_endpoint: "http://127.0.0.1:9".to_owned(),
            ..super::eks::Edge::default()
        },
        super::eks::Connections {
            aws: test_support::aws::sdk_config(&moto, "us-west-2").await,
            kube: fake.client(),
        },
        move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok(std::path::PathBuf::from("/nonexistent/trnkit-stage")) }
        },
        |_, _, _| FakePublisher::default(),
        super::eks::Callbacks {
            on_note: &on_note,
            on_event: &mut on_event,
            on_follow: Box::new(|_, _| {}),
            on_status: Box::new(|_| {}),
        },
    )
    .await
    .unwrap();
    assert_eq!(outcome.report.failed, None, "{events:?}");
    assert_eq!(outcome.report.ran, [StepId::Preflight]);
    assert_eq!(
        builds.load(Ordering::SeqCst),
        0,
        "--only preflight builds nothing"
    );
    assert!(
        notes
            .lock()
            .unwrap()
            .iter()
            .any(|note| note.contains("AWS account 123456789012")),
        "{notes:?}"
    );
    let lease_writes = fake
        .requests()
        .into_iter()
        .filter(|request| request.path.contains("/leases"))
        .map(|request| request.method)
        .collect::<Vec<_>>();
    assert!(
        lease_writes.contains(&"POST".to_owned()),
        "{lease_writes:?}"
    );
    assert!(
        lease_writes.contains(&"DELETE".to_owned()),
        "{lease_writes:?}"
    );
}
