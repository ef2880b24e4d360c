//! Whole-job restarts of the train MPIJob, with a budget that never resets (pure).
//!
//! The MPI Operator does not recreate a failed worker, and a failed launcher is retried only
//! up to `backoffLimit`, after which the MPIJob stays `Failed`. A hung run (no progress line for
//! longer than the bound) or a fatal condition in its log is not retried at all. trnkit
//! restarts the whole job instead: the MPIJob is deleted and re-created from the same rendered
//! manifest, so the new ranks resume from the run's latest checkpoint (see `run_identity`).
//!
//! The budget is `[training] max_restarts` per run (by the run's name). Each restart is
//! recorded in the deploy state before it is made, with its time and reason, so the count
//! survives trnkit itself: a new `deploy` or `watch` process reads it and never exceeds it.
//!
//! What a restart cannot fix is not restarted: collectives on TCP instead of EFA (the EFA
//! setup of the cluster), a failed compilation (the cache records it as failed, so the next
//! run fails the same way) and an invalid NEFF (a stale cache entry).

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::observe::analysis::Fatal;

/// The default of `[training] max_restarts`.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;

/// One whole-job restart, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// When it was decided (RFC 3339).
    pub at: String,
    /// The failure that caused it, in one line.
    pub reason: String,
}

/// A training run's record in the deploy state: its restarts, and the failure it was left
/// with once the budget was spent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Every restart, oldest first; never cleared while the run keeps its name.
    #[serde(default)]
    pub restarts: Vec<Restart>,
    /// The failure that was not restarted because the budget was spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up: Option<Restart>,
}

/// What went wrong with the train job.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// A worker pod is in phase `Failed` (the operator will not recreate it).
    WorkerFailed {
        /// The pod.
        pod: String,
        /// Its reason and exit code.
        reason: String,
    },
    /// The MPIJob failed (the launcher's retries are spent, or the job was evicted).
    JobFailed {
        /// The condition's reason and message.
        reason: String,
    },
    /// No progress line for longer than the hang bound.
    Hung {
        /// How long, and the bound.
        reason: String,
    },
    /// A fatal condition in the log.
    Fatal {
        /// Its category.
        category: Fatal,
        /// What it means.
        reason: String,
    },
    /// The collectives fell back to TCP instead of EFA (with `require_efa`).
    Tcp {
        /// What it means.
        reason: String,
    },
}

impl Failure {
    /// The failure in one line, as recorded and shown: `hung: no progress line for 31m …`.
    pub fn reason(&self) -> String {
        match self {
            Failure::WorkerFailed { pod, reason } => {
                format!("worker failed: pod {pod}: {reason}")
            }
            Failure::JobFailed { reason } => format!("job failed: {reason}"),
            Failure::Hung { reason } | Failure::Fatal { reason, .. } | Failure::Tcp { reason } => {
                reason.clone()
            }
        }
    }

    /// Whether the failure leaves the job running but useless, so that giving up stops it
    /// (a fatal condition, TCP); a hung job or a failed worker is left for inspection.
    pub fn stops_the_job(&self) -> bool {
        matches!(self, Failure::Fatal { .. } | Failure::Tcp { .. })
    }
}

/// What to do about a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Delete the job and re-create it: restart number `attempt` of `budget`.
    Restart {
        /// This restart's number, from 1.
        attempt: u32,
        /// The budget.
        budget: u32,
    },
    /// The run has had `budget` restarts already: fail.
    BudgetSpent {
        /// The budget.
        budget: u32,
    },
    /// A restart would fail the same way: fail without spending the budget.
    NotRestartable {
        /// Why, and what to do instead.
        why: String,
    },
}

/// Whether to restart the job after `failure`, given the run's recorded `history` and its
/// `budget` (`[training] max_restarts`). The count is the history's length: it never resets
/// while the run keeps its name.
pub fn should_restart(history: &[Restart], budget: u32, failure: &Failure) -> Decision {
    match failure {
        Failure::Tcp { .. } => {
            return Decision::NotRestartable {
                why: "a restart lands on the same EFA setup: fix the EFA device plugin or the vpc.amazonaws.com/efa requests".to_owned(),
            };
        }
        Failure::Fatal {
            category: Fatal::CompileFailed,
            ..
        } => {
            return Decision::NotRestartable {
                why: "the compile cache records the failed graph, so a restart fails the same way: see `cargo xtask cache inspect`, and `cargo xtask cache prune --failed` once the cause is fixed".to_owned(),
            };
        }
        Failure::Fatal {
            category: Fatal::NeffInvalid,
            ..
        } => {
            return Decision::NotRestartable {
                why: "a restart loads the same NEFF from the compile cache: `cargo xtask cache verify` finds it, `cargo xtask cache prune` removes it".to_owned(),
            };
        }
        _ => {}
    }
    let spent = u32::try_from(history.len()).unwrap_or(u32::MAX);
    if spent >= budget {
        Decision::BudgetSpent { budget }
    } else {
        Decision::Restart {
            attempt: spent + 1,
            budget,
        }
    }
}

/// The restarts in one line, as `status` shows them:
/// `restarts: 1 of 3 — 14:02 hung: no progress line for 31m`.
pub fn summary(record: &RunRecord, budget: u32) -> String {
    let mut line = format!("restarts: {} of {budget}", record.restarts.len());
    let each: Vec<String> = record
        .restarts
        .iter()
        .map(|restart| format!("{} {}", clock(&restart.at), restart.reason))
        .collect();
    if !each.is_empty() {
        line.push_str(" — ");
        line.push_str(&each.join("; "));
    }
    if let Some(last) = &record.gave_up {
        line.push_str(&format!(
            "; gave up at {}: {}",
            clock(&last.at),
            last.reason
        ));
    }
    line
}

/// `14:02` of an RFC 3339 time (UTC, as recorded); the text itself when it is not one.
fn clock(at: &str) -> &str {
    at.split_once('T')
        .and_then(|(_, time)| time.get(..5))
        .unwrap_or(at)
}

/// The first worker pod in phase `Failed`, as a failure: the MPI Operator does not recreate
/// it, so the job cannot go on.
pub fn failed_worker(pods: &[Pod]) -> Option<Failure> {
    pods.iter().find_map(|pod| {
        let status = pod.status.as_ref()?;
        if status.phase.as_deref() != Some("Failed") {
            return None;
        }
        let terminated = status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|container| {
                let terminated = container.state.as_ref()?.terminated.as_ref()?;
                Some(format!(
                    "container {} exited with {}{}",
                    container.name,
                    terminated.exit_code,
                    terminated
                        .reason
                        .as_deref()
                        .map(|reason| format!(" ({reason})"))
                        .unwrap_or_default()
                ))
            });
        let reason = [status.reason.clone(), status.message.clone(), terminated]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        Some(Failure::WorkerFailed {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            reason: if reason.is_empty() {
                "phase Failed".to_owned()
            } else {
                reason
            },
        })
    })
}

#[cfg(test)]
mod tests;
