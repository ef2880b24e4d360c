//! The Neuron compile cache's parsers of outside text: entry folder names
//! (`MODULE_<graph>+<flags>`) and `NEURON_CC_FLAGS` values (shell words, wrapper options).
//! Nothing may panic; a parsed entry name's parts are substrings of it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((graph, flags)) = neuron_cache::scan::parse_entry_name(text) {
        assert!(text.contains(graph) && text.ends_with(flags));
        assert_eq!(flags.len(), 8);
    }
    if let Ok(flags) = neuron_cache::parse_neuron_cc_flags(text) {
        let key = flags.key();
        assert_eq!(key.len(), 8);
        let _ = flags.legacy_key();
    }
});
