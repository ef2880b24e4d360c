//! The figures `status` and `logs --follow` show: step i of N, loss, throughput, seconds per
//! step, ETA, elapsed time, network, compile-cache events, and the cost so far and projected.
//!
//! The cost is an estimate: `[cost] instance_hourly_usd` (the on-demand price of a
//! trn1.32xlarge in us-west-2 by default) × nodes × hours; it knows nothing of discounts,
//! storage or the time before the log was followed.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::analysis::{Analysis, CacheEvents, Fatal, Network};

/// The cost estimate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cost {
    /// The price of one node for one hour.
    pub instance_hourly_usd: f64,
    /// Nodes (workers) paid for.
    pub nodes: u32,
    /// `nodes × price × elapsed hours`.
    pub so_far_usd: f64,
    /// `nodes × price × (elapsed + ETA) hours`, when the ETA is known.
    pub projected_usd: Option<f64>,
    /// What the figures are.
    pub basis: &'static str,
}

/// A run's live figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Live {
    /// The last global step.
    pub step: Option<u64>,
    /// The progress bar's total.
    pub total_steps: Option<u64>,
    /// The last finite training loss.
    pub loss: Option<f64>,
    /// The last throughput.
    pub throughput: Option<f64>,
    /// Seconds per step.
    pub seconds_per_step: Option<f64>,
    /// Seconds left: `(total − step) × seconds per step`.
    pub eta_seconds: Option<f64>,
    /// Seconds since the run started (or was first followed).
    pub elapsed_seconds: f64,
    /// EFA or TCP.
    pub network: Option<Network>,
    /// Compile-cache events.
    pub cache: CacheEvents,
    /// The first fatal condition.
    pub fatal: Option<Fatal>,
    /// The loss was NaN at least once.
    pub nan_loss: bool,
    /// The cost estimate.
    pub cost: Cost,
}

/// The live figures of `analysis` after `elapsed`, for `nodes` nodes at `hourly_usd` each.
pub fn live(analysis: &Analysis, elapsed: Duration, nodes: u32, hourly_usd: f64) -> Live {
    let eta_seconds = match (
        analysis.last_global_step,
        analysis.total_steps,
        analysis.seconds_per_step,
    ) {
        (Some(step), Some(total), Some(seconds)) => {
            Some(total.saturating_sub(step) as f64 * seconds)
        }
        _ => None,
    };
    let elapsed_seconds = elapsed.as_secs_f64();
    let per_second = f64::from(nodes) * hourly_usd / 3600.0;
    Live {
        step: analysis.last_global_step,
        total_steps: analysis.total_steps,
        loss: analysis.loss,
        throughput: analysis.throughput,
        seconds_per_step: analysis.seconds_per_step,
        eta_seconds,
        elapsed_seconds,
        network: analysis.network,
        cache: analysis.cache,
        fatal: analysis.fatal,
        nan_loss: analysis.nan_loss,
        cost: Cost {
            instance_hourly_usd: hourly_usd,
            nodes,
            so_far_usd: round_cents(per_second * elapsed_seconds),
            projected_usd: eta_seconds.map(|eta| round_cents(per_second * (elapsed_seconds + eta))),
            basis: "estimate: [cost] instance_hourly_usd × nodes × hours (on-demand, no discounts or storage)",
        },
    }
}

fn round_cents(usd: f64) -> f64 {
    (usd * 100.0).round() / 100.0
}

/// One line for a terminal: `step 565/20101 · loss 4.000 · 19.00 samples/s · 14.05 s/step ·
/// ETA 76h 12m · elapsed 2h 12m · EFA · cache 12 hits · ~$758 so far, ~$26,997 projected`.
pub fn summary(live: &Live) -> String {
    let mut line = String::new();
    let unknown = || "?".to_owned();
    let _ = write!(
        line,
        "step {}/{}",
        live.step.map_or_else(unknown, |step| step.to_string()),
        live.total_steps
            .map_or_else(unknown, |total| total.to_string())
    );
    if let Some(loss) = live.loss {
        let _ = write!(line, " · loss {loss:.3}");
    }
    if live.nan_loss {
        line.push_str(" (NaN seen)");
    }
    if let Some(throughput) = live.throughput {
        let _ = write!(line, " · {throughput:.2} samples/s");
    }
    if let Some(seconds) = live.seconds_per_step {
        let _ = write!(line, " · {seconds:.2} s/step");
    }
    if let Some(eta) = live.eta_seconds {
        let _ = write!(line, " · ETA {}", hours_minutes(eta));
    }
    let _ = write!(line, " · elapsed {}", hours_minutes(live.elapsed_seconds));
    match live.network {
        Some(Network::Efa) => line.push_str(" · EFA"),
        Some(Network::Tcp) => line.push_str(" · TCP (no EFA)"),
        None => {}
    }
    let cache = &live.cache;
    if cache.cached_neff_hits > 0 || cache.cached_failed > 0 || cache.locked.is_some() {
        let _ = write!(
            line,
            " · cache {} hits, {} failed",
            cache.cached_neff_hits, cache.cached_failed
        );
        if let Some(locked) = cache.locked {
            let _ = write!(line, ", {locked} locked");
        }
    }
    let _ = write!(line, " · ~${:.0} so far", live.cost.so_far_usd);
    if let Some(projected) = live.cost.projected_usd {
        let _ = write!(line, ", ~${projected:.0} projected (estimate)");
    } else {
        line.push_str(" (estimate)");
    }
    if let Some(fatal) = live.fatal {
        let _ = write!(line, " · FATAL {}", fatal.name());
    }
    line
}

fn hours_minutes(seconds: f64) -> String {
    let minutes = (seconds / 60.0).round() as u64;
    format!("{}h {:02}m", minutes / 60, minutes % 60)
}
