//! Integration tests of `fsx` against moto's FSx API on loopback (`scripts/test` starts it and
//! sets `TRNKIT_TEST_MOTO_URL`).
//!
//! moto models create, describe, delete and tags, but not the lifecycle: it reports no
//! `Lifecycle` and no `LustreConfiguration.MountName` (`ecosystem.md` §3.3). These tests assert
//! that trnkit copes: the wait times out with lifecycle `unknown`, and the static volume refuses
//! to render without a mount name until the test supplies one. The lifecycle itself is covered
//! with scripted answers in the unit tests (`src/tests/io.rs`).

use std::time::Duration;

use fsx::io::{self, Adopt, DeleteOptions, WaitOptions};
use fsx::{Error, FileSystemSpec};

async fn client() -> Option<aws_sdk_fsx::Client> {
    let url = test_support::services::moto_url()?;
    let config = test_support::aws::sdk_config(&url, "us-west-2").await;
    Some(aws_sdk_fsx::Client::new(&config))
}

/// A name no other test (or earlier run against the same moto) uses.
fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn spec(name: &str) -> FileSystemSpec {
    FileSystemSpec::blueprint(name, "subnet-0a1b2c3d4e5f60718", &["sg-0123456789abcdef0"])
}

#[tokio::test]
async fn create_find_by_tag_render_and_delete() {
    let Some(client) = client().await else { return };
    let name = unique_name("it-lifecycle");
    let spec = spec(&name);

    let ensured = io::ensure(&client, &spec, &Adopt::Tag).await.unwrap();
    assert!(ensured.created, "nothing was tagged {name} yet");
    let created = ensured.file_system;
    assert!(created.file_system_id.starts_with("fs-"), "{created:?}");
    assert_eq!(created.tag("trnkit:name"), Some(name.as_str()));
    assert_eq!(created.tag("Name"), Some(name.as_str()));
    assert_eq!(created.storage_capacity_gib, Some(1200));
    assert_eq!(created.deployment_type.as_deref(), Some("PERSISTENT_1"));
    assert_eq!(created.per_unit_storage_throughput, Some(200));
    let dns_name = created.dns_name.clone().expect("moto reports a DNS name");
    assert!(dns_name.starts_with(&created.file_system_id), "{dns_name}");
    assert_eq!(
        created.lifecycle, None,
        "moto reports no lifecycle (if this fails, moto learned it: update the docs)"
    );

    // Found again by tag: a rerun adopts instead of creating a second file system.
    let found = io::find_by_name(&client, &name).await.unwrap();
    assert_eq!(
        found
            .iter()
            .map(|file_system| &file_system.file_system_id)
            .collect::<Vec<_>>(),
        [&created.file_system_id]
    );
    let again = io::ensure(&client, &spec, &Adopt::Tag).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.file_system.file_system_id, created.file_system_id);
    assert!(again.differences.is_empty(), "{:?}", again.differences);
    let by_id = io::ensure(&client, &spec, &Adopt::Id(created.file_system_id.clone()))
        .await
        .unwrap();
    assert_eq!(by_id.file_system, again.file_system);

    // Describe, then render the static volume for it.
    let described = io::describe(&client, &created.file_system_id)
        .await
        .unwrap()
        .expect("it exists");
    assert_eq!(described.file_system_id, created.file_system_id);
    let error = fsx::static_volume(&described, "fsx-claim", "default", 1200).unwrap_err();
    assert!(
        matches!(error, Error::MissingMountName { .. }),
        "moto has no MountName: {error:?}"
    );
    let mut mountable = described.clone();
    mountable.mount_name = Some("fsx".to_owned());
    let (volume, claim) = fsx::static_volume(&mountable, "fsx-claim", "default", 1200).unwrap();
    let csi = volume.spec.as_ref().unwrap().csi.as_ref().unwrap();
    assert_eq!(csi.volume_handle, created.file_system_id);
    assert_eq!(csi.volume_attributes.as_ref().unwrap()["dnsname"], dns_name);
    assert_eq!(claim.spec.unwrap().volume_name, volume.metadata.name);

    // Delete; then neither the id nor the tag finds it.
    io::delete(&client, &created.file_system_id, DeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        io::describe(&client, &created.file_system_id)
            .await
            .unwrap(),
        None
    );
    assert!(io::find_by_name(&client, &name).await.unwrap().is_empty());
}

#[tokio::test]
async fn two_tagged_file_systems_are_refused_by_name() {
    let Some(client) = client().await else { return };
    let name = unique_name("it-twice");
    let first = io::create(&client, &spec(&name)).await.unwrap();
    let mut other = spec(&name);
    other.storage_capacity_gib = 2400; // another request token, so a second file system
    let second = io::create(&client, &other).await.unwrap();
    assert_ne!(first.file_system_id, second.file_system_id);
    let error = io::ensure(&client, &spec(&name), &Adopt::Tag)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&first.file_system_id) && message.contains(&second.file_system_id),
        "{message}"
    );
    for file_system in [first, second] {
        io::delete(
            &client,
            &file_system.file_system_id,
            DeleteOptions {
                skip_final_backup: true,
            },
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn unknown_ids_and_moto_without_lifecycle() {
    let Some(client) = client().await else { return };
    assert_eq!(
        io::describe(&client, "fs-00000000000000000").await.unwrap(),
        None
    );
    let error = io::ensure(
        &client,
        &spec("unused"),
        &Adopt::Id("fs-00000000000000000".to_owned()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, Error::FileSystemNotFound { .. }),
        "{error:?}"
    );
    // moto answers a delete of an unknown id with HTTP 500, not FileSystemNotFound.
    let error = io::delete(&client, "fs-00000000000000000", DeleteOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::DeleteFileSystem { .. } | Error::FileSystemNotFound { .. }
        ),
        "{error:?}"
    );

    // Against moto a wait can only time out: it never reports a lifecycle.
    let created = io::create(&client, &spec(&unique_name("it-wait")))
        .await
        .unwrap();
    let options = WaitOptions {
        timeout: Duration::from_millis(300),
        initial_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(100),
    };
    let mut seen = Vec::new();
    let error = io::wait_until_available(&client, &created.file_system_id, options, |change| {
        seen.push(change.to.clone())
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&error, Error::WaitTimedOut { lifecycle, .. } if lifecycle == "unknown"),
        "{error:?}"
    );
    assert_eq!(seen, [None], "one report: the (unknown) first state");
    io::delete(&client, &created.file_system_id, DeleteOptions::default())
        .await
        .unwrap();
}
