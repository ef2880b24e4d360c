//! The deploy state reader: the JSON a deploy records (the `trnkit-state` ConfigMap, or
//! `.trnkit/state.json` for the local profile), which anyone with access to the namespace can
//! edit. Nothing may panic; an error names where the state came from; what is accepted writes
//! back to the same state; the recorded run name, which reaches manifests and the ranks'
//! command lines, is one a configuration could hold.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xtask::deploy::restart;
use xtask::deploy::state::State;
use xtask::run_identity;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match State::parse(text, "fuzz-state.json") {
        Ok(state) => {
            if let Some(name) = run_identity::recorded(&state) {
                assert!(run_identity::check_name(name).is_ok(), "{name:?}");
            }
            for record in state.runs.values() {
                let _ = restart::summary(record, restart::DEFAULT_MAX_RESTARTS);
            }
            let written = serde_json::to_string_pretty(&state).expect("a state serializes");
            let again = State::parse(&written, "written").expect("a written state reads back");
            assert_eq!(again, state);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("fuzz-state.json"), "{message}");
        }
    }
});
