//! The commands around `deploy`: `status`, `logs`, `stop`, `tensorboard`, `cleanup` and
//! `completions`. Each reads the same configuration and talks to the configured cluster.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::Api;
use mpijob::MPIJob;
use mpijob::io::{FollowEvent, FollowOptions};

use super::Global;
use crate::config::Target;
use crate::deploy::state::{ConfigMapStore, FileStore, State, StateStore};
use crate::observe::decide::Verdict;
use crate::observe::watch::Watch;

/// `status`: where the deployment stands: the recorded steps, the jobs' conditions, and the
/// train job's live figures from its launcher's log (step i of N, loss, throughput, seconds per
/// step, ETA, elapsed, network, compile-cache events, cost so far and projected, an estimate).
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub output: super::output::OutputArgs,
}

/// `logs`: the training job's launcher log (every rank's output goes through it), or
/// `logs analyze FILE`: what a saved log says, offline.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// `analyze FILE`: read a log offline instead.
    #[command(subcommand)]
    pub action: Option<LogsAction>,
    /// Keep following, re-attaching when the launcher restarts; a live summary (step, loss,
    /// ETA, cost estimate) goes to stderr, and what waiting cannot fix (a fatal error, TCP
    /// instead of EFA, no progress for too long) is reported with its log lines.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// The job: `train` (default) or `compile`.
    #[arg(long, default_value = "train", value_parser = ["train", "compile"])]
    pub job: String,
    /// Lines from the end to show first (without --follow).
    #[arg(long, default_value_t = 100)]
    pub tail: i64,
    /// Show node N's own log file instead (0 to workers - 1): the `tee` of that node's torchrun
    /// output, `nemo_experiments/<run name>/<N>/log` on the shared file system, read with
    /// `tail` in worker N through `kubectl exec` (the blueprint's `kubectl exec ... tail -f`).
    #[arg(long, value_name = "N")]
    pub rank: Option<u32>,
}

/// What `logs` does besides showing the cluster's log.
#[derive(Debug, clap::Subcommand)]
pub enum LogsAction {
    /// Analyze a training log file (the launcher's, or a rank's; `-` reads stdin): the last
    /// global step, the progress total, seconds per step, loss, throughput, consumed samples,
    /// the network (EFA or TCP), compile-cache events, the first fatal condition and whether
    /// the loss was ever NaN. Unknown values are null.
    ///
    /// Example: `kubectl logs test-mpi-train-launcher-abcde | cargo xtask logs analyze - -o json`
    Analyze(AnalyzeArgs),
}

/// `logs analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// The log file; `-` for stdin.
    pub file: std::path::PathBuf,
    /// `-o json|yaml`: one document with `last_global_step`, `total_steps`, `seconds_per_step`,
    /// `loss`, `throughput`, `consumed_samples`, `network`, `cache`, `fatal` and `nan_loss`.
    #[command(flatten)]
    pub output: super::output::OutputArgs,
}

/// `cleanup`: delete what deploy created in the cluster.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Also delete the storage objects (with the dynamic mode, the FSx file system goes with its claim).
    #[arg(long)]
    pub storage: bool,
    #[command(flatten)]
    pub confirm: super::output::ConfirmArgs,
    #[command(flatten)]
    pub output: super::output::OutputArgs,
}

async fn state(
    config: &crate::config::Config,
    client: Option<&kube::Client>,
) -> anyhow::Result<State> {
    Ok(match (config.cluster.target, client) {
        (Target::Eks, Some(client)) => {
            ConfigMapStore::new(
                client.clone(),
                &config.cluster.namespace,
                &config.cluster.field_manager,
            )
            .load()
            .await?
        }
        _ => {
            FileStore {
                path: config.cluster.work_dir.join("state.json"),
            }
            .load()
            .await?
        }
    })
}

/// The train job's live figures from its launcher log `text`, `elapsed` after it started.
pub fn live_figures(
    config: &crate::config::Config,
    text: &str,
    elapsed: std::time::Duration,
) -> crate::observe::live::Live {
    let analysis = crate::observe::analysis::analyze(text);
    crate::observe::live::live(
        &analysis,
        elapsed,
        u32::try_from(config.training.workers).unwrap_or(0),
        config.cost.instance_hourly_usd,
    )
}

/// Time since `time`, zero when it lies in the future.
fn since(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> std::time::Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs());
    let started = u64::try_from(time.0.as_second()).unwrap_or(0);
    std::time::Duration::from_secs(now.saturating_sub(started))
}

/// Launcher log lines `status` reads for its figures.
const STATUS_LOG_LINES: i64 = 5000;

pub async fn status(args: StatusArgs, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    let client = match config.cluster.target {
        Target::Eks => Some(super::cluster::client(&config).await?),
        Target::Local => None,
    };
    let state = state(&config, client.as_ref()).await?;
    let mut report = serde_json::json!({ "target": config.cluster.target, "steps": state.steps });
    // Each run's whole-job restarts (see `deploy::restart`).
    report["runs"] = serde_json::to_value(&state.runs)?;
    let mut lives = BTreeMap::new();
    if let Some(client) = &client {
        let jobs: Api<MPIJob> = Api::namespaced(client.clone(), &config.cluster.namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &config.cluster.namespace);
        let mut job_reports = serde_json::Map::new();
        for name in [
            &config.training.compile_job_name,
            &config.training.train_job_name,
        ] {
            let Some(job) = jobs.get_opt(name).await? else {
                continue;
            };
            let conditions = job
                .status
                .as_ref()
                .and_then(|status| status.conditions.clone())
                .unwrap_or_default();
            let tail = mpijob::io::launcher_log_tail(&pods, name, STATUS_LOG_LINES)
                .await
                .ok()
                .flatten();
            let elapsed = job
                .status
                .as_ref()
                .and_then(|status| status.start_time.as_ref())
                .map(since)
                .unwrap_or_default();
            let live = tail
                .as_ref()
                .map(|(_, text)| live_figures(&config, text, elapsed));
            job_reports.insert(name.clone(), serde_json::json!({ "conditions": conditions, "launcher": tail.map(|(pod, _)| pod), "live": live }));
            if let Some(live) = live {
                lives.insert(name.clone(), live);
            }
        }
        report["jobs"] = serde_json::Value::Object(job_reports);
    }
    let where_ = match config.cluster.target {
        Target::Local => format!(
            "the local profile under {} (no cluster configured)",
            config.cluster.work_dir.display()
        ),
        Target::Eks => format!(
            "EKS cluster {}, namespace {}{}",
            config.cluster.name,
            config.cluster.namespace,
            if config.cluster.kube_context.is_empty() {
                String::new()
            } else {
                format!(", context {}", config.cluster.kube_context)
            }
        ),
    };
    super::output::emit(args.output.output, &report, || {
        out!("trnkit status: {where_}");
        if state.steps.is_empty() {
            out!(
                "no deploy is recorded here yet: run `cargo xtask deploy` (or `--dry-run` to see the plan first)"
            );
        }
        for (id, record) in &state.steps {
            out!("{}", step_line(id.name(), record));
        }
        for (run, record) in &state.runs {
            out!(
                "run {run}: {}",
                crate::deploy::restart::summary(record, config.training.max_restarts)
            );
        }
        if let Some(jobs) = report.get("jobs").and_then(|jobs| jobs.as_object()) {
            for (name, job) in jobs {
                let conditions: Vec<String> = job["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|condition| condition["status"] == "True")
                    .filter_map(|condition| condition["type"].as_str().map(str::to_owned))
                    .collect();
                let launcher = job["launcher"].as_str().unwrap_or("no launcher pod yet");
                out!(
                    "job {name}: {} (launcher {launcher})",
                    if conditions.is_empty() {
                        "no condition yet".to_owned()
                    } else {
                        conditions.join(", ")
                    }
                );
                if let Some(live) = lives.get(name) {
                    out!("  {}", crate::observe::live::summary(live));
                }
            }
        }
    })
}

/// One step of `status` in words: `  staging     done     2026-12-01T14:02:11Z  <message>`.
fn step_line(id: &str, record: &crate::deploy::state::StepRecord) -> String {
    use crate::deploy::state::Status;
    let (state, when) = match record.status {
        Status::Done => ("done", "finished"),
        Status::Failed => ("FAILED", "failed"),
        Status::Running => ("running", "started"),
    };
    format!(
        "  {id:<11} {state:<8} {when} {}  {}",
        record.finished_at,
        record.message.lines().next().unwrap_or("")
    )
}

pub async fn logs(args: LogsArgs, global: &Global) -> anyhow::Result<()> {
    if let Some(LogsAction::Analyze(analyze)) = &args.action {
        return analyze_file(analyze);
    }
    let config = super::load_config(global)?;
    anyhow::ensure!(
        config.cluster.target == Target::Eks,
        "logs needs a cluster (cluster.target = \"eks\")"
    );
    let client = super::cluster::client(&config).await?;
    let name = if args.job == "compile" {
        &config.training.compile_job_name
    } else {
        &config.training.train_job_name
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.cluster.namespace);
    if let Some(rank) = args.rank {
        return rank_log(&config, &pods, name, rank, &args).await;
    }
    if !args.follow {
        let (pod, text) = mpijob::io::launcher_log_tail(&pods, name, args.tail)
            .await?
            .with_context(|| format!("no launcher pod of {name} exists (yet)"))?;
        eprintln!("==> {pod}");
        print!("{text}");
        return Ok(());
    }
    let jobs: Api<MPIJob> = Api::namespaced(client, &config.cluster.namespace);
    let layout = crate::render::layout(&config)?;
    let mut stream = std::pin::pin!(mpijob::io::follow_launcher(
        pods,
        jobs,
        name,
        FollowOptions::default()
    ));
    let policy = crate::deploy::cluster::follow_policy(&config.training);
    let mut watch = Watch::new(policy, Instant::now());
    let mut last_summary: Option<Instant> = None;
    loop {
        let event = match tokio::time::timeout(WATCH_TICK, stream.next()).await {
            Ok(Some(event)) => event?,
            Ok(None) => break,
            Err(_quiet) => {
                if let Some(verdict) = watch.tick(Instant::now()) {
                    report_verdict(&verdict);
                }
                continue;
            }
        };
        match event {
            FollowEvent::Attached { pod, uid } | FollowEvent::Reattached { pod, uid, .. } => {
                let log = layout
                    .rank_log(&uid, 0)
                    .map(|path| path.display().to_string())
                    .unwrap_or_default();
                eprintln!("==> following {pod}; rank 0 also writes {log}");
                watch.reattached(Instant::now());
            }
            FollowEvent::Line(line) => {
                println!("{line}");
                let now = Instant::now();
                if let Some(verdict) = watch.line(&line, now) {
                    report_verdict(&verdict);
                }
                if last_summary.is_none_or(|at| now.duration_since(at) >= SUMMARY_EVERY)
                    && watch.analyzer().analysis().last_global_step.is_some()
                {
                    let live = crate::observe::live::live(
                        &watch.analyzer().analysis(),
                        watch.elapsed(now),
                        u32::try_from(config.training.workers).unwrap_or(0),
                        config.cost.instance_hourly_usd,
                    );
                    eprintln!("==> {}", crate::observe::live::summary(&live));
                    last_summary = Some(now);
                }
            }
            FollowEvent::Finished(outcome) => {
                eprintln!("==> {name} finished: {outcome:?}");
                break;
            }
        }
    }
    Ok(())
}

/// How often `logs --follow` looks at a quiet log (for a hang).
const WATCH_TICK: Duration = Duration::from_secs(60);
/// How often `logs --follow` prints the live summary.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Prints what waiting cannot fix, with its log lines. `logs` only reports: deploy's follow
/// step stops the job.
fn report_verdict(verdict: &Verdict) {
    match verdict {
        Verdict::Continue => {}
        Verdict::Warn { reason, evidence } => {
            eprintln!("==> warning: {reason}");
            for line in evidence {
                eprintln!("    {line}");
            }
        }
        Verdict::Stop { reason, evidence } => {
            eprintln!("==> waiting cannot fix this: {reason}");
            for line in evidence {
                eprintln!("    {line}");
            }
            eprintln!("==> `cargo xtask stop` stops the job (deploy's follow step does so itself)");
        }
        Verdict::Hung { reason } => {
            eprintln!("==> {reason}; `cargo xtask stop` stops the job");
        }
    }
}

/// `logs analyze FILE`.
fn analyze_file(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin().lock())
            .context("cannot read the log from stdin")?
    } else {
        let bytes = fs_err::read(&args.file)?;
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let analysis = crate::observe::analysis::analyze(&text);
    super::output::emit(args.output.format(), &analysis, || {
        out!("{}", analysis_text(&analysis).trim_end());
    })
}

/// `logs analyze`'s text output: one `key: value` line per figure, `-` when unknown.
pub fn analysis_text(analysis: &crate::observe::analysis::Analysis) -> String {
    fn or_dash<T: ToString>(value: Option<T>) -> String {
        value.map_or_else(|| "-".to_owned(), |value| value.to_string())
    }
    let cache = &analysis.cache;
    format!(
        "last global step: {}\ntotal steps:      {}\nseconds per step: {}\nloss:             {}{}\nthroughput:       {}\nconsumed samples: {}\nnetwork:          {}\ncompile cache:    {} cached neff hits, {} cached failed, {} locked\nfatal:            {}\n",
        or_dash(analysis.last_global_step),
        or_dash(analysis.total_steps),
        or_dash(analysis.seconds_per_step),
        or_dash(analysis.loss),
        if analysis.nan_loss { " (NaN seen)" } else { "" },
        or_dash(analysis.throughput),
        or_dash(analysis.consumed_samples),
        match analysis.network {
            Some(crate::observe::analysis::Network::Efa) => "EFA",
            Some(crate::observe::analysis::Network::Tcp) => "TCP (EFA not in use)",
            None => "-",
        },
        cache.cached_neff_hits,
        cache.cached_failed,
        or_dash(cache.locked),
        or_dash(analysis.fatal.map(crate::observe::analysis::Fatal::name)),
    )
}

/// `logs --rank N`: `tail [-F]` of node N's log file, in worker N.
async fn rank_log(
    config: &crate::config::Config,
    pods: &Api<Pod>,
    job: &str,
    rank: u32,
    args: &LogsArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        i64::from(rank) < i64::from(config.training.workers),
        "--rank {rank} is out of range: the job has {} workers (ranks 0 to {})",
        config.training.workers,
        config.training.workers - 1
    );
    let launcher = mpijob::io::launcher_pods(pods, job)
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("no launcher pod of {job} exists (yet)"))?;
    // The train job's ranks write under the run's name, the compile job's under the UID.
    let uid = crate::run_identity::experiment_name(&launcher)
        .context("the launcher pod has neither a run name nor a UID")?;
    let path = crate::render::layout(config)?.rank_log(&uid, rank)?;
    let mut tail = vec!["tail".to_owned(), "-n".to_owned(), args.tail.to_string()];
    if args.follow {
        tail.push("-F".to_owned());
    }
    tail.push(path.display().to_string());
    let pod = format!("{job}-worker-{rank}");
    eprintln!("==> {pod}: {}", path.display());
    let status = kubectl(&kubectl_exec_args(config, &pod, false, &tail))
        .status()
        .await
        .context(KUBECTL_MISSING)?;
    anyhow::ensure!(
        status.success(),
        "kubectl exec into {pod} failed ({status}); the log appears once node {rank} has started training"
    );
    Ok(())
}

const KUBECTL_MISSING: &str = "cannot run kubectl: install it (https://kubernetes.io/docs/tasks/tools/) and configure the cluster's context";

/// The arguments of `kubectl [--context C] --namespace NS exec [-it] POD -- COMMAND...`. No
/// shell is involved; every value comes from the validated configuration or the API.
pub fn kubectl_exec_args(
    config: &crate::config::Config,
    pod: &str,
    interactive: bool,
    command: &[String],
) -> Vec<String> {
    let mut args = Vec::new();
    if !config.cluster.kube_context.is_empty() {
        args.extend(["--context".to_owned(), config.cluster.kube_context.clone()]);
    }
    args.extend([
        "--namespace".to_owned(),
        config.cluster.namespace.clone(),
        "exec".to_owned(),
    ]);
    if interactive {
        args.push("-it".to_owned());
    }
    args.extend([pod.to_owned(), "--".to_owned()]);
    args.extend(command.iter().cloned());
    args
}

fn kubectl(args: &[String]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("kubectl");
    if let Ok(dir) = std::env::current_dir() {
        command.current_dir(dir);
    }
    command.args(args);
    command
}

/// `stop`: delete the train and compile MPIJobs.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// `-o json|yaml`: one document: `command` (`stop`) and `deleted` (the MPIJobs that
    /// existed and were deleted).
    #[command(flatten)]
    pub output: super::output::OutputArgs,
}

/// What `stop` and `cleanup --yes` removed, for `-o json|yaml`.
#[derive(Debug, serde::Serialize)]
struct Removed {
    command: &'static str,
    /// Each object removed, in words (`MPIJob llama2-train`).
    deleted: Vec<String>,
    removed: bool,
}

pub async fn stop(args: StopArgs, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    anyhow::ensure!(
        config.cluster.target == Target::Eks,
        "stop needs a cluster (cluster.target = \"eks\")"
    );
    let client = super::cluster::client(&config).await?;
    let jobs: Api<MPIJob> = Api::namespaced(client, &config.cluster.namespace);
    let mut deleted = Vec::new();
    for name in [
        &config.training.train_job_name,
        &config.training.compile_job_name,
    ] {
        if mpijob::io::delete(&jobs, name).await? {
            deleted.push(format!("MPIJob {name}"));
        }
    }
    let report = Removed {
        command: "stop",
        removed: !deleted.is_empty(),
        deleted,
    };
    super::output::emit(args.output.format(), &report, || {
        if report.deleted.is_empty() {
            out!(
                "no MPIJob to delete: neither {} nor {} exists",
                config.training.train_job_name,
                config.training.compile_job_name
            );
        }
        for object in &report.deleted {
            out!("deleted {object}");
        }
    })
}

/// `tensorboard`: TensorBoard's address, user and password.
#[derive(Debug, clap::Args)]
pub struct TensorboardArgs {
    #[command(flatten)]
    pub output: super::output::OutputArgs,
}

/// TensorBoard's address, user and password, for `-o json`.
#[derive(Debug, serde::Serialize)]
struct TensorboardReport {
    /// `http://<load balancer>/`, or null while it has no address.
    url: Option<String>,
    /// The command that reaches it without a load balancer.
    port_forward: String,
    user: String,
    password: String,
}

pub async fn tensorboard(args: TensorboardArgs, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    anyhow::ensure!(
        config.cluster.target == Target::Eks,
        "tensorboard needs a cluster (cluster.target = \"eks\")"
    );
    let client = super::cluster::client(&config).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.cluster.namespace);
    let secret = secrets
        .get_opt(&config.tensorboard.secret_name)
        .await?
        .with_context(|| {
            format!(
                "no Secret {}: run `cargo xtask deploy` first",
                config.tensorboard.secret_name
            )
        })?;
    let password = secret
        .data
        .and_then(|data| data.get(crate::tensorboard::PASSWORD_KEY).cloned())
        .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
        .context("the Secret holds no password")?;
    let services: Api<Service> = Api::namespaced(client, &config.cluster.namespace);
    let host = services
        .get_opt(crate::tensorboard::LOAD_BALANCER)
        .await?
        .and_then(|service| service.status?.load_balancer?.ingress?.into_iter().next())
        .and_then(|ingress| ingress.hostname.or(ingress.ip));
    let report = TensorboardReport {
        url: host.map(|host| format!("http://{host}/")),
        port_forward: format!(
            "kubectl port-forward svc/{} 8080:80",
            crate::tensorboard::SERVICE
        ),
        user: config.tensorboard.user.clone(),
        password,
    };
    super::output::emit(args.output.output, &report, || {
        match &report.url {
            Some(url) => out!("{url}"),
            None => out!(
                "no load balancer address (yet): `{}`, then http://localhost:8080/",
                report.port_forward
            ),
        }
        out!("user: {}", report.user);
        out!("password: {}", report.password);
    })
}

pub async fn cleanup(args: CleanupArgs, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    let rendered = crate::deploy::bundle::render_all(
        &config,
        None,
        None,
        std::path::Path::new(ecr_image::STAGE_BINARY_NAME),
    )?;
    let mut objects: Vec<serde_json::Value> = [
        &rendered.staging,
        &rendered.compile,
        &rendered.train,
        &rendered.tensorboard,
    ]
    .into_iter()
    .flatten()
    .map(|manifest| manifest.value.clone())
    .collect();
    if args.storage {
        objects.extend(
            rendered
                .storage
                .iter()
                .map(|manifest| manifest.value.clone()),
        );
    }
    for (kind, name) in [
        ("Secret", config.tensorboard.secret_name.clone()),
        ("Secret", config.data.hf_token_secret.clone()),
        (
            "ConfigMap",
            crate::deploy::state::STATE_CONFIGMAP.to_owned(),
        ),
    ] {
        objects.push(serde_json::json!({ "apiVersion": "v1", "kind": kind, "metadata": { "name": name, "namespace": config.cluster.namespace } }));
    }
    if !args.confirm.yes {
        let namespace = &config.cluster.namespace;
        let mut keeps = Vec::new();
        if !args.storage {
            keeps.push(format!(
                "the storage objects and the data on the file system (add --storage to remove them{})",
                if config.storage.mode == crate::config::StorageMode::Dynamic {
                    ": the FSx file system and all its data go with its claim"
                } else {
                    ""
                }
            ));
        }
        if args.storage {
            keeps.push(
                "a StorageClass or claim trnkit did not create but adopted (such as the blueprint's terraform-made \
                 fsx and fsx-claim), and a file system bound by a static PV (its volume is Retain)"
                    .to_owned(),
            );
        }
        keeps.push(format!("the namespace {namespace} itself"));
        keeps.push("the ECR repositories and their images (cleanup never deletes them)".to_owned());
        super::output::Preview {
            command: "cleanup".to_owned(),
            would_remove: objects
                .iter()
                .map(|object| {
                    format!(
                        "{} {namespace}/{}",
                        object["kind"].as_str().unwrap_or(""),
                        object["metadata"]["name"].as_str().unwrap_or("")
                    )
                })
                .collect(),
            keeps,
            removed: false,
        }
        .print(args.output.output)?;
        return Ok(());
    }
    anyhow::ensure!(
        config.cluster.target == Target::Eks,
        "cleanup needs a cluster (cluster.target = \"eks\"); for the local profile delete {}",
        config.cluster.work_dir.display()
    );
    let client = super::cluster::client(&config).await?;
    // Of the storage objects, only those trnkit created: an adopted StorageClass or claim is kept.
    objects.retain(|object| {
        !matches!(
            object["kind"].as_str(),
            Some("StorageClass" | "PersistentVolume" | "PersistentVolumeClaim")
        )
    });
    if args.storage {
        objects.extend(crate::storage::created_objects(&client, &config).await?);
    }
    let deleted =
        crate::kube::apply::delete_all(&client, &objects, &config.cluster.namespace).await?;
    let report = Removed {
        command: "cleanup",
        removed: !deleted.is_empty(),
        deleted,
    };
    super::output::emit(args.output.output, &report, || {
        for object in &report.deleted {
            out!("deleted {object}");
        }
        out!("deleted {} objects", report.deleted.len());
    })
}

/// `completions`: print a shell completion script for the installed `trnkit` command
/// (`cargo install --path xtask`), down to subcommands and flag values.
///
/// Example: `trnkit completions bash > ~/.local/share/bash-completion/completions/trnkit`
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn completions(args: CompletionsArgs) {
    let mut command = <super::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "trnkit", &mut script);
    // A closed pipe (`... | head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
}

/// `top`: `neuron-top` in a worker of the training job, interactively.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Which worker (0 to workers - 1).
    #[arg(long, default_value_t = 0)]
    pub worker: u32,
}

/// Runs `kubectl exec -it <job>-worker-<i> -- /bin/bash -l -c neuron-top` (an interactive
/// terminal needs kubectl's TTY handling). Every value passed is validated by the configuration.
pub async fn top(args: TopArgs, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    anyhow::ensure!(
        config.cluster.target == Target::Eks,
        "top needs a cluster (cluster.target = \"eks\")"
    );
    anyhow::ensure!(
        i64::from(args.worker) < i64::from(config.training.workers),
        "--worker {} is out of range: the job has {} workers",
        args.worker,
        config.training.workers
    );
    let pod = format!("{}-worker-{}", config.training.train_job_name, args.worker);
    let top = ["/bin/bash", "-l", "-c", "neuron-top"].map(str::to_owned);
    let status = kubectl(&kubectl_exec_args(&config, &pod, true, &top))
        .status()
        .await
        .context(KUBECTL_MISSING)?;
    anyhow::ensure!(
        status.success(),
        "kubectl exec into {pod} failed ({status})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{analysis_text, kubectl_exec_args, live_figures};
    use crate::config::Config;

    #[test]
    fn kubectl_exec_takes_context_namespace_and_argv_without_a_shell() {
        let mut config = Config::default();
        config.cluster.namespace = "train".to_owned();
        let tail = ["tail", "-n", "5", "-F", "/shared/nemo_experiments/u/1/log"].map(str::to_owned);
        assert_eq!(
            kubectl_exec_args(&config, "test-mpi-train-worker-1", false, &tail).join(" "),
            "--namespace train exec test-mpi-train-worker-1 -- tail -n 5 -F /shared/nemo_experiments/u/1/log"
        );
        config.cluster.kube_context = "arn:aws:eks:us-west-2:1:cluster/c".to_owned();
        let args = kubectl_exec_args(&config, "w", true, &["neuron-top".to_owned()]);
        assert_eq!(
            args,
            [
                "--context",
                "arn:aws:eks:us-west-2:1:cluster/c",
                "--namespace",
                "train",
                "exec",
                "-it",
                "w",
                "--",
                "neuron-top"
            ]
        );
    }

    #[test]
    fn status_figures_come_from_the_log_model() {
        let log = "[1,0]<stdout>:Epoch 0: 1%| 2/100 [00:20<16:20, 10.00s/it, reduced_train_loss=10.5, global_step=1.0, throughput=2.1]\n\
                   noise throughput=\n\
                   [1,0]<stdout>:Epoch 0: 2%| 3/100 [00:30<16:10, 10.00s/it, reduced_train_loss=9.75, global_step=2.0, throughput=2.2]\n";
        let mut config = Config::default();
        config.cost.instance_hourly_usd = 10.0;
        let live = live_figures(&config, log, std::time::Duration::from_secs(3600));
        assert_eq!(live.step, Some(2));
        assert_eq!(live.total_steps, Some(100));
        assert_eq!(live.loss, Some(9.75));
        assert_eq!(live.throughput, Some(2.2));
        assert_eq!(live.eta_seconds, Some(980.0));
        // 4 workers x 10 USD x 1 hour.
        assert_eq!(live.cost.so_far_usd, 40.0);
    }

    #[test]
    fn analysis_text_says_what_is_unknown() {
        let text = analysis_text(&crate::observe::analysis::analyze(
            "2023-Jul-07 CCOM WARN OFI plugin initNet() failed is EFA enabled?",
        ));
        assert!(text.contains("last global step: -\n"), "{text}");
        assert!(
            text.contains("network:          TCP (EFA not in use)\n"),
            "{text}"
        );
        assert!(text.contains("fatal:            -\n"), "{text}");
    }
}
