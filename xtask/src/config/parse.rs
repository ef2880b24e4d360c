//! Reading the TOML text into a typed [`Config`], reporting every bad key at once.
//!
//! serde stops at the first key it cannot deserialize. When that happens the text is read
//! again as a plain table and deserialized repeatedly: each failure is recorded with its key
//! (from `serde_path_to_error`) and its line and column (from the spans of `toml`'s document
//! parser), the key is taken out so that its default applies, and the next attempt finds the
//! next bad key. Only a syntax error stops at once, since nothing after it can be read.

use serde_path_to_error::Segment;
use toml::de::{DeTable, DeValue};

use super::{Config, ConfigError};

/// Deserializes `text`; `Ok` holds the configuration (with defaults in place of bad keys) and
/// the `(key, problem)` pairs of every key that could not be deserialized.
pub(super) fn deserialize(
    text: &str,
    origin: &str,
) -> Result<(Config, Vec<(String, String)>), ConfigError> {
    let first = match toml::from_str::<Config>(text) {
        Ok(config) => return Ok((config, Vec::new())),
        Err(error) => error,
    };
    let (Ok(mut table), Ok(spans)) = (text.parse::<toml::Table>(), DeTable::parse(text)) else {
        return Err(ConfigError::Parse {
            origin: origin.to_owned(),
            message: with_suggestion(&first.to_string()),
        });
    };
    let mut problems = Vec::new();
    // Each round removes one key, so this ends; the bound is a second guarantee.
    for _ in 0..=count_keys(&table) {
        let error = match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(
            table.clone(),
        )) {
            Ok(config) => return Ok((config, problems)),
            Err(error) => error,
        };
        let mut path: Vec<Segment> = error.path().iter().cloned().collect();
        let message = error.into_inner().message().trim_end().to_owned();
        if let Some(unknown) = quoted_after(&message, "unknown field `")
            && !matches!(path.last(), Some(Segment::Map { key }) if key == unknown)
        {
            path.push(Segment::Map {
                key: unknown.to_owned(),
            });
        }
        let key = key_name(&path);
        let location = locate(text, spans.get_ref(), &path)
            .map(|(line, column)| format!(" (line {line}, column {column})"))
            .unwrap_or_default();
        problems.push((key, format!("{}{location}", with_suggestion(&message))));
        if !remove(&mut table, &path) {
            break;
        }
    }
    Err(ConfigError::Invalid {
        origin: origin.to_owned(),
        problems,
    })
}

fn count_keys(table: &toml::Table) -> usize {
    table
        .values()
        .map(|value| match value {
            toml::Value::Table(inner) => 1 + count_keys(inner),
            toml::Value::Array(items) => {
                1 + items
                    .iter()
                    .map(|item| match item {
                        toml::Value::Table(inner) => count_keys(inner),
                        _ => 0,
                    })
                    .sum::<usize>()
            }
            _ => 1,
        })
        .sum()
}

/// `training.tolerations[0].effect`.
fn key_name(path: &[Segment]) -> String {
    let mut key = String::new();
    for segment in path {
        match segment {
            Segment::Map { key: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    if key.is_empty() {
        "(top level)".to_owned()
    } else {
        key
    }
}

/// Removes the value at `path` (or, where the path cannot be followed, the whole key that
/// holds it), so that its default applies.
fn remove(table: &mut toml::Table, path: &[Segment]) -> bool {
    let path: Vec<&Segment> = path
        .iter()
        .filter(|segment| matches!(segment, Segment::Map { .. } | Segment::Seq { .. }))
        .collect();
    remove_in(table, &path)
}

fn remove_in(table: &mut toml::Table, path: &[&Segment]) -> bool {
    let Some((Segment::Map { key }, rest)) = path.split_first() else {
        return false;
    };
    let deeper = match (table.get_mut(key.as_str()), rest) {
        (Some(toml::Value::Table(inner)), [Segment::Map { .. }, ..]) => remove_in(inner, rest),
        (Some(toml::Value::Array(items)), [Segment::Seq { index }, field @ ..])
            if !field.is_empty() =>
        {
            match items.get_mut(*index) {
                Some(toml::Value::Table(element)) => remove_in(element, field),
                _ => false,
            }
        }
        _ => false,
    };
    deeper || table.remove(key.as_str()).is_some()
}

/// Appends ` (line L, column C)` to each problem whose key is in `text` and has no location
/// yet, so that validation problems point into the file as parse errors do.
pub(super) fn add_locations(text: &str, problems: &mut [(String, String)]) {
    if problems.is_empty() {
        return;
    }
    let Ok(spans) = DeTable::parse(text) else {
        return;
    };
    for (key, message) in problems {
        if message.contains("(line ") {
            continue;
        }
        let Some(path) = key_path(key) else { continue };
        if let Some((line, column)) = locate(text, spans.get_ref(), &path) {
            message.push_str(&format!(" (line {line}, column {column})"));
        }
    }
}

/// `training.tolerations[0].effect` as path segments; `None` for keys that are not plain
/// (a quoted part).
fn key_path(key: &str) -> Option<Vec<Segment>> {
    let mut path = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part
            .split_once('[')
            .map_or((part, ""), |(name, rest)| (name, rest));
        if name.is_empty() || name.contains('"') {
            return None;
        }
        path.push(Segment::Map {
            key: name.to_owned(),
        });
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']')?;
            path.push(Segment::Seq {
                index: index.parse().ok()?,
            });
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(path)
}

/// The 1-based line and column of the value at `path`, if every part of it is in the file.
fn locate(text: &str, root: &DeTable<'_>, path: &[Segment]) -> Option<(usize, usize)> {
    let mut segments = path
        .iter()
        .filter(|segment| matches!(segment, Segment::Map { .. } | Segment::Seq { .. }));
    let Some(Segment::Map { key }) = segments.next() else {
        return None;
    };
    let (_, mut value) = root
        .iter()
        .find(|(name, _)| name.get_ref().as_ref() == key.as_str())?;
    let mut span = value.span();
    for segment in segments {
        let next = match (segment, value.get_ref()) {
            (Segment::Map { key }, DeValue::Table(table)) => table
                .iter()
                .find(|(name, _)| name.get_ref().as_ref() == key.as_str())
                .map(|(_, value)| value),
            (Segment::Seq { index }, DeValue::Array(items)) => items.get(*index),
            _ => None,
        };
        let next = next?;
        value = next;
        span = value.span();
    }
    let before = text.get(..span.start)?;
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |newline| before.len() - newline - 1)
        + 1;
    Some((line, column))
}

fn quoted_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &message[message.find(marker)? + marker.len()..];
    Some(&rest[..rest.find('`')?])
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`" and "unknown
/// variant" messages.
pub(super) fn with_suggestion(message: &str) -> String {
    let message = message.trim_end();
    let hint = "(`cargo xtask init` writes every key with its meaning)";
    let Some((marker, unknown)) = ["unknown field `", "unknown variant `"]
        .into_iter()
        .find_map(|marker| quoted_after(message, marker).map(|unknown| (marker, unknown)))
    else {
        return message.to_owned();
    };
    let start = message.find(marker).unwrap_or(0) + marker.len() + unknown.len();
    let candidates: Vec<&str> = message[start..].split('`').skip(2).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|candidate| {
            (
                strsim::jaro_winkler(&unknown.to_lowercase(), &candidate.to_lowercase()),
                *candidate,
            )
        })
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match (best, marker) {
        (Some((_, candidate)), _) => format!("{message}; did you mean `{candidate}`? {hint}"),
        (None, "unknown field `") => format!("{message} {hint}"),
        (None, _) => message.to_owned(),
    }
}
