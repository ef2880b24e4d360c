//! A followed run: the log model, the clock, and the decisions taken once each.
//!
//! [`Watch`] is what the deploy follow step and `logs --follow` keep while a launcher's log
//! streams: each line goes to [`Watch::line`], and [`Watch::tick`] is called when no line came
//! for a while (a hung run writes nothing). Both answer with a verdict only when it is new: a
//! warning once, a stop or a hang once. Time is passed in, so the whole thing is pure.

use std::time::{Duration, Instant};

use super::analysis::Analyzer;
use super::decide::{self, Policy, Verdict};

/// A followed run.
#[derive(Clone, Debug)]
pub struct Watch {
    analyzer: Analyzer,
    policy: Policy,
    started: Instant,
    last_progress: Instant,
    warned: bool,
    decided: bool,
}

impl Watch {
    /// Starts watching at `now`, deciding with `policy`.
    pub fn new(policy: Policy, now: Instant) -> Self {
        Self {
            analyzer: Analyzer::default(),
            policy,
            started: now,
            last_progress: now,
            warned: false,
            decided: false,
        }
    }

    /// A new launcher (a retry) writes a new log from its start: its analysis begins afresh,
    /// and so does the wait for progress. The elapsed time (what was paid for) goes on.
    pub fn reattached(&mut self, now: Instant) {
        self.analyzer = Analyzer::default();
        self.last_progress = now;
        self.warned = false;
        self.decided = false;
    }

    /// Feeds one line read at `now`; the verdict, if it is new.
    pub fn line(&mut self, raw: &str, now: Instant) -> Option<Verdict> {
        if self.analyzer.feed(raw).progress {
            self.last_progress = now;
        }
        self.decide(now)
    }

    /// No line came until `now`; the verdict (a hang), if it is new.
    pub fn tick(&mut self, now: Instant) -> Option<Verdict> {
        self.decide(now)
    }

    /// The log model so far.
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// Time since watching began.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    fn decide(&mut self, now: Instant) -> Option<Verdict> {
        if self.decided {
            return None;
        }
        let since_progress = now.saturating_duration_since(self.last_progress);
        match decide::verdict(&self.analyzer, since_progress, &self.policy) {
            Verdict::Continue => None,
            Verdict::Warn { .. } if self.warned => None,
            warn @ Verdict::Warn { .. } => {
                self.warned = true;
                Some(warn)
            }
            verdict => {
                self.decided = true;
                Some(verdict)
            }
        }
    }
}
