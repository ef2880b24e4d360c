//! The local services the integration tests use, as `scripts/test` publishes them.
//!
//! Each function returns `None` when its service is not configured, after printing why, so a
//! developer running `cargo test` without `scripts/test` sees a skip. Under `CI=true` a missing
//! service is a test failure instead: it panics and names the variable to set.

#![allow(clippy::print_stderr)]

use std::path::Path;

/// A Docker registry with htpasswd auth.
#[derive(Clone)]
pub struct Registry {
    /// `host:port` on loopback.
    pub host: String,
    /// The htpasswd user.
    pub user: String,
    /// The htpasswd password (read from the file `scripts/test` wrote; never logged).
    pub password: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Reports a missing service: a panic under `CI=true`, a printed skip otherwise.
pub fn missing(service: &str, how: &str) -> Option<std::convert::Infallible> {
    let message =
        format!("{service} is not available ({how}); run the tests through `scripts/test`");
    if in_ci() {
        panic!("CI=true and {message}");
    }
    eprintln!("skipping: {message}");
    None
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// moto's server URL (`TRNKIT_TEST_MOTO_URL`), standing in for the FSx and ECR APIs.
pub fn moto_url() -> Option<String> {
    match var("TRNKIT_TEST_MOTO_URL") {
        Some(url) => Some(url),
        None => {
            missing("moto", "TRNKIT_TEST_MOTO_URL is not set")?;
            None
        }
    }
}

/// The registry with htpasswd auth (`TRNKIT_TEST_REGISTRY`, `TRNKIT_TEST_REGISTRY_USER`,
/// `TRNKIT_TEST_REGISTRY_PASSWORD_FILE`).
pub fn registry() -> Option<Registry> {
    let (Some(host), Some(user), Some(password_file)) = (
        var("TRNKIT_TEST_REGISTRY"),
        var("TRNKIT_TEST_REGISTRY_USER"),
        var("TRNKIT_TEST_REGISTRY_PASSWORD_FILE"),
    ) else {
        missing("the docker registry", "TRNKIT_TEST_REGISTRY* are not set")?;
        return None;
    };
    let password = match std::fs::read(Path::new(&password_file)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(error) => {
            missing(
                "the docker registry",
                &format!("cannot read TRNKIT_TEST_REGISTRY_PASSWORD_FILE {password_file}: {error}"),
            )?;
            return None;
        }
    };
    Some(Registry {
        host,
        user,
        password,
    })
}

/// The Docker engine's socket path, when it exists (`DOCKER_HOST` or `/var/run/docker.sock`).
pub fn docker() -> Option<String> {
    let socket = var("DOCKER_HOST").unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    let path = socket.strip_prefix("unix://").unwrap_or(&socket).to_owned();
    if socket.starts_with("tcp://") || Path::new(&path).exists() {
        Some(socket)
    } else {
        missing("the Docker engine", &format!("no socket at {path}"))?;
        None
    }
}

/// Debian's nginx (`scripts/test` installs `nginx-light` when it is missing): its path, found on
/// `PATH` or in `/usr/sbin` (where Debian puts it, often off a non-root `PATH`).
pub fn nginx() -> Option<std::path::PathBuf> {
    let directories = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = directories
        .into_iter()
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|directory| directory.join("nginx"))
        .find(|path| path.is_file());
    if found.is_none() {
        missing(
            "nginx",
            "not on PATH or in /usr/sbin (apt-get install nginx-light)",
        )?;
    }
    found
}

/// The oldest Kubernetes version trnkit supports (the schemas `kubernetes-validate` checks against).
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// Runs `kubernetes-validate --strict --kubernetes-version 1.33.0 FILES...` (PyPI; `scripts/test`
/// installs it) in `dir`, or returns `None` after reporting the tool missing (a panic under
/// `CI=true`).
pub async fn kubernetes_validate_strict(
    dir: &Path,
    files: &[std::path::PathBuf],
) -> Option<std::process::Output> {
    let Some(tool) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join("kubernetes-validate"))
            .find(|path| path.is_file())
    }) else {
        missing(
            "kubernetes-validate",
            "not on PATH (pip install kubernetes-validate)",
        )?;
        return None;
    };
    let output = tokio::process::Command::new(tool)
        .current_dir(dir)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .await
        .expect("kubernetes-validate runs");
    Some(output)
}
