//! `mpijob::io` against the FAKE API server: the server-side apply request, waiting on the
//! job's conditions, finding launchers, following the launcher log across restarts, deleting.
//! The tests script what the MPI Operator would do through the FAKE server's handle and hooks.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use mpijob::io::{self, FollowEvent, FollowOptions, Outcome};
use mpijob::{MPIJob, Mpirun, TrainiumJobConfig};
use serde_json::{Value, json};
use test_support::fake_apiserver::{FakeApiServer, WriteVerb};

const MANAGER: &str = "trnkit-test";
const GENEROUS: Duration = Duration::from_secs(10);

fn job(name: &str) -> MPIJob {
    let mut mpirun = Mpirun::new("./train.sh");
    mpirun.forward_env = vec!["PATH".into()];
    let config = TrainiumJobConfig::new(name, "example.com/train:v1", 2, mpirun);
    mpijob::build(&config).expect("a valid job")
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": kind, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z",
    })
}

fn launcher(job: &str, suffix: &str, uid: &str, created: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{job}-launcher-{suffix}"), "namespace": "default", "uid": uid,
            "creationTimestamp": created,
            "labels": { io::JOB_NAME_LABEL: job, io::JOB_ROLE_LABEL: "launcher" },
        },
        "status": { "phase": phase },
    })
}

/// A fake with the MPIJob `llama` applied and its first launcher `llama-launcher-aaaaa`
/// (UID `uid-a`) in `phase`.
async fn llama_with_launcher(phase: &str) -> (FakeApiServer, Api<MPIJob>, Api<Pod>) {
    let fake = FakeApiServer::start().await;
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    io::apply(&jobs, &job("llama"), MANAGER).await.unwrap();
    fake.insert_value(launcher(
        "llama",
        "aaaaa",
        "uid-a",
        "2026-01-01T00:00:00Z",
        phase,
    ));
    (fake, jobs, pods)
}

fn set_pod_phase(fake: &FakeApiServer, name: &str, phase: &str) {
    let _: Pod = fake.set_status("default", name, json!({ "phase": phase }));
}

#[tokio::test]
async fn apply_is_a_forced_server_side_apply_and_idempotent() {
    let fake = FakeApiServer::start().await;
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());

    let first = io::apply(&jobs, &job("llama"), MANAGER).await.unwrap();
    let requests = fake.requests();
    let patch = requests
        .iter()
        .find(|request| request.method == "PATCH")
        .expect("one PATCH");
    assert_eq!(
        patch.path,
        "/apis/kubeflow.org/v2beta1/namespaces/default/mpijobs/llama"
    );
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(patch.query("fieldManager"), Some(MANAGER));
    assert_eq!(patch.query("force"), Some("true"));
    assert_eq!(patch.body.as_ref().unwrap()["kind"], "MPIJob");
    assert!(first.metadata.uid.is_some());

    let again = io::apply(&jobs, &job("llama"), MANAGER).await.unwrap();
    assert_eq!(
        again.metadata.resource_version, first.metadata.resource_version,
        "nothing changed"
    );
    assert_eq!(again.metadata.generation, Some(1));
    assert_eq!(again.spec.mpi_replica_specs["Worker"].replicas, Some(2));
}

#[tokio::test]
async fn apply_into_a_missing_namespace_names_the_job() {
    let fake = FakeApiServer::start().await;
    let jobs: Api<MPIJob> = Api::namespaced(fake.client(), "absent");
    let mut missing = job("llama");
    missing.metadata.namespace = Some("absent".into());
    let error = io::apply(&jobs, &missing, MANAGER).await.unwrap_err();
    assert!(
        matches!(&error, mpijob::Error::ApplyMpiJob { name, namespace, .. } if name == "llama" && namespace == "absent"),
        "{error:?}"
    );
}

/// Scripts the operator: once the job is applied, it reports `Created`, `Running`, then `terminal`.
fn finish_after_apply(fake: &FakeApiServer, terminal: Value) {
    fake.on_write("MPIJob", move |fake, event| {
        if event.verb != WriteVerb::Apply {
            return;
        }
        let (fake, name, terminal) = (fake.clone(), event.name().to_owned(), terminal.clone());
        tokio::spawn(async move {
            let created = condition("Created", "MPIJobCreated", "");
            for conditions in [
                json!([created.clone()]),
                json!([created.clone(), condition("Running", "MPIJobRunning", "")]),
                json!([created, terminal]),
            ] {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _: MPIJob =
                    fake.set_status("default", &name, json!({ "conditions": conditions }));
            }
        });
    });
}

#[tokio::test]
async fn wait_returns_succeeded() {
    let fake = FakeApiServer::start().await;
    finish_after_apply(
        &fake,
        condition(
            "Succeeded",
            "MPIJobSucceeded",
            "MPIJob default/llama successfully completed.",
        ),
    );
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());
    io::apply(&jobs, &job("llama"), MANAGER).await.unwrap();
    assert_eq!(
        io::wait_for_completion(&jobs, "llama", GENEROUS)
            .await
            .unwrap(),
        Outcome::Succeeded
    );
    assert!(fake.requests().iter().any(|request| request.is_watch()
        && request.query("fieldSelector") == Some("metadata.name=llama")));
}

#[tokio::test]
async fn wait_returns_the_failure_reason_and_message() {
    let fake = FakeApiServer::start().await;
    finish_after_apply(
        &fake,
        condition(
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ),
    );
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());
    io::apply(&jobs, &job("llama"), MANAGER).await.unwrap();
    let outcome = io::wait_for_completion(&jobs, "llama", GENEROUS)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into()
        }
    );
}

#[tokio::test]
async fn wait_times_out_on_a_job_that_keeps_running() {
    let fake = FakeApiServer::start().await;
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());
    io::apply(&jobs, &job("llama"), MANAGER).await.unwrap();
    let _: MPIJob = fake.set_status(
        "default",
        "llama",
        json!({ "conditions": [condition("Running", "MPIJobRunning", "")] }),
    );
    let error = io::wait_for_completion(&jobs, "llama", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(error, mpijob::Error::WaitTimeout { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("did not finish within 200ms"),
        "{error}"
    );
}

#[tokio::test]
async fn wait_reports_a_job_deleted_meanwhile() {
    let fake = FakeApiServer::start().await;
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());
    io::apply(&jobs, &job("llama"), MANAGER).await.unwrap();
    let deleter = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fake.delete::<MPIJob>("default", "llama");
        })
    };
    let error = io::wait_for_completion(&jobs, "llama", GENEROUS)
        .await
        .unwrap_err();
    deleter.await.unwrap();
    assert!(
        matches!(error, mpijob::Error::MpiJobGone { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn launcher_pods_are_selected_by_labels_newest_first() {
    let fake = FakeApiServer::start().await;
    fake.insert_value(launcher(
        "llama",
        "aaaaa",
        "uid-a",
        "2026-01-01T00:00:00Z",
        "Failed",
    ));
    fake.insert_value(launcher(
        "llama",
        "bbbbb",
        "uid-b",
        "2026-01-01T00:05:00Z",
        "Running",
    ));
    fake.insert_value(launcher(
        "other",
        "ccccc",
        "uid-c",
        "2026-01-01T00:09:00Z",
        "Running",
    ));
    let mut worker = launcher(
        "llama",
        "worker-0",
        "uid-w",
        "2026-01-01T00:09:00Z",
        "Running",
    );
    worker["metadata"]["labels"][io::JOB_ROLE_LABEL] = json!("worker");
    fake.insert_value(worker);

    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let found = io::launcher_pods(&pods, "llama").await.unwrap();
    let uids: Vec<_> = found
        .iter()
        .map(|pod| pod.metadata.uid.clone().unwrap())
        .collect();
    assert_eq!(uids, ["uid-b", "uid-a"]);
    let list = fake
        .requests()
        .into_iter()
        .find(|request| request.path.ends_with("/pods"))
        .unwrap();
    assert_eq!(
        list.query("labelSelector"),
        Some(io::launcher_selector("llama").as_str())
    );

    fake.append_log("default", "llama-launcher-bbbbb", "one");
    fake.append_log("default", "llama-launcher-bbbbb", "two");
    let (pod, tail) = io::launcher_log_tail(&pods, "llama", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (pod.as_str(), tail.as_str()),
        ("llama-launcher-bbbbb", "two\n")
    );
    assert!(
        io::launcher_log_tail(&pods, "absent", 1)
            .await
            .unwrap()
            .is_none()
    );
}

fn options() -> FollowOptions {
    FollowOptions {
        poll_interval: Duration::from_millis(10),
        container: None,
    }
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = mpijob::Result<FollowEvent>> + Unpin),
) -> FollowEvent {
    tokio::time::timeout(GENEROUS, stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
        .expect("no error")
}

#[tokio::test]
async fn follow_reattaches_when_the_launcher_restarts_under_a_new_uid() {
    let (fake, jobs, pods) = llama_with_launcher("Pending").await;
    let first = "llama-launcher-aaaaa";

    let mut events = Box::pin(io::follow_launcher(pods, jobs, "llama", options()));
    // Pending pods are not followed yet; once running, the follower attaches.
    let script = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            set_pod_phase(&fake, first, "Running");
            fake.append_log("default", first, "step 1 loss 10.5");
        })
    };
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Attached {
            pod: first.into(),
            uid: "uid-a".into()
        }
    );
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Line("step 1 loss 10.5".into())
    );
    script.await.unwrap();

    // The launcher crashes; the operator's Job starts a new launcher pod.
    fake.append_log("default", first, "NCCL error");
    set_pod_phase(&fake, first, "Failed");
    fake.close_log("default", first);
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Line("NCCL error".into())
    );
    let second = "llama-launcher-bbbbb";
    fake.insert_value(launcher(
        "llama",
        "bbbbb",
        "uid-b",
        "2026-01-01T00:01:00Z",
        "Running",
    ));
    fake.append_log("default", second, "step 1 loss 10.5");
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Reattached {
            pod: second.into(),
            uid: "uid-b".into(),
            previous_uid: "uid-a".into()
        }
    );
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Line("step 1 loss 10.5".into())
    );

    // It finishes, and so does the job.
    fake.append_log("default", second, "done");
    set_pod_phase(&fake, second, "Succeeded");
    let _: MPIJob = fake.set_status(
        "default",
        "llama",
        json!({ "conditions": [condition("Succeeded", "MPIJobSucceeded", "")] }),
    );
    fake.close_log("default", second);
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Line("done".into())
    );
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Finished(Outcome::Succeeded)
    );
    assert!(
        tokio::time::timeout(GENEROUS, events.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends"
    );
}

#[tokio::test]
async fn follow_reconnects_to_the_same_pod_without_repeating_lines() {
    let (fake, jobs, pods) = llama_with_launcher("Running").await;
    let pod = "llama-launcher-aaaaa";
    fake.append_log("default", pod, "one");

    let mut events = Box::pin(io::follow_launcher(pods, jobs, "llama", options()));
    assert!(matches!(
        next_event(&mut events).await,
        FollowEvent::Attached { .. }
    ));
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Line("one".into())
    );
    fake.break_log_streams("default", pod);
    fake.append_log("default", pod, "two");
    assert_eq!(
        next_event(&mut events).await,
        FollowEvent::Line("two".into()),
        "no repeat of `one`, no re-attach event"
    );
    let log_requests = fake
        .requests()
        .iter()
        .filter(|request| request.path.ends_with("/log"))
        .count();
    assert!(
        log_requests >= 2,
        "the follower reconnected ({log_requests} log requests)"
    );
}

#[tokio::test]
async fn follow_of_a_finished_job_reads_the_last_log_and_ends() {
    let (fake, jobs, pods) = llama_with_launcher("Failed").await;
    let _: MPIJob = fake.set_status(
        "default",
        "llama",
        json!({ "conditions": [condition("Failed", "BackoffLimitExceeded", "limit")] }),
    );
    fake.append_log("default", "llama-launcher-aaaaa", "Traceback");
    fake.close_log("default", "llama-launcher-aaaaa");
    let events: Vec<FollowEvent> = tokio::time::timeout(
        GENEROUS,
        io::follow_launcher(pods, jobs, "llama", options()).try_collect(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        events,
        [
            FollowEvent::Attached {
                pod: "llama-launcher-aaaaa".into(),
                uid: "uid-a".into()
            },
            FollowEvent::Line("Traceback".into()),
            FollowEvent::Finished(Outcome::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "limit".into()
            }),
        ]
    );
}

#[tokio::test]
async fn follow_ends_with_an_error_when_the_job_is_deleted() {
    let fake = FakeApiServer::start().await;
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let mut events = Box::pin(io::follow_launcher(pods, jobs, "llama", options()));
    let error = tokio::time::timeout(GENEROUS, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(error, mpijob::Error::MpiJobGone { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn delete_reports_whether_the_job_existed() {
    let fake = FakeApiServer::start().await;
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());
    io::apply(&jobs, &job("llama"), MANAGER).await.unwrap();
    assert!(io::delete(&jobs, "llama").await.unwrap());
    assert!(fake.get::<MPIJob>("default", "llama").is_none());
    assert!(!io::delete(&jobs, "llama").await.unwrap());
    let delete = fake
        .requests()
        .into_iter()
        .find(|request| request.method == "DELETE")
        .unwrap();
    assert_eq!(
        delete.path,
        "/apis/kubeflow.org/v2beta1/namespaces/default/mpijobs/llama"
    );
}

/// With the blueprint's v0.4.0 CRD installed, a job carrying `launcherCreationPolicy` is
/// stopped before the apply with the field named; the job built for v0.4.0 applies.
#[tokio::test]
async fn apply_checks_the_job_against_the_installed_crd() {
    let fake = FakeApiServer::start().await;
    fake.insert_value(mpijob::OperatorCrd::V0_4_0.crd().clone());
    let jobs: Api<MPIJob> = Api::default_namespaced(fake.client());

    let error = io::apply(&jobs, &job("llama"), MANAGER).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("spec.launcherCreationPolicy: the installed CRD mpijobs.kubeflow.org does not declare it")
            && message.contains("init-container launcher gate")
            && message.contains("runLauncherAsWorker"),
        "{message}"
    );
    assert!(
        fake.requests()
            .iter()
            .all(|request| request.method != "PATCH"),
        "nothing was applied"
    );

    let mut mpirun = Mpirun::new("./train.sh");
    mpirun.forward_env = vec!["PATH".into()];
    let mut config = TrainiumJobConfig::new("llama", "example.com/train:v1", 2, mpirun);
    config.launcher_gate = mpijob::LauncherGate::InitContainer;
    config.operator_crd = mpijob::OperatorCrd::V0_4_0;
    let old = mpijob::build(&config).unwrap();
    io::apply(&jobs, &old, MANAGER).await.unwrap();

    // What the check stops is what the FAKE server (as a real one) refuses.
    let value = serde_json::to_value(job("llama")).unwrap();
    let refused = jobs
        .patch(
            "llama",
            &kube::api::PatchParams::apply(MANAGER).force(),
            &kube::api::Patch::Apply(&value),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("field not declared in schema"),
        "{refused}"
    );
}
