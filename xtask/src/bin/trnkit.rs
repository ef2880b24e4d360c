//! `trnkit`: the installed command line (`cargo install --path xtask`), the same commands as
//! `cargo xtask`.

use std::process::ExitCode;

fn main() -> ExitCode {
    xtask::cli::main_as("trnkit")
}
