//! `cargo xtask`: trnkit's command line.
//!
//! This file stays thin: it parses the command line and hands over to the `cli` module of the
//! xtask library, which installs tracing, builds the tokio runtime and prints errors with their
//! whole chain of causes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = xtask::cli::Cli::parse();
    let (verbose, quiet) = (cli.global.verbose, cli.global.quiet);
    xtask::cli::main_with(verbose, quiet, xtask::cli::run(cli))
}
