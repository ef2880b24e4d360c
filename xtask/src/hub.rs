//! HuggingFace Hub access, checked by preflight before deploy pushes an image or creates a
//! file system.
//!
//! The blueprint's tokenizer, `meta-llama/Llama-2-7b-hf`, is gated: without a token of an
//! account that accepted Meta's licence the staging Job fails, an hour into a deploy that has
//! already built and pushed images and created an FSx file system. [`check`] fails at once when
//! a repository known to be gated is configured without `HF_TOKEN`, and, where the Hub answers
//! within the bounds ([`CONNECT_TIMEOUT`], [`TOTAL_TIMEOUT`]), asks it whether the token (or no
//! token) can read the tokenizer's `tokenizer.json` and the dataset's file listing, the first
//! things the staging Job downloads. A Hub that does not answer from here is a warning: the
//! cluster may reach it when this machine cannot.
//!
//! The endpoint is the caller's (`HF_ENDPOINT`, as `huggingface_hub` reads it, at the edge);
//! the token never appears in a message.

use std::time::Duration;

use crate::config::Config;

/// The Hub, unless `HF_ENDPOINT` names a mirror.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How long connecting to the Hub may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the whole check of one repository may take.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);

/// Owners whose repositories are gated: a licence must be accepted on the Hub, and every
/// download needs a token of an account that did.
const GATED_OWNERS: &[&str] = &["meta-llama"];

/// What the check found for one repository, when deploy may go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// The Hub says the repository can be read (with the token, if there is one).
    Readable {
        /// The configuration key, such as `data.tokenizer`.
        key: &'static str,
        /// The repository.
        repo: String,
    },
    /// The Hub did not answer from here; the staging Job will find out.
    Unverified {
        /// The configuration key.
        key: &'static str,
        /// The repository.
        repo: String,
        /// Why it could not be checked.
        reason: String,
    },
}

impl Access {
    /// One line for preflight's summary.
    pub fn summary(&self) -> String {
        match self {
            Self::Readable { key, repo } => format!("the Hub serves {key} {repo}"),
            Self::Unverified { key, repo, reason } => {
                format!(
                    "Hub access to {key} {repo} not verified ({reason}); the staging Job will tell"
                )
            }
        }
    }
}

/// What the check found for the configured tokenizer and dataset (none when both are
/// directories).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One entry per Hub repository.
    pub accesses: Vec<Access>,
}

impl Report {
    /// One line for preflight's summary.
    pub fn summary(&self) -> String {
        if self.accesses.is_empty() {
            return "tokenizer and dataset from directories, no Hub access needed".to_owned();
        }
        self.accesses
            .iter()
            .map(Access::summary)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The repositories the Hub could not be asked about, one line each.
    pub fn warnings(&self) -> Vec<String> {
        self.accesses
            .iter()
            .filter(|access| matches!(access, Access::Unverified { .. }))
            .map(Access::summary)
            .collect()
    }
}

/// Whether `value` names a Hub repository (`owner/name`) rather than a directory.
pub fn is_hub_repository(value: &str) -> bool {
    let mut parts = value.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let part = |text: &str| {
        !text.is_empty()
            && !text.starts_with(['.', '-'])
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    part(owner) && part(name)
}

/// Whether `repo` is known to be gated without asking the Hub.
pub fn known_gated(repo: &str) -> bool {
    repo.split_once('/')
        .is_some_and(|(owner, _)| GATED_OWNERS.contains(&owner))
}

/// Checks that the configured tokenizer and dataset can be downloaded: `Err` says what to do
/// for each repository that cannot.
pub async fn check(config: &Config, endpoint: &str, token: Option<&str>) -> anyhow::Result<Report> {
    check_bounded(config, endpoint, token, CONNECT_TIMEOUT, TOTAL_TIMEOUT).await
}

/// One repository to ask about.
struct Probe {
    key: &'static str,
    repo: String,
    /// Its page, where a licence is accepted.
    page: String,
    /// What is asked for.
    url: String,
    /// What a 404 means, and what to check.
    missing: String,
}

async fn check_bounded(
    config: &Config,
    endpoint: &str,
    token: Option<&str>,
    connect: Duration,
    total: Duration,
) -> anyhow::Result<Report> {
    let endpoint = endpoint.trim_end_matches('/');
    let data = &config.data;
    let mut probes = Vec::new();
    if is_hub_repository(&data.tokenizer) {
        let (repo, revision) = (&data.tokenizer, &data.tokenizer_revision);
        probes.push(Probe {
            key: "data.tokenizer",
            repo: repo.clone(),
            page: format!("{endpoint}/{repo}"),
            url: format!("{endpoint}/{repo}/resolve/{revision}/tokenizer.json"),
            missing: format!("has no tokenizer.json at revision {revision} on {endpoint} (404): check data.tokenizer and data.tokenizer_revision (trnkit needs a fast tokenizer)"),
        });
    }
    if is_hub_repository(&data.dataset) {
        let (repo, revision) = (&data.dataset, &data.dataset_revision);
        probes.push(Probe {
            key: "data.dataset",
            repo: repo.clone(),
            page: format!("{endpoint}/datasets/{repo}"),
            url: format!("{endpoint}/api/datasets/{repo}/tree/{revision}"),
            missing: format!("is not a dataset with a revision {revision} on {endpoint} (404): check data.dataset and data.dataset_revision"),
        });
    }
    let mut report = Report::default();
    let mut problems = Vec::new();
    for probe in probes {
        match ask(probe, token, connect, total).await {
            Ok(access) => report.accesses.push(access),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        anyhow::bail!("{}", problems.join("\n    "))
    }
}

async fn ask(
    probe: Probe,
    token: Option<&str>,
    connect: Duration,
    total: Duration,
) -> Result<Access, String> {
    let Probe {
        key,
        repo,
        page,
        url,
        missing,
    } = probe;
    if token.is_none() && known_gated(&repo) {
        return Err(format!(
            "{key} {repo} is gated: set HF_TOKEN to a token (https://huggingface.co/settings/tokens) of an account that accepted its licence at {page}, or set {key} to a directory or an ungated repository"
        ));
    }
    let has_token = token.is_some();
    let token = token.map(str::to_owned);
    let request = tokio::task::spawn_blocking(move || head(&url, token.as_deref(), connect, total));
    let status = match tokio::time::timeout(total + Duration::from_secs(1), request).await {
        Ok(Ok(Ok(status))) => status,
        Ok(Ok(Err(reason))) => return Ok(Access::Unverified { key, repo, reason }),
        Ok(Err(join)) => return Err(format!("the Hub check of {key} {repo} stopped: {join}")),
        Err(_) => {
            return Ok(Access::Unverified {
                key,
                repo,
                reason: format!("no answer within {}s", total.as_secs()),
            });
        }
    };
    match status {
        200..=399 => Ok(Access::Readable { key, repo }),
        401 if !has_token => Err(format!(
            "{key} {repo} needs a token (the Hub answered 401, which it also answers for a repository that does not exist): check {key}, and set HF_TOKEN to a token of an account that may read it ({page})"
        )),
        401 => Err(format!(
            "the Hub refused HF_TOKEN for {key} {repo} (401): the token is invalid or expired; make a new one at https://huggingface.co/settings/tokens"
        )),
        403 => Err(format!(
            "the account of HF_TOKEN may not read {key} {repo} (403): accept its licence at {page} (gated repositories grant access after a review), then deploy again"
        )),
        404 => Err(format!("{key} {repo} {missing}")),
        other => Ok(Access::Unverified {
            key,
            repo,
            reason: format!("the Hub answered HTTP {other}"),
        }),
    }
}

/// `HEAD` of `url` (redirects to the CDN not followed: a redirect means the file is served),
/// bounded; the status, or why there is no answer.
fn head(url: &str, token: Option<&str>, connect: Duration, total: Duration) -> Result<u16, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(connect))
            .timeout_global(Some(total))
            .build(),
    );
    let mut request = agent.head(url).header("User-Agent", "trnkit");
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    match request.call() {
        Ok(response) => Ok(response.status().as_u16()),
        Err(error) => Err(format!("cannot reach the Hub: {error}")),
    }
}

#[cfg(test)]
mod tests;
