//! Opt-in end-to-end tests of `xtask::kube_apply` against a real cluster.
//!
//! `#[ignore]`d so `cargo test` never touches a cluster. To run them, point `KUBECONFIG` at a
//! cluster where you may create namespaces:
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo test -p xtask --test it cluster -- --ignored --test-threads 1
//! ```
//!
//! They apply a Namespace `trnkit-e2e-<random>` and a ConfigMap in it by server-side apply,
//! re-apply them (unchanged), change the ConfigMap (configured), delete both, and run the
//! preflight read-only. Nothing needs Trainium.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use xtask::kube_apply::{ApplyOutcome, Requirements, apply_all, delete_all, evaluate, fetch_facts};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn client() -> Result<kube::Client, String> {
    test_support::fake_apiserver::install_crypto_provider();
    kube::Client::try_default()
        .await
        .map_err(|error| format!("set KUBECONFIG to a reachable cluster: {error}"))
}

#[tokio::test]
#[ignore = "needs cluster: set KUBECONFIG"]
async fn apply_reapply_change_and_delete_in_a_throwaway_namespace() -> TestResult {
    let client = client().await?;
    let namespace = format!(
        "trnkit-e2e-{:08x}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos()
    );
    let objects = |value: &str| {
        vec![
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "state", "namespace": namespace }, "data": { "step": value } }),
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } }),
        ]
    };
    let result = async {
        let first = apply_all(&client, &objects("a"), "default", "trnkit-e2e").await?;
        assert!(
            first
                .iter()
                .all(|applied| applied.outcome == ApplyOutcome::Created),
            "{first:?}"
        );
        let again = apply_all(&client, &objects("a"), "default", "trnkit-e2e").await?;
        assert!(
            again
                .iter()
                .all(|applied| applied.outcome == ApplyOutcome::Unchanged),
            "{again:?}"
        );
        let changed = apply_all(&client, &objects("b"), "default", "trnkit-e2e").await?;
        assert_eq!(changed[1].outcome, ApplyOutcome::Configured);
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    let deleted = delete_all(&client, &objects("b"), "default").await?;
    result?;
    assert_eq!(deleted.len(), 2);
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster: set KUBECONFIG"]
async fn preflight_reads_a_real_cluster() -> TestResult {
    let client = client().await?;
    let requirements = Requirements {
        nodes: 1,
        neuron_devices: 16,
        efa_interfaces: 8,
    };
    let preflight = evaluate(&fetch_facts(&client).await, &requirements);
    assert_eq!(preflight.checks.len(), 6);
    for check in preflight.failures() {
        assert!(check.fix.is_some(), "{} failed without a fix", check.id);
    }
    Ok(())
}
