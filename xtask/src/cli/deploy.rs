//! `cargo xtask deploy`: the whole workflow, resumable.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Global;
use super::progress::StepSpinner;
use crate::config::{Config, Target};
use crate::deploy::bundle;
use crate::deploy::local::LocalExecutor;
use crate::deploy::plan::{self, Plan, StepId};
use crate::deploy::run::{self, Event, Selection};
use crate::deploy::state::FileStore;
use crate::render;

/// Run the whole Llama-2 Trainium workflow as one idempotent, resumable plan.
///
/// Steps, in order: preflight, images, storage, staging, compile, train, tensorboard, follow.
/// Each has a digest of its inputs; a re-run skips the steps whose inputs did not change and
/// resumes at the one that failed. With `cluster.target = "local"` (the default, when no
/// configuration names a cluster) it runs the embedded local profile under `cluster.work_dir`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plan and write every manifest and Dockerfile; contact nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start at this step and re-run it and every later one, even when up to date.
    #[arg(long, value_enum, value_name = "STEP")]
    pub from: Option<StepId>,
    /// Run only this step, even when up to date.
    #[arg(long, value_enum, value_name = "STEP", conflicts_with = "from")]
    pub only: Option<StepId>,
    /// Do not follow the training log at the end.
    #[arg(long)]
    pub no_follow: bool,
    /// Where --dry-run writes the manifests (default: <work_dir>/manifests).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tokenization threads of the local profile (default: all cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// The trnkit-stage executable the staging image carries (Linux x86-64; glibc 2.36 or older,
    /// or static). Default in a cluster: built with `cargo build --release --bin trnkit-stage`
    /// (quick when up to date); --dry-run uses the last release build without building.
    #[arg(long, value_name = "FILE")]
    pub stage_binary: Option<PathBuf>,
}

/// The `trnkit-stage` executable for the staging image: `--stage-binary`; in a cluster, the
/// release build (made now unless `dry_run`: a debug build would tokenize several times slower
/// in the cluster); locally, the one next to this executable.
async fn stage_binary_for(config: &Config, args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.stage_binary {
        anyhow::ensure!(
            path.is_file(),
            "--stage-binary {}: no such file",
            path.display()
        );
        return Ok(path.clone());
    }
    match config.cluster.target {
        Target::Local => Ok(stager_binary()),
        Target::Eks if args.dry_run => {
            let release = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join("target/release")
                .join(ecr_image::STAGE_BINARY_NAME);
            if !release.is_file() {
                eprintln!(
                    "note: no release trnkit-stage yet: the stager image's tag shown covers its Dockerfile only (deploy builds the binary)"
                );
            }
            Ok(release)
        }
        Target::Eks => super::image::build_stage_binary().await,
    }
}

/// The `trnkit-stage` binary next to this executable, if it was built.
fn stager_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .map(|dir| dir.join(ecr_image::STAGE_BINARY_NAME))
        })
        .unwrap_or_else(|| PathBuf::from(ecr_image::STAGE_BINARY_NAME))
}

fn print_plan(plan: &Plan) {
    println!(
        "plan ({} steps, target {:?}):",
        plan.steps.len(),
        plan.target
    );
    for (index, step) in plan.steps.iter().enumerate() {
        println!(
            "  {}. {:<11} {}  [inputs {}]",
            index + 1,
            step.id.name(),
            step.title,
            &step.digest[..12]
        );
        for action in &step.actions {
            println!("       - {action}");
        }
    }
}

fn write_images(dir: &Path, rendered: &plan::Rendered) -> anyhow::Result<()> {
    for (name, image) in &rendered.images {
        let image_dir = dir.join(name);
        fs_err::create_dir_all(&image_dir)?;
        crate::files::write_atomic(&image_dir.join("Dockerfile"), &image.dockerfile)?;
        fs_err::write(
            image_dir.join("REFERENCE"),
            format!("{}\n", image.reference),
        )?;
    }
    Ok(())
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let config = if args.dry_run {
        super::load_config_offline(global)?
    } else {
        super::load_config(global)?
    };
    let work_dir = config.cluster.work_dir.clone();
    let stage_binary = stage_binary_for(&config, &args).await?;
    let rendered = bundle::render_all(&config, None, None, &stage_binary)?;
    let plan = plan::plan(&config, &rendered);

    if args.dry_run {
        print_plan(&plan);
        let out = args.out.unwrap_or_else(|| work_dir.join("manifests"));
        let manifests = rendered.all_manifests();
        render::write(&out, &manifests)?;
        write_images(&work_dir.join("images"), &rendered)?;
        println!(
            "dry run: wrote {} objects to {} and {} Dockerfiles to {}; nothing was contacted",
            manifests.len(),
            out.display(),
            rendered.images.len(),
            work_dir.join("images").display()
        );
        return Ok(());
    }

    match config.cluster.target {
        Target::Local => run_local(&config, &work_dir, &plan, &rendered, &args, global).await,
        Target::Eks => {
            super::cluster::deploy(&config, selection(&args), &stage_binary, global).await
        }
    }
}

pub(crate) fn selection(args: &Args) -> Selection {
    Selection {
        from: args.from,
        only: args.only,
        skip_follow: args.no_follow,
    }
}

/// Prints one runner event; a running step shows a spinner with its elapsed time, except
/// the steps that print lines of their own (images draws its own bars, follow prints the log).
pub(crate) fn show(spinner: &StepSpinner, event: Event) {
    match event {
        Event::Started { id, title } => {
            spinner.stop();
            eprintln!("==> {id}: {title}");
            if !matches!(id, StepId::Images | StepId::Follow) {
                spinner.start(id.name(), &title);
            }
        }
        Event::UpToDate { id, summary } => eprintln!("    {id}: up to date ({summary})"),
        Event::NotSelected { id } => tracing::debug!("{id}: not selected"),
        Event::Finished { id, summary } => {
            spinner.stop();
            eprintln!("    {id}: done: {summary}");
        }
        Event::Failed { id, error } => {
            spinner.stop();
            eprintln!("    {id}: FAILED: {error}");
        }
    }
}

async fn run_local(
    config: &Config,
    work_dir: &Path,
    plan: &Plan,
    rendered: &plan::Rendered,
    args: &Args,
    global: &Global,
) -> anyhow::Result<()> {
    println!(
        "trnkit: no cluster configured (cluster.target = \"local\"): running the local profile under {}",
        work_dir.display()
    );
    println!(
        "  what can run here runs for real (shared layout, sample data, tokenizer, tokenization, compile-cache check);"
    );
    println!(
        "  the cluster steps are rendered, validated and planned, not applied. Set cluster.target = \"eks\" to deploy."
    );
    render::write(&work_dir.join("manifests"), &rendered.all_manifests())?;
    write_images(&work_dir.join("images"), rendered)?;
    let layout = fsx::SharedLayout::new(work_dir.join("shared"))
        .with_dataset_name(&config.data.dataset_name)
        .context("invalid data.dataset_name")?;
    let mut executor = LocalExecutor {
        config: config.clone(),
        layout,
        work_dir: work_dir.to_owned(),
        workers: args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let store = FileStore {
        path: work_dir.join("state.json"),
    };
    let spinner = StepSpinner::new(global.quiet);
    let report = run::run(plan, &store, &mut executor, selection(args), |event| {
        show(&spinner, event);
    })
    .await?;
    if let Some(failed) = report.failed {
        anyhow::bail!(
            "step {failed} failed; fix the cause and run `cargo xtask deploy` again to resume there"
        );
    }
    if report.nothing_to_do(plan) {
        println!("everything is up to date: nothing needed doing");
    } else {
        println!(
            "local profile done: ran {}; manifests in {}, Dockerfiles in {}",
            report
                .ran
                .iter()
                .map(|id| id.name())
                .collect::<Vec<_>>()
                .join(", "),
            work_dir.join("manifests").display(),
            work_dir.join("images").display()
        );
    }
    println!("in a cluster (cluster.target = \"eks\"), deploy would:");
    for step in &plan.steps {
        println!("  {:<11} {}", step.id.name(), step.actions.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Args, stage_binary_for};
    use crate::config::{Config, Target};

    fn args(dry_run: bool, stage_binary: Option<std::path::PathBuf>) -> Args {
        Args {
            dry_run,
            from: None,
            only: None,
            no_follow: false,
            out: None,
            workers: None,
            stage_binary,
        }
    }

    #[tokio::test]
    async fn the_staging_binary_is_the_given_one_or_a_release_build_for_clusters() {
        let mut config = Config::default();
        let error = stage_binary_for(&config, &args(false, Some("/nonexistent/x".into())))
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("--stage-binary /nonexistent/x"),
            "{error:#}"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        let given = stage_binary_for(&config, &args(false, Some(file.path().to_owned())))
            .await
            .unwrap();
        assert_eq!(given, file.path());
        // Locally: next to this executable.
        let local = stage_binary_for(&config, &args(false, None)).await.unwrap();
        assert_eq!(local.file_name().unwrap(), ecr_image::STAGE_BINARY_NAME);
        // A cluster's dry run names the release build and builds nothing.
        config.cluster.target = Target::Eks;
        let release = stage_binary_for(&config, &args(true, None)).await.unwrap();
        assert!(
            release.ends_with(format!("target/release/{}", ecr_image::STAGE_BINARY_NAME)),
            "{}",
            release.display()
        );
    }
}
