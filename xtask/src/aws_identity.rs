//! Who deploy acts as in AWS: STS `GetCallerIdentity`, checked against the configuration.
//!
//! The account names the ECR registry when `cluster.account_id` is empty; when it is set, the
//! credentials must belong to it, so that nothing is created in another account by mistake.

use anyhow::Context;

/// The caller's account and ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The 12-digit account id.
    pub account: String,
    /// The caller's ARN (a user, a role session, ...).
    pub arn: String,
}

/// Asks STS who the credentials of `sdk` are. A network failure (nothing answers, a
/// timeout) is reported as one, naming the endpoint; only a refusal by STS, or no credentials
/// found, is reported as a credentials problem.
pub async fn fetch(sdk: &aws_config::SdkConfig) -> anyhow::Result<Identity> {
    use aws_sdk_sts::error::SdkError;
    let sts = crate::aws::sts_client(sdk);
    let output = sts.get_caller_identity().send().await.map_err(|error| {
        let network = match &error {
            SdkError::TimeoutError(_) => true,
            SdkError::DispatchFailure(failure) => failure.is_io() || failure.is_timeout(),
            _ => false,
        };
        let detail = anyhow::anyhow!(aws_sdk_sts::error::DisplayErrorContext(error));
        if network {
            let endpoint = sdk.endpoint_url().map_or_else(
                || {
                    format!(
                        "https://sts.{}.amazonaws.com",
                        sdk.region().map_or("<region>", |region| region.as_ref())
                    )
                },
                str::to_owned,
            );
            detail.context(format!(
                "AWS STS at {endpoint} could not be reached (a network problem, not a credentials one): check the network, a proxy (HTTPS_PROXY), or AWS_ENDPOINT_URL, then run deploy again"
            ))
        } else {
            detail.context(
                "no usable AWS credentials: run `aws sso login` (or `aws configure`), or set AWS_PROFILE, then run deploy again",
            )
        }
    })?;
    Ok(Identity {
        account: output
            .account
            .context("STS answered without an account id")?,
        arn: output.arn.unwrap_or_default(),
    })
}

/// Fills `cluster.account_id` from `identity`, or refuses when the configuration names another
/// account.
pub fn reconcile(
    config: &crate::config::Config,
    identity: &Identity,
) -> anyhow::Result<crate::config::Config> {
    let configured = &config.cluster.account_id;
    if !configured.is_empty() && *configured != identity.account {
        anyhow::bail!(
            "the AWS credentials are for account {} ({}), but cluster.account_id is {configured}: switch credentials (AWS_PROFILE) or fix cluster.account_id",
            identity.account,
            identity.arn
        );
    }
    let mut config = config.clone();
    config.cluster.account_id.clone_from(&identity.account);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::{Identity, fetch, reconcile};
    use crate::config::Config;

    fn identity() -> Identity {
        Identity {
            account: "123456789012".to_owned(),
            arn: "arn:aws:iam::123456789012:user/trainer".to_owned(),
        }
    }

    #[test]
    fn an_empty_account_is_filled_and_another_account_is_refused() {
        let config = Config::default();
        assert_eq!(
            reconcile(&config, &identity()).unwrap().cluster.account_id,
            "123456789012"
        );
        let mut other = Config::default();
        other.cluster.account_id = "210987654321".to_owned();
        let error = format!("{:#}", reconcile(&other, &identity()).unwrap_err());
        assert!(
            error.contains("123456789012")
                && error.contains("210987654321")
                && error.contains("AWS_PROFILE"),
            "{error}"
        );
        other.cluster.account_id = "123456789012".to_owned();
        assert!(reconcile(&other, &identity()).is_ok());
    }

    async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
        test_support::aws::sdk_config(endpoint, "us-west-2").await
    }

    #[tokio::test]
    async fn sts_names_the_account_of_the_credentials() {
        let Some(url) = test_support::services::moto_url() else {
            return;
        };
        let identity = fetch(&sdk(&url).await).await.unwrap();
        assert_eq!(identity.account.len(), 12, "{identity:?}");
        assert!(identity.arn.starts_with("arn:aws:"), "{identity:?}");
    }

    #[tokio::test]
    async fn unreachable_sts_is_a_network_error_naming_the_endpoint_not_a_credentials_one() {
        // A closed loopback port: nothing listens there.
        let error = fetch(&sdk("http://127.0.0.1:9").await).await.unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("http://127.0.0.1:9") && text.contains("network"),
            "{text}"
        );
        assert!(!text.contains("aws sso login"), "{text}");
    }
}
