//! The composition root of trnkit.
//!
//! `xtask` is the only crate that knows every leaf crate (`mpijob`, `neuron-cache`, `fsx`,
//! `ecr-image`, `pipeline`), the command line, the process environment and the terminal.
//! The workflow modules (`config`, `render`, `tensorboard`, and the deploy plan) are pure or
//! take their clients as arguments; only the `cli` modules print.

pub mod aws;
pub mod aws_identity;
pub mod checks;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod files;
pub mod hub;
pub mod images;
pub mod kube;
pub mod kube_client;
pub mod lock;
pub mod node_check;
pub mod observe;
pub mod render;
pub mod run_identity;
pub mod staging;
pub mod storage;
pub mod tensorboard;
mod tidy;
