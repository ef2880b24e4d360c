//! `cargo xtask cache`: inspect, prune and verify the Neuron persistent compile cache.
//!
//! The work is done by the `neuron-cache` crate; this module picks the root (`--root`, else the
//! local profile's `<work_dir>/shared/neuron_cache` from the shared layout), reads the
//! configured `NEURON_CC_FLAGS`, runs the blocking walk off the async runtime with a spinner, and
//! prints text or the documented JSON.
//!
//! `-o json` (or the older `--json`) prints one object, `-o yaml` the same as YAML: `root`,
//! `stale_after_seconds`, `entries` (each with at least `path` relative to the root,
//! `compiler_version`, `state` — `complete`, `failed`, `locked`, `stale_lock` or `incomplete` —
//! and `bytes`), `skipped`, `summary` and `notes`; `inspect` adds `coverage` for the configured
//! flags; `prune` prints `command` (`cache prune`), `root`, `dry_run` (true for the preview, the
//! default without `--yes`), `entries`, `bytes_freed`, `removed`, `kept`, `failed` and, per
//! entry, `action`, `reason`, `outcome` (`would_remove`, `removed`, `kept`, `failed`), `done`,
//! and when there is more to say `message`, `locks_removed`, `locks_kept`; a preview adds the
//! preview fields every destructive command prints, `would_remove` and `keeps` (lists of
//! words); `verify` adds `problems`. A prune with a failed item exits with an error after
//! printing its report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use neuron_cache::{CacheReport, Coverage, InspectOptions, Problem, PruneOptions, State};
use serde::Serialize;

use super::Global;
use super::fsx::humantime_duration;
use super::output::{ConfirmArgs, Format, OutputArgs, Preview, emit};
use super::progress::spinner;
use crate::config::Config;

/// Inspect, prune and verify the Neuron persistent compile cache (`NEURON_COMPILE_CACHE_URL`).
///
/// The cache lives on the shared file system (`/shared/neuron_cache` in the cluster). Run these
/// where it is mounted, or on the local profile's copy. Symbolic links are never followed, and
/// nothing is removed unless `prune` is asked to.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List every entry with its state (complete, failed, locked, stale_lock, incomplete), size
    /// and compiler version, and say whether the configured NEURON_CC_FLAGS already have
    /// complete entries (whether the compile job can be skipped).
    ///
    /// Example: `cargo xtask cache inspect --root /shared/neuron_cache -o json`
    Inspect(InspectArgs),
    /// Remove failed entries, stale locks or other compiler versions: only what is asked, never a
    /// lock younger than the threshold or held by a process, never across a mount point. Shows
    /// what it would remove; removes it only with --yes.
    ///
    /// Examples: `cargo xtask cache prune --failed` (the preview),
    /// `cargo xtask cache prune --stale-locks --older-than 2h --yes`
    Prune(PruneArgs),
    /// Check complete entries: non-empty NEFF, input graph present, flags file matching the
    /// folder's flags key. Exits with an error when a problem is found.
    ///
    /// Example: `cargo xtask cache verify --root /shared/neuron_cache`
    Verify(VerifyArgs),
}

/// Where the cache is, and when a lock counts as stale.
#[derive(Debug, Clone, clap::Args)]
pub struct RootArgs {
    /// The cache root (the folder NEURON_COMPILE_CACHE_URL names). Default: the local profile's
    /// `<[cluster] work_dir>/shared/neuron_cache`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// A lock older than this counts as stale (a killed compilation).
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime_duration)]
    pub stale_after: Duration,
    /// The NEURON_CC_FLAGS to check coverage for (default: `[training] neuron_cc_flags`).
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    pub flags: Option<String>,
    /// Only count entries of this compiler version (the `neuronxcc-<version>` folder) for
    /// coverage; the image's neuronx-cc version is the one that matters.
    #[arg(long, value_name = "VERSION")]
    pub compiler_version: Option<String>,
    /// List every entry, not only the summary (text output).
    #[arg(long)]
    pub all: bool,
    /// Skip measuring sizes (every `bytes` is 0): about half the system calls, and far fewer
    /// round trips on Lustre, where each file's size costs a request to a storage server.
    #[arg(long)]
    pub no_sizes: bool,
    /// Print only the coverage of the flags, not the entries: with -o json (or --json), one line
    /// `{"coverage":{...},"flags_mismatch":...}`. This is what deploy's cache-check Job runs.
    #[arg(long)]
    pub coverage_only: bool,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Remove cached compilation failures, so the next run compiles them again.
    #[arg(long)]
    pub failed: bool,
    /// Remove lock files older than --older-than (left by killed compilations; later runs wait
    /// on them forever). The entries stay and are compiled again.
    #[arg(long, requires = "older_than")]
    pub stale_locks: bool,
    /// The age above which a lock is removed by --stale-locks, such as 2h (at least 10m). Choose
    /// it longer than any compilation takes: a lock younger than this is never touched, and
    /// neither is one a running process holds.
    #[arg(long, value_name = "DURATION", value_parser = humantime_duration, requires = "stale_locks")]
    pub older_than: Option<Duration>,
    /// Remove the entries of every other compiler version (complete ones included), e.g.
    /// --keep-version 2.21.33363.0+82129205. Entries with a lock younger than --older-than (else
    /// 2h), or held by a process, are kept.
    #[arg(long, value_name = "VERSION")]
    pub keep_version: Option<String>,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    /// Only show what would be removed (the default; kept for scripts).
    #[arg(long, hide = true, conflicts_with = "yes")]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub root: RootArgs,
}

pub async fn run(command: Command, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    match command {
        Command::Inspect(args) => inspect(args, &config, global).await,
        Command::Prune(args) => prune(args, &config, global).await,
        Command::Verify(args) => verify(args, &config, global).await,
    }
}

/// The cache root: `--root`, else the local profile's copy of `/shared/neuron_cache`.
pub fn cache_root(root: Option<PathBuf>, config: &Config) -> PathBuf {
    root.unwrap_or_else(|| {
        fsx::SharedLayout::new(config.cluster.work_dir.join("shared")).compile_cache()
    })
}

#[derive(Serialize)]
struct InspectOutput<'a> {
    #[serde(flatten)]
    report: &'a CacheReport,
    coverage: &'a Coverage,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags_mismatch: Option<String>,
}

async fn inspect(args: InspectArgs, config: &Config, global: &Global) -> anyhow::Result<()> {
    let root = cache_root(args.root.root, config);
    let options = InspectOptions {
        stale_after: args.stale_after,
        sizes: !args.no_sizes,
        ..InspectOptions::default()
    };
    let format = args.root.output.format();
    let report = walk(
        root.clone(),
        options,
        global.quiet || format != Format::Text,
    )
    .await?;

    let flags_text = args
        .flags
        .clone()
        .unwrap_or_else(|| config.training.neuron_cc_flags.clone());
    let flags =
        neuron_cache::parse_neuron_cc_flags(&flags_text).context("the NEURON_CC_FLAGS to check")?;
    let coverage = neuron_cache::coverage(
        &report,
        &flags.key(),
        &flags.legacy_key(),
        args.compiler_version.as_deref(),
    );
    // A NEURON_CC_FLAGS in [training.env] overrides the configured flags for both jobs; if it
    // differs, the cache trnkit checks is not the one the jobs will use.
    let flags_mismatch = match config.training.env.get("NEURON_CC_FLAGS") {
        Some(env_flags) => {
            let env_flags = neuron_cache::parse_neuron_cc_flags(env_flags)
                .context("[training.env] NEURON_CC_FLAGS")?;
            neuron_cache::compare(&flags, &env_flags).map(|mismatch| {
                format!("[training] neuron_cc_flags vs [training.env] NEURON_CC_FLAGS: {mismatch}")
            })
        }
        None => None,
    };

    if args.coverage_only {
        let output = crate::checks::CoverageLine {
            coverage: coverage.clone(),
            flags_mismatch,
        };
        // One line of JSON: deploy's cache-check Job reads its log's last line.
        if format == Format::Json {
            out!("{}", serde_json::to_string(&output)?);
            return Ok(());
        }
        return emit(format, &output, || {
            out!("{}", coverage.verdict());
            if let Some(mismatch) = &output.flags_mismatch {
                eprintln!("warning: {mismatch}");
            }
        });
    }
    let output = InspectOutput {
        report: &report,
        coverage: &coverage,
        flags_mismatch: flags_mismatch.clone(),
    };
    emit(format, &output, || {
        print_summary(&report, args.all);
        out!();
        out!("NEURON_CC_FLAGS {flags_text:?}");
        out!(
            "  flags key {} (older SDKs: {})",
            flags.key(),
            flags.legacy_key()
        );
        out!("  {}", coverage.verdict());
        if let Some(mismatch) = &flags_mismatch {
            eprintln!("warning: {mismatch}");
        }
    })
}

async fn prune(args: PruneArgs, config: &Config, global: &Global) -> anyhow::Result<()> {
    if !args.failed && !args.stale_locks && args.keep_version.is_none() {
        bail!(
            "choose what to prune: --failed, --stale-locks --older-than DURATION, or --keep-version VERSION"
        );
    }
    let root = cache_root(args.root.root.clone(), config);
    let options = PruneOptions {
        failed: args.failed,
        stale_locks_older_than: if args.stale_locks {
            args.older_than
        } else {
            None
        },
        keep_version: args.keep_version.clone(),
        dry_run: !args.confirm.yes,
    };
    // Refuse unusable options before walking a large cache.
    neuron_cache::prune::check_options(&options)?;
    let format = args.root.output.format();
    let spinner = spinner(
        global.quiet || format != Format::Text,
        format!("pruning {}", root.display()),
    );
    let root_for_task = root.clone();
    let report = tokio::task::spawn_blocking(move || {
        neuron_cache::prune(&root_for_task, &options, &InspectOptions::default())
    })
    .await
    .context("the prune task")?
    .with_context(|| format!("pruning the compile cache at {}", root.display()))?;
    spinner.finish_and_clear();

    let preview = report.dry_run.then(|| prune_preview(&report, &args));
    let output = PruneOutput {
        command: "cache prune",
        report: &report,
        would_remove: preview.as_ref().map(|preview| &preview.would_remove[..]),
        keeps: preview.as_ref().map(|preview| &preview.keeps[..]),
    };
    emit(format, &output, || match &preview {
        Some(preview) => {
            if !preview.would_remove.is_empty() {
                out!("{} would be freed", bytes(report.bytes_freed));
            }
            // Text only: cannot fail.
            let _ = preview.print(Format::Text);
        }
        None => print_prune(&report),
    })?;
    if report.failed > 0 {
        bail!(
            "{} of {} item(s) could not be removed (see each one's message{}); the rest was done as reported",
            report.failed,
            report.entries.len(),
            if format == Format::Text {
                " above"
            } else {
                " in the report"
            }
        );
    }
    Ok(())
}

/// `cache prune -o json|yaml`: the prune report; a preview adds the [`Preview`] fields
/// `command`, `would_remove` and `keeps` that `cleanup` and `fsx delete` print.
#[derive(Serialize)]
struct PruneOutput<'a> {
    command: &'static str,
    #[serde(flatten)]
    report: &'a neuron_cache::PruneReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    would_remove: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keeps: Option<&'a [String]>,
}

/// A prune's preview in the one wording of destructive commands: each item it would remove,
/// and what it keeps (items found but kept on purpose, and what prune never touches).
fn prune_preview(report: &neuron_cache::PruneReport, args: &PruneArgs) -> Preview {
    use neuron_cache::Outcome;
    let describe = |item: &neuron_cache::Pruned| {
        let what = match item.action {
            neuron_cache::Action::RemoveEntry => "entry",
            neuron_cache::Action::RemoveLocks => "locks of",
            neuron_cache::Action::FinishRemoval => "leftover",
        };
        let mut line = format!(
            "{what} {} ({}, {}): {}",
            item.entry.path,
            item.entry.state,
            bytes(item.entry.bytes),
            item.reason
        );
        if let Some(message) = &item.message {
            line.push_str(&format!("; {message}"));
        }
        line
    };
    let mut keeps: Vec<String> = report
        .entries
        .iter()
        .filter(|item| item.outcome != Outcome::WouldRemove)
        .map(describe)
        .collect();
    let mut never = vec![match (&args.keep_version, args.failed) {
        (Some(version), false) => format!("the entries of compiler version {version}"),
        (Some(version), true) => format!("the complete entries of compiler version {version}"),
        (None, false) => "every entry".to_owned(),
        (None, true) => "every entry that is not a failure".to_owned(),
    }];
    never.push(match args.older_than.filter(|_| args.stale_locks) {
        Some(age) => format!(
            "locks younger than {} or held by a process",
            humantime::format_duration(age)
        ),
        None => "lock files (add --stale-locks --older-than DURATION for old ones)".to_owned(),
    });
    keeps.push(never.join("; "));
    Preview {
        command: "cache prune".to_owned(),
        would_remove: report
            .entries
            .iter()
            .filter(|item| item.outcome == Outcome::WouldRemove)
            .map(describe)
            .collect(),
        keeps,
        removed: false,
    }
}

fn print_prune(report: &neuron_cache::PruneReport) {
    use neuron_cache::Outcome;
    for item in &report.entries {
        let what = match item.action {
            neuron_cache::Action::RemoveEntry => "entry",
            neuron_cache::Action::RemoveLocks => "locks of",
            neuron_cache::Action::FinishRemoval => "leftover",
        };
        let verb = match item.outcome {
            Outcome::WouldRemove => "would remove",
            Outcome::Removed => "removed",
            Outcome::Kept => "kept",
            Outcome::Failed => "FAILED to remove",
        };
        let mut line = format!(
            "{verb} {what} {} ({}, {}): {}",
            item.entry.path,
            item.entry.state,
            bytes(item.entry.bytes),
            item.reason
        );
        if !item.locks_removed.is_empty() {
            line.push_str(&format!("; removed {}", item.locks_removed.join(", ")));
        }
        if let Some(message) = &item.message {
            line.push_str(&format!("; {message}"));
        }
        out!("{line}");
    }
    // A preview is printed by `prune_preview`, in the wording every destructive command uses.
    out!(
        "done: {} removed, {} kept, {} failed of {} item(s); {} freed",
        report.removed,
        report.kept,
        report.failed,
        report.entries.len(),
        bytes(report.bytes_freed)
    );
}

#[derive(Serialize)]
struct VerifyOutput<'a> {
    #[serde(flatten)]
    report: &'a CacheReport,
    problems: &'a [Problem],
}

async fn verify(args: VerifyArgs, config: &Config, global: &Global) -> anyhow::Result<()> {
    let root = cache_root(args.root.root, config);
    let format = args.root.output.format();
    let report = walk(
        root.clone(),
        InspectOptions::default(),
        global.quiet || format != Format::Text,
    )
    .await?;
    let report_for_task = report.clone();
    let root_for_task = root.clone();
    let problems =
        tokio::task::spawn_blocking(move || neuron_cache::verify(&root_for_task, &report_for_task))
            .await
            .context("the verify task")?;
    let output = VerifyOutput {
        report: &report,
        problems: &problems,
    };
    emit(format, &output, || {
        for problem in &problems {
            out!("{}: {}", problem.path, problem.problem);
        }
        out!(
            "checked {} complete entries: {} problem(s)",
            report.summary.count(State::Complete),
            problems.len()
        );
    })?;
    if !problems.is_empty() {
        bail!(
            "{} problem(s) in the compile cache at {}",
            problems.len(),
            root.display()
        );
    }
    Ok(())
}

/// Inspects off the async runtime, with a spinner unless `quiet`.
async fn walk(root: PathBuf, options: InspectOptions, quiet: bool) -> anyhow::Result<CacheReport> {
    let spinner = spinner(quiet, format!("inspecting {}", root.display()));
    let root_for_task = root.clone();
    let report =
        tokio::task::spawn_blocking(move || neuron_cache::inspect(&root_for_task, &options))
            .await
            .context("the inspect task")?
            .with_context(|| format!("inspecting the compile cache at {}", root.display()))?;
    spinner.finish_and_clear();
    Ok(report)
}

fn print_summary(report: &CacheReport, all: bool) {
    out!("compile cache {}", report.root);
    let summary = &report.summary;
    out!("{} entries, {}", summary.entries, bytes(summary.bytes));
    for state in State::ALL {
        out!("  {:<11} {}", state.as_str(), summary.count(state));
    }
    for (version, count) in &summary.compiler_versions {
        out!("  neuronxcc-{version}: {count} entries");
    }
    let worth_listing =
        |entry: &&neuron_cache::Entry| all || !matches!(entry.state, State::Complete);
    for entry in report.entries.iter().filter(worth_listing) {
        out!(
            "{:<11} {:>10}  {}  ({})",
            entry.state.as_str(),
            bytes(entry.bytes),
            entry.path,
            entry.detail
        );
    }
    if !report.skipped.is_empty() {
        out!(
            "skipped {} item(s) that are not entries:",
            report.skipped.len()
        );
        for skipped in report
            .skipped
            .iter()
            .take(if all { usize::MAX } else { 20 })
        {
            out!("  {}: {}", skipped.path, skipped.reason);
        }
    }
    for note in &report.notes {
        out!("note: {note}");
    }
    if summary.count(State::StaleLock) > 0 {
        out!(
            "hint: stale locks make later runs wait forever; remove them with `cargo xtask cache prune --stale-locks --older-than {}s`",
            report.stale_after_seconds
        );
    }
    if summary.count(State::Failed) > 0 {
        out!(
            "hint: failed entries are replayed on every run; remove them with `cargo xtask cache prune --failed`"
        );
    }
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests;
