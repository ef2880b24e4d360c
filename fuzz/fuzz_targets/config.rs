//! The configuration reader: TOML text into the typed configuration, every bad key and value
//! reported at once with its line, then what `render` and `deploy --dry-run` do with a
//! configuration that passed: render every object offline (images, jobs, storage,
//! TensorBoard), each validated against its schema. Nothing may panic; an error names the file;
//! a configuration that validates also renders (a render error would be a check that
//! validation missed, reported only after the user had fixed everything else).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use xtask::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse_offline(text, "fuzz.toml") {
        Ok(config) => {
            if let Err(error) = xtask::deploy::bundle::render_all(
                &config,
                None,
                None,
                Path::new("/nonexistent/trnkit-stage"),
            ) {
                panic!("a configuration that validates does not render: {error:#}");
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("fuzz.toml"), "{message}");
            if let ConfigError::Invalid { problems, .. } = &error {
                assert!(!problems.is_empty(), "invalid without a problem");
                for (key, problem) in problems {
                    assert!(!key.is_empty() && !problem.is_empty(), "{key:?}: {problem:?}");
                }
            }
        }
    }
});
