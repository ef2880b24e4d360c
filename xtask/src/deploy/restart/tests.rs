//! The restart policy: the budget counts every recorded restart, what a restart cannot fix is
//! not restarted, and a failed worker pod is a failure.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;

fn restarts(count: usize) -> Vec<Restart> {
    (0..count)
        .map(|index| Restart {
            at: format!("2026-12-01T14:0{index}:00Z"),
            reason: format!("hung: restart {index}"),
        })
        .collect()
}

fn hung() -> Failure {
    Failure::Hung {
        reason: "hung: no progress line for 31m".to_owned(),
    }
}

#[test]
fn restarts_are_counted_from_the_recorded_history_up_to_the_budget() {
    assert_eq!(
        should_restart(&[], 3, &hung()),
        Decision::Restart {
            attempt: 1,
            budget: 3
        }
    );
    assert_eq!(
        should_restart(&restarts(2), 3, &hung()),
        Decision::Restart {
            attempt: 3,
            budget: 3
        }
    );
    assert_eq!(
        should_restart(&restarts(3), 3, &hung()),
        Decision::BudgetSpent { budget: 3 }
    );
    // A history longer than a budget lowered since is spent too.
    assert_eq!(
        should_restart(&restarts(5), 2, &hung()),
        Decision::BudgetSpent { budget: 2 }
    );
    assert_eq!(
        should_restart(&[], 0, &hung()),
        Decision::BudgetSpent { budget: 0 }
    );
}

#[test]
fn every_failure_a_fresh_start_may_fix_is_restarted() {
    let failures = [
        Failure::WorkerFailed {
            pod: "w-1".to_owned(),
            reason: "exit 137".to_owned(),
        },
        Failure::JobFailed {
            reason: "BackoffLimitExceeded".to_owned(),
        },
        hung(),
        Failure::Fatal {
            category: Fatal::CollectivesTimeout,
            reason: "collectives_timeout".to_owned(),
        },
        Failure::Fatal {
            category: Fatal::Runtime,
            reason: "runtime".to_owned(),
        },
        Failure::Fatal {
            category: Fatal::Oom,
            reason: "oom".to_owned(),
        },
        Failure::Fatal {
            category: Fatal::Traceback,
            reason: "traceback".to_owned(),
        },
    ];
    for failure in failures {
        assert!(
            matches!(
                should_restart(&restarts(1), 3, &failure),
                Decision::Restart { attempt: 2, .. }
            ),
            "{failure:?}"
        );
    }
}

#[test]
fn what_a_restart_cannot_fix_is_not_restarted_and_spends_nothing() {
    for failure in [
        Failure::Tcp {
            reason: "tcp".to_owned(),
        },
        Failure::Fatal {
            category: Fatal::CompileFailed,
            reason: "compile_failed".to_owned(),
        },
        Failure::Fatal {
            category: Fatal::NeffInvalid,
            reason: "neff_invalid".to_owned(),
        },
    ] {
        let decision = should_restart(&[], 3, &failure);
        assert!(
            matches!(&decision, Decision::NotRestartable { why } if why.contains("cargo xtask") || why.contains("EFA")),
            "{failure:?}: {decision:?}"
        );
    }
}

#[test]
fn the_summary_shows_count_budget_times_and_reasons() {
    let mut record = RunRecord {
        restarts: vec![Restart {
            at: "2026-12-01T14:02:11Z".to_owned(),
            reason: "hung: no progress line for 31m".to_owned(),
        }],
        gave_up: None,
    };
    assert_eq!(
        summary(&record, 3),
        "restarts: 1 of 3 — 14:02 hung: no progress line for 31m"
    );
    assert_eq!(summary(&RunRecord::default(), 3), "restarts: 0 of 3");
    record.gave_up = Some(Restart {
        at: "2026-12-01T15:40:00Z".to_owned(),
        reason: "job failed: BackoffLimitExceeded".to_owned(),
    });
    assert_eq!(
        summary(&record, 1),
        "restarts: 1 of 1 — 14:02 hung: no progress line for 31m; gave up at 15:40: job failed: BackoffLimitExceeded"
    );
}

fn pod(name: &str, status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn a_worker_pod_in_phase_failed_is_a_failure() {
    let running = pod("train-worker-0", json!({"phase": "Running"}));
    let pending = pod("train-worker-1", json!({"phase": "Pending"}));
    assert_eq!(failed_worker(&[running.clone(), pending.clone()]), None);
    let failed = pod(
        "train-worker-2",
        json!({"phase": "Failed", "containerStatuses": [{"name": "mpitest", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
    );
    let failure = failed_worker(&[running, failed, pending]).unwrap();
    assert_eq!(
        failure.reason(),
        "worker failed: pod train-worker-2: container mpitest exited with 137 (OOMKilled)"
    );
    let evicted = pod(
        "train-worker-3",
        json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}),
    );
    assert_eq!(
        failed_worker(&[evicted]).unwrap().reason(),
        "worker failed: pod train-worker-3: Evicted: The node was low on memory."
    );
}

#[test]
fn only_fatal_conditions_and_tcp_stop_the_job_when_not_restarted() {
    assert!(!hung().stops_the_job());
    assert!(
        Failure::Tcp {
            reason: String::new()
        }
        .stops_the_job()
    );
    assert!(
        !Failure::WorkerFailed {
            pod: String::new(),
            reason: String::new()
        }
        .stops_the_job()
    );
}
