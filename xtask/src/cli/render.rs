//! `cargo xtask render`: write (or only check) every Kubernetes object trnkit would apply.

use std::path::PathBuf;

use anyhow::Context;

use super::Global;
use crate::render;

/// Write every Kubernetes object trnkit would apply, as YAML, after validating each.
///
/// MPIJobs are checked against the MPI Operator's rules and the CRD's OpenAPI schema with
/// unknown fields rejected. Secrets are never rendered: their values do not touch the disk.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write: one file per object, and `all.yaml` with every object as one
    /// YAML document each. A new or empty directory, or one an earlier `render` wrote (it is
    /// then replaced whole, atomically); a directory holding anything else is refused. `-`
    /// prints the objects as one YAML stream on stdout (`| kubectl diff -f -`).
    #[arg(long, value_name = "DIR", required_unless_present = "check")]
    pub out: Option<PathBuf>,
    /// Validate everything, write nothing.
    #[arg(long)]
    pub check: bool,
    /// Render the static PersistentVolume and claim for this existing FSx file system
    /// (`fs-...`), read through the AWS API (region from the configuration; `AWS_ENDPOINT_URL`
    /// is honoured). Implies `storage.mode = "static"`.
    #[arg(long, value_name = "ID")]
    pub fsx_id: Option<String>,
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    // Rendering asks STS nothing: the account naming the registry must be in the file, and its
    // absence is reported with every other problem.
    let mut config = super::load_config_offline(global)?;
    let file_system = match &args.fsx_id {
        Some(id) => {
            config.storage.mode = crate::config::StorageMode::Static;
            let client = super::fsx::client(Some(&config.cluster.region), &config).await;
            Some(super::fsx::file_system_facts(&client, id).await?)
        }
        None => None,
    };
    let manifests = super::render_manifests(&config, file_system.as_ref()).await?;
    if args.check {
        println!("{} objects are valid (not written)", manifests.len());
        return Ok(());
    }
    let out = args
        .out
        .context("--out DIR is required unless --check is given")?;
    if out.as_os_str() == "-" {
        print!("{}", render::stream(&manifests));
        return Ok(());
    }
    let written = render::write(&out, &manifests)?;
    for path in &written {
        println!("{}", path.display());
    }
    eprintln!("wrote {} objects to {}", manifests.len(), out.display());
    Ok(())
}
