//! Opt-in end-to-end tests against a real cluster with the MPI Operator (v2beta1) installed.
//!
//! They are `#[ignore]`d so `cargo test` never touches a cluster. To run them, point `KUBECONFIG`
//! at a cluster you may create namespaces in, and run
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo test -p mpijob --test it cluster -- --ignored --test-threads 1
//! ```
//!
//! Each test works in a throwaway namespace `trnkit-e2e-<random>` that it deletes at the end,
//! with the operator's tiny `mpi-pi` example job (1 worker, 1 CPU, public image
//! `mpioperator/mpi-pi:openmpi`). Nothing needs Trainium, EFA or FSx.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use mpijob::MPIJob;
use mpijob::io::{self, FollowEvent, FollowOptions, Outcome};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const MANAGER: &str = "trnkit-e2e";

fn pi_job(name: &str, namespace: &str, launcher_command: &[&str]) -> MPIJob {
    let container = |name: &str, command: &[&str]| {
        json!({
            "name": name, "image": "mpioperator/mpi-pi:openmpi", "command": command,
            "securityContext": { "runAsUser": 1000 },
            "resources": { "limits": { "cpu": "1", "memory": "1Gi" } },
        })
    };
    serde_json::from_value(json!({
        "apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "slotsPerWorker": 1,
            "runPolicy": { "cleanPodPolicy": "Running", "backoffLimit": 0 },
            "sshAuthMountPath": "/home/mpiuser/.ssh",
            "launcherCreationPolicy": "WaitForWorkersReady",
            "mpiReplicaSpecs": {
                "Launcher": { "replicas": 1, "restartPolicy": "OnFailure", "template": { "spec": {
                    "containers": [container("mpi-launcher", launcher_command)] } } },
                "Worker": { "replicas": 1, "restartPolicy": "Never", "template": { "spec": {
                    "containers": [container("mpi-worker", &["/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config"])] } } },
            },
        },
    }))
    .expect("the pi job deserializes")
}

/// Runs `body` in a fresh namespace and deletes the namespace afterwards, pass or fail.
async fn in_namespace<F, Fut>(body: F) -> TestResult
where
    F: FnOnce(kube::Client, String) -> Fut,
    Fut: std::future::Future<Output = TestResult>,
{
    let client = kube::Client::try_default()
        .await
        .map_err(|error| format!("set KUBECONFIG to a reachable cluster: {error}"))?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
    let namespace = format!("trnkit-e2e-{nanos:08x}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } }),
    )?;
    namespaces
        .patch(
            &namespace,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&object),
        )
        .await?;
    let result = body(client, namespace.clone()).await;
    namespaces
        .delete(&namespace, &DeleteParams::background())
        .await?;
    result
}

#[tokio::test]
#[ignore = "needs cluster: set KUBECONFIG"]
async fn pi_job_succeeds_and_its_launcher_log_is_followed() -> TestResult {
    in_namespace(|client, namespace| async move {
        let jobs: Api<MPIJob> = Api::namespaced(client.clone(), &namespace);
        let pods: Api<Pod> = Api::namespaced(client, &namespace);
        let job = pi_job("pi", &namespace, &["mpirun", "-n", "1", "/home/mpiuser/pi"]);
        let first = io::apply(&jobs, &job, MANAGER).await?;
        let again = io::apply(&jobs, &job, MANAGER).await?;
        assert_eq!(first.metadata.resource_version, again.metadata.resource_version, "a re-apply changes nothing");

        let options = FollowOptions { poll_interval: Duration::from_secs(2), container: None };
        let events: Vec<FollowEvent> = tokio::time::timeout(Duration::from_secs(600), io::follow_launcher(pods.clone(), jobs.clone(), "pi", options).try_collect()).await??;
        assert!(matches!(events.first(), Some(FollowEvent::Attached { .. })), "{events:?}");
        assert!(events.iter().any(|event| matches!(event, FollowEvent::Line(line) if line.contains("pi is approximately"))), "{events:?}");
        assert_eq!(events.last(), Some(&FollowEvent::Finished(Outcome::Succeeded)));
        assert_eq!(io::wait_for_completion(&jobs, "pi", Duration::from_secs(10)).await?, Outcome::Succeeded);
        assert!(!io::launcher_pods(&pods, "pi").await?.is_empty());
        assert!(io::delete(&jobs, "pi").await?);
        Ok(())
    })
    .await
}

#[tokio::test]
#[ignore = "needs cluster: set KUBECONFIG"]
async fn failing_launcher_reports_failed_with_a_reason_and_a_short_wait_times_out() -> TestResult {
    in_namespace(|client, namespace| async move {
        let jobs: Api<MPIJob> = Api::namespaced(client, &namespace);
        io::apply(
            &jobs,
            &pi_job(
                "fails",
                &namespace,
                &["sh", "-c", "echo failing on purpose; exit 3"],
            ),
            MANAGER,
        )
        .await?;
        let error = io::wait_for_completion(&jobs, "fails", Duration::from_millis(100))
            .await
            .expect_err("too short to finish");
        assert!(
            matches!(error, mpijob::Error::WaitTimeout { .. }),
            "{error:?}"
        );
        match io::wait_for_completion(&jobs, "fails", Duration::from_secs(600)).await? {
            Outcome::Failed { reason, .. } => assert!(!reason.is_empty()),
            Outcome::Succeeded => panic!("a launcher exiting 3 cannot succeed"),
        }
        Ok(())
    })
    .await
}
