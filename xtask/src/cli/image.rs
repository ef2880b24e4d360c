//! `cargo xtask image`: render, build and push trnkit's images (or any build context).
//!
//! The work is done by the `ecr-image` crate; this module reads flags, the configuration and the
//! environment (`DOCKER_HOST`, the AWS chain), draws progress bars and prints results. Registry
//! passwords are read from a file or stdin, never from the command line, and never printed.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ecr_image::{
    BuildContext, BuildOptions, Event, Progress, PublishRequest, RegistryCredentials,
    RepositorySpec, RetryPolicy, SecretString, TagMutability,
};
use indicatif::{ProgressBar, ProgressStyle};

use super::Global;
pub use crate::images::ImageName;

/// Render, build and push the training, TensorBoard and staging images, or any build context.
///
/// Images are tagged by content: the tag (`sha256-<20 hex>`) is derived from the rendered
/// Dockerfile, every file of the build context and the build options. When the registry already
/// holds the tag, nothing is built or pushed, so running a push twice costs one hash and one
/// registry query.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print (or write) the rendered Dockerfile of one of trnkit's images.
    ///
    /// Example: `cargo xtask image render --image training --out build/training`
    Render(RenderArgs),
    /// Build an image into the local Docker engine (no registry involved).
    ///
    /// Examples: `cargo xtask image build --image tensorboard -o json`,
    /// `cargo xtask image build --dir ./my-image --repository me/custom`
    Build(BuildArgs),
    /// Make sure the ECR repository exists, then build and push an image unless the registry
    /// already holds its content tag; print the pushed reference and digest.
    ///
    /// Region and AWS credentials come from the standard AWS chain (AWS_PROFILE, AWS_REGION,
    /// environment keys, SSO, instance metadata); AWS_ENDPOINT_URL points it at another ECR
    /// endpoint (moto in tests).
    ///
    /// Examples: `cargo xtask image push --image training --tag latest -o json`,
    /// `cargo xtask image push --dir ./my-image --repository my-team/custom`
    Push(PushArgs),
}

/// `image render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// Which image.
    #[arg(long, value_enum)]
    pub image: ImageName,
    /// Write the whole build context (Dockerfile and generated files) into this directory
    /// instead of printing the Dockerfile. The stager's binary is not copied. A new or empty
    /// directory, or one trnkit wrote before; `-` prints the Dockerfile.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Where the build context comes from: one of trnkit's images, or a directory.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// One of trnkit's images, rendered from its typed definition with pinned versions.
    #[arg(long, value_enum)]
    pub image: Option<ImageName>,
    /// A build context directory of your own (its .dockerignore is honoured). (`--context` is
    /// kubectl's: the kube context, as for every command.)
    #[arg(long = "dir", value_name = "DIR")]
    pub directory: Option<PathBuf>,
}

/// Options shared by `build` and `push`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildFlags {
    /// The Dockerfile for --dir (default: DIR/Dockerfile). It may live outside DIR.
    #[arg(long, value_name = "FILE", requires = "directory")]
    pub dockerfile: Option<PathBuf>,
    /// A build argument, NAME=VALUE (repeatable). Names that look like secrets (PASSWORD,
    /// TOKEN, KEY, ...) are refused: build arguments are stored in the image history.
    #[arg(long = "build-arg", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub build_args: Vec<(String, String)>,
    /// The target platform.
    #[arg(long, default_value = ecr_image::DEFAULT_PLATFORM)]
    pub platform: String,
    /// The stage to build in a multi-stage Dockerfile.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Build without the engine's layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Build (and push) even when the content tag already exists.
    #[arg(long)]
    pub force: bool,
    /// The trnkit-stage executable for --image stager (Linux x86-64). Without it, xtask builds
    /// it with `cargo build -p xtask --bin trnkit-stage`, in the profile `cargo xtask` runs with.
    #[arg(long, value_name = "FILE")]
    pub stage_binary: Option<PathBuf>,
    /// The Docker engine: a unix socket or tcp://HOST:PORT.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock",
        value_name = "URL"
    )]
    pub docker_host: String,
}

/// `image build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub flags: BuildFlags,
    /// The local repository name the image is tagged with (default: trnkit/<image>, or
    /// trnkit/custom for --dir).
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// `-o json|yaml`: one document: `reference`, `image_id`, `built` (false when the content
    /// tag was already built).
    #[command(flatten)]
    pub output: super::output::OutputArgs,
}

/// `image push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub flags: BuildFlags,
    /// The ECR repository (created if missing). Default for --image: [image].repository of the
    /// configuration (neuronx_nemo); required with --dir.
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// A human tag to point at the image besides its content tag (repeatable), e.g. latest.
    /// Defaults for --image: deploy's, so both push the same tags: training gets
    /// [image].human_tag (latest), the others none; none for --dir.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Push to this registry (HOST:PORT) instead of the one ECR reports: a mirror, an
    /// air-gapped copy, or a test registry. The repository is still ensured in ECR. Default:
    /// [image].registry of the configuration, if set.
    #[arg(long, value_name = "HOST:PORT")]
    pub registry: Option<String>,
    /// The user for --registry, instead of the ECR token's user (`AWS`).
    #[arg(long, value_name = "USER", requires = "registry_password_file")]
    pub registry_user: Option<String>,
    /// A file holding the password for --registry-user (`-` reads stdin). Passwords are never
    /// taken on the command line.
    #[arg(long, value_name = "FILE", requires = "registry_user")]
    pub registry_password_file: Option<PathBuf>,
    /// Tag mutability of a repository this command creates or updates. `immutable` forbids
    /// moving human tags such as latest.
    #[arg(long, value_enum, default_value = "mutable")]
    pub tag_mutability: Mutability,
    /// Turn ECR's scan-on-push off for the repository.
    #[arg(long)]
    pub no_scan_on_push: bool,
    /// A resource tag for the repository, KEY=VALUE (repeatable; `managed-by=trnkit` is always
    /// added).
    #[arg(long = "repository-tag", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub repository_tags: Vec<(String, String)>,
    /// The AWS region (default: the AWS chain's, then [cluster].region of the configuration).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Push attempts in total; transient failures (timeouts, resets, 5xx, throttling) are
    /// retried with exponential backoff.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub attempts: u32,
    /// `-o json|yaml`: one document: `reference` (the content tag), `digest`, `pinned`
    /// (`repository@digest`), `pushed` (false when the registry held it already), `image_id`
    /// and `tags` (each `reference`, `digest`, `moved`).
    #[command(flatten)]
    pub output: super::output::OutputArgs,
}

/// Tag mutability of the ECR repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mutability {
    /// Tags can move.
    Mutable,
    /// A pushed tag never changes.
    Immutable,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

pub async fn run(command: Command, global: &Global) -> anyhow::Result<()> {
    match command {
        Command::Render(args) => render(args, global),
        Command::Build(args) => build(args, global).await,
        Command::Push(args) => push(args, global).await,
    }
}

/// One of trnkit's images, exactly as deploy builds it for the configuration (see
/// `crate::images`): the same definition, content tag and human tags.
fn trnkit_image(
    image: ImageName,
    global: &Global,
    stage_binary: Option<&Path>,
) -> anyhow::Result<crate::images::Image> {
    let config = super::load_config(global)?;
    crate::images::image(&config, image, stage_binary)
}

fn render(args: RenderArgs, global: &Global) -> anyhow::Result<()> {
    let definition = trnkit_image(args.image, global, None)?.definition;
    let Some(out) = args.out else {
        print!("{}", definition.dockerfile.render());
        return Ok(());
    };
    if out.as_os_str() == "-" {
        print!("{}", definition.dockerfile.render());
        return Ok(());
    }
    // Built aside and swapped in whole; a directory holding files trnkit did not write is
    // refused (see `crate::files::OutputDir`).
    let mut dir = crate::files::OutputDir::begin(&out)?;
    dir.write(Path::new("Dockerfile"), definition.dockerfile.render())?;
    for file in &definition.files {
        if let ecr_image::FileSource::Bytes(bytes) = &file.source {
            dir.write(Path::new(&file.path), bytes)?;
            set_mode(&dir.staged_path(Path::new(&file.path)), file.mode)?;
        }
    }
    dir.commit()?;
    eprintln!(
        "wrote the {} image's build context to {}",
        definition.name,
        out.display()
    );
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

/// The build context and options from the flags.
async fn context_and_options(
    source: &Source,
    flags: &BuildFlags,
    global: &Global,
) -> anyhow::Result<(BuildContext, BuildOptions)> {
    let context = match (&source.image, &source.directory) {
        (Some(image), _) => {
            let stage_binary = match (image, &flags.stage_binary) {
                (ImageName::Stager, Some(path)) => {
                    anyhow::ensure!(
                        path.is_file(),
                        "--stage-binary {}: no such file",
                        path.display()
                    );
                    Some(path.clone())
                }
                (ImageName::Stager, None) => Some(build_stage_binary().await?),
                _ => None,
            };
            trnkit_image(*image, global, stage_binary.as_deref())?.context
        }
        (None, Some(directory)) => {
            BuildContext::from_directory(directory, flags.dockerfile.as_deref()).with_context(
                || "reading the build context (name another Dockerfile with --dockerfile)",
            )?
        }
        (None, None) => bail!("give --image or --dir"),
    };
    let options = BuildOptions {
        build_args: flags.build_args.iter().cloned().collect(),
        platform: flags.platform.clone(),
        target: flags.target.clone(),
        no_cache: flags.no_cache,
    };
    options.check()?;
    Ok((context, options))
}

/// The cargo profile an executable in `dir` was built with: cargo puts the `dev` profile's
/// outputs in `debug/` and any other profile's in a directory of its name (`deps/` holds test
/// binaries, one level down).
fn cargo_profile(dir: &Path) -> String {
    let dir = if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    match dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(name) => name.to_owned(),
    }
}

/// Builds `trnkit-stage` with the profile this executable was built with (so `cargo xtask`'s
/// artefacts are reused: the dev profile is optimised where staging spends its time) and returns
/// the executable's path. Refuses on a host whose executables the staging image (Linux x86-64)
/// cannot run.
pub(crate) async fn build_stage_binary() -> anyhow::Result<PathBuf> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        bail!(
            "the staging image needs a Linux x86-64 trnkit-stage, and this host builds for {}-{}: build one on Linux x86-64 (glibc 2.36 or older, or static) and pass --stage-binary FILE",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let profile = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(cargo_profile))
        .unwrap_or_else(|| "dev".to_owned());
    eprintln!(
        "building trnkit-stage (cargo build --profile {profile} -p xtask --bin trnkit-stage)"
    );
    let output = tokio::process::Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--profile",
            &profile,
            "--locked",
            "-p",
            "xtask",
            "--bin",
            "trnkit-stage",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running cargo to build trnkit-stage")?;
    if !output.status.success() {
        bail!(
            "cargo could not build trnkit-stage; pass --stage-binary FILE to use a prebuilt Linux x86-64 binary"
        );
    }
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "trnkit-stage"
            && let Some(path) = message["executable"].as_str()
        {
            return Ok(PathBuf::from(path));
        }
    }
    bail!("cargo built trnkit-stage but did not report the executable; pass --stage-binary FILE")
}

async fn build(args: BuildArgs, global: &Global) -> anyhow::Result<()> {
    let (context, options) = context_and_options(&args.source, &args.flags, global).await?;
    let repository = args.repository.unwrap_or_else(|| match args.source.image {
        Some(image) => format!("trnkit/{}", image.name()),
        None => "trnkit/custom".to_owned(),
    });
    let docker = ecr_image::connect(&args.flags.docker_host).await?;
    let bars = Bars::new(global.quiet, global.verbose > 0);
    let result = ecr_image::build_local(
        &docker,
        &context,
        &options,
        &repository,
        args.flags.force,
        &bars,
    )
    .await;
    bars.finish();
    let local = result?;
    if local.built {
        eprintln!("built {}", local.reference);
    } else {
        eprintln!("{} is already built (nothing to do)", local.reference);
    }
    let report = BuildReport {
        reference: &local.reference,
        image_id: &local.image_id,
        built: local.built,
    };
    super::output::emit(args.output.format(), &report, || {
        out!("{}", local.reference);
        out!("{}", local.image_id);
    })
}

/// `image build -o json|yaml`.
#[derive(serde::Serialize)]
struct BuildReport<'a> {
    reference: &'a str,
    image_id: &'a str,
    built: bool,
}

/// `image push -o json|yaml`.
#[derive(serde::Serialize)]
struct PushReport {
    reference: String,
    digest: String,
    pinned: String,
    pushed: bool,
    image_id: Option<String>,
    tags: Vec<PushedTag>,
}

/// A human tag `image push` pointed at the image.
#[derive(serde::Serialize)]
struct PushedTag {
    reference: String,
    digest: String,
    /// Whether this push moved it (false: it already pointed at the image).
    moved: bool,
}

/// The human tags `image push` moves: `--tag`s when given, else deploy's for the image.
fn push_tags(
    config: &crate::config::Config,
    image: Option<ImageName>,
    given: &[String],
) -> Vec<String> {
    match image {
        Some(image) if given.is_empty() => crate::images::human_tags(config, image),
        _ => given.to_vec(),
    }
}

fn read_password(path: &Path) -> anyhow::Result<SecretString> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the registry password from stdin")?;
    } else {
        text = fs_err::read_to_string(path)?;
    }
    let password = text.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("the registry password file {} is empty", path.display());
    }
    Ok(SecretString::from(password))
}

async fn push(args: PushArgs, global: &Global) -> anyhow::Result<()> {
    let config = super::load_config(global)?;
    let repository = match (&args.repository, args.source.image) {
        (Some(repository), _) => repository.clone(),
        (None, Some(_)) => config.image.repository.clone(),
        (None, None) => bail!("--repository NAME is required with --dir"),
    };
    let tags = push_tags(&config, args.source.image, &args.tags);
    let registry_override = args
        .registry
        .clone()
        .or_else(|| Some(config.image.registry.clone()).filter(|registry| !registry.is_empty()));
    if let Some(registry) = &registry_override {
        ecr_image::validate_registry(registry)?;
    }
    for tag in &tags {
        ecr_image::validate_tag(tag)?;
    }
    // Read the password before any slow work, so a bad file fails fast.
    let override_credentials = match (&args.registry_user, &args.registry_password_file) {
        (Some(user), Some(file)) => Some((user.clone(), read_password(file)?)),
        _ => None,
    };
    let (context, options) = context_and_options(&args.source, &args.flags, global).await?;
    // Reach the engine before touching AWS, so a stopped daemon creates nothing in the account.
    let docker = ecr_image::connect(&args.flags.docker_host).await?;

    // ECR, through the standard AWS chain (AWS_ENDPOINT_URL included).
    let sdk = super::aws_sdk_config(args.region.as_deref(), &config).await;
    let ecr = crate::aws::ecr_client(&sdk);

    let mut spec = RepositorySpec::new(&repository);
    spec.scan_on_push = !args.no_scan_on_push;
    spec.tag_mutability = match args.tag_mutability {
        Mutability::Mutable => TagMutability::Mutable,
        Mutability::Immutable => TagMutability::Immutable,
    };
    spec.tags = args
        .repository_tags
        .iter()
        .cloned()
        .collect::<BTreeMap<_, _>>();
    spec.tags
        .entry("managed-by".to_owned())
        .or_insert_with(|| "trnkit".to_owned());
    let ecr_repository = ecr_image::ensure_repository(&ecr, &spec)
        .await
        .with_context(|| format!("ensuring the ECR repository {repository}"))?;
    if !ecr_repository.created {
        eprintln!("found the ECR repository {}", ecr_repository.uri);
    }

    let registry = registry_override.unwrap_or_else(|| ecr_repository.registry.clone());
    let credentials = match override_credentials {
        Some((user, password)) => RegistryCredentials::new(&registry, user, password),
        None => ecr_image::registry_credentials(&ecr)
            .await
            .context("getting registry credentials from ECR")?
            .for_server(&registry),
    };

    let request = PublishRequest {
        context,
        options,
        registry,
        repository,
        credentials,
        extra_tags: tags,
        retry: RetryPolicy {
            attempts: args.attempts.max(1),
            ..RetryPolicy::default()
        },
        force: args.flags.force,
    };
    let bars = Bars::new(global.quiet, global.verbose > 0);
    let result = ecr_image::build_and_push(&docker, &request, &bars).await;
    bars.finish();
    let published = result?;
    if published.pushed {
        eprintln!("pushed {}", published.reference);
    } else {
        eprintln!(
            "{} is already in the registry: nothing built or pushed",
            published.reference
        );
    }
    for tag in &published.extra_tags {
        eprintln!(
            "{} {}",
            tag.reference,
            if tag.moved {
                "now points at it"
            } else {
                "already pointed at it"
            }
        );
    }
    let report = PushReport {
        reference: published.reference.to_string(),
        digest: published.digest.clone(),
        pinned: published.pinned(),
        pushed: published.pushed,
        image_id: published.image_id.clone(),
        tags: published
            .extra_tags
            .iter()
            .map(|tag| PushedTag {
                reference: tag.reference.to_string(),
                digest: tag.digest.clone(),
                moved: tag.moved,
            })
            .collect(),
    };
    super::output::emit(args.output.format(), &report, || {
        out!("{}", report.reference);
        out!("{}", report.pinned);
    })
}

/// Progress bars on stderr for the library's events.
pub(crate) struct Bars {
    bar: ProgressBar,
    verbose: bool,
    quiet: bool,
}

impl Bars {
    pub(crate) fn new(quiet: bool, verbose: bool) -> Self {
        let bar = super::progress::spinner(quiet, "");
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix:.bold} {msg}")
                .expect("valid template"),
        );
        Self {
            bar,
            verbose,
            quiet,
        }
    }

    /// A line above the bar; on stderr directly when the bar is hidden (not a terminal).
    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn steps_style(&self) {
        self.bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {prefix:.bold} [{bar:20}] {pos}/{len} {wide_msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
    }
}

impl Progress for Bars {
    fn event(&self, event: &Event) {
        match event {
            Event::ContextHashed { files, bytes, tag } => {
                self.line(format!(
                    "context: {files} files, {bytes} bytes -> tag {tag}"
                ));
            }
            Event::CheckingRegistry { reference } => {
                self.bar.set_prefix("checking");
                self.bar.set_message(reference.clone());
            }
            Event::AlreadyInRegistry { reference, digest } => {
                self.line(format!("{reference} is in the registry ({digest})"));
            }
            Event::AlreadyBuilt { reference } => {
                self.line(format!("{reference} is already built"));
            }
            Event::BuildStarted { reference } => {
                self.bar.set_prefix("building");
                self.bar.set_message(reference.clone());
            }
            Event::BuildStep {
                index,
                total,
                instruction,
            } => {
                if self.bar.length() != Some(u64::from(*total)) {
                    self.steps_style();
                    self.bar.set_length(u64::from(*total));
                }
                self.bar.set_position(u64::from(*index));
                self.bar.set_message(instruction.clone());
                if self.verbose {
                    self.line(format!("Step {index}/{total} : {instruction}"));
                }
            }
            Event::BuildOutput { line } if self.verbose => {
                self.line(format!("  {line}"));
            }
            Event::Built { image_id } => {
                self.line(format!("built {image_id}"));
            }
            Event::PushStarted { reference } => {
                self.bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {prefix:.bold} {wide_msg}",
                    )
                    .expect("valid template"),
                );
                self.bar.set_prefix("pushing");
                self.bar.set_message(reference.clone());
            }
            Event::PushProgress {
                status,
                current,
                total,
            } => match (current, total) {
                (Some(current), Some(total)) if *total > 0 => {
                    self.bar
                        .set_message(format!("{status} {current}/{total} bytes"));
                }
                _ => self.bar.set_message(status.clone()),
            },
            Event::Retrying {
                attempt,
                attempts,
                delay,
                message,
            } => {
                self.line(format!(
                    "push attempt {attempt}/{attempts} failed ({message}); retrying in {delay:?}"
                ));
            }
            Event::Pushed { reference, digest } => {
                self.line(format!("pushed {reference} ({digest})"));
            }
            Event::TagUnchanged { reference } => {
                self.line(format!("{reference} already points at the image"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
