//! `cargo xtask`: trnkit's command line.
//!
//! This file stays thin: it parses the command line, installs the `tracing` subscriber, builds
//! the tokio runtime and hands over to the `cli` module of the xtask library. Errors are printed
//! with their whole chain of causes.

#![allow(clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = xtask::cli::Cli::parse();
    // kube (ring) and the AWS SDK (aws-lc-rs) both enable a rustls provider, so rustls cannot
    // choose one itself: pick ring before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    xtask::cli::init_tracing(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(xtask::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
