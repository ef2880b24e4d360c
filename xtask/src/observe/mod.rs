//! The training log model: what a launcher's (or a rank's) log says about the run.
//!
//! - `line`: one raw log line → the clean records in it (carriage returns split progress-bar
//!   redraws; ANSI colour codes and mpirun's `[1,0]<stdout>:` prefixes are removed);
//! - `analysis`: an incremental [`analysis::Analyzer`] fed line by line (a file, or a live
//!   stream), whose [`analysis::Analysis`] is the step, loss, speed, network, compile-cache
//!   events and the first fatal condition;
//! - `decide`: pure decisions on an analysis: stop a run that fell back to TCP or hit a fatal
//!   condition, mark a run hung when no progress line came for too long;
//! - `live`: the figures `status` and `logs --follow` show: ETA, elapsed time and the cost
//!   estimate;
//! - `watch`: a followed run: the analyzer, the clock, and each decision taken once.
//!
//! Everything here is pure: the CLI and the deploy follow step feed it lines and act on the
//! answers.

pub mod analysis;
pub mod decide;
pub mod line;
pub mod live;
pub mod watch;

#[cfg(test)]
mod tests;
