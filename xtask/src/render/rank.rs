//! `trnkit-rank`: what every rank runs, so that `[training] neuron_cc_flags` reaches the
//! compiler.
//!
//! `train_setup.sh` of neuronx-nemo-megatron exports `NEURON_CC_FLAGS` outright (see
//! [`crate::config::upstream`]), so a value in the environment never reaches `torchrun`; yet
//! the compile-cache check asks for the configured flags. The MPIJobs therefore run
//! `trnkit-rank <script> <args>`: a small bash script, baked into the training image, that
//! defines `torchrun` and `neuron_parallel_compile` as exported functions which run the real
//! commands with `NEURON_CC_FLAGS` set back to [`FLAGS_VARIABLE`]. Exported functions reach
//! every bash the script starts (`llama_7b.sh` runs `test_llama.sh`), and `test_llama.sh` runs
//! exactly those two commands after sourcing `train_setup.sh`, so the flags the compile job
//! compiles with, the flags the train job runs with and the flags the cache check looks up are
//! the same. The same functions put the train job's run identity and resume settings on the
//! training command line (see [`crate::run_identity`]). Tests run the rendered command on
//! copies of the real scripts.

use ecr_image::{ContextFile, ImageDefinition};

/// Where the training image carries the script.
pub const PATH: &str = "/usr/local/bin/trnkit-rank";

/// The variable that carries `[training] neuron_cc_flags` past `train_setup.sh`.
pub const FLAGS_VARIABLE: &str = "TRNKIT_NEURON_CC_FLAGS";

/// The script's name in the image's build context.
const CONTEXT_NAME: &str = "trnkit-rank";

/// The script.
pub const SCRIPT: &str = r#"#!/usr/bin/env bash
# trnkit-rank SCRIPT [ARGS...]: runs a neuronx-nemo-megatron training script so that
# TRNKIT_NEURON_CC_FLAGS ([training] neuron_cc_flags) reaches the Neuron compiler, and the
# train job keeps one experiment directory per run (TRNKIT_RUN_ID) and resumes there
# (TRNKIT_HYDRA_OVERRIDES).
#
# train_setup.sh exports NEURON_CC_FLAGS outright, after anything the environment carries,
# and names the experiment directory /shared/nemo_experiments/$POD_UID (the launcher pod's
# UID, new on every launcher retry). test_llama.sh then runs `$MAYBE_COMPILE torchrun ...`
# with fixed exp_manager settings: these exported functions run those two commands with
# NEURON_CC_FLAGS set back to the configured flags and each override of
# TRNKIT_HYDRA_OVERRIDES in place of the script's own value of that key.
set -eu
if [ -n "${TRNKIT_RUN_ID:-}" ]; then
    export POD_UID="$TRNKIT_RUN_ID"
fi
trnkit_run() {
    local program="$1" word key override found
    shift
    local overrides=() args=()
    read -r -a overrides <<< "${TRNKIT_HYDRA_OVERRIDES:-}"
    for word in "$@"; do
        for override in "${overrides[@]}"; do
            key="${override%%=*}"
            case "$word" in
                "$key="*) word="$override" ;;
                "+$key="*) word="+$override" ;;
                "++$key="*) word="++$override" ;;
            esac
        done
        args+=("$word")
    done
    for override in "${overrides[@]}"; do
        found=0
        for word in "${args[@]}"; do
            case "$word" in "$override" | "+$override" | "++$override") found=1 ;; esac
        done
        if [ "$found" = 0 ]; then args+=("$override"); fi
    done
    if [ -n "${TRNKIT_NEURON_CC_FLAGS+set}" ]; then
        NEURON_CC_FLAGS="$TRNKIT_NEURON_CC_FLAGS" command "$program" "${args[@]}"
    else
        command "$program" "${args[@]}"
    fi
}
torchrun() { trnkit_run torchrun "$@"; }
neuron_parallel_compile() { trnkit_run neuron_parallel_compile "$@"; }
export -f trnkit_run torchrun neuron_parallel_compile
exec "$@"
"#;

/// Adds the script to an image definition (the training image's).
pub fn add_to_image(definition: &mut ImageDefinition) {
    definition
        .files
        .push(ContextFile::text(CONTEXT_NAME, SCRIPT, 0o755));
    definition.dockerfile.copy(CONTEXT_NAME, PATH);
}
