//! Tests of the plan, the runner and the local profile.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::bundle;
use super::plan::{self, Step, StepId};
use super::run::{self, Event, Executor, Selection, StepOutput};
use super::state::{FileStore, State, StateStore, Status, StepRecord};
use crate::config::Config;

fn rendered(config: &Config) -> plan::Rendered {
    bundle::render_all(
        config,
        None,
        None,
        &PathBuf::from("/nonexistent/trnkit-stage"),
    )
    .unwrap()
}

/// An executor that records what ran and fails the steps it is told to.
#[derive(Default)]
struct Recorder {
    ran: RefCell<Vec<StepId>>,
    fail: Option<StepId>,
}

impl Executor for Recorder {
    async fn execute(
        &mut self,
        step: &Step,
        _previous: Option<&StepRecord>,
    ) -> anyhow::Result<StepOutput> {
        self.ran.borrow_mut().push(step.id);
        if self.fail == Some(step.id) {
            anyhow::bail!("{} broke", step.id);
        }
        Ok(StepOutput {
            summary: format!("{} ok", step.id),
            outputs: BTreeMap::new(),
        })
    }
}

async fn run_with(
    plan: &plan::Plan,
    store: &FileStore,
    executor: &mut Recorder,
    selection: Selection,
) -> (run::Report, Vec<Event>) {
    let mut events = Vec::new();
    let report = run::run(plan, store, executor, selection, |event| events.push(event))
        .await
        .unwrap();
    (report, events)
}

#[test]
fn plan_snapshot() {
    let _tags = crate::images::snapshot_settings().bind_to_scope();
    let config = Config::default();
    let plan = plan::plan(&config, &rendered(&config));
    let steps: Vec<_> = plan
        .steps
        .iter()
        .map(|step| (step.id.name(), step.always, step.actions.clone()))
        .collect();
    insta::assert_yaml_snapshot!(steps);
}

#[test]
fn digests_follow_their_inputs() {
    let config = Config::default();
    let base = plan::plan(&config, &rendered(&config));
    let mut changed = config.clone();
    changed.training.neuron_cc_flags = "--model-type transformer".to_owned();
    let after = plan::plan(&changed, &rendered(&changed));
    let differs = |id| base.step(id).unwrap().digest != after.step(id).unwrap().digest;
    assert!(differs(StepId::Compile) && differs(StepId::Train));
    assert!(
        !differs(StepId::Images)
            && !differs(StepId::Storage)
            && !differs(StepId::Staging)
            && !differs(StepId::Tensorboard)
    );

    let mut data = config.clone();
    data.data.append_eod = false;
    let after = plan::plan(&data, &rendered(&data));
    let differs = |id| base.step(id).unwrap().digest != after.step(id).unwrap().digest;
    assert!(differs(StepId::Staging) && differs(StepId::Compile) && differs(StepId::Train));
    assert!(!differs(StepId::Images) && !differs(StepId::Storage));
}

#[tokio::test]
async fn reruns_skip_done_steps_and_resume_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore {
        path: dir.path().join("state.json"),
    };
    let config = Config::default();
    let plan = plan::plan(&config, &rendered(&config));

    let mut failing = Recorder {
        fail: Some(StepId::Compile),
        ..Recorder::default()
    };
    let (report, _) = run_with(&plan, &store, &mut failing, Selection::default()).await;
    assert_eq!(report.failed, Some(StepId::Compile));
    assert_eq!(
        *failing.ran.borrow(),
        [
            StepId::Preflight,
            StepId::Images,
            StepId::Storage,
            StepId::Staging,
            StepId::Compile
        ]
    );
    let state = store.load().await.unwrap();
    assert_eq!(state.get(StepId::Compile).unwrap().status, Status::Failed);
    assert!(
        state
            .get(StepId::Compile)
            .unwrap()
            .message
            .contains("compile broke")
    );

    // The re-run resumes at the failed step: the done ones are up to date (preflight always runs).
    let mut working = Recorder::default();
    let (report, events) = run_with(&plan, &store, &mut working, Selection::default()).await;
    assert_eq!(report.failed, None);
    assert_eq!(
        *working.ran.borrow(),
        [
            StepId::Preflight,
            StepId::Compile,
            StepId::Train,
            StepId::Tensorboard,
            StepId::Follow
        ]
    );
    assert!(events.contains(&Event::UpToDate {
        id: StepId::Staging,
        summary: "staging ok".to_owned()
    }));

    // A third run has nothing to do.
    let mut idle = Recorder::default();
    let (report, _) = run_with(&plan, &store, &mut idle, Selection::default()).await;
    assert!(report.nothing_to_do(&plan));
    assert_eq!(*idle.ran.borrow(), [StepId::Preflight, StepId::Follow]);

    // --only and --from force steps; --no-follow skips the follow step.
    let mut only = Recorder::default();
    run_with(
        &plan,
        &store,
        &mut only,
        Selection {
            only: Some(StepId::Storage),
            ..Selection::default()
        },
    )
    .await;
    assert_eq!(*only.ran.borrow(), [StepId::Storage]);
    let mut from = Recorder::default();
    run_with(
        &plan,
        &store,
        &mut from,
        Selection {
            from: Some(StepId::Train),
            skip_follow: true,
            ..Selection::default()
        },
    )
    .await;
    assert_eq!(*from.ran.borrow(), [StepId::Train, StepId::Tensorboard]);

    // A changed input re-runs its step and the ones depending on it.
    let mut changed = config.clone();
    changed.training.backoff_limit = 5;
    let changed_plan = plan::plan(&changed, &rendered(&changed));
    let mut rerun = Recorder::default();
    run_with(
        &changed_plan,
        &store,
        &mut rerun,
        Selection {
            skip_follow: true,
            ..Selection::default()
        },
    )
    .await;
    assert_eq!(
        *rerun.ran.borrow(),
        [StepId::Preflight, StepId::Compile, StepId::Train]
    );
}

#[tokio::test]
async fn a_corrupt_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs_err::write(&path, "{ not json").unwrap();
    let error = FileStore { path: path.clone() }.load().await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&path.display().to_string()) && message.contains("delete it"),
        "{message}"
    );
}

#[tokio::test]
async fn a_state_of_another_version_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs_err::write(&path, r#"{"version": 7, "steps": {}}"#).unwrap();
    let error = FileStore { path: path.clone() }.load().await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("version 7") && message.contains(&path.display().to_string()),
        "{message}"
    );
    // The version this trnkit writes, and a state from before versions were written, load.
    for version in ["1", "0"] {
        fs_err::write(&path, format!(r#"{{"version": {version}, "steps": {{}}}}"#)).unwrap();
        FileStore { path: path.clone() }.load().await.unwrap();
    }
}

#[tokio::test]
async fn a_state_file_larger_than_a_config_map_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let huge = format!(
        r#"{{"version": 1, "steps": {{}}, "pad": "{}"}}"#,
        "x".repeat(super::state::MAX_STATE_BYTES as usize)
    );
    fs_err::write(&path, huge).unwrap();
    let error = FileStore { path: path.clone() }.load().await.unwrap_err();
    let message = format!("{:#}", anyhow::Error::from(error));
    assert!(
        message.contains(&path.display().to_string()) && message.contains("larger than"),
        "{message}"
    );
}

#[test]
fn a_recorded_run_name_that_could_not_be_configured_is_refused_naming_the_key() {
    let state = |run_id: &str| {
        serde_json::json!({
            "version": 1,
            "steps": {"train": {
                "digest": "d", "status": "done", "finished_at": "2026-12-01T00:00:00Z",
                "message": "", "outputs": {"run_id": run_id}
            }}
        })
        .to_string()
    };
    // The run name reaches the ranks' command lines and a directory name: a ConfigMap edited
    // by hand (or by anyone with access to it) must not smuggle a shell word or a path in.
    for bad in ["$(HF_TOKEN)", "../../shared", "Run A", "x;rm"] {
        let error = State::parse(&state(bad), "ConfigMap ns/trnkit-state").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("ConfigMap ns/trnkit-state")
                && message.contains("steps.train.outputs.run_id"),
            "{message}"
        );
    }
    let parsed = State::parse(&state("llama-20261201-101500"), "s").unwrap();
    assert_eq!(
        crate::run_identity::recorded(&parsed),
        Some("llama-20261201-101500")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_profile_runs_for_real_and_is_then_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.cluster.work_dir = dir.path().to_owned();
    let plan = plan::plan(&config, &rendered(&config));
    let layout = fsx::SharedLayout::new(dir.path().join("shared"));
    let mut executor = super::local::LocalExecutor {
        config: config.clone(),
        layout: layout.clone(),
        work_dir: dir.path().to_owned(),
        workers: 2,
    };
    let store = FileStore {
        path: dir.path().join("state.json"),
    };
    let report = run::run(&plan, &store, &mut executor, Selection::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.failed, None);

    // The dataset is a real Megatron dataset the pipeline's reader accepts.
    let prefix = layout.dataset_prefix("text").unwrap();
    let reader = pipeline::IndexReader::open(&prefix).unwrap();
    let summary = reader.verify().unwrap();
    assert!(summary.problems.is_empty(), "{summary:?}");
    assert!(
        reader.sequences > 1000 && summary.tokens > 50_000,
        "{} sequences, {summary:?}",
        reader.sequences
    );
    assert!(layout.tokenizer_dir().join("tokenizer.json").exists());
    assert!(layout.merged_jsonl().exists());
    assert!(layout.compile_cache().is_dir());

    let report = run::run(&plan, &store, &mut executor, Selection::default(), |_| {})
        .await
        .unwrap();
    assert!(report.nothing_to_do(&plan), "{report:?}");

    // A deleted output is noticed: staging runs again.
    let mut bin = prefix.into_os_string();
    bin.push(".bin");
    fs_err::remove_file(&bin).unwrap();
    let report = run::run(&plan, &store, &mut executor, Selection::default(), |_| {})
        .await
        .unwrap();
    assert!(report.ran.contains(&StepId::Staging), "{report:?}");
    assert!(std::path::Path::new(&bin).exists());

    // So is a deleted tokenizer, a deleted training-code checkout, an edited tokenizer file,
    // and a deleted compile cache: each step whose output went runs again and puts it back.
    let checkout = layout.code_checkout();
    let tokenizer = layout.tokenizer_dir().join("tokenizer.json");
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Damage<'_>, StepId)> = vec![
        (
            "tokenizer deleted",
            Box::new(|| fs_err::remove_dir_all(layout.tokenizer_dir()).unwrap()),
            StepId::Staging,
        ),
        (
            "tokenizer edited",
            Box::new(|| fs_err::write(&tokenizer, "{}").unwrap()),
            StepId::Staging,
        ),
        (
            "checkout deleted",
            Box::new(|| fs_err::remove_dir_all(&checkout).unwrap()),
            StepId::Staging,
        ),
        (
            "compile cache deleted",
            Box::new(|| fs_err::remove_dir_all(layout.compile_cache()).unwrap()),
            StepId::Compile,
        ),
    ];
    for (what, damage, step) in cases {
        damage();
        let report = run::run(&plan, &store, &mut executor, Selection::default(), |_| {})
            .await
            .unwrap();
        assert!(report.ran.contains(&step), "{what}: {report:?}");
        let report = run::run(&plan, &store, &mut executor, Selection::default(), |_| {})
            .await
            .unwrap();
        assert!(
            report.nothing_to_do(&plan),
            "{what}, then repaired: {report:?}"
        );
    }
    assert!(tokenizer.is_file() && layout.compile_cache().is_dir());
}

/// Looks at the store while each step runs.
struct Peeker {
    path: std::path::PathBuf,
    seen: Vec<(StepId, Option<Status>)>,
}

impl Executor for Peeker {
    async fn execute(
        &mut self,
        step: &Step,
        _previous: Option<&StepRecord>,
    ) -> anyhow::Result<StepOutput> {
        let state = FileStore {
            path: self.path.clone(),
        }
        .load()
        .await?;
        self.seen
            .push((step.id, state.get(step.id).map(|record| record.status)));
        if step.id == StepId::Staging {
            anyhow::bail!("interrupted");
        }
        Ok(StepOutput {
            summary: "ok".to_owned(),
            outputs: BTreeMap::new(),
        })
    }
}

#[tokio::test]
async fn a_running_step_is_recorded_as_running_and_never_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = FileStore { path: path.clone() };
    let config = Config::default();
    let plan = plan::plan(&config, &rendered(&config));
    let mut peeker = Peeker {
        path,
        seen: Vec::new(),
    };
    let report = run::run(&plan, &store, &mut peeker, Selection::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.failed, Some(StepId::Staging));
    assert!(
        peeker
            .seen
            .iter()
            .all(|(_, status)| *status == Some(Status::Running)),
        "{:?}",
        peeker.seen
    );
    let state = store.load().await.unwrap();
    assert_eq!(state.get(StepId::Storage).unwrap().status, Status::Done);
    assert!(!state.is_done(StepId::Staging, &plan.steps[3].digest));
}
