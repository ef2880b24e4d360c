//! Opt-in end-to-end tests of `xtask::kube` against a real cluster.
//!
//! `#[ignore]`d so `cargo test` never touches a cluster. To run them, point `KUBECONFIG` at a
//! cluster where you may create namespaces:
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo test -p xtask --test it cluster -- --ignored --test-threads 1
//! ```
//!
//! They apply a Namespace `trnkit-e2e-<random>` and a ConfigMap in it by server-side apply,
//! re-apply them (unchanged), change the ConfigMap (configured), delete both; run the preflight
//! read-only; and run deploy's plan with its state in a real `trnkit-state` ConfigMap (a
//! scripted executor fails compile once: the re-run resumes there, the third run has nothing to
//! do). Nothing needs Trainium.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use xtask::kube::apply::{ApplyOutcome, apply_all, delete_all};
use xtask::kube::preflight::{Requirements, evaluate, fetch_facts};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn client() -> Result<kube::Client, String> {
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
        launcher_gate: None,
    };
    let preflight = evaluate(&fetch_facts(&client).await, &requirements);
    assert_eq!(preflight.checks.len(), 6);
    for check in preflight.failures() {
        assert!(check.fix.is_some(), "{} failed without a fix", check.id);
    }
    Ok(())
}

/// Runs every step as done, except `fail` (once), and records what it was asked to run.
struct Scripted {
    fail: Option<xtask::deploy::plan::StepId>,
    ran: Vec<xtask::deploy::plan::StepId>,
}

impl xtask::deploy::run::Executor for Scripted {
    async fn execute(
        &mut self,
        step: &xtask::deploy::plan::Step,
        _previous: Option<&xtask::deploy::state::StepRecord>,
    ) -> anyhow::Result<xtask::deploy::run::StepOutput> {
        self.ran.push(step.id);
        if self.fail.take_if(|fail| *fail == step.id).is_some() {
            anyhow::bail!("{} broke on purpose", step.id);
        }
        Ok(xtask::deploy::run::StepOutput {
            summary: "done".to_owned(),
            outputs: Default::default(),
        })
    }
}

#[tokio::test]
#[ignore = "needs cluster: set KUBECONFIG"]
async fn deploy_state_in_a_real_configmap_resumes_and_reruns_idempotently() -> TestResult {
    deploy_state_flow(client().await?).await
}

/// The same flow on the FAKE API server, so that it runs in every `cargo test`.
#[tokio::test]
async fn deploy_state_flow_on_the_fake_api_server() -> TestResult {
    let fake = test_support::fake_apiserver::FakeApiServer::start().await;
    deploy_state_flow(fake.client()).await
}

async fn deploy_state_flow(client: kube::Client) -> TestResult {
    use xtask::deploy::plan::StepId;
    use xtask::deploy::run::{Selection, run};
    use xtask::deploy::state::{ConfigMapStore, StateStore, Status};

    let namespace = format!(
        "trnkit-e2e-{:08x}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos()
    );
    let ns =
        vec![json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } })];
    apply_all(&client, &ns, "default", "trnkit-e2e").await?;
    let result = async {
        let mut config = xtask::config::Config::default();
        config.cluster.namespace = namespace.clone();
        let rendered = xtask::deploy::bundle::render_all(
            &config,
            None,
            None,
            std::path::Path::new("trnkit-stage"),
        )?;
        let plan = xtask::deploy::plan::plan(&config, &rendered);
        let store = ConfigMapStore {
            api: kube::Api::namespaced(client.clone(), &namespace),
            namespace: namespace.clone(),
            field_manager: "trnkit-e2e".to_owned(),
        };
        let selection = || Selection {
            skip_follow: true,
            ..Selection::default()
        };

        let mut first = Scripted {
            fail: Some(StepId::Compile),
            ran: Vec::new(),
        };
        let report = run(&plan, &store, &mut first, selection(), |_| {}).await?;
        assert_eq!(report.failed, Some(StepId::Compile));
        assert!(!first.ran.contains(&StepId::Train), "{:?}", first.ran);
        let state = store.load().await?;
        assert_eq!(
            state.get(StepId::Compile).map(|r| r.status),
            Some(Status::Failed)
        );

        let mut second = Scripted {
            fail: None,
            ran: Vec::new(),
        };
        let report = run(&plan, &store, &mut second, selection(), |_| {}).await?;
        assert_eq!(report.failed, None);
        assert!(
            !second.ran.contains(&StepId::Staging),
            "resumed at compile: {:?}",
            second.ran
        );
        assert!(second.ran.contains(&StepId::Compile) && second.ran.contains(&StepId::Train));

        let mut third = Scripted {
            fail: None,
            ran: Vec::new(),
        };
        let report = run(&plan, &store, &mut third, selection(), |_| {}).await?;
        assert!(report.nothing_to_do(&plan), "{report:?}");
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    delete_all(&client, &ns, "default").await?;
    result
}
