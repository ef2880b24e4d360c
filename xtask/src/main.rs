//! `cargo xtask`: trnkit's command line, as run from the source tree.
//!
//! This file stays thin: the `cli` module of the xtask library parses the command line,
//! installs tracing, builds the tokio runtime and prints errors with their whole chain of
//! causes. `cargo install --path xtask` installs the same commands as `trnkit`
//! (`src/bin/trnkit.rs`).

use std::process::ExitCode;

fn main() -> ExitCode {
    xtask::cli::main_as("cargo xtask")
}
