//! `trnkit-stage`: the staging and tokenization commands of trnkit as one binary that runs in a
//! container without cargo (the staging Job, the sharded tokenization Job's pods, the
//! compile-cache check Job, the CLI pod).
//!
//! It shares its argument types with `cargo xtask tokenize` and `cargo xtask dataset`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::cli::{Global, cache, dataset, tokenize};

/// Stage the tokenizer and dataset, and tokenize JSONL into Megatron's indexed format.
#[derive(Debug, Parser)]
#[command(name = "trnkit-stage", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stage the tokenizer and the dataset (local or HuggingFace Hub) into a /shared-like tree.
    Stage(tokenize::StageArgs),
    /// Tokenize JSONL into Megatron's indexed dataset format (accepts Megatron's and NeMo's flags).
    Tokenize(tokenize::Args),
    /// Inspect and merge Megatron indexed datasets.
    #[command(subcommand)]
    Dataset(dataset::Command),
    /// Inspect, verify and prune the Neuron compile cache on the shared file system (deploy's
    /// cache-check Job runs `cache inspect --coverage-only --json`).
    #[command(subcommand)]
    Cache(cache::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = cli.global;
    xtask::cli::main_with(global.verbose, global.quiet, async move {
        match cli.command {
            Command::Stage(args) => tokenize::stage(args).await,
            Command::Tokenize(args) => tokenize::run(args, &global).await,
            Command::Dataset(command) => dataset::run(command, &global).await,
            Command::Cache(command) => cache::run(command, &global).await,
        }
    })
}
