//! The runner: goes through the plan in order, skips steps that are up to date, runs the rest
//! through an [`Executor`], and records each result before going on.
//!
//! It prints nothing: it reports [`Event`]s to the caller.

use std::collections::BTreeMap;

use super::plan::{Plan, Step, StepId};
use super::state::{State, StateStore, Status, StepRecord, now};

/// What running a step produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepOutput {
    /// A one-line summary.
    pub summary: String,
    /// Values to record: digests, checksums, UIDs.
    pub outputs: BTreeMap<String, String>,
}

/// Runs steps; the local profile and the cluster each have one.
#[allow(async_fn_in_trait)]
pub trait Executor {
    /// Runs one step. `previous` is its last record, if any (an executor may find that the
    /// outputs it recorded are still in place).
    async fn execute(
        &mut self,
        step: &Step,
        previous: Option<&StepRecord>,
    ) -> anyhow::Result<StepOutput>;

    /// Whether what a step recorded is still in place (its outputs were not deleted or
    /// changed); the runner only skips an up-to-date step when this holds.
    async fn still_valid(&mut self, _step: &Step, _record: &StepRecord) -> bool {
        true
    }
}

/// Which steps to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Start at this step: earlier steps are not looked at; this one and later ones run even
    /// when up to date.
    pub from: Option<StepId>,
    /// Run only this step, even when up to date.
    pub only: Option<StepId>,
    /// Skip these steps (for example `follow` with `--no-follow`).
    pub skip_follow: bool,
}

/// What happened, for the caller to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The step is about to run.
    Started {
        /// Which.
        id: StepId,
        /// Its title.
        title: String,
    },
    /// The step was up to date and skipped.
    UpToDate {
        /// Which.
        id: StepId,
        /// The summary recorded when it last ran.
        summary: String,
    },
    /// The step was not selected.
    NotSelected {
        /// Which.
        id: StepId,
    },
    /// The step finished.
    Finished {
        /// Which.
        id: StepId,
        /// Its summary.
        summary: String,
    },
    /// The step failed; the run stops.
    Failed {
        /// Which.
        id: StepId,
        /// The error with its causes.
        error: String,
    },
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Steps that ran.
    pub ran: Vec<StepId>,
    /// Steps that were up to date.
    pub up_to_date: Vec<StepId>,
    /// The step that failed, if one did.
    pub failed: Option<StepId>,
}

impl Report {
    /// Whether nothing needed doing (every selected step was up to date or always-run).
    pub fn nothing_to_do(&self, plan: &Plan) -> bool {
        self.failed.is_none()
            && self
                .ran
                .iter()
                .all(|id| plan.step(*id).is_some_and(|step| step.always))
    }
}

impl Selection {
    /// Whether the step is selected to run (an up-to-date step may still be skipped).
    pub fn includes(&self, id: StepId) -> bool {
        selected(self, id).0
    }
}

fn selected(selection: &Selection, id: StepId) -> (bool, bool) {
    if selection.skip_follow && id == StepId::Follow {
        return (false, false);
    }
    match (selection.only, selection.from) {
        (Some(only), _) => (only == id, only == id),
        (None, Some(from)) => (id >= from, id >= from),
        (None, None) => (true, false),
    }
}

/// What the executor recorded in the state while a step ran (the follow step's restarts, see
/// `restart`) is kept when the runner records the step.
async fn keep_recorded_runs<S: StateStore>(store: &S, state: &mut State) {
    match store.load().await {
        Ok(latest) => state.runs = latest.runs,
        Err(error) => tracing::warn!("cannot read the runs' restarts back: {error:#}"),
    }
}

/// Runs the plan. Each step's result is saved before the next starts, so an interruption
/// loses at most the step that was running.
pub async fn run<S: StateStore, E: Executor>(
    plan: &Plan,
    store: &S,
    executor: &mut E,
    selection: Selection,
    mut report_event: impl FnMut(Event),
) -> anyhow::Result<Report> {
    let mut state: State = store.load().await?;
    for (id, record) in &state.steps {
        if record.status == Status::Running {
            tracing::warn!(
                "step {id} is recorded as running since {} (another deploy is running it, or one was interrupted); this run takes over",
                record.finished_at
            );
        }
    }
    let mut report = Report {
        ran: Vec::new(),
        up_to_date: Vec::new(),
        failed: None,
    };
    for step in &plan.steps {
        let (run_it, forced) = selected(&selection, step.id);
        if !run_it {
            report_event(Event::NotSelected { id: step.id });
            continue;
        }
        let up_to_date = !forced && !step.always && state.is_done(step.id, &step.digest);
        let still_valid = match (up_to_date, state.get(step.id)) {
            (true, Some(record)) => executor.still_valid(step, record).await,
            _ => false,
        };
        if up_to_date && still_valid {
            let summary = state
                .get(step.id)
                .map(|record| record.message.clone())
                .unwrap_or_default();
            report.up_to_date.push(step.id);
            report_event(Event::UpToDate {
                id: step.id,
                summary,
            });
            continue;
        }
        report_event(Event::Started {
            id: step.id,
            title: step.title.clone(),
        });
        let previous = state.get(step.id).cloned();
        // Recorded as running first, so that `status` on any machine shows what a deploy is
        // doing, and an interrupted run leaves nothing that looks finished.
        state.steps.insert(
            step.id,
            StepRecord {
                digest: step.digest.clone(),
                status: Status::Running,
                finished_at: now(),
                message: format!("started: {}", step.title),
                outputs: previous
                    .as_ref()
                    .map(|record| record.outputs.clone())
                    .unwrap_or_default(),
            },
        );
        state.version = super::state::STATE_VERSION;
        store.save(&state).await?;
        let result = executor.execute(step, previous.as_ref()).await;
        keep_recorded_runs(store, &mut state).await;
        match result {
            Ok(output) => {
                report.ran.push(step.id);
                state.steps.insert(
                    step.id,
                    StepRecord {
                        digest: step.digest.clone(),
                        status: Status::Done,
                        finished_at: now(),
                        message: output.summary.clone(),
                        outputs: output.outputs,
                    },
                );
                state.version = super::state::STATE_VERSION;
                store.save(&state).await?;
                report_event(Event::Finished {
                    id: step.id,
                    summary: output.summary,
                });
            }
            Err(error) => {
                let message = format!("{error:#}");
                state.steps.insert(
                    step.id,
                    StepRecord {
                        digest: step.digest.clone(),
                        status: Status::Failed,
                        finished_at: now(),
                        message: message.clone(),
                        outputs: previous.map(|record| record.outputs).unwrap_or_default(),
                    },
                );
                state.version = super::state::STATE_VERSION;
                store.save(&state).await?;
                report.failed = Some(step.id);
                report_event(Event::Failed {
                    id: step.id,
                    error: message,
                });
                return Ok(report);
            }
        }
    }
    Ok(report)
}
