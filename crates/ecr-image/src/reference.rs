//! Image references (`registry/repository:tag`), their validation, and content-addressed tags.
//!
//! The content tag of a build is derived from the context digest (which covers the rendered
//! Dockerfile) and every build option that changes the result (Dockerfile path, build arguments,
//! platform, target stage). Two builds with the same tag are the same build, so a registry that
//! already holds the tag needs neither a build nor a push.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::context::ContextDigest;
use crate::dockerfile::looks_like_secret_name;
use crate::error::{Error, Result};

/// The platform trnkit builds for: Trainium nodes are x86-64.
pub const DEFAULT_PLATFORM: &str = "linux/amd64";

/// How many hex digits of the digest go into a content tag (80 bits).
const CONTENT_TAG_HEX_DIGITS: usize = 20;

/// Options of a build that change its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// `--build-arg`s. Names that look like secrets are refused: build arguments end up in the
    /// image history.
    pub build_args: BTreeMap<String, String>,
    /// The target platform, `linux/amd64` by default.
    pub platform: String,
    /// A target stage of a multi-stage Dockerfile.
    pub target: Option<String>,
    /// Build without the engine's layer cache.
    pub no_cache: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            build_args: BTreeMap::new(),
            platform: DEFAULT_PLATFORM.to_owned(),
            target: None,
            no_cache: false,
        }
    }
}

impl BuildOptions {
    /// Fails if a build argument looks like a secret.
    pub fn check(&self) -> Result<()> {
        for name in self.build_args.keys() {
            if looks_like_secret_name(name) {
                return Err(Error::SecretInImage { name: name.clone() });
            }
        }
        Ok(())
    }
}

/// The content-addressed tag of a build: `sha256-<20 hex digits>`.
///
/// `no_cache` is deliberately not part of it: it changes how, not what, is built.
pub fn content_tag(context: &ContextDigest, dockerfile: &str, options: &BuildOptions) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"trnkit-image-v1\0");
    hasher.update(context.as_str());
    hasher.update(b"\0dockerfile\0");
    hasher.update(dockerfile);
    hasher.update(b"\0platform\0");
    hasher.update(&options.platform);
    hasher.update(b"\0target\0");
    hasher.update(options.target.as_deref().unwrap_or(""));
    for (name, value) in &options.build_args {
        hasher.update(b"\0arg\0");
        hasher.update(name);
        hasher.update(b"=");
        hasher.update(value);
    }
    let hex = hex::encode(hasher.finalize());
    format!("sha256-{}", &hex[..CONTENT_TAG_HEX_DIGITS])
}

/// A fully qualified image reference: `registry/repository:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: String,
}

impl ImageReference {
    /// Validates and joins the parts. `registry` is `host[:port]` (no scheme).
    pub fn new(registry: &str, repository: &str, tag: &str) -> Result<Self> {
        validate_registry(registry)?;
        validate_repository(repository)?;
        validate_tag(tag)?;
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The registry host (and port).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `registry/repository`, without the tag.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image under another tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        validate_tag(tag)?;
        Ok(Self {
            tag: tag.to_owned(),
            ..self.clone()
        })
    }
}

impl std::fmt::Display for ImageReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

fn invalid(what: &'static str, value: &str, reason: &str) -> Error {
    Error::InvalidReference {
        what,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Checks a registry host: `host[:port]`, no scheme, no path.
pub fn validate_registry(registry: &str) -> Result<()> {
    if registry.is_empty() {
        return Err(invalid("registry", registry, "it is empty"));
    }
    if registry.contains("://") {
        return Err(invalid(
            "registry",
            registry,
            "give host[:port] without a scheme",
        ));
    }
    if registry.contains('/') {
        return Err(invalid(
            "registry",
            registry,
            "give host[:port] without a path",
        ));
    }
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    {
        return Err(invalid(
            "registry",
            registry,
            "the host may hold only letters, digits, '.' and '-'",
        ));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(invalid(
            "registry",
            registry,
            "the port is not a number from 0 to 65535",
        ));
    }
    Ok(())
}

/// Checks a repository name against the OCI distribution grammar (lowercase path components of
/// letters and digits separated by `.`, `_`, `__` or `-`), which ECR also enforces.
pub fn validate_repository(repository: &str) -> Result<()> {
    if repository.is_empty() || repository.len() > 256 {
        return Err(invalid(
            "repository",
            repository,
            "it must have 1 to 256 characters",
        ));
    }
    for component in repository.split('/') {
        let valid = !component.is_empty()
            && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !valid {
            return Err(invalid(
                "repository",
                repository,
                "use lowercase letters, digits, and '.', '_', '-' inside '/'-separated parts",
            ));
        }
    }
    Ok(())
}

/// Checks a tag: 1 to 128 characters of letters, digits, `_`, `.`, `-`, not starting with `.`
/// or `-`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "tag",
            tag,
            "use 1 to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'",
        ))
    }
}

#[cfg(test)]
mod tests;
