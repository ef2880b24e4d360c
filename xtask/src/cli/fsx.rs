//! `cargo xtask fsx`: create, describe and delete trnkit's FSx for Lustre file system.
//!
//! The work is done by the `fsx` crate; this module reads flags and the configuration
//! (`[storage]`, `[cluster] name` and `region`), builds the FSx client from the standard AWS
//! chain (`AWS_ENDPOINT_URL` included, which is how the tests point it at moto), draws a spinner
//! while waiting and prints results.
//!
//! The file system is found by its tag `trnkit:name = <[cluster] name>` (or `--name`), so
//! `create` run twice adopts the first one instead of creating a second, and `describe` and
//! `delete` need no id. The spec, the tag and the adoption rule come from `crate::storage`, the
//! same functions deploy uses, so `fsx create` and deploy's static mode make the same file
//! system and `describe`/`delete` find what either made.

use std::time::Duration;

use super::progress::spinner;
use anyhow::{Context as _, bail};
use fsx::io::{self, Adopt, DeleteOptions, LifecycleChange, WaitOptions};
use fsx::{DeploymentType, FileSystem};
use serde::Serialize;

use super::Global;
use super::output::{ConfirmArgs, Format, OutputArgs, Preview, emit};
use crate::config::Config;
use crate::storage;

/// Create, describe and delete the FSx for Lustre file system behind `/shared`.
///
/// Region and credentials come from the standard AWS chain (AWS_PROFILE, AWS_REGION, SSO,
/// instance metadata), falling back to `[cluster] region`; AWS_ENDPOINT_URL points it at another
/// FSx endpoint (moto in tests).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create the file system with the configured (blueprint) settings, or adopt the one trnkit
    /// tagged before, and wait until it is AVAILABLE.
    ///
    /// Example: `cargo xtask fsx create --subnet-id subnet-0a1b2c3d --security-group-id sg-0123abcd
    /// -o json`
    Create(CreateArgs),
    /// Print trnkit's file system: id, lifecycle, DNS name, mount name, capacity.
    ///
    /// Example: `cargo xtask fsx describe -o yaml`
    Describe(DescribeArgs),
    /// Delete trnkit's file system and every file on it (dataset, compile cache, checkpoints).
    ///
    /// Without --yes (-y) it only previews what it would delete, and exits 0.
    ///
    /// Examples: `cargo xtask fsx delete` (the preview), `cargo xtask fsx delete --yes`
    Delete(DeleteArgs),
}

/// Which file system, and where.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Use this file system (`fs-…`) instead of finding it by tag.
    #[arg(long, value_name = "ID")]
    pub file_system_id: Option<String>,
    /// The value of the `trnkit:name` tag to find it by (default: `[cluster] name`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The AWS region (default: the AWS chain's, then `[cluster] region`).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

impl Target {
    /// The `trnkit:name` tag value: `--name`, else the one deploy uses ([`storage::tag_name`]).
    pub fn tag_name(&self, config: &Config) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| storage::tag_name(config).to_owned())
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub target: Target,
    /// The subnet to create the file system in; it must be in the Trainium nodes' Availability
    /// Zone (overrides `[storage] subnet_id`).
    #[arg(long, value_name = "ID")]
    pub subnet_id: Option<String>,
    /// A security group admitting TCP 988 and 1021-1023 from the nodes' subnets; repeat for
    /// several (overrides `[storage] security_group_ids`).
    #[arg(long = "security-group-id", value_name = "ID")]
    pub security_group_ids: Vec<String>,
    /// PERSISTENT_1 (the blueprint's) or PERSISTENT_2 (overrides `[storage] deployment_type`).
    #[arg(long, value_name = "TYPE")]
    pub deployment_type: Option<String>,
    /// Capacity in GiB: 1200, 2400 or a multiple of 2400 (overrides `[storage] capacity_gib`).
    #[arg(long, value_name = "GIB")]
    pub capacity_gib: Option<u32>,
    /// MB/s per TiB: 50, 100, 200 (PERSISTENT_1) or 125, 250, 500, 1000 (PERSISTENT_2).
    #[arg(long, value_name = "MBPS")]
    pub throughput: Option<u32>,
    /// Return as soon as the file system is created or adopted, without waiting for AVAILABLE.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for AVAILABLE (FSx for Lustre usually takes 5 to 15 minutes).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime_duration)]
    pub timeout: Duration,
    /// `-o json|yaml`: one document: `created` (whether this run created it), `file_system_id`,
    /// `lifecycle`, `dns_name`, `mount_name`, `storage_capacity_gib`, `deployment_type`, … .
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub target: Target,
    /// `-o json|yaml`: one document: `file_system_id`, `lifecycle`, `dns_name`, `mount_name`,
    /// `storage_capacity_gib`, `deployment_type`, … .
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    /// `-o json|yaml`: the preview (`command`, `would_remove`, `keeps`, `removed`: false), or
    /// after --yes `command`, `file_system_id`, `lifecycle`, `final_backup` and `removed`: true.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Skip the final backup FSx otherwise keeps (and bills) after deleting a file system with
    /// backups on.
    #[arg(long)]
    pub skip_final_backup: bool,
}

pub async fn run(command: Command, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    match command {
        Command::Create(args) => create(args, &config, global).await,
        Command::Describe(args) => describe(args, &config).await,
        Command::Delete(args) => delete(args, &config).await,
    }
}

/// The FSx client from the standard AWS chain, with `region` (or `[cluster] region` when the
/// chain has none).
pub async fn client(region: Option<&str>, config: &Config) -> fsx::aws_sdk_fsx::Client {
    crate::aws::fsx_client(&super::aws_sdk_config(region, config).await)
}

/// The configuration with the command line's overrides of `[storage]` applied, so that the
/// spec is built by the one function deploy uses ([`storage::file_system_spec_named`]).
pub fn overridden(config: &Config, args: &CreateArgs) -> anyhow::Result<Config> {
    let mut config = config.clone();
    let storage = &mut config.storage;
    if let Some(subnet) = &args.subnet_id {
        storage.subnet_id = subnet.clone();
    }
    if !args.security_group_ids.is_empty() {
        storage.security_group_ids = args.security_group_ids.clone();
    }
    if let Some(deployment) = &args.deployment_type {
        storage.deployment_type = deployment
            .parse::<DeploymentType>()
            .context("--deployment-type")?;
    }
    if let Some(capacity) = args.capacity_gib {
        storage.capacity_gib = capacity;
    }
    if let Some(throughput) = args.throughput {
        storage.per_unit_storage_throughput = throughput;
    }
    if let Some(id) = &args.target.file_system_id {
        storage.file_system_id = id.clone();
    }
    Ok(config)
}

/// Reads a file system's facts through the API, for `render --fsx-id ID`.
///
/// Fails when it does not exist; warns (through `tracing`) when it is not AVAILABLE yet, since
/// its mount name may then be missing and the static PersistentVolume cannot be rendered.
pub async fn file_system_facts(
    client: &fsx::aws_sdk_fsx::Client,
    file_system_id: &str,
) -> anyhow::Result<FileSystem> {
    let file_system = io::describe(client, file_system_id)
        .await?
        .with_context(|| {
            format!("FSx file system {file_system_id} does not exist; check the id and the region")
        })?;
    if file_system.lifecycle != Some(fsx::Lifecycle::Available) {
        tracing::warn!(
            file_system_id,
            lifecycle = file_system.lifecycle_label(),
            "the file system is not AVAILABLE; wait with `cargo xtask fsx create --file-system-id {file_system_id}`"
        );
    }
    Ok(file_system)
}

async fn create(args: CreateArgs, config: &Config, global: &Global) -> anyhow::Result<()> {
    let client = client(args.target.region.as_deref(), config).await;
    let output = args.output.format();
    let quiet = global.quiet || output != Format::Text;
    let (file_system, created) = create_with(&client, &args, config, quiet).await?;
    print_file_system(&file_system, Some(created), output)
}

/// `fsx create` with a given client: the spec and adoption rule deploy uses, with the command
/// line's overrides; returns the file system (AVAILABLE unless `--no-wait`) and whether it was
/// created now.
pub async fn create_with(
    client: &fsx::aws_sdk_fsx::Client,
    args: &CreateArgs,
    config: &Config,
    quiet: bool,
) -> anyhow::Result<(FileSystem, bool)> {
    let name = args.target.tag_name(config);
    let config = overridden(config, args)?;
    let spec = storage::file_system_spec_named(&config, &name)
        .context("the file system to create (--subnet-id, --security-group-id, --deployment-type, --capacity-gib and --throughput override [storage])")?;
    let adopt = storage::adopt(&config);
    let ensured = storage::ensure_file_system(client, &spec, &adopt, None, |_| {}).await?;
    let verb = if ensured.created {
        "created"
    } else {
        "adopted"
    };
    eprintln!(
        "{verb} {} (tag {}={name})",
        ensured.file_system.file_system_id,
        fsx::spec::NAME_TAG
    );
    for difference in &ensured.differences {
        eprintln!("warning: {difference}; trnkit does not change an existing file system");
    }

    let mut file_system = ensured.file_system;
    if !args.no_wait && file_system.lifecycle != Some(fsx::Lifecycle::Available) {
        let spinner = spinner(
            quiet,
            format!(
                "waiting for {} to become AVAILABLE",
                file_system.file_system_id
            ),
        );
        let options = WaitOptions {
            timeout: args.timeout,
            ..WaitOptions::default()
        };
        let waited = io::wait_until_available(
            client,
            &file_system.file_system_id,
            options,
            |change: &LifecycleChange| {
                let to = change.to.as_ref().map_or(
                    "unknown (the API reports no lifecycle)".to_owned(),
                    ToString::to_string,
                );
                spinner.println(format!(
                    "[{:>5}s] {} is {to}",
                    change.elapsed.as_secs(),
                    change.file_system_id
                ));
                spinner.set_message(format!("{} is {to}", change.file_system_id));
            },
        )
        .await;
        spinner.finish_and_clear();
        file_system = waited?;
    }
    Ok((file_system, ensured.created))
}

async fn describe(args: DescribeArgs, config: &Config) -> anyhow::Result<()> {
    let client = client(args.target.region.as_deref(), config).await;
    let Some(file_system) = find(&client, &args.target, config).await? else {
        let name = args.target.tag_name(config);
        bail!(
            "no FSx file system is tagged trnkit:name={name}; create one with `cargo xtask fsx create`"
        )
    };
    print_file_system(&file_system, None, args.output.format())
}

/// What `fsx delete --yes` did, for `-o json|yaml`.
#[derive(Serialize)]
struct Deleted<'a> {
    command: &'static str,
    file_system_id: &'a str,
    /// The lifecycle FSx reported after the request (`DELETING`), when it reported one.
    lifecycle: Option<String>,
    /// Whether FSx keeps a final backup (not with --skip-final-backup).
    final_backup: bool,
    removed: bool,
}

/// The preview of `fsx delete` with nothing to delete (none found, or being deleted already).
fn nothing_to_delete(why: String, format: Format) -> anyhow::Result<()> {
    eprintln!("{why}");
    Preview {
        command: "fsx delete".to_owned(),
        would_remove: Vec::new(),
        keeps: Vec::new(),
        removed: false,
    }
    .print(format)
}

async fn delete(args: DeleteArgs, config: &Config) -> anyhow::Result<()> {
    let format = args.output.format();
    let client = client(args.target.region.as_deref(), config).await;
    let Some(file_system) = find(&client, &args.target, config).await? else {
        let name = args.target.tag_name(config);
        return nothing_to_delete(
            format!("no FSx file system is tagged trnkit:name={name}"),
            format,
        );
    };
    let id = &file_system.file_system_id;
    if file_system.lifecycle == Some(fsx::Lifecycle::Deleting) {
        return nothing_to_delete(format!("{id} is already being deleted"), format);
    }
    let describe = format!(
        "{id} ({} GiB, {}, tags {})",
        file_system
            .storage_capacity_gib
            .map_or("?".to_owned(), |gib| gib.to_string()),
        file_system.lifecycle_label(),
        file_system
            .tags
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if file_system.tag(fsx::spec::NAME_TAG).is_none() {
        eprintln!(
            "warning: {id} does not carry trnkit's tag {}: trnkit did not create it",
            fsx::spec::NAME_TAG
        );
    }
    if !args.confirm.yes {
        let mut keeps = Vec::new();
        if !args.skip_final_backup {
            keeps.push(
                "a final backup of it, if it has backups on: FSx keeps (and bills) it until you delete it \
                 (--skip-final-backup: none)"
                    .to_owned(),
            );
        }
        keeps.push(
            "the Kubernetes objects that mount it (StorageClass, PersistentVolume, claim): \
             `cargo xtask cleanup --storage` removes trnkit's"
                .to_owned(),
        );
        return Preview {
            command: "fsx delete".to_owned(),
            would_remove: vec![format!(
                "FSx file system {describe} and every file on it (tokenized dataset, compile cache, \
                 checkpoints, logs)"
            )],
            keeps,
            removed: false,
        }
        .print(format);
    }
    let lifecycle = io::delete(
        &client,
        id,
        DeleteOptions {
            skip_final_backup: args.skip_final_backup,
        },
    )
    .await?;
    let report = Deleted {
        command: "fsx delete",
        file_system_id: id,
        lifecycle: lifecycle.map(|lifecycle| lifecycle.to_string()),
        final_backup: !args.skip_final_backup,
        removed: true,
    };
    emit(format, &report, || {
        out!(
            "deleting {describe}: now {}{}",
            report.lifecycle.as_deref().unwrap_or("unknown"),
            if args.skip_final_backup {
                ""
            } else {
                "; FSx keeps a final backup until you delete it"
            }
        );
    })
}

/// The file system `target` names: by id, by `[storage] file_system_id`, or by tag.
async fn find(
    client: &fsx::aws_sdk_fsx::Client,
    target: &Target,
    config: &Config,
) -> anyhow::Result<Option<FileSystem>> {
    let adopt = match &target.file_system_id {
        Some(id) => Adopt::Id(id.clone()),
        None => storage::adopt(config),
    };
    if let Adopt::Id(id) = adopt {
        return Ok(io::describe(client, &id).await?);
    }
    let name = target.tag_name(config);
    let mut found: Vec<FileSystem> = io::find_by_name(client, &name).await?;
    // A file system being deleted only counts when it is the only one.
    if found.len() > 1 {
        found.retain(|file_system| file_system.lifecycle != Some(fsx::Lifecycle::Deleting));
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => bail!(
            "{} file systems are tagged trnkit:name={name} ({}); pass --file-system-id",
            found.len(),
            found
                .iter()
                .map(|file_system| file_system.file_system_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[derive(Serialize)]
struct Printed<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    #[serde(flatten)]
    file_system: &'a FileSystem,
}

fn print_file_system(
    file_system: &FileSystem,
    created: Option<bool>,
    output: Format,
) -> anyhow::Result<()> {
    let printed = Printed {
        created,
        file_system,
    };
    emit(output, &printed, || {
        let unknown = |value: Option<&str>| value.unwrap_or("(not reported)").to_owned();
        out!("file_system_id  {}", file_system.file_system_id);
        out!("lifecycle       {}", file_system.lifecycle_label());
        out!(
            "dns_name        {}",
            unknown(file_system.dns_name.as_deref())
        );
        out!(
            "mount_name      {}",
            unknown(file_system.mount_name.as_deref())
        );
        out!(
            "capacity        {}",
            file_system
                .storage_capacity_gib
                .map_or("(not reported)".to_owned(), |gib| format!("{gib} GiB"))
        );
        out!(
            "deployment      {}",
            unknown(file_system.deployment_type.as_deref())
        );
        out!("subnets         {}", file_system.subnet_ids.join(", "));
        if let Some(message) = &file_system.failure_message {
            out!("failure         {message}");
        }
    })
}

/// Parses `30m`, `2h`, `90s` (humantime).
pub fn humantime_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|error| format!("`{value}` is not a duration such as 90s, 30m or 2h: {error}"))
}

#[cfg(test)]
impl CreateArgs {
    /// `fsx create` with no flag: everything from the configuration, no wait, JSON output.
    pub(crate) fn plain() -> Self {
        Self {
            target: Target {
                file_system_id: None,
                name: None,
                region: None,
            },
            subnet_id: None,
            security_group_ids: Vec::new(),
            deployment_type: None,
            capacity_gib: None,
            throughput: None,
            no_wait: true,
            timeout: std::time::Duration::from_secs(60),
            output: crate::cli::output::OutputArgs::JSON,
        }
    }
}

#[cfg(test)]
mod tests;
