//! Tests of the file lock and of the Lease on the FAKE API server.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use test_support::fake_apiserver::{FakeApiServer, KindInfo};

use super::*;

fn holder(command: &str) -> Holder {
    Holder {
        who: "ana@build-1".to_owned(),
        pid: 4242,
        command: command.to_owned(),
        since: "2026-12-01T14:00:00Z".to_owned(),
    }
}

#[test]
fn a_second_run_fails_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("work/.lock");
    let first = FileLock::acquire(&path, &holder("deploy"), false).unwrap();
    let error = FileLock::acquire(&path, &holder("tokenize"), false).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("ana@build-1")
            && message.contains("pid 4242")
            && message.contains("`deploy`"),
        "{message}"
    );
    assert!(message.contains("--wait"), "{message}");
    drop(first);
    FileLock::acquire(&path, &holder("tokenize"), false).expect("free once the first lets go");
}

#[test]
fn a_waiting_run_gets_the_lock_when_the_holder_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".lock");
    let first = FileLock::acquire(&path, &holder("deploy"), false).unwrap();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let lock = FileLock::acquire(&path, &holder("second"), true).unwrap();
            (started.elapsed(), lock.path().to_owned())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    drop(first);
    let (waited, locked) = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert_eq!(locked, path);
    let text = fs_err::read_to_string(&path).unwrap();
    assert!(
        text.contains("command=second"),
        "the new holder is recorded: {text}"
    );
}

fn lease_kind() -> KindInfo {
    KindInfo::new("coordination.k8s.io", "v1", "Lease", "leases", true, false)
}

fn quick() -> LeaseTiming {
    LeaseTiming {
        duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(200),
        poll_every: Duration::from_millis(100),
    }
}

/// Takes the Lease `trnkit-deploy` in `default` for a holder running `command`.
async fn take(api: &Api<Lease>, command: &str, wait: bool) -> Result<LeaseLock, LockError> {
    LeaseLock::acquire(
        api.clone(),
        "default",
        "trnkit-deploy",
        &holder(command),
        wait,
        quick(),
    )
    .await
}

#[tokio::test]
async fn a_second_deploy_is_refused_while_the_lease_is_held_and_renewed() {
    let server = FakeApiServer::builder().kind(lease_kind()).start().await;
    let api: Api<Lease> = Api::namespaced(server.client(), "default");
    let first = take(&api, "deploy", false).await.unwrap();
    // Longer than the lease's duration: the holder's renewals keep it alive.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let error = take(&api, "deploy", false).await.unwrap_err();
    assert!(matches!(error, LockError::Held { .. }), "{error}");
    assert!(error.to_string().contains("ana@build-1"), "{error}");
    first.release().await;
    let second = take(&api, "deploy", false)
        .await
        .expect("free once released");
    second.release().await;
}

#[tokio::test]
async fn the_lease_of_a_killed_run_is_taken_over_once_it_expires() {
    let server = FakeApiServer::builder().kind(lease_kind()).start().await;
    let api: Api<Lease> = Api::namespaced(server.client(), "default");
    let killed = take(&api, "killed", false).await.unwrap();
    // Killed: it stops renewing without deleting the Lease.
    drop(killed);
    let started = std::time::Instant::now();
    let taken = take(&api, "next", true).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let lease = api.get("trnkit-deploy").await.unwrap();
    let spec = lease.spec.unwrap();
    assert!(spec.holder_identity.unwrap().contains("`next`"));
    assert_eq!(spec.lease_transitions, Some(1));
    taken.release().await;
}
