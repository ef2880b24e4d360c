//! The IO functions against scripted FSx answers (`aws-smithy-mocks`): the lifecycle waits that
//! moto cannot model, adoption rules, and not-found handling. Waits run on tokio's paused clock,
//! so a 30-minute timeout takes no real time.

use std::time::Duration;

use aws_sdk_fsx::Client;
use aws_sdk_fsx::operation::describe_file_systems::{
    DescribeFileSystemsError, DescribeFileSystemsOutput,
};
use aws_sdk_fsx::types::{
    FileSystem as SdkFileSystem, FileSystemFailureDetails, FileSystemLifecycle, FileSystemType,
    LustreFileSystemConfiguration, Tag,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};

use crate::io::{self, Adopt, LifecycleChange, WaitOptions};
use crate::spec::FileSystemSpec;
use crate::{Error, Lifecycle};

const ID: &str = "fs-0199e5a63bd90f796";

fn described(lifecycle: FileSystemLifecycle) -> DescribeFileSystemsOutput {
    described_many(vec![sdk_file_system(ID, lifecycle, "trnkit")])
}

fn described_many(file_systems: Vec<SdkFileSystem>) -> DescribeFileSystemsOutput {
    DescribeFileSystemsOutput::builder()
        .set_file_systems(Some(file_systems))
        .build()
}

fn sdk_file_system(id: &str, lifecycle: FileSystemLifecycle, name: &str) -> SdkFileSystem {
    let mut builder = SdkFileSystem::builder()
        .file_system_id(id)
        .file_system_type(FileSystemType::Lustre)
        .lifecycle(lifecycle.clone())
        .storage_capacity(1200)
        .subnet_ids("subnet-0a1b2c3d4e5f60718")
        .dns_name(format!("{id}.fsx.us-west-2.amazonaws.com"))
        .tags(Tag::builder().key("trnkit:name").value(name).build());
    if lifecycle == FileSystemLifecycle::Available {
        builder = builder.lustre_configuration(
            LustreFileSystemConfiguration::builder()
                .mount_name("x3bkzbmv")
                .build(),
        );
    }
    if lifecycle == FileSystemLifecycle::Failed {
        builder = builder.failure_details(
            FileSystemFailureDetails::builder()
                .message("The security group does not allow port 988")
                .build(),
        );
    }
    builder.build()
}

fn fast() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(30 * 60),
        initial_interval: Duration::from_secs(5),
        max_interval: Duration::from_secs(30),
    }
}

fn recorder(
    changes: &mut Vec<(Option<Lifecycle>, Option<Lifecycle>)>,
) -> impl FnMut(&LifecycleChange) + '_ {
    move |change| changes.push((change.from.clone(), change.to.clone()))
}

#[tokio::test(start_paused = true)]
async fn wait_reports_creating_then_available() {
    let rule = mock!(Client::describe_file_systems)
        .match_requests(|request| request.file_system_ids() == [ID.to_owned()])
        .sequence()
        .output(|| described(FileSystemLifecycle::Creating))
        .times(3)
        .output(|| described(FileSystemLifecycle::Available))
        .build();
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&rule]);
    let mut changes = Vec::new();
    let start = tokio::time::Instant::now();
    let file_system = io::wait_until_available(&client, ID, fast(), recorder(&mut changes))
        .await
        .unwrap();
    assert_eq!(file_system.lifecycle, Some(Lifecycle::Available));
    assert_eq!(file_system.mount_name.as_deref(), Some("x3bkzbmv"));
    assert_eq!(rule.num_calls(), 4);
    assert_eq!(
        changes,
        [
            (None, Some(Lifecycle::Creating)),
            (Some(Lifecycle::Creating), Some(Lifecycle::Available))
        ],
        "each change is reported once"
    );
    // Back-off: 5 s, 10 s, 20 s between the four polls.
    assert_eq!(start.elapsed(), Duration::from_secs(35));
}

#[tokio::test(start_paused = true)]
async fn wait_fails_fast_on_failed_with_the_reason() {
    let rule = mock!(Client::describe_file_systems)
        .sequence()
        .output(|| described(FileSystemLifecycle::Creating))
        .output(|| described(FileSystemLifecycle::Failed))
        .build();
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&rule]);
    let mut changes = Vec::new();
    let error = io::wait_until_available(&client, ID, fast(), recorder(&mut changes))
        .await
        .unwrap_err();
    match &error {
        Error::FileSystemFailed {
            lifecycle, message, ..
        } => {
            assert_eq!(lifecycle, "FAILED");
            assert!(message.contains("port 988"), "{message}");
        }
        other => panic!("expected FileSystemFailed, got {other:?}"),
    }
    assert!(
        error.to_string().contains("cargo xtask fsx delete --yes"),
        "{error}"
    );
    assert_eq!(changes.last().unwrap().1, Some(Lifecycle::Failed));
}

#[tokio::test(start_paused = true)]
async fn wait_times_out_and_says_what_it_saw() {
    let rule = mock!(Client::describe_file_systems)
        .sequence()
        .output(|| described(FileSystemLifecycle::Creating))
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&rule]);
    let options = WaitOptions {
        timeout: Duration::from_secs(120),
        ..fast()
    };
    let start = tokio::time::Instant::now();
    let mut changes = Vec::new();
    let error = io::wait_until_available(&client, ID, options, recorder(&mut changes))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::WaitTimedOut { lifecycle, .. } if lifecycle == "CREATING"),
        "{error:?}"
    );
    assert!(error.to_string().contains("after 2m00s"), "{error}");
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(120),
        "the wait stops at the deadline, not after it"
    );
    // Polls at 0, 5, 15, 35, 65, 95 and 120 s.
    assert_eq!(rule.num_calls(), 7);
    assert_eq!(changes.len(), 1, "no change, no report");
}

#[tokio::test(start_paused = true)]
async fn wait_on_a_vanished_file_system_fails() {
    let rule = mock!(Client::describe_file_systems).then_error(|| {
        DescribeFileSystemsError::FileSystemNotFound(
            aws_sdk_fsx::types::error::FileSystemNotFound::builder()
                .message("gone")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&rule]);
    let error = io::wait_until_available(&client, ID, fast(), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::FileSystemNotFound { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn describe_maps_not_found_and_other_errors() {
    let not_found = mock!(Client::describe_file_systems).then_error(|| {
        DescribeFileSystemsError::FileSystemNotFound(
            aws_sdk_fsx::types::error::FileSystemNotFound::builder().build(),
        )
    });
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&not_found]);
    assert_eq!(io::describe(&client, ID).await.unwrap(), None);

    let bad_request = mock!(Client::describe_file_systems).then_error(|| {
        DescribeFileSystemsError::BadRequest(
            aws_sdk_fsx::types::error::BadRequest::builder()
                .message("nope")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&bad_request]);
    let error = io::describe(&client, ID).await.unwrap_err();
    assert!(
        matches!(&error, Error::DescribeFileSystems { file_system_id: Some(id), .. } if id == ID),
        "{error:?}"
    );
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(
        source.contains("nope"),
        "the SDK error is the source: {source}"
    );
    assert!(
        !error.to_string().contains("nope"),
        "Display does not repeat the source"
    );
}

fn spec() -> FileSystemSpec {
    FileSystemSpec::blueprint(
        "trnkit",
        "subnet-0a1b2c3d4e5f60718",
        &["sg-0123456789abcdef0"],
    )
}

#[tokio::test]
async fn ensure_by_tag_adopts_the_one_tagged_file_system() {
    let rule = mock!(Client::describe_file_systems).then_output(|| {
        described_many(vec![
            sdk_file_system("fs-other", FileSystemLifecycle::Available, "someone-else"),
            sdk_file_system("fs-old", FileSystemLifecycle::Deleting, "trnkit"),
            sdk_file_system(ID, FileSystemLifecycle::Available, "trnkit"),
        ])
    });
    let create = mock!(Client::create_file_system).then_output(|| unreachable!("must not create"));
    let client = mock_client!(aws_sdk_fsx, RuleMode::MatchAny, [&rule, &create]);
    let ensured = io::ensure(&client, &spec(), &Adopt::Tag).await.unwrap();
    assert!(!ensured.created);
    assert_eq!(ensured.file_system.file_system_id, ID);
    assert!(ensured.differences.is_empty(), "{:?}", ensured.differences);
    assert_eq!(create.num_calls(), 0);
}

#[tokio::test]
async fn ensure_by_tag_refuses_two_candidates_and_a_failed_one() {
    let two = mock!(Client::describe_file_systems).then_output(|| {
        described_many(vec![
            sdk_file_system("fs-a", FileSystemLifecycle::Available, "trnkit"),
            sdk_file_system("fs-b", FileSystemLifecycle::Creating, "trnkit"),
        ])
    });
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&two]);
    let error = io::ensure(&client, &spec(), &Adopt::Tag)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("fs-a, fs-b"), "{error}");

    let failed =
        mock!(Client::describe_file_systems).then_output(|| described(FileSystemLifecycle::Failed));
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&failed]);
    let error = io::ensure(&client, &spec(), &Adopt::Tag).await.unwrap_err();
    assert!(matches!(error, Error::FileSystemFailed { .. }), "{error:?}");
}

#[tokio::test]
async fn ensure_creates_when_nothing_is_tagged_and_reports_differences_when_adopting() {
    let none = mock!(Client::describe_file_systems).then_output(|| described_many(Vec::new()));
    let create = mock!(Client::create_file_system)
        .match_requests(|request| {
            request.storage_capacity() == Some(1200)
                && request.subnet_ids() == ["subnet-0a1b2c3d4e5f60718".to_owned()]
                && request.file_system_type_version() == Some("2.12")
                && request
                    .client_request_token()
                    .is_some_and(|token| token.starts_with("trnkit-trnkit-"))
                && request
                    .tags()
                    .iter()
                    .any(|tag| tag.key() == Some("trnkit:name") && tag.value() == Some("trnkit"))
                && request
                    .lustre_configuration()
                    .and_then(|lustre| lustre.per_unit_storage_throughput())
                    == Some(200)
        })
        .then_output(|| {
            aws_sdk_fsx::operation::create_file_system::CreateFileSystemOutput::builder()
                .file_system(sdk_file_system(ID, FileSystemLifecycle::Creating, "trnkit"))
                .build()
        });
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&none, &create]);
    let ensured = io::ensure(&client, &spec(), &Adopt::Tag).await.unwrap();
    assert!(ensured.created);
    assert_eq!(ensured.file_system.lifecycle, Some(Lifecycle::Creating));

    let by_id = mock!(Client::describe_file_systems)
        .then_output(|| described(FileSystemLifecycle::Available));
    let client = mock_client!(aws_sdk_fsx, RuleMode::Sequential, [&by_id]);
    let mut bigger = spec();
    bigger.storage_capacity_gib = 2400;
    let ensured = io::ensure(&client, &bigger, &Adopt::Id(ID.to_owned()))
        .await
        .unwrap();
    assert!(!ensured.created);
    assert_eq!(
        ensured.differences,
        [format!(
            "{ID} has 1200 GiB, the configuration asks for 2400"
        )]
    );
}
