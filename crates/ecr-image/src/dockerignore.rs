//! `.dockerignore` parsing and matching, with the Docker CLI's semantics.
//!
//! Docker's rules differ from `.gitignore`'s: every pattern is anchored at the context root (`foo`
//! matches only `./foo`, not `a/foo`), `*` never crosses `/`, `**` matches any number of
//! directories, a pattern that matches a directory excludes everything under it, and the last
//! matching pattern wins, so `!pattern` re-includes files (even inside an excluded directory).
//! This mirrors `moby/patternmatcher`'s `MatchesOrParentMatches`.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};

/// The parsed patterns of one `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    matcher: GlobMatcher,
    exclusion: bool,
}

impl Dockerignore {
    /// Parses the text of a `.dockerignore` file; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut patterns = Vec::new();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(body);
            if cleaned.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| Error::DockerignorePattern {
                    path: path.to_owned(),
                    pattern: raw.to_owned(),
                    source,
                })?;
            patterns.push(Pattern {
                matcher: glob.compile_matcher(),
                exclusion,
            });
        }
        Ok(Self { patterns })
    }

    /// Whether any pattern re-includes files (`!pattern`); if not, an excluded directory can be
    /// skipped without looking inside it.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|pattern| pattern.exclusion)
    }

    /// Whether the context-relative path (with `/` separators) is excluded from the context.
    pub fn is_excluded(&self, relative: &str) -> bool {
        let parents: Vec<&str> = relative
            .match_indices('/')
            .map(|(index, _)| &relative[..index])
            .collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Like moby: an inclusion cannot change an already excluded path, nor an exclusion
            // an included one, so skip those patterns.
            if pattern.exclusion != excluded {
                continue;
            }
            let matched = pattern.matcher.is_match(relative)
                || parents
                    .iter()
                    .any(|parent| pattern.matcher.is_match(parent));
            if matched {
                excluded = !pattern.exclusion;
            }
        }
        excluded
    }
}

/// Normalises a pattern like Go's `filepath.Clean` and strips the leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests;
