//! `cargo xtask init`: write the commented example configuration.

use std::path::PathBuf;

use super::Global;
use crate::config::EXAMPLE;

/// Write a commented configuration file with every key, its default and its meaning.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write it.
    #[arg(default_value = crate::config::DEFAULT_FILE, value_name = "FILE")]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(args: Args, _global: &Global) -> anyhow::Result<()> {
    if args.path.exists() && !args.force {
        anyhow::bail!(
            "{} exists already; pass --force to overwrite it",
            args.path.display()
        );
    }
    crate::files::write_atomic(&args.path, EXAMPLE)?;
    println!("wrote {}", args.path.display());
    if args.path == std::path::Path::new(crate::config::DEFAULT_FILE) {
        println!(
            "edit it, then: cargo xtask deploy --dry-run (./{} is read when no --config or TRNKIT_CONFIG names another file)",
            crate::config::DEFAULT_FILE
        );
    } else {
        println!(
            "edit it, then: cargo xtask --config {} deploy --dry-run",
            args.path.display()
        );
    }
    Ok(())
}
