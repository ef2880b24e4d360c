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
//! the same. A test runs the rendered command on copies of the real scripts.

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
# TRNKIT_NEURON_CC_FLAGS ([training] neuron_cc_flags) reaches the Neuron compiler.
#
# train_setup.sh exports NEURON_CC_FLAGS outright, after anything the environment carries.
# test_llama.sh then runs `$MAYBE_COMPILE torchrun ...`: these exported functions run those
# two commands with NEURON_CC_FLAGS set back to the configured flags.
set -eu
if [ -n "${TRNKIT_NEURON_CC_FLAGS+set}" ]; then
    torchrun() {
        NEURON_CC_FLAGS="$TRNKIT_NEURON_CC_FLAGS" command torchrun "$@"
    }
    neuron_parallel_compile() {
        NEURON_CC_FLAGS="$TRNKIT_NEURON_CC_FLAGS" command neuron_parallel_compile "$@"
    }
    export -f torchrun neuron_parallel_compile
fi
exec "$@"
"#;

/// Adds the script to an image definition (the training image's).
pub fn add_to_image(definition: &mut ImageDefinition) {
    definition
        .files
        .push(ContextFile::text(CONTEXT_NAME, SCRIPT, 0o755));
    definition.dockerfile.copy(CONTEXT_NAME, PATH);
}
