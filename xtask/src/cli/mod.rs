//! The command line: argument definitions and dispatch.
//!
//! Each command lives in its own module with a `clap` `Args` (or `Subcommand`) type and an
//! `async fn run`. These modules are the edge of trnkit: they may print and read the process
//! environment; the workflow modules they call do neither.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `println!` that stops quietly when stdout is closed early (`... | head`) instead of panicking.
/// Defined before the command modules so that every one of them can use it.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod bench;
pub mod cache;
pub(crate) mod cluster;
pub mod dataset;
pub mod deploy;
pub mod fsx;
pub mod image;
pub mod init;
pub mod ops;
pub mod output;
mod progress;
pub mod render;
pub mod tokenize;
pub mod watch;

/// trnkit: pretrain Llama-2 on AWS Trainium with Kubernetes, from one command.
///
/// `cargo xtask deploy` runs the whole workflow of the "Llama-2 on Trn1 with
/// Neuronx-Nemo-Megatron and the MPI Operator" blueprint. With no cluster configured it runs the
/// embedded local profile under `./.trnkit/`.
#[derive(Debug, Parser)]
#[command(
    name = "trnkit",
    bin_name = "trnkit",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options that every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The configuration file (TOML); default: `TRNKIT_CONFIG`, else `./trnkit.toml` when it
    /// exists, else the built-in defaults. Write a commented example with `cargo xtask init`.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "TRNKIT_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// More detail in the logs: -v for debug, -vv for trace.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The kubeconfig file for this run (as kubectl's --kubeconfig; default: KUBECONFIG, then
    /// ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context for this run, overriding `cluster.kube_context`.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace for this run, overriding `cluster.namespace`.
    #[arg(long, short = 'n', global = true, value_name = "NAME")]
    pub namespace: Option<String>,
}

impl Global {
    /// Applies the one-run overrides (`--kubeconfig`, `--context`, `--namespace`).
    pub fn apply_overrides(&self, config: &mut crate::config::Config) {
        if let Some(path) = &self.kubeconfig {
            config.cluster.kubeconfig = Some(path.clone());
        }
        if let Some(context) = &self.context {
            config.cluster.kube_context = context.clone();
        }
        if let Some(namespace) = &self.namespace {
            config.cluster.namespace = namespace.clone();
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole workflow: images, storage, data, compile, train, TensorBoard, logs.
    ///
    /// Preflight runs before anything is pushed or created: the cluster (MPI Operator, FSx CSI
    /// driver, Neuron and EFA device plugins, Trainium nodes) and HuggingFace access. The default
    /// tokenizer (meta-llama/Llama-2-7b-hf) is gated: set HF_TOKEN to a token of an account that
    /// accepted its licence; preflight refuses a gated tokenizer without one and, when the Hub
    /// answers (connect 5 s, at most 15 s), checks that the token can read it. HF_ENDPOINT names
    /// a Hub mirror. The token reaches the cluster only in a Secret.
    ///
    /// Examples: `cargo xtask deploy --dry-run -o json`, `HF_TOKEN=hf_... cargo xtask deploy`,
    /// `cargo xtask deploy --from compile --no-follow`
    Deploy(deploy::Args),
    /// Where the deployment stands: recorded steps, job conditions, latest loss and throughput.
    ///
    /// Example: `cargo xtask status -o json`
    Status(ops::StatusArgs),
    /// The training job's log (all ranks' output), optionally followed across launcher restarts.
    ///
    /// Examples: `cargo xtask logs --follow`, `cargo xtask logs --job compile --rank 1`
    Logs(ops::LogsArgs),
    /// Run `neuron-top` in a worker of the training job (through kubectl exec).
    ///
    /// Example: `cargo xtask top --worker 2`
    Top(ops::TopArgs),
    /// Stop training: delete the train and compile MPIJobs.
    ///
    /// Example: `cargo xtask stop`
    Stop(ops::StopArgs),
    /// Supervise the train job of a deploy run with --no-follow, as deploy's follow step does:
    /// follow its log and restart it whole after a failed worker or job, a hang or a fatal
    /// condition, at most `[training] max_restarts` times per run (the count is recorded and
    /// never resets).
    ///
    /// Example: `cargo xtask deploy --no-follow && cargo xtask watch`
    Watch(watch::Args),
    /// Print TensorBoard's URL, user and password.
    ///
    /// Example: `cargo xtask tensorboard -o json`
    Tensorboard(ops::TensorboardArgs),
    /// Delete what deploy created in the cluster (storage only with --storage; never ECR).
    ///
    /// Without --yes (-y) it only previews what it would remove and what it keeps, and exits 0.
    ///
    /// Examples: `cargo xtask cleanup` (the preview), `cargo xtask cleanup --storage --yes`
    Cleanup(ops::CleanupArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    ///
    /// Example: `trnkit completions bash > ~/.local/share/bash-completion/completions/trnkit`
    Completions(ops::CompletionsArgs),
    /// Write a commented example configuration file.
    ///
    /// Example: `cargo xtask init` (writes ./trnkit.toml)
    Init(init::Args),
    /// Write every Kubernetes object trnkit would apply, as YAML, after validating each.
    ///
    /// Examples: `cargo xtask render --out manifests/`, `cargo xtask render --check`
    Render(render::Args),
    /// Tokenize JSONL into Megatron's indexed dataset format (accepts Megatron's and NeMo's flags).
    ///
    /// Example: `cargo xtask tokenize --input corpus.jsonl --tokenizer-type llama7b_tokenizer/
    /// --output-prefix data/corpus --append-eod --need-pad-id -o json`
    Tokenize(tokenize::Args),
    /// Inspect and merge Megatron indexed datasets.
    ///
    /// Example: `cargo xtask dataset inspect data/corpus_text_document`
    #[command(subcommand)]
    Dataset(dataset::Command),
    /// Benchmarks that print figures.
    ///
    /// Example: `cargo xtask bench cache`
    #[command(subcommand)]
    Bench(bench::Command),
    /// Build and push the training, TensorBoard and staging images (or any context).
    ///
    /// Example: `cargo xtask image push --image training`
    #[command(subcommand)]
    Image(image::Command),
    /// Create, describe and delete the FSx for Lustre file system.
    ///
    /// Example: `cargo xtask fsx describe`
    #[command(subcommand)]
    Fsx(fsx::Command),
    /// Inspect, verify and prune the Neuron persistent compile cache.
    ///
    /// Example: `cargo xtask cache inspect --root /shared/neuron_cache`
    #[command(subcommand)]
    Cache(cache::Command),
}

/// Loads the configuration named by `--config` (or `TRNKIT_CONFIG`), or the defaults.
pub fn load_config(global: &Global) -> anyhow::Result<crate::config::Config> {
    load_config_with(global, crate::config::Config::load)
}

/// [`load_config`] for a command that contacts nothing (`deploy --dry-run`): what deploy would
/// ask AWS for must be in the file, and is reported with every other problem.
pub fn load_config_offline(global: &Global) -> anyhow::Result<crate::config::Config> {
    load_config_with(global, crate::config::Config::load_offline)
}

fn load_config_with(
    global: &Global,
    load: fn(&std::path::Path) -> Result<crate::config::Config, crate::config::ConfigError>,
) -> anyhow::Result<crate::config::Config> {
    let mut config = match crate::config::find(global.config.as_deref(), std::path::Path::new("."))
    {
        Some(path) => {
            tracing::debug!(path = %path.display(), "configuration");
            load(&path)?
        }
        None => crate::config::Config::default(),
    };
    global.apply_overrides(&mut config);
    Ok(config)
}

/// The AWS SDK configuration (see [`crate::aws`]): `region` when given, else the chain's, else
/// `[cluster] region`.
pub async fn aws_sdk_config(
    region: Option<&str>,
    config: &crate::config::Config,
) -> aws_config::SdkConfig {
    crate::aws::sdk_config(region, &config.cluster.region).await
}

/// Renders every object of the configuration the offline way: no AWS or cluster call is made.
pub async fn render_manifests(
    config: &crate::config::Config,
    file_system: Option<&::fsx::FileSystem>,
) -> anyhow::Result<Vec<crate::render::Manifest>> {
    // The same trnkit-stage deploy renders with, so the stager's tag matches a dry run's.
    let stager = crate::images::default_stage_binary();
    Ok(crate::deploy::bundle::render_all(config, None, file_system, &stager)?.all_manifests())
}

/// The body of `cargo xtask` and `trnkit`: parses the command line under the name it was run
/// as (so usage lines and hints show what the user typed), then runs it. A usage error exits
/// with 2, a failure with 1.
pub fn main_as(bin_name: &'static str) -> std::process::ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Cli::command().bin_name(bin_name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let (verbose, quiet) = (cli.global.verbose, cli.global.quiet);
    main_with(verbose, quiet, run(cli))
}

/// The body of both binaries (`cargo xtask`, `trnkit-stage`): installs tracing, builds the tokio runtime, runs `work` and prints its whole error chain.
pub fn main_with(
    verbose: u8,
    quiet: bool,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    init_tracing(verbose, quiet);
    // The workflow's futures are large where xtask is built unoptimised: give the runtime's
    // threads the main thread's stack.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 * 1024 * 1024)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Bold red on a terminal (unless NO_COLOR), plain elsewhere.
            let label = if progress::colour() {
                "\u{1b}[1;31merror\u{1b}[0m"
            } else {
                "error"
            };
            eprintln!("{label}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Installs the `tracing` subscriber; `RUST_LOG` overrides the verbosity flags.
pub fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter)
        .with_ansi(progress::colour())
        .with_target(verbose > 0)
        .without_time()
        .init();
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Deploy(args) => deploy::run(args, &global).await,
        Command::Init(args) => init::run(args, &global).await,
        Command::Status(args) => ops::status(args, &global).await,
        Command::Logs(args) => ops::logs(args, &global).await,
        Command::Top(args) => ops::top(args, &global).await,
        Command::Stop(args) => ops::stop(args, &global).await,
        Command::Watch(args) => watch::run(args, &global).await,
        Command::Tensorboard(args) => ops::tensorboard(args, &global).await,
        Command::Cleanup(args) => ops::cleanup(args, &global).await,
        Command::Completions(args) => {
            ops::completions(args);
            Ok(())
        }
        Command::Render(args) => render::run(args, &global).await,
        Command::Tokenize(args) => tokenize::run(args, &global).await,
        Command::Dataset(command) => dataset::run(command, &global).await,
        Command::Bench(command) => bench::run(command, &global).await,
        Command::Image(command) => image::run(command, &global).await,
        Command::Fsx(command) => fsx::run(command, &global).await,
        Command::Cache(command) => cache::run(command, &global).await,
    }
}
