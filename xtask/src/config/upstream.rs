//! The variables the training scripts of neuronx-nemo-megatron set outright, so that a value
//! trnkit passes under the same name never reaches the training command.
//!
//! Every rank runs `llama_7b.sh`, which exports the model's shape and runs `test_llama.sh`,
//! which sources `train_setup.sh`; `train_setup.sh` exports `NEURON_CC_FLAGS`, the `FI_*`,
//! `XLA_*` and `NEURON_RT_*` settings and more. [`SCRIPT_VARIABLES`] lists those assignments at
//! the pinned commit (`image.nemo_ref`'s default) on the path an EKS MPIJob takes (the
//! `OMPI_COMM_WORLD_RANK` branch, the `bf16SR` precision); a test derives the same list from
//! copies of the real scripts in `xtask/tests/data/upstream/`, so it cannot drift silently.
//! Defaults (`: ${GBS:=256}`) are not listed: a value from the environment wins over them.
//!
//! Configuration validation refuses a `[training] env` key the scripts overwrite, naming the
//! line. `NEURON_CC_FLAGS` is the exception that trnkit makes work: see
//! [`crate::render::rank`], which hands `[training] neuron_cc_flags` to the compiler after
//! `train_setup.sh` has run.

/// One assignment of a training script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptVariable {
    /// The variable.
    pub name: &'static str,
    /// The script, such as `train_setup.sh`.
    pub script: &'static str,
    /// The 1-based line of the assignment.
    pub line: u32,
    /// Only in the compile job (`COMPILE=1`); the train job keeps the value from the
    /// environment.
    pub compile_only: bool,
}

/// The entry script of the blueprint, the script it runs, and the script that one sources.
pub const SCRIPTS: [&str; 3] = ["llama_7b.sh", "test_llama.sh", "train_setup.sh"];

const fn always(name: &'static str, script: &'static str, line: u32) -> ScriptVariable {
    ScriptVariable {
        name,
        script,
        line,
        compile_only: false,
    }
}

const fn compile(name: &'static str, script: &'static str, line: u32) -> ScriptVariable {
    ScriptVariable {
        name,
        script,
        line,
        compile_only: true,
    }
}

/// The variables the three scripts set outright on an EKS MPIJob's path, in script and line
/// order (the test `the_list_is_derived_from_the_scripts` keeps it equal to the scripts).
pub const SCRIPT_VARIABLES: &[ScriptVariable] = &[
    always("SEQ_LENGTH", "llama_7b.sh", 3),
    always("HS", "llama_7b.sh", 4),
    always("TP", "llama_7b.sh", 5),
    always("PP", "llama_7b.sh", 6),
    always("N_LAYERS", "llama_7b.sh", 7),
    always("N_AH", "llama_7b.sh", 8),
    always("FFN_HS", "llama_7b.sh", 9),
    always("INIT_METHOD_STD", "llama_7b.sh", 13),
    always("LAYERNORM_EPSILON", "llama_7b.sh", 14),
    always("WARMUP_STEPS", "llama_7b.sh", 15),
    always("FI_EFA_USE_DEVICE_RDMA", "train_setup.sh", 7),
    always("FI_PROVIDER", "train_setup.sh", 8),
    always("FI_EFA_FORK_SAFE", "train_setup.sh", 9),
    always("CCOM_SOCKET_IFNAME", "train_setup.sh", 35),
    always("NODELIST", "train_setup.sh", 36),
    always("HOSTS", "train_setup.sh", 37),
    always("NODEID", "train_setup.sh", 38),
    always("NTASKS", "train_setup.sh", 39),
    always("EXPLICIT_LOGDIR", "train_setup.sh", 40),
    always("LOG_PATH", "train_setup.sh", 41),
    always("NEURON_COMPILE_CACHE_URL", "train_setup.sh", 43),
    always("HYDRA_FULL_ERROR", "train_setup.sh", 55),
    always("PROCESSES_PER_NODE", "train_setup.sh", 56),
    always("MASTER_ADDR", "train_setup.sh", 57),
    always("MASTER_PORT", "train_setup.sh", 58),
    always("NEURON_RT_EXEC_TIMEOUT", "train_setup.sh", 60),
    always("DISTRIBUTED_ARGS", "train_setup.sh", 61),
    always("BUCKET_CAP_MB", "train_setup.sh", 64),
    always(
        "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS",
        "train_setup.sh",
        65,
    ),
    always("NEURON_TRANSFER_WITH_STATIC_RING_OPS", "train_setup.sh", 66),
    always("MALLOC_ARENA_MAX", "train_setup.sh", 67),
    always("TF_NUM_INTEROP_THREADS", "train_setup.sh", 68),
    always("XLA_THREAD_POOL_SIZE", "train_setup.sh", 69),
    always("XLA_IO_THREAD_POOL_SIZE", "train_setup.sh", 70),
    always("NEURON_FUSE_SOFTMAX", "train_setup.sh", 72),
    always("NEURON_RT_STOCHASTIC_ROUNDING_EN", "train_setup.sh", 73),
    always("training_precision", "train_setup.sh", 82),
    always("XLA_USE_BF16", "train_setup.sh", 85),
    always("NEURON_CC_FLAGS", "train_setup.sh", 86),
    always("OPTIM_NAME", "train_setup.sh", 87),
    always("megatron_amp_O2", "train_setup.sh", 88),
    always("wrap_with_zero", "train_setup.sh", 89),
    always("zero_use_master_weight", "train_setup.sh", 90),
    always("CREATE_TB_LOGGER", "train_setup.sh", 139),
    always("CHECKPOINT_CALLBACK", "train_setup.sh", 140),
    compile("MAYBE_COMPILE", "train_setup.sh", 144),
    compile("TRAIN_ITERS", "train_setup.sh", 145),
    compile("CREATE_TB_LOGGER", "train_setup.sh", 146),
    compile("CHECKPOINT_CALLBACK", "train_setup.sh", 147),
];

/// The scripts that run when every rank runs `script` (`[training] script`): the blueprint's
/// chain for `llama_7b.sh` and `test_llama.sh`, and `train_setup.sh` for any other script
/// (every training script of the examples directory sources it).
pub fn scripts_run_by(script: &str) -> &'static [&'static str] {
    let name = script.rsplit('/').next().unwrap_or(script);
    match name {
        "llama_7b.sh" => &SCRIPTS,
        "test_llama.sh" => &SCRIPTS[1..],
        _ => &SCRIPTS[2..],
    }
}

/// The first assignment that overwrites `name` in every job when the ranks run `script`.
pub fn overwritten(name: &str, script: &str) -> Option<&'static ScriptVariable> {
    let scripts = scripts_run_by(script);
    SCRIPT_VARIABLES.iter().find(|variable| {
        variable.name == name && !variable.compile_only && scripts.contains(&variable.script)
    })
}

#[cfg(test)]
mod tests;
