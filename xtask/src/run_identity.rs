//! The run's identity: one name for a training run, kept across launcher restarts and
//! re-deploys, so that its logs and checkpoints stay in one place and a restart resumes.
//!
//! The blueprint names the experiment directory after the launcher pod's UID:
//! `train_setup.sh` sets `EXPLICIT_LOGDIR=/shared/nemo_experiments/$POD_UID` outright on the
//! MPI path, and `test_llama.sh` passes `exp_manager.explicit_log_dir=$EXPLICIT_LOGDIR` with
//! `exp_manager.resume_if_exists=False`. Every launcher retry (a new pod, a new UID) so starts
//! a fresh experiment from step 0, and the checkpoints of the previous one are never read.
//!
//! trnkit names the run once: `[training] run_name`, or, when that is empty, generated on the
//! first deploy as `<train_job_name>-<yyyymmdd-hhmmss>` and recorded in the deploy state's
//! train-step outputs ([`OUTPUT_KEY`]), so a re-deploy (from any machine) finds it again. The
//! train job carries it as [`RUN_ID_VARIABLE`]; `trnkit-rank` (see [`crate::render::rank`])
//! sets `POD_UID` to it before the scripts run, so `EXPLICIT_LOGDIR`, the per-node
//! `LOG_PATH` and NeMo's `checkpoints/` are the run's. The resume settings travel as
//! [`OVERRIDES_VARIABLE`]: Hydra overrides that `trnkit-rank` puts in place of the script's
//! own values on the training command line ([`resume_overrides`]).
//!
//! NeMo's `exp_manager` resumes from `<explicit_log_dir>/checkpoints/*last.ckpt` (the latest
//! checkpoint the checkpoint callback saved; Lightning writes the `-last` one after the
//! top-k one of the same step) when `resume_if_exists` is set, and starts from scratch when
//! there is none and `resume_ignore_no_checkpoint` is set. The blueprint's configuration keeps
//! `checkpoint_callback_params.save_last: False`, so no `*last.ckpt` would ever exist:
//! `save_last=True` is part of the overrides.
//!
//! The compile job keeps the blueprint's behaviour (its own launcher UID, no resume): it runs
//! 4 steps to fill the compile cache and must not load the training run's checkpoints.

use std::time::SystemTime;

use crate::config::Config;
use crate::deploy::plan::StepId;
use crate::deploy::state::State;

/// The variable that carries the run's name to every rank of the train job.
pub const RUN_ID_VARIABLE: &str = "TRNKIT_RUN_ID";

/// The variable that carries the Hydra overrides `trnkit-rank` applies to the training
/// command, separated by spaces.
pub const OVERRIDES_VARIABLE: &str = "TRNKIT_HYDRA_OVERRIDES";

/// The key of the run's name in the train step's recorded outputs.
pub const OUTPUT_KEY: &str = "run_id";

/// The longest run name: it names a directory and travels in a label-free env value, but
/// stays readable in `kubectl` output and paths.
const MAX_NAME_LEN: usize = 100;

/// The Hydra overrides that make NeMo resume a run from its latest checkpoint: look for one
/// (`resume_if_exists`), start from scratch when there is none yet
/// (`resume_ignore_no_checkpoint`), and write the `*last.ckpt` that the lookup reads
/// (`checkpoint_callback_params.save_last`). `resume = false` keeps the scripts' own values
/// (a fresh start on every launcher retry, as in the blueprint).
pub fn resume_overrides(resume: bool) -> Vec<String> {
    if !resume {
        return Vec::new();
    }
    [
        "exp_manager.resume_if_exists=True",
        "exp_manager.resume_ignore_no_checkpoint=True",
        "exp_manager.checkpoint_callback_params.save_last=True",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The script's checkpoint interval: `+exp_manager.checkpoint_callback_params.train_time_interval`
/// in seconds of training time.
pub const SCRIPT_CHECKPOINT_SECONDS: u64 = 36_000;

/// The overrides of the train job: [`resume_overrides`], and the checkpoint interval when it
/// is not the script's own (`+` kept: the key is not in the YAML configuration).
pub fn overrides(training: &crate::config::Training) -> Vec<String> {
    let mut overrides = resume_overrides(training.resume);
    let seconds = training.checkpoint_interval.duration().as_secs().max(1);
    if seconds != SCRIPT_CHECKPOINT_SECONDS {
        overrides.push(format!(
            "exp_manager.checkpoint_callback_params.train_time_interval={seconds}"
        ));
    }
    overrides
}

/// The variables the train job's launcher sets and forwards to every rank: the run's name
/// and the [`overrides`], if any.
pub fn train_env(run_id: &str, training: &crate::config::Training) -> Vec<(String, String)> {
    let mut env = vec![(RUN_ID_VARIABLE.to_owned(), run_id.to_owned())];
    let overrides = overrides(training);
    if !overrides.is_empty() {
        env.push((OVERRIDES_VARIABLE.to_owned(), overrides.join(" ")));
    }
    env
}

/// The run's name when the configuration names none and nothing was recorded:
/// `<train_job_name>-<yyyymmdd-hhmmss>` (UTC).
pub fn generate(train_job_name: &str, at: SystemTime) -> String {
    // `2026-12-01T14:41:14Z` → `20261201-144114`.
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    let (date, time) = stamp.split_once('T').unwrap_or((&stamp, ""));
    let digits = |text: &str| {
        text.chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
    };
    format!("{train_job_name}-{}-{}", digits(date), digits(time))
}

/// The name recorded by an earlier deploy's train step, if any.
pub fn recorded(state: &State) -> Option<&str> {
    state
        .get(StepId::Train)
        .and_then(|record| record.outputs.get(OUTPUT_KEY))
        .map(String::as_str)
        .filter(|name| !name.is_empty())
}

/// The run's name for this deploy: `[training] run_name` when set, else the one an earlier
/// deploy recorded, else a new one named at `now`.
pub fn resolve(config: &Config, state: &State, now: SystemTime) -> String {
    let configured = &config.training.run_name;
    if !configured.is_empty() {
        return configured.clone();
    }
    recorded(state).map_or_else(
        || generate(&config.training.train_job_name, now),
        str::to_owned,
    )
}

/// The configuration with the run's name resolved (see [`resolve`]), as deploy renders it.
pub fn with_run_name(config: &Config, state: &State, now: SystemTime) -> Config {
    let mut config = config.clone();
    config.training.run_name = resolve(&config, state, now);
    config
}

/// The name rendering uses: `[training] run_name`, else (for `render` and `--dry-run`, which
/// read no state) the train job's name.
pub fn rendered_name(config: &Config) -> &str {
    match config.training.run_name.as_str() {
        "" => &config.training.train_job_name,
        name => name,
    }
}

/// The run's name a rendered train MPIJob carries (its launcher's [`RUN_ID_VARIABLE`]).
pub fn in_manifest(job: &serde_json::Value) -> Option<String> {
    job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .filter_map(|container| container["env"].as_array())
        .flatten()
        .find(|variable| variable["name"] == RUN_ID_VARIABLE)
        .and_then(|variable| variable["value"].as_str())
        .map(str::to_owned)
}

/// The name of the experiment directory a launcher pod's ranks write to: the run's name it
/// carries ([`RUN_ID_VARIABLE`], the train job), else its UID (the compile job, and jobs
/// rendered before run names), which `train_setup.sh` uses as `POD_UID`.
pub fn experiment_name(launcher: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    let run = launcher
        .spec
        .as_ref()
        .and_then(|spec| spec.containers.first())
        .and_then(|container| container.env.as_ref())
        .and_then(|env| env.iter().find(|variable| variable.name == RUN_ID_VARIABLE))
        .and_then(|variable| variable.value.clone())
        .filter(|name| !name.is_empty());
    run.or_else(|| launcher.metadata.uid.clone())
}

/// Checks a configured run name: it names a directory on the shared file system and reaches
/// the scripts unquoted, so only lowercase letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit; empty means "named on the first deploy".
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Ok(());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long; use at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(format!(
            "{name:?} must start with a lowercase letter or a digit"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{name:?} contains {bad:?}: it names the directory /shared/nemo_experiments/<run_name>, so use lowercase letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
