//! Amazon ECR: make sure a repository exists with the wanted settings, and turn an
//! authorization token into registry credentials.
//!
//! Both functions take an `aws_sdk_ecr::Client` built by the caller, so region, credentials and
//! endpoint (`AWS_ENDPOINT_URL`, moto in tests) come from the caller's AWS configuration.
//! Credentials are held in a [`secrecy::SecretString`]: `Debug` shows `[REDACTED]`, nothing in
//! this crate logs or prints them, and [`RegistryCredentials`] has no `Display`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Tag};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::{Error, Result};
use crate::reference::validate_repository;

/// Whether tags of a repository can be overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagMutability {
    /// Tags can move (needed to move a human tag such as `latest`).
    #[default]
    Mutable,
    /// A pushed tag can never point at another image.
    Immutable,
}

impl TagMutability {
    fn to_ecr(self) -> ImageTagMutability {
        match self {
            Self::Mutable => ImageTagMutability::Mutable,
            Self::Immutable => ImageTagMutability::Immutable,
        }
    }
}

/// The repository trnkit wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySpec {
    /// The repository name (`neuronx_nemo`, `trnkit/training`).
    pub name: String,
    /// Ask ECR to scan each pushed image for vulnerabilities.
    pub scan_on_push: bool,
    /// Whether tags can be overwritten.
    pub tag_mutability: TagMutability,
    /// Resource tags applied to the repository (on creation, and added to an existing one).
    pub tags: BTreeMap<String, String>,
}

impl RepositorySpec {
    /// A repository with scan-on-push on, mutable tags and no resource tags.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scan_on_push: true,
            tag_mutability: TagMutability::Mutable,
            tags: BTreeMap::new(),
        }
    }
}

/// An ECR repository as it exists after [`ensure_repository`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// The repository name.
    pub name: String,
    /// `<account>.dkr.ecr.<region>.amazonaws.com/<name>`.
    pub uri: String,
    /// The registry (account) id.
    pub registry_id: String,
    /// The registry host: the URI without the repository path.
    pub registry: String,
    /// Whether this call created the repository.
    pub created: bool,
}

/// Describes the repository and creates it if missing; an existing repository gets the wanted
/// scan-on-push and tag-mutability settings and the resource tags.
#[tracing::instrument(skip_all, fields(repository = %spec.name))]
pub async fn ensure_repository(
    ecr: &aws_sdk_ecr::Client,
    spec: &RepositorySpec,
) -> Result<Repository> {
    validate_repository(&spec.name)?;
    let described = ecr
        .describe_repositories()
        .repository_names(&spec.name)
        .send()
        .await;
    let existing = match described {
        Ok(output) => output.repositories().first().cloned(),
        Err(error) => {
            let error = aws_sdk_ecr::Error::from(error);
            if matches!(error, aws_sdk_ecr::Error::RepositoryNotFoundException(_)) {
                None
            } else {
                return Err(Error::DescribeRepository {
                    name: spec.name.clone(),
                    source: Box::new(error),
                });
            }
        }
    };

    let (repository, created) = match existing {
        Some(repository) => {
            update_settings(ecr, spec, &repository).await?;
            (repository, false)
        }
        None => match create(ecr, spec).await {
            Ok(repository) => (repository, true),
            // Someone created it between our describe and create: use theirs.
            Err(Error::CreateRepository { source, .. })
                if matches!(
                    *source,
                    aws_sdk_ecr::Error::RepositoryAlreadyExistsException(_)
                ) =>
            {
                let output = ecr
                    .describe_repositories()
                    .repository_names(&spec.name)
                    .send()
                    .await
                    .map_err(|error| Error::DescribeRepository {
                        name: spec.name.clone(),
                        source: Box::new(error.into()),
                    })?;
                let repository =
                    output
                        .repositories()
                        .first()
                        .cloned()
                        .ok_or(Error::EcrResponse {
                            operation: "DescribeRepositories",
                            field: "repositories",
                        })?;
                update_settings(ecr, spec, &repository).await?;
                (repository, false)
            }
            Err(error) => return Err(error),
        },
    };

    let uri = repository
        .repository_uri()
        .ok_or(Error::EcrResponse {
            operation: "DescribeRepositories",
            field: "repositoryUri",
        })?
        .to_owned();
    let registry_id = repository
        .registry_id()
        .ok_or(Error::EcrResponse {
            operation: "DescribeRepositories",
            field: "registryId",
        })?
        .to_owned();
    let registry =
        uri.split_once('/')
            .map(|(host, _)| host.to_owned())
            .ok_or(Error::EcrResponse {
                operation: "DescribeRepositories",
                field: "repositoryUri",
            })?;
    if created {
        tracing::info!(%uri, "created the ECR repository");
    } else {
        tracing::debug!(%uri, "the ECR repository exists");
    }
    Ok(Repository {
        name: spec.name.clone(),
        uri,
        registry_id,
        registry,
        created,
    })
}

fn ecr_tags(spec: &RepositorySpec) -> Result<Vec<Tag>> {
    spec.tags
        .iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|_| Error::EcrResponse {
                    operation: "TagResource",
                    field: "tag key or value",
                })
        })
        .collect()
}

async fn create(
    ecr: &aws_sdk_ecr::Client,
    spec: &RepositorySpec,
) -> Result<aws_sdk_ecr::types::Repository> {
    let output = ecr
        .create_repository()
        .repository_name(&spec.name)
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(spec.scan_on_push)
                .build(),
        )
        .image_tag_mutability(spec.tag_mutability.to_ecr())
        .set_tags(if spec.tags.is_empty() {
            None
        } else {
            Some(ecr_tags(spec)?)
        })
        .send()
        .await
        .map_err(|error| Error::CreateRepository {
            name: spec.name.clone(),
            source: Box::new(error.into()),
        })?;
    output.repository().cloned().ok_or(Error::EcrResponse {
        operation: "CreateRepository",
        field: "repository",
    })
}

async fn update_settings(
    ecr: &aws_sdk_ecr::Client,
    spec: &RepositorySpec,
    repository: &aws_sdk_ecr::types::Repository,
) -> Result<()> {
    let configure_error = |setting: &'static str| {
        move |error: aws_sdk_ecr::Error| Error::ConfigureRepository {
            name: spec.name.clone(),
            setting,
            source: Box::new(error),
        }
    };
    let scanning = repository
        .image_scanning_configuration()
        .map(ImageScanningConfiguration::scan_on_push);
    if scanning != Some(spec.scan_on_push) {
        ecr.put_image_scanning_configuration()
            .repository_name(&spec.name)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(spec.scan_on_push)
                    .build(),
            )
            .send()
            .await
            .map_err(|error| configure_error("scan-on-push setting")(error.into()))?;
    }
    let wanted = spec.tag_mutability.to_ecr();
    if repository.image_tag_mutability() != Some(&wanted) {
        ecr.put_image_tag_mutability()
            .repository_name(&spec.name)
            .image_tag_mutability(wanted)
            .send()
            .await
            .map_err(|error| configure_error("tag mutability")(error.into()))?;
    }
    if !spec.tags.is_empty()
        && let Some(arn) = repository.repository_arn()
    {
        ecr.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(ecr_tags(spec)?))
            .send()
            .await
            .map_err(|error| configure_error("resource tags")(error.into()))?;
    }
    Ok(())
}

/// A user and password for one registry host.
///
/// `Debug` redacts the password and there is no `Display`: the password leaves this type only
/// inside the request to the Docker engine.
#[derive(Clone)]
pub struct RegistryCredentials {
    server: String,
    username: String,
    password: SecretString,
    expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl RegistryCredentials {
    /// Credentials for `server` (`host[:port]`).
    pub fn new(
        server: impl Into<String>,
        username: impl Into<String>,
        password: SecretString,
    ) -> Self {
        Self {
            server: server.into(),
            username: username.into(),
            password,
            expires_at: None,
        }
    }

    /// The same user and password presented to another registry host (a mirror, a test
    /// registry).
    #[must_use]
    pub fn for_server(mut self, server: impl Into<String>) -> Self {
        self.server = server.into();
        self
    }

    /// The registry host the credentials are for.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The user name (`AWS` for ECR tokens).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// When the token expires, if the issuer said so. ECR tokens last 12 hours.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The Docker Engine API's credential struct. Its `Debug` prints the password: never log it.
    pub(crate) fn docker(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.expose_secret().to_owned()),
            serveraddress: Some(self.server.clone()),
            ..Default::default()
        }
    }
}

/// Gets an ECR authorization token and decodes it into registry credentials for the registry
/// host ECR reports (`<account>.dkr.ecr.<region>.amazonaws.com`).
#[tracing::instrument(skip_all)]
pub async fn registry_credentials(ecr: &aws_sdk_ecr::Client) -> Result<RegistryCredentials> {
    let output = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|error| Error::AuthorizationToken {
            source: Box::new(error.into()),
        })?;
    let data = output
        .authorization_data()
        .first()
        .ok_or(Error::EcrResponse {
            operation: "GetAuthorizationToken",
            field: "authorizationData",
        })?;
    let token = data.authorization_token().ok_or(Error::EcrResponse {
        operation: "GetAuthorizationToken",
        field: "authorizationToken",
    })?;
    let endpoint = data.proxy_endpoint().ok_or(Error::EcrResponse {
        operation: "GetAuthorizationToken",
        field: "proxyEndpoint",
    })?;
    let mut credentials = decode_token(token, endpoint)?;
    credentials.expires_at = data
        .expires_at()
        .and_then(|at| SystemTime::try_from(*at).ok());
    tracing::debug!(server = %credentials.server, "got ECR registry credentials");
    Ok(credentials)
}

/// Decodes `base64(user:password)` and strips the scheme from the proxy endpoint.
pub(crate) fn decode_token(token: &str, proxy_endpoint: &str) -> Result<RegistryCredentials> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| Error::MalformedToken {
            reason: "it is not base64",
        })?;
    let decoded =
        SecretString::from(
            String::from_utf8(decoded).map_err(|_| Error::MalformedToken {
                reason: "it is not UTF-8",
            })?,
        );
    let (username, password) =
        decoded
            .expose_secret()
            .split_once(':')
            .ok_or(Error::MalformedToken {
                reason: "it has no ':' between user and password",
            })?;
    if username.is_empty() || password.is_empty() {
        return Err(Error::MalformedToken {
            reason: "the user or the password is empty",
        });
    }
    let server = proxy_endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    Ok(RegistryCredentials::new(
        server,
        username,
        SecretString::from(password),
    ))
}

#[cfg(test)]
mod tests;
