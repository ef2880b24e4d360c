//! `cargo xtask bench`: benchmarks that print figures, measured on the build users run (the
//! `cargo xtask` binary itself, built by the README's first command), each beside the reference
//! tool run in the same invocation.
//!
//! - `bench tokenize`: the real tokenization of a JSONL file into a temporary directory: MB/s,
//!   tokens/s and the peak resident memory of this process (`VmHWM`); with `--against PYTHON`
//!   the reference harness (Megatron-LM's tokenization loop and its `IndexedDatasetBuilder`)
//!   runs on the same input right after, and the outputs are compared byte for byte.
//! - `bench cache`: `cache inspect` of a generated compile cache (100,000 entries by default),
//!   run as this executable's subcommand, beside `du -sb` of the same tree, both warm.
//! - `bench deploy`: the local profile's `deploy` in a fresh directory, first run and the run
//!   that finds everything up to date.
//! - `bench all`: all three (tokenize when `--input` and `--tokenizer` are given).

use std::path::PathBuf;

use anyhow::Context;
use pipeline::{Engine, Mode, NoProgress, TokenizeConfig, Tokenizer};

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tokenize a JSONL file and print MB/s, tokens/s and peak memory.
    ///
    /// Corpus: shared/bench/make-corpus --size-mb 100 --seed 1234 --out FILE.
    /// Tokenizer: shared/bench/get-llama2-tokenizer DIR.
    ///
    /// Example: `cargo xtask bench tokenize --input corpus.jsonl --tokenizer llama2-tokenizer
    /// --workers 2`
    Tokenize {
        /// The JSONL file (or glob).
        #[arg(long, value_name = "FILE")]
        input: String,
        /// The tokenizer directory.
        #[arg(long, value_name = "DIR")]
        tokenizer: PathBuf,
        /// Encoding threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// megatron or nemo semantics (nemo adds `<pad>` as the blueprint's --need-pad-id does).
        #[arg(long, value_enum, default_value = "nemo")]
        mode: super::tokenize::ModeArg,
        /// Use the `tokenizers` crate's encoder instead of the fast path (for comparison).
        #[arg(long)]
        reference: bool,
        /// Also check, document by document, that the fast path's ids equal the reference's
        /// (single-threaded; slow).
        #[arg(long)]
        verify: bool,
        /// Run the reference harness (`crates/pipeline/bench/reference_preprocess.py`) with
        /// this Python (one with `transformers` and `megatron-core` installed) on the same
        /// input, and compare its output with trnkit's byte for byte.
        #[arg(long, value_name = "PYTHON", requires = "megatron_core")]
        against: Option<PathBuf>,
        /// The unpacked megatron-core wheel the harness loads (with --against).
        #[arg(long, value_name = "DIR")]
        megatron_core: Option<PathBuf>,
    },
    /// Time `cache inspect` of a generated compile cache beside `du -sb` of the same tree.
    ///
    /// Example: `cargo xtask bench cache --entries 100000`
    Cache(CacheArgs),
    /// Time the local profile's deploy in a fresh directory: the first run, then the run that
    /// finds everything up to date.
    ///
    /// Example: `cargo xtask bench deploy`
    Deploy,
    /// Every benchmark: cache, deploy, and tokenize when --input and --tokenizer are given.
    ///
    /// Example: `cargo xtask bench all --input corpus.jsonl --tokenizer llama2-tokenizer`
    All(AllArgs),
}

/// `bench cache`.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Entries in the generated cache (90% complete, 5% failed, 3% locked, 2% incomplete).
    #[arg(long, default_value_t = 100_000)]
    pub entries: usize,
    /// Generate the tree here (kept, and reused when it already holds that many entries).
    /// Default: a temporary directory, removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Timed runs of each command; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// `bench all`.
#[derive(Debug, clap::Args)]
pub struct AllArgs {
    /// The JSONL corpus for `bench tokenize`.
    #[arg(long, value_name = "FILE", requires = "tokenizer")]
    pub input: Option<String>,
    /// The tokenizer directory for `bench tokenize`.
    #[arg(long, value_name = "DIR", requires = "input")]
    pub tokenizer: Option<PathBuf>,
    /// As `bench tokenize --against`.
    #[arg(long, value_name = "PYTHON", requires = "megatron_core")]
    pub against: Option<PathBuf>,
    /// As `bench tokenize --megatron-core`.
    #[arg(long, value_name = "DIR")]
    pub megatron_core: Option<PathBuf>,
    #[command(flatten)]
    pub cache: CacheArgs,
}

fn peak_memory_kib() -> Option<u64> {
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(command: Command, _global: &Global) -> anyhow::Result<()> {
    match command {
        Command::Tokenize {
            input,
            tokenizer,
            workers,
            mode,
            reference,
            verify,
            against,
            megatron_core,
        } => {
            let against = against.zip(megatron_core);
            tokenize(input, tokenizer, workers, mode, reference, verify, against).await
        }
        Command::Cache(args) => cache(args).await,
        Command::Deploy => deploy().await,
        Command::All(args) => {
            cache(args.cache).await?;
            deploy().await?;
            match (args.input, args.tokenizer) {
                (Some(input), Some(tokenizer)) => {
                    let mode = super::tokenize::ModeArg::Megatron;
                    let against = args.against.zip(args.megatron_core);
                    tokenize(input, tokenizer, 2, mode, false, false, against).await
                }
                _ => {
                    println!(
                        "tokenize     skipped: give --input FILE --tokenizer DIR (corpus: shared/bench/make-corpus --size-mb 50 --seed 4242 --out FILE; tokenizer: scripts/get-llama2-tokenizer DIR)"
                    );
                    Ok(())
                }
            }
        }
    }
}

fn this_executable() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find this executable to time its commands")
}

/// Runs `program args` `runs` times in `dir`; the best wall time, failing on a failed run.
/// The best of `runs` runs of `program args` in `dir`: wall time, and the CPU time (user and
/// system) the run took, which a busy machine inflates much less. A failed run is an error.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:.2}s wall, {:.2}s CPU", self.wall, self.cpu)
    }
}

/// User plus system CPU seconds of this process's waited-for children (`/proc/self/stat`,
/// fields `cutime` and `cstime`; clock ticks of 1/100 s on Linux).
fn children_cpu_seconds() -> f64 {
    let Ok(stat) = fs_err::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after_name) = stat.rfind(')').map(|end| &stat[end + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // proc(5) fields 16 and 17 are at 13 and 14 after the name.
    let tick = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(13) + tick(14)) / 100.0
}

async fn time_best(
    program: &std::path::Path,
    args: &[&str],
    dir: &std::path::Path,
    runs: usize,
) -> anyhow::Result<Timing> {
    let mut best = Timing {
        wall: f64::MAX,
        cpu: f64::MAX,
    };
    for _ in 0..runs.max(1) {
        let cpu_before = children_cpu_seconds();
        let started = std::time::Instant::now();
        let output = tokio::process::Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .with_context(|| format!("cannot run {}", program.display()))?;
        let wall = started.elapsed().as_secs_f64();
        let cpu = children_cpu_seconds() - cpu_before;
        anyhow::ensure!(
            output.status.success(),
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        best.wall = best.wall.min(wall);
        best.cpu = best.cpu.min(cpu);
    }
    Ok(best)
}

fn load_average() -> String {
    fs_err::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

async fn cache(args: CacheArgs) -> anyhow::Result<()> {
    let temporary;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::tempdir().context("cannot make a temporary directory")?;
            temporary.path().join("neuron_cache")
        }
    };
    let entries = args.entries;
    let generated = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || generate_cache(&root, entries)).await??
    };
    let exe = this_executable()?;
    let root_arg = root.display().to_string();
    let cwd = std::env::temp_dir();
    // Warm the kernel's caches for both, then time each.
    time_best(std::path::Path::new("du"), &["-sb", &root_arg], &cwd, 1).await?;
    let du = time_best(
        std::path::Path::new("du"),
        &["-sb", &root_arg],
        &cwd,
        args.runs,
    )
    .await?;
    // Text output: one summary, as `du -sb` prints one line (`-o json` adds serialising every
    // one of the entries).
    let inspect = time_best(
        &exe,
        &["cache", "inspect", "--root", &root_arg],
        &cwd,
        args.runs,
    )
    .await?;
    let no_sizes = time_best(
        &exe,
        &["cache", "inspect", "--root", &root_arg, "--no-sizes"],
        &cwd,
        args.runs,
    )
    .await?;
    println!(
        "cache        {entries} entries ({generated} files) under {root_arg}, best of {}, load {}",
        args.runs,
        load_average()
    );
    println!("  trnkit cache inspect             {inspect}");
    println!("  trnkit cache inspect --no-sizes  {no_sizes}");
    println!("  du -sb (reference)               {du}");
    println!(
        "  inspect / du                     {:.2} wall, {:.2} CPU",
        inspect.wall / du.wall,
        inspect.cpu / du.cpu.max(0.01)
    );
    Ok(())
}

/// Generates the sample cache of `count` entries (unless `root` holds it already); the file
/// count.
fn generate_cache(root: &std::path::Path, count: usize) -> anyhow::Result<usize> {
    let marker = root.join(format!(".bench-{count}"));
    if marker.exists() {
        return Ok(neuron_cache::sample::file_count(count));
    }
    let files = neuron_cache::sample::generate(root, count)?;
    fs_err::write(&marker, b"")?;
    Ok(files)
}

async fn deploy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let exe = this_executable()?;
    let first = time_best(&exe, &["deploy"], dir.path(), 1).await?;
    let again = time_best(&exe, &["deploy"], dir.path(), 1).await?;
    println!(
        "deploy       local profile in a fresh directory, load {}",
        load_average()
    );
    println!("  first run                        {first}");
    println!("  up to date                       {again}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn tokenize(
    input: String,
    tokenizer: PathBuf,
    workers: usize,
    mode: super::tokenize::ModeArg,
    reference: bool,
    verify: bool,
    against: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<()> {
    let ours_dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let ours_prefix = ours_dir.path().join("bench");
    let megatron = matches!(mode, super::tokenize::ModeArg::Megatron);
    {
        let input = input.clone();
        let tokenizer = tokenizer.clone();
        let prefix = ours_prefix.clone();
        tokio::task::spawn_blocking(move || {
            tokenize_here(
                &input, &tokenizer, &prefix, workers, mode, reference, verify,
            )
        })
        .await
        .context("the bench thread failed")??;
    }
    // What users run: `cargo xtask tokenize` itself, as a process, timed like the reference.
    let cli_prefix = ours_dir.path().join("cli");
    let mut cli_args: Vec<String> = vec![
        "tokenize".into(),
        "--input".into(),
        input.clone(),
        "--tokenizer-type".into(),
        "HuggingFaceTokenizer".into(),
        "--tokenizer-model".into(),
        tokenizer.display().to_string(),
        "--output-prefix".into(),
        cli_prefix.display().to_string(),
        "--append-eod".into(),
        "--workers".into(),
        workers.to_string(),
        "--no-progress".into(),
        "--mode".into(),
        if megatron { "megatron" } else { "nemo" }.into(),
    ];
    if !megatron {
        cli_args.push("--need-pad-id".into());
    }
    let cli_args: Vec<&str> = cli_args.iter().map(String::as_str).collect();
    let ours = time_best(&this_executable()?, &cli_args, ours_dir.path(), 3).await?;
    println!(
        "trnkit       {ours} (best of 3: {} {})",
        this_executable()?.display(),
        cli_args.join(" ")
    );
    let Some((python, megatron_core)) = against else {
        println!(
            "reference    not run; to run it in the same invocation: --against PYTHON (a Python with transformers and megatron-core), or by hand: PYTHON crates/pipeline/bench/reference_preprocess.py --input {input} --output-prefix OUT --tokenizer-model {} --append-eod --workers {workers} --mode {}",
            tokenizer.display(),
            if megatron {
                "megatron"
            } else {
                "nemo --need-pad-id"
            }
        );
        return Ok(());
    };
    let harness = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/pipeline/bench/reference_preprocess.py");
    let reference_prefix = ours_dir.path().join("reference");
    let mut args: Vec<String> = vec![
        harness.display().to_string(),
        "--megatron-core".into(),
        megatron_core.display().to_string(),
        "--input".into(),
        input.clone(),
        "--output-prefix".into(),
        reference_prefix.display().to_string(),
        "--tokenizer-model".into(),
        tokenizer.display().to_string(),
        "--append-eod".into(),
        "--workers".into(),
        workers.to_string(),
        "--mode".into(),
        if megatron { "megatron" } else { "nemo" }.into(),
    ];
    if !megatron {
        args.push("--need-pad-id".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let timing = time_best(&python, &args, ours_dir.path(), 1).await?;
    println!(
        "reference    {timing} ({} {})",
        python.display(),
        args.join(" ")
    );
    println!(
        "  trnkit / reference: {:.1}x faster (wall), {:.1}x less CPU",
        timing.wall / ours.wall,
        timing.cpu / ours.cpu.max(0.01)
    );
    for extension in ["bin", "idx"] {
        let ours = fs_err::read(format!(
            "{}_text_document.{extension}",
            cli_prefix.display()
        ))
        .or_else(|_| fs_err::read(format!("{}.{extension}", cli_prefix.display())))?;
        let theirs = fs_err::read(format!(
            "{}_text_document.{extension}",
            reference_prefix.display()
        ))
        .or_else(|_| fs_err::read(format!("{}.{extension}", reference_prefix.display())))?;
        println!(
            "  .{extension}         {}",
            if ours == theirs {
                "identical"
            } else {
                "DIFFERENT"
            }
        );
    }
    Ok(())
}

fn tokenize_here(
    input: &str,
    tokenizer: &std::path::Path,
    out_prefix: &std::path::Path,
    workers: usize,
    mode: super::tokenize::ModeArg,
    reference: bool,
    verify: bool,
) -> anyhow::Result<()> {
    {
        let mode = match mode {
            super::tokenize::ModeArg::Nemo => Mode::Nemo,
            super::tokenize::ModeArg::Megatron => Mode::Megatron,
        };
        let load = std::time::Instant::now();
        let mut tok = Tokenizer::from_path(tokenizer, mode, mode == Mode::Nemo)
            .with_context(|| format!("loading {}", tokenizer.display()))?;
        let load = load.elapsed();
        if reference {
            tok.force_reference();
        }
        if verify {
            verify_ids(input, &tok)?;
        }
        let mut config = TokenizeConfig::new(vec![input.to_owned()], out_prefix.to_owned());
        config.workers = workers;
        config.mode = mode;
        config.append_eod = true;
        let report = pipeline::tokenize(&config, &tok, &NoProgress).context("tokenizing")?;
        let secs = report.elapsed.as_secs_f64();
        println!("input        {input} ({:.1} MB)", report.bytes as f64 / 1e6);
        println!(
            "tokenizer    {} (loaded in {:.2}s), {mode} mode, {:?} encoder",
            tokenizer.display(),
            load.as_secs_f64(),
            report.engine
        );
        if let Some(reason) = tok
            .fallback_reason()
            .filter(|_| report.engine == Engine::Reference)
        {
            println!("             reference because: {reason}");
        }
        println!("workers      {workers}");
        println!("documents    {}", report.documents);
        println!("tokens       {}", report.tokens);
        println!("time         {secs:.2}s");
        println!(
            "throughput   {:.1} MB/s, {:.0} tokens/s",
            report.bytes as f64 / 1e6 / secs,
            report.tokens as f64 / secs
        );
        match peak_memory_kib() {
            Some(kib) => println!("peak memory  {:.0} MB (VmHWM)", kib as f64 / 1024.0),
            None => println!("peak memory  unknown (no /proc/self/status)"),
        }
        Ok(())
    }
}

fn verify_ids(input: &str, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    let text = fs_err::read_to_string(input)?;
    let mut encoder = tokenizer.encoder();
    let keys = ["text".to_owned()];
    let mut documents = 0u64;
    for (number, line) in text.lines().enumerate() {
        let fields = pipeline::json::extract_fields(line, &keys).map_err(|e| {
            anyhow::anyhow!("{input}:{}:{}: {}", number + 1, e.column(line), e.message)
        })?;
        let pipeline::json::Field::Text(doc) = &fields[0] else {
            continue;
        };
        let mut ids = Vec::new();
        encoder
            .encode(doc, &mut ids)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let expected = tokenizer
            .encode_reference(doc)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            ids == expected,
            "line {}: the fast ids differ from the reference",
            number + 1
        );
        documents += 1;
    }
    println!("verify       {documents} documents: fast ids == reference ids");
    Ok(())
}
