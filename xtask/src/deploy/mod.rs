//! `deploy`: the whole workflow as one idempotent, resumable plan.
//!
//! - `plan`: configuration + rendered objects → ordered steps with input digests (pure);
//! - `state`: what finished, recorded in a ConfigMap or a local file;
//! - `run`: goes through the plan, skipping up-to-date steps, through an executor;
//! - `local`: the embedded local profile's executor; `sample`: its generated data;
//! - `bundle`: renders everything the plan is made from;
//! - `restart` (pure) and `supervise`: the train job followed, and restarted whole within the
//!   run's budget (the follow step and `watch`).

pub mod bundle;
pub mod cluster;
pub mod eks;
pub mod local;
pub mod plan;
pub mod restart;
pub mod run;
pub mod sample;
pub mod state;
pub mod supervise;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_tests;
