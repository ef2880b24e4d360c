//! Integration tests against real services: the Docker engine, a registry with htpasswd auth,
//! and moto standing in for the ECR API. `scripts/test` starts them; `test_support::services`
//! finds them (and fails under `CI=true` when one is missing).
//!
//! Builds use `FROM scratch` contexts: no base image can be pulled here.
//!
//! About credentials: moto's `GetAuthorizationToken` returns a fake token
//! (`AWS:<account>-auth-token`) for a registry host that does not exist, and moto has no registry
//! endpoint. The end-to-end test therefore decodes moto's token (proving the ECR path), then
//! explicitly substitutes the local registry's htpasswd user and password for the token's and
//! pushes there: the same substitution `cargo xtask image push --registry HOST:PORT
//! --registry-user USER --registry-password-file FILE` makes.

#![allow(clippy::print_stderr)] // The error-case tests show the messages users would see.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ecr_image::{
    BuildContext, BuildOptions, Error, Event, ImageReference, PublishRequest, RegistryCredentials,
    RepositorySpec, RetryPolicy, SecretString, TagMutability,
};

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

async fn ecr_client(moto: &str) -> aws_sdk_ecr::Client {
    let config = test_support::aws::sdk_config(moto, "us-east-1").await;
    aws_sdk_ecr::Client::new(&config)
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

/// A `FROM scratch` context whose content is unique to this run.
fn scratch_context(extra_dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        &format!("FROM scratch\nCOPY hello.txt /hello.txt\n{extra_dockerfile}"),
    );
    write(dir.path(), "hello.txt", &unique("hello from trnkit"));
    write(dir.path(), "ignored/big.bin", "not sent");
    write(dir.path(), ".dockerignore", "ignored\n");
    dir
}

/// Records progress events.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl ecr_image::Progress for Recorder {
    fn event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        initial_delay: std::time::Duration::from_millis(100),
        max_delay: std::time::Duration::from_millis(100),
    }
}

/// The manifest digest the registry serves for `repository:tag`, read over its HTTP API.
fn registry_manifest_digest(
    registry: &test_support::services::Registry,
    repository: &str,
    tag: &str,
) -> String {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", registry.user, registry.password));
    let url = format!("http://{}/v2/{repository}/manifests/{tag}", registry.host);
    let response = ureq::get(&url)
        .header("Authorization", &format!("Basic {basic}"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .call()
        .unwrap_or_else(|error| panic!("GET {url}: {error}"));
    response
        .headers()
        .get("Docker-Content-Digest")
        .expect("the registry names the manifest digest")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_engine_answers_at_its_own_api_version() {
    let Some(socket) = test_support::services::docker() else {
        return;
    };
    let docker = ecr_image::connect(&socket).await.unwrap();
    let version = docker.version().await.unwrap();
    assert!(version.api_version.is_some(), "{version:?}");
}

#[tokio::test]
async fn an_unreachable_engine_is_a_clear_error() {
    let endpoint = "unix:///nonexistent/trnkit/docker.sock";
    let error = ecr_image::connect(endpoint).await.unwrap_err();
    assert!(
        matches!(&error, Error::DockerUnreachable { endpoint: e, .. } if e == endpoint),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(endpoint) && message.contains("start dockerd"),
        "{message}"
    );
    eprintln!("unreachable engine: {message}");

    // A socket path that exists but where nothing listens.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let error = ecr_image::connect(&format!("unix://{}", path.display()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::DockerUnreachable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn ecr_repository_is_created_once_with_the_wanted_settings() {
    let Some(moto) = test_support::services::moto_url() else {
        return;
    };
    let ecr = ecr_client(&moto).await;
    let name = unique("trnkit-it/settings");
    let mut spec = RepositorySpec::new(&name);
    spec.tag_mutability = TagMutability::Immutable;
    spec.tags.insert("project".into(), "trnkit".into());

    let created = ecr_image::ensure_repository(&ecr, &spec).await.unwrap();
    assert!(created.created);
    assert_eq!(created.uri, format!("{}/{name}", created.registry));
    assert!(
        created
            .registry
            .ends_with(".dkr.ecr.us-east-1.amazonaws.com"),
        "{}",
        created.registry
    );

    let again = ecr_image::ensure_repository(&ecr, &spec).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.uri, created.uri);

    let described = ecr
        .describe_repositories()
        .repository_names(&name)
        .send()
        .await
        .unwrap();
    let repository = &described.repositories()[0];
    assert_eq!(
        repository.image_tag_mutability().map(|m| m.as_str()),
        Some("IMMUTABLE")
    );
    assert_eq!(
        repository
            .image_scanning_configuration()
            .map(|c| c.scan_on_push()),
        Some(true)
    );
    let tags = ecr
        .list_tags_for_resource()
        .resource_arn(repository.repository_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|tag| tag.key() == "project" && tag.value() == "trnkit"),
        "{tags:?}"
    );

    // An existing repository is brought to the wanted settings.
    spec.tag_mutability = TagMutability::Mutable;
    ecr_image::ensure_repository(&ecr, &spec).await.unwrap();
    let described = ecr
        .describe_repositories()
        .repository_names(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.repositories()[0]
            .image_tag_mutability()
            .map(|m| m.as_str()),
        Some("MUTABLE")
    );
}

#[tokio::test]
async fn build_push_check_the_digest_then_skip_on_the_second_run() {
    let (Some(socket), Some(registry), Some(moto)) = (
        test_support::services::docker(),
        test_support::services::registry(),
        test_support::services::moto_url(),
    ) else {
        return;
    };
    let docker = ecr_image::connect(&socket).await.unwrap();
    let ecr = ecr_client(&moto).await;

    // ECR: the repository, and credentials from an authorization token.
    let repository =
        ecr_image::ensure_repository(&ecr, &RepositorySpec::new(unique("trnkit-it/e2e")))
            .await
            .unwrap();
    assert!(repository.created);
    let from_ecr = ecr_image::registry_credentials(&ecr).await.unwrap();
    assert_eq!(from_ecr.username(), "AWS");
    assert_eq!(from_ecr.server(), repository.registry);

    // moto's token is fake and moto has no registry: present the local registry's htpasswd user
    // and password instead of the token's (see the module documentation).
    let credentials = RegistryCredentials::new(
        registry.host.clone(),
        registry.user.clone(),
        SecretString::from(registry.password.clone()),
    );
    assert!(!format!("{credentials:?}").contains(&registry.password));

    let dir = scratch_context("LABEL org.opencontainers.image.title=trnkit-it\n");
    let request = PublishRequest {
        context: BuildContext::from_directory(dir.path(), None).unwrap(),
        options: BuildOptions::default(),
        registry: registry.host.clone(),
        repository: repository.name.clone(),
        credentials,
        extra_tags: vec!["latest".to_owned()],
        retry: quick_retries(),
        force: false,
    };

    let progress = Recorder::default();
    let first = ecr_image::build_and_push(&docker, &request, &progress)
        .await
        .unwrap();
    let events = progress.take();
    assert!(first.pushed);
    assert!(
        first.reference.tag().starts_with("sha256-"),
        "{}",
        first.reference
    );
    assert!(
        first.digest.starts_with("sha256:") && first.digest.len() == 71,
        "{}",
        first.digest
    );
    assert!(events.iter().any(|e| matches!(e, Event::BuildStep { index: 2, total: 3, instruction } if instruction.starts_with("COPY"))), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Pushed { digest, .. } if *digest == first.digest)),
        "{events:?}"
    );
    assert_eq!(first.extra_tags.len(), 1);
    assert!(first.extra_tags[0].moved);
    assert_eq!(first.extra_tags[0].digest, first.digest);

    // The registry serves that manifest digest under both tags.
    assert_eq!(
        registry_manifest_digest(&registry, &repository.name, first.reference.tag()),
        first.digest
    );
    assert_eq!(
        registry_manifest_digest(&registry, &repository.name, "latest"),
        first.digest
    );
    assert_eq!(
        ecr_image::remote_digest(&docker, &first.reference, &request.credentials)
            .await
            .unwrap()
            .as_deref(),
        Some(first.digest.as_str())
    );

    // Second identical run: no build, no push, same answer.
    let second = ecr_image::build_and_push(&docker, &request, &progress)
        .await
        .unwrap();
    let events = progress.take();
    assert!(!second.pushed);
    assert_eq!(second.reference, first.reference);
    assert_eq!(second.digest, first.digest);
    assert!(!second.extra_tags[0].moved);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::AlreadyInRegistry { .. })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::BuildStarted { .. } | Event::PushStarted { .. })),
        "{events:?}"
    );

    // A changed file changes the tag and publishes a new image; `latest` moves to it.
    write(dir.path(), "hello.txt", &unique("changed"));
    let changed = PublishRequest {
        context: BuildContext::from_directory(dir.path(), None).unwrap(),
        ..request.clone()
    };
    let third = ecr_image::build_and_push(&docker, &changed, &progress)
        .await
        .unwrap();
    assert!(third.pushed);
    assert_ne!(third.reference, first.reference);
    assert!(third.extra_tags[0].moved);
    assert_eq!(
        registry_manifest_digest(&registry, &repository.name, "latest"),
        third.digest
    );
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_refused_credentials() {
    let (Some(socket), Some(registry)) = (
        test_support::services::docker(),
        test_support::services::registry(),
    ) else {
        return;
    };
    let docker = ecr_image::connect(&socket).await.unwrap();
    let wrong = RegistryCredentials::new(
        registry.host.clone(),
        registry.user.clone(),
        SecretString::from("xyzzy-not-the-password"),
    );
    let dir = scratch_context("");
    let request = PublishRequest {
        context: BuildContext::from_directory(dir.path(), None).unwrap(),
        options: BuildOptions::default(),
        registry: registry.host.clone(),
        repository: unique("trnkit-it/wrong-password"),
        credentials: wrong.clone(),
        extra_tags: Vec::new(),
        retry: quick_retries(),
        force: false,
    };
    let error = ecr_image::build_and_push(&docker, &request, &ecr_image::NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::RegistryUnauthorized { registry: r, .. } if *r == registry.host),
        "{error:?}"
    );
    assert!(!format!("{error:?} {error}").contains("xyzzy"), "{error:?}");
    eprintln!("wrong password: {error}");

    // Pushing an image that is already built fails the same way.
    let local = ecr_image::build_local(
        &docker,
        &request.context,
        &request.options,
        "trnkit-it/local",
        false,
        &ecr_image::NoProgress,
    )
    .await
    .unwrap();
    let reference = ImageReference::new(&registry.host, &request.repository, "v1").unwrap();
    let target = format!("{}:{}", reference.name(), reference.tag());
    docker
        .tag_image(
            &local.reference,
            Some(
                bollard::query_parameters::TagImageOptionsBuilder::default()
                    .repo(&reference.name())
                    .tag("v1")
                    .build(),
            ),
        )
        .await
        .unwrap();
    let error = ecr_image::push(
        &docker,
        &reference,
        &wrong,
        &quick_retries(),
        &ecr_image::NoProgress,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, Error::RegistryUnauthorized { .. }),
        "{target}: {error:?}"
    );
    assert!(
        error.to_string().contains("check the user and password"),
        "{error}"
    );
}

/// Builds the scratch context with `extra_dockerfile`, which must fail; returns the error.
async fn failed_build(docker: &bollard::Docker, extra_dockerfile: &str) -> Error {
    let dir = scratch_context(extra_dockerfile);
    let context = BuildContext::from_directory(dir.path(), None).unwrap();
    ecr_image::build_local(
        docker,
        &context,
        &BuildOptions::default(),
        "trnkit-it/failing",
        false,
        &ecr_image::NoProgress,
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_failing_instruction_names_the_step_and_shows_the_output() {
    let Some(socket) = test_support::services::docker() else {
        return;
    };
    let docker = ecr_image::connect(&socket).await.unwrap();

    // RUN in a scratch image: there is no shell to run it.
    let error = failed_build(&docker, "RUN echo this cannot run\n").await;
    let Error::BuildFailed {
        step,
        message,
        tail,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        step.as_deref(),
        Some("Step 3/3 : RUN echo this cannot run"),
        "{error}"
    );
    assert!(!message.is_empty() && !tail.is_empty(), "{error}");
    assert!(
        error
            .to_string()
            .contains("failed at `Step 3/3 : RUN echo this cannot run`"),
        "{error}"
    );
    eprintln!("failing RUN: {error}");

    // COPY of a file that is not in the context (here: excluded by .dockerignore).
    let error = failed_build(&docker, "COPY ignored/big.bin /big.bin\n").await;
    let Error::BuildFailed { step, message, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        step.as_deref(),
        Some("Step 3/3 : COPY ignored/big.bin /big.bin"),
        "{error}"
    );
    assert!(message.contains("big.bin"), "{error}");
    eprintln!("failing COPY: {error}");
}

#[tokio::test]
async fn a_missing_dockerfile_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hello.txt", "hi");
    let error = BuildContext::from_directory(dir.path(), None).unwrap_err();
    assert!(
        matches!(&error, Error::DockerfileNotFound { path } if path == &dir.path().join("Dockerfile")),
        "{error:?}"
    );
    let error =
        BuildContext::from_directory(dir.path(), Some(&dir.path().join("build/Containerfile")))
            .unwrap_err();
    assert!(error.to_string().contains("build/Containerfile"), "{error}");
    eprintln!("missing Dockerfile: {error}");
}

#[tokio::test]
async fn local_builds_are_skipped_when_the_content_tag_exists() {
    let Some(socket) = test_support::services::docker() else {
        return;
    };
    let docker = ecr_image::connect(&socket).await.unwrap();
    let dir = scratch_context("");
    let context = BuildContext::from_directory(dir.path(), None).unwrap();
    let options = BuildOptions::default();
    let first = ecr_image::build_local(
        &docker,
        &context,
        &options,
        "trnkit-it/local",
        false,
        &ecr_image::NoProgress,
    )
    .await
    .unwrap();
    assert!(first.built);
    let second = ecr_image::build_local(
        &docker,
        &context,
        &options,
        "trnkit-it/local",
        false,
        &ecr_image::NoProgress,
    )
    .await
    .unwrap();
    assert!(!second.built);
    assert_eq!(second.image_id, first.image_id);
    assert_eq!(second.reference, first.reference);
}
