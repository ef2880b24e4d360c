//! The Neuron compile cache's parsers of outside bytes: folder names (`neuronxcc-<version>`,
//! `MODULE_<graph>+<flags>`, lock files), flags files (`compile_flags.json`, the old
//! `compile_flags.txt`) and `NEURON_CC_FLAGS` values (shell words, wrapper options).
//! Nothing may panic; what a parser returns must be consistent with its input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use neuron_cache::scan::{is_lock_name, parse_entry_name, parse_version_folder};

fuzz_target!(|data: &[u8]| {
    // A flags file, under both names, whatever the bytes.
    for name in ["compile_flags.json", "compile_flags.txt"] {
        if let Ok(flags) = neuron_cache::parse_flags_file(name, data) {
            let _ = neuron_cache::flags_key(&flags);
        }
    }
    let _ = is_lock_name(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((graph, flags)) = parse_entry_name(text) {
        assert!(text.contains(graph) && text.ends_with(flags));
        assert_eq!(flags.len(), 8);
    }
    if let Some(version) = parse_version_folder(text) {
        assert!(!version.is_empty() && text.ends_with(version));
    }
    if let Ok(flags) = neuron_cache::parse_neuron_cc_flags(text) {
        assert_eq!(flags.key().len(), 8);
        let _ = flags.legacy_key();
    }
});
