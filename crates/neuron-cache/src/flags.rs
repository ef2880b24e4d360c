//! Compiler flags and the flags key of cache entries (`MODULE_<graph key>+<flags key>`).
//!
//! The Neuron compiler wrapper names each cache entry by the graph and by the compiler flags
//! (`formats.md` B.1, verified against four published module names):
//!
//! - SDK 2.15 and later (2024+): the first 8 hex digits of the MD5 of `json.dumps(flag_list)`,
//!   that is, Python's default separators (`", "`) and ASCII escaping ([`flags_key`]);
//! - older SDKs: the MD5 of the space-joined flags ([`legacy_flags_key`]).
//!
//! The list holds the user's flags in their given order and spelling, so
//! `--model-type transformer` and `--model-type=transformer` are different keys, and a cache
//! filled by the compile job misses in the train job. [`parse_neuron_cc_flags`] reads a
//! `NEURON_CC_FLAGS` value the way the wrapper does (shell words, minus the wrapper's own
//! options), and [`compare`] explains why two values would use different entries.

use md5::{Digest, Md5};
use serde::Serialize;

use crate::{Error, Result};

/// The first 8 hex digits of the MD5 of `json.dumps(flags)`: the flags key of SDK 2.15+.
///
/// ```
/// let flags = ["--model-type=transformer", "--auto-cast=none", "--execute-repetition=1"];
/// assert_eq!(neuron_cache::flags_key(&flags), "39f12043");
/// assert_eq!(neuron_cache::flags_key::<&str>(&[]), "d7517139"); // json.dumps([]) == "[]"
/// ```
pub fn flags_key<S: AsRef<str>>(flags: &[S]) -> String {
    short_md5(python_json_dumps(flags).as_bytes())
}

/// The first 8 hex digits of the MD5 of the space-joined flags: the flags key of older SDKs.
/// No flags give `d41d8cd9`, the MD5 of the empty string.
pub fn legacy_flags_key<S: AsRef<str>>(flags: &[S]) -> String {
    let joined = flags
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(" ");
    short_md5(joined.as_bytes())
}

fn short_md5(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    hex::encode(&digest[..4])
}

/// `json.dumps(list_of_strings)` with Python's defaults: `", "` between items, non-ASCII
/// characters as `\uXXXX` (UTF-16 surrogate pairs above U+FFFF), and `"`, `\` and control
/// characters escaped.
pub fn python_json_dumps<S: AsRef<str>>(flags: &[S]) -> String {
    let mut out = String::from("[");
    for (index, flag) in flags.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push('"');
        for c in flag.as_ref().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                ' '..='~' => out.push(c),
                _ => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// A `NEURON_CC_FLAGS` value, split into what the compiler gets and what the wrapper consumes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NeuronCcFlags {
    /// The flags passed to `neuronx-cc`, in order: these make the flags key.
    pub compiler_flags: Vec<String>,
    /// `--cache_dir=<url>`: overrides `NEURON_COMPILE_CACHE_URL`.
    pub cache_dir: Option<String>,
    /// `--no_cache`: caching is off.
    pub no_cache: bool,
    /// `--retry_failed_compilation`: cached failures are compiled again.
    pub retry_failed_compilation: bool,
}

impl NeuronCcFlags {
    /// The flags key of the compiler flags (SDK 2.15+).
    pub fn key(&self) -> String {
        flags_key(&self.compiler_flags)
    }

    /// The flags key as older SDKs computed it.
    pub fn legacy_key(&self) -> String {
        legacy_flags_key(&self.compiler_flags)
    }
}

/// Splits a `NEURON_CC_FLAGS` value into shell words (single and double quotes, backslash
/// escapes) and takes out the wrapper's own options (`--cache_dir`, `--no_cache`,
/// `--retry_failed_compilation`), which are not part of the flags key.
///
/// ```
/// // The blueprint's train_setup.sh (bf16SR).
/// let flags = neuron_cache::parse_neuron_cc_flags(
///     "--model-type transformer --distribution-strategy=llm-training --enable-mixed-precision-accumulation",
/// )?;
/// assert_eq!(flags.key(), "725887e1");
/// # Ok::<(), neuron_cache::Error>(())
/// ```
pub fn parse_neuron_cc_flags(value: &str) -> Result<NeuronCcFlags> {
    let words = shell_words(value)?;
    let mut parsed = NeuronCcFlags::default();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        if let Some(url) = word.strip_prefix("--cache_dir=") {
            parsed.cache_dir = Some(url.to_owned());
        } else if word == "--cache_dir" {
            let url = words.next().ok_or_else(|| Error::ParseFlags {
                value: value.to_owned(),
                reason: "--cache_dir needs a value".to_owned(),
            })?;
            parsed.cache_dir = Some(url);
        } else if word == "--no_cache" {
            parsed.no_cache = true;
        } else if word == "--retry_failed_compilation" {
            parsed.retry_failed_compilation = true;
        } else {
            parsed.compiler_flags.push(word);
        }
    }
    Ok(parsed)
}

fn shell_words(value: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err(unterminated(value, "single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => current.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => return Err(unterminated(value, "double quote")),
                        },
                        Some(c) => current.push(c),
                        None => return Err(unterminated(value, "double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => current.push(c),
                    None => return Err(unterminated(value, "backslash escape")),
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

fn unterminated(value: &str, what: &str) -> Error {
    Error::ParseFlags {
        value: value.to_owned(),
        reason: format!("unterminated {what}"),
    }
}

/// Why two `NEURON_CC_FLAGS` values use different cache entries, if they do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlagsMismatch {
    /// The compile job's flags key.
    pub compile_key: String,
    /// The train job's flags key.
    pub train_key: String,
    /// One sentence per difference found.
    pub reasons: Vec<String>,
}

impl std::fmt::Display for FlagsMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the compile job's NEURON_CC_FLAGS (key {}) and the train job's (key {}) select different cache \
             entries, so training would compile again: {}",
            self.compile_key,
            self.train_key,
            self.reasons.join("; ")
        )
    }
}

/// Compares the compile job's and the train job's `NEURON_CC_FLAGS`; `None` when they select the
/// same cache entries (same compiler flags in the same order, and the same cache directory).
pub fn compare(compile: &NeuronCcFlags, train: &NeuronCcFlags) -> Option<FlagsMismatch> {
    let mut reasons = Vec::new();
    if compile.cache_dir != train.cache_dir {
        reasons.push(format!(
            "--cache_dir differs ({} vs {}), so the two jobs do not even use the same cache",
            compile.cache_dir.as_deref().unwrap_or("unset"),
            train.cache_dir.as_deref().unwrap_or("unset")
        ));
    }
    if train.no_cache {
        reasons.push("the train job has --no_cache".to_owned());
    }
    let (a, b) = (&compile.compiler_flags, &train.compiler_flags);
    if a != b {
        let normalize = |flags: &[String]| {
            let mut joined: Vec<String> = Vec::new();
            let mut iter = flags.iter().peekable();
            while let Some(flag) = iter.next() {
                match iter.peek() {
                    Some(next)
                        if flag.starts_with("--")
                            && !flag.contains('=')
                            && !next.starts_with('-') =>
                    {
                        joined.push(format!("{flag}={next}"));
                        iter.next();
                    }
                    _ => joined.push(flag.clone()),
                }
            }
            joined
        };
        let (mut sorted_a, mut sorted_b) = (a.clone(), b.clone());
        sorted_a.sort();
        sorted_b.sort();
        let (norm_a, norm_b) = (normalize(a), normalize(b));
        if sorted_a == sorted_b {
            reasons.push(format!(
                "the same flags in another order ({} vs {})",
                a.join(" "),
                b.join(" ")
            ));
        } else if norm_a == norm_b {
            reasons.push(format!(
                "the same flags spelled differently (`--flag value` vs `--flag=value`: {} vs {})",
                a.join(" "),
                b.join(" ")
            ));
        } else {
            let only_compile: Vec<&String> = norm_a
                .iter()
                .filter(|flag| !norm_b.contains(flag))
                .collect();
            let only_train: Vec<&String> = norm_b
                .iter()
                .filter(|flag| !norm_a.contains(flag))
                .collect();
            if !only_compile.is_empty() {
                reasons.push(format!(
                    "only the compile job has {}",
                    only_compile
                        .iter()
                        .map(|flag| flag.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            if !only_train.is_empty() {
                reasons.push(format!(
                    "only the train job has {}",
                    only_train
                        .iter()
                        .map(|flag| flag.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            if only_compile.is_empty() && only_train.is_empty() {
                reasons.push(format!(
                    "the flags differ in order or spelling ({} vs {})",
                    a.join(" "),
                    b.join(" ")
                ));
            }
        }
    }
    (!reasons.is_empty()).then(|| FlagsMismatch {
        compile_key: compile.key(),
        train_key: train.key(),
        reasons,
    })
}
