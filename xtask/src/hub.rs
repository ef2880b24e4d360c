//! HuggingFace Hub access, checked by preflight before deploy pushes an image or creates a
//! file system.
//!
//! The blueprint's tokenizer, `meta-llama/Llama-2-7b-hf`, is gated: without a token of an
//! account that accepted Meta's licence the staging Job fails, an hour into a deploy that has
//! already built and pushed images and created an FSx file system. [`check`] fails at once when
//! a repository known to be gated is configured without `HF_TOKEN`, and, where the Hub answers
//! within the bounds ([`CONNECT_TIMEOUT`], [`TOTAL_TIMEOUT`]), asks it whether the token (or no
//! token) can read the tokenizer's `tokenizer.json`. A Hub that does not answer from here is a
//! warning: the cluster may reach it when this machine cannot.
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

/// What the check found, when deploy may go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// The tokenizer is not a Hub repository (a directory), so there is nothing to check.
    NotOnHub,
    /// The Hub says the tokenizer can be read (with the token, if there is one).
    Readable {
        /// The repository.
        repo: String,
    },
    /// The Hub did not answer from here; the staging Job will find out.
    Unverified {
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
            Self::NotOnHub => "tokenizer from a directory, no Hub access needed".to_owned(),
            Self::Readable { repo } => format!("the Hub serves {repo} to this token"),
            Self::Unverified { repo, reason } => {
                format!("Hub access to {repo} not verified ({reason}); the staging Job will tell")
            }
        }
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

/// Checks that the configured tokenizer can be downloaded: `Err` says what to do.
pub async fn check(config: &Config, endpoint: &str, token: Option<&str>) -> anyhow::Result<Access> {
    check_bounded(config, endpoint, token, CONNECT_TIMEOUT, TOTAL_TIMEOUT).await
}

async fn check_bounded(
    config: &Config,
    endpoint: &str,
    token: Option<&str>,
    connect: Duration,
    total: Duration,
) -> anyhow::Result<Access> {
    let repo = config.data.tokenizer.clone();
    if !is_hub_repository(&repo) {
        return Ok(Access::NotOnHub);
    }
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let page = format!("{endpoint}/{repo}");
    if token.is_none() && known_gated(&repo) {
        anyhow::bail!(
            "data.tokenizer {repo} is gated: set HF_TOKEN to a token (https://huggingface.co/settings/tokens) of an account that accepted its licence at {page}, or set data.tokenizer to a directory or an ungated repository"
        );
    }
    let url = format!(
        "{endpoint}/{repo}/resolve/{}/tokenizer.json",
        config.data.tokenizer_revision
    );
    let has_token = token.is_some();
    let token = token.map(str::to_owned);
    let probe = tokio::task::spawn_blocking(move || probe(&url, token.as_deref(), connect, total));
    let status = match tokio::time::timeout(total + Duration::from_secs(1), probe).await {
        Ok(Ok(Ok(status))) => status,
        Ok(Ok(Err(reason))) => return Ok(Access::Unverified { repo, reason }),
        Ok(Err(join)) => anyhow::bail!("the Hub check of {repo} stopped: {join}"),
        Err(_) => {
            return Ok(Access::Unverified {
                repo,
                reason: format!("no answer within {}s", total.as_secs()),
            });
        }
    };
    match status {
        200..=399 => Ok(Access::Readable { repo }),
        401 if !has_token => anyhow::bail!(
            "data.tokenizer {repo} needs a token (the Hub answered 401): set HF_TOKEN to a token of an account that may read it ({page})"
        ),
        401 => anyhow::bail!(
            "the Hub refused HF_TOKEN for data.tokenizer {repo} (401): the token is invalid or expired; make a new one at https://huggingface.co/settings/tokens"
        ),
        403 => anyhow::bail!(
            "the account of HF_TOKEN may not read data.tokenizer {repo} (403): accept its licence at {page} (gated repositories grant access after a review), then deploy again"
        ),
        404 => anyhow::bail!(
            "data.tokenizer {repo} has no tokenizer.json at revision {} on {endpoint} (404): check data.tokenizer and data.tokenizer_revision (trnkit needs a fast tokenizer)",
            config.data.tokenizer_revision
        ),
        other => Ok(Access::Unverified {
            repo,
            reason: format!("the Hub answered HTTP {other}"),
        }),
    }
}

/// `HEAD` of `url` (redirects to the CDN not followed: a redirect means the file is served),
/// bounded; the status, or why there is no answer.
fn probe(
    url: &str,
    token: Option<&str>,
    connect: Duration,
    total: Duration,
) -> Result<u16, String> {
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
