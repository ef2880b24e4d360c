//! Pure decisions on a run's log: what waiting cannot fix.
//!
//! - a fatal condition (a runtime failure, a collectives timeout, a failed compilation, an
//!   invalid NEFF, device memory exhausted, a Python traceback) stops the job;
//! - collectives that fell back to TCP stop it too (EFA is what makes 4 nodes worth paying for),
//!   unless `[training] require_efa = false`, which only warns;
//! - no progress line for longer than a bound marks the run hung. The bound is
//!   `[training] hang_timeout` when set, else 10 × the observed seconds per step, at least
//!   30 minutes.

use std::time::Duration;

use super::analysis::{Analyzer, Fatal, Network};

/// The least time without progress before a run counts as hung (loading cached NEFFs and the
/// first steps take minutes).
pub const MIN_HANG_BOUND: Duration = Duration::from_secs(30 * 60);
/// The most an observed step time can stretch the hang bound: a rate no run has (a garbled
/// line, another tool's progress bar) must not switch hang detection off.
pub const MAX_HANG_BOUND: Duration = Duration::from_secs(24 * 3600);
/// How many observed steps without progress make a run hung.
pub const HANG_STEPS: f64 = 10.0;
/// Records after a traceback's first line before it counts as fatal on its own: its specific
/// cause (a runtime error, an allocation failure) may follow it by a few lines.
pub const TRACEBACK_SETTLE: usize = 40;

/// How strict the decisions are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Stop a run whose collectives fell back to TCP (else warn).
    pub require_efa: bool,
    /// The configured hang bound, if any (else derived from the observed step time).
    pub hang_timeout: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            require_efa: true,
            hang_timeout: None,
        }
    }
}

/// What to do about the run now.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Nothing to do.
    Continue,
    /// Go on, but say so (once).
    Warn {
        /// What is wrong and what it costs.
        reason: String,
        /// The log lines that show it.
        evidence: Vec<String>,
    },
    /// Waiting cannot fix this: stop the job.
    Stop {
        /// What is wrong, starting with its category.
        reason: String,
        /// The log lines that show it.
        evidence: Vec<String>,
    },
    /// No progress for longer than the bound.
    Hung {
        /// How long, and the bound.
        reason: String,
    },
}

/// The hang bound: the configured one, else [`HANG_STEPS`] × the observed seconds per step,
/// at least [`MIN_HANG_BOUND`] and at most [`MAX_HANG_BOUND`].
pub fn hang_bound(seconds_per_step: Option<f64>, configured: Option<Duration>) -> Duration {
    if let Some(configured) = configured {
        return configured;
    }
    let observed = seconds_per_step
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map(|seconds| Duration::try_from_secs_f64(seconds * HANG_STEPS).unwrap_or(MAX_HANG_BOUND))
        .unwrap_or_default();
    observed.clamp(MIN_HANG_BOUND, MAX_HANG_BOUND)
}

/// The verdict on a run whose log `analyzer` has read, `since_progress` after its last
/// progress line (or after following began, before any).
pub fn verdict(analyzer: &Analyzer, since_progress: Duration, policy: &Policy) -> Verdict {
    let analysis = analyzer.analysis();
    if let Some(fatal) = analysis.fatal {
        let settled = fatal != Fatal::Traceback
            || analyzer
                .records_since_traceback()
                .is_some_and(|records| records >= TRACEBACK_SETTLE);
        if settled {
            return Verdict::Stop {
                reason: format!("{}: {}", fatal.name(), explain(fatal)),
                evidence: analyzer.fatal_evidence().to_vec(),
            };
        }
    }
    if analysis.network == Some(Network::Tcp) {
        let reason = "tcp: the collectives fell back to TCP sockets instead of EFA (OFI/EFA failed to initialize); the run would be several times slower at the same price".to_owned();
        let evidence = analyzer.network_evidence().to_vec();
        return if policy.require_efa {
            Verdict::Stop {
                reason: format!(
                    "{reason}; check the EFA device plugin and vpc.amazonaws.com/efa requests (`[training] require_efa = false` only warns)"
                ),
                evidence,
            }
        } else {
            Verdict::Warn { reason, evidence }
        };
    }
    let bound = hang_bound(analysis.seconds_per_step, policy.hang_timeout);
    if since_progress > bound {
        return Verdict::Hung {
            reason: format!(
                "hung: no progress line for {} (bound {}{})",
                humantime::format_duration(round_seconds(since_progress)),
                humantime::format_duration(round_seconds(bound)),
                if policy.hang_timeout.is_some() {
                    ", [training] hang_timeout"
                } else {
                    ": 10 × the observed seconds per step, at least 30 minutes"
                }
            ),
        };
    }
    Verdict::Continue
}

/// What a failed job's log says, for its failure message: the first fatal condition with its
/// lines, TCP instead of EFA, cached failed NEFFs and a NaN loss; `None` when it says none.
pub fn diagnosis(analyzer: &Analyzer) -> Option<String> {
    let analysis = analyzer.analysis();
    let mut findings = Vec::new();
    if let Some(fatal) = analysis.fatal {
        findings.push(format!(
            "{}: {}:\n  {}",
            fatal.name(),
            explain(fatal),
            analyzer.fatal_evidence().join("\n  ")
        ));
    }
    if analysis.network == Some(Network::Tcp) {
        findings.push(format!(
            "tcp: the collectives fell back to TCP sockets instead of EFA:\n  {}",
            analyzer.network_evidence().join("\n  ")
        ));
    }
    if analysis.cache.cached_failed > 0 {
        findings.push(format!(
            "{} cached failed NEFF(s): graphs whose earlier compilation failed were skipped, not compiled (`cargo xtask cache prune --failed` removes them; --retry_failed_compilation in NEURON_CC_FLAGS retries them)",
            analysis.cache.cached_failed
        ));
    }
    if analysis.nan_loss {
        findings.push("the training loss was NaN".to_owned());
    }
    (!findings.is_empty())
        .then(|| format!("the log shows {}", findings.join("\nthe log also shows ")))
}

fn round_seconds(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}

/// What a fatal category means for the person reading it.
fn explain(fatal: Fatal) -> &'static str {
    match fatal {
        Fatal::Runtime => "the Neuron runtime failed (a NEFF did not load)",
        Fatal::CollectivesTimeout => {
            "a collective or its bootstrap timed out (retrying ones too: in practice a hang)"
        }
        Fatal::CompileFailed => "the Neuron compiler failed",
        Fatal::NeffInvalid => {
            "the runtime rejected a NEFF as invalid (broken, or compiled for another runtime version)"
        }
        Fatal::Oom => "device memory could not be allocated",
        Fatal::Traceback => "a Python traceback",
    }
}
