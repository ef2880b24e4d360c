//! `cargo xtask init`: write the commented example configuration.

use std::path::PathBuf;

use super::Global;
use crate::config::EXAMPLE;

/// Write a commented configuration file with every key, its default and its meaning.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write it.
    #[arg(default_value = "trnkit.toml", value_name = "FILE")]
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
    println!(
        "edit it, then: cargo xtask --config {} deploy --dry-run",
        args.path.display()
    );
    Ok(())
}
