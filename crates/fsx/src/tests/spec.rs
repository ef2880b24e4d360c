//! Tests of `FileSystemSpec`: the blueprint defaults, validation messages, tags, and the request.

use crate::Error;
use crate::spec::{AutoImport, DataRepository, DeploymentType, FileSystemSpec};

fn blueprint() -> FileSystemSpec {
    FileSystemSpec::blueprint(
        "trnkit",
        "subnet-0a1b2c3d4e5f60718",
        &["sg-0123456789abcdef0"],
    )
}

fn check_invalid(spec: &FileSystemSpec, field: &str, expected: &str) {
    match spec.validate() {
        Err(Error::InvalidSpec {
            field: actual,
            reason,
        }) => {
            assert_eq!(actual, field, "{reason}");
            assert!(
                reason.contains(expected),
                "{field}: {reason:?} should mention {expected:?}"
            );
        }
        other => panic!("{field}: expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn blueprint_defaults_are_the_storage_class_values() {
    let spec = blueprint();
    spec.validate().unwrap();
    insta::assert_yaml_snapshot!(spec);
}

#[test]
fn invalid_settings_name_the_field_and_the_valid_values() {
    let mut spec = blueprint();
    spec.per_unit_storage_throughput = 125;
    check_invalid(&spec, "per_unit_storage_throughput", "[50, 100, 200]");
    spec.deployment_type = DeploymentType::Persistent2;
    spec.validate().unwrap();
    spec.per_unit_storage_throughput = 200;
    check_invalid(
        &spec,
        "per_unit_storage_throughput",
        "[125, 250, 500, 1000]",
    );

    let mut spec = blueprint();
    for (capacity, next) in [
        (1000, "1200"),
        (1800, "2400"),
        (3600, "4800"),
        (4900, "7200"),
    ] {
        spec.storage_capacity_gib = capacity;
        check_invalid(&spec, "storage_capacity_gib", next);
    }
    for capacity in [1200, 2400, 4800, 9600] {
        spec.storage_capacity_gib = capacity;
        spec.validate().unwrap();
    }

    let mut spec = blueprint();
    spec.lustre_version = "2.15".to_owned();
    check_invalid(&spec, "lustre_version", "PERSISTENT_1");
    spec.deployment_type = DeploymentType::Persistent2;
    spec.per_unit_storage_throughput = 250;
    spec.validate().unwrap();

    let mut spec = blueprint();
    spec.subnet_id = "10.1.0.0/24".to_owned();
    check_invalid(&spec, "subnet_id", "subnet-");
    let mut spec = blueprint();
    spec.security_group_ids.clear();
    check_invalid(&spec, "security_group_ids", "988");
    spec.security_group_ids = vec!["default".to_owned()];
    check_invalid(&spec, "security_group_ids", "sg-");
    let mut spec = blueprint();
    spec.daily_automatic_backup_start_time = "24:00".to_owned();
    check_invalid(&spec, "daily_automatic_backup_start_time", "HH:MM");
    let mut spec = blueprint();
    spec.weekly_maintenance_start_time = "8:09:00".to_owned();
    check_invalid(&spec, "weekly_maintenance_start_time", "d:HH:MM");
    let mut spec = blueprint();
    spec.automatic_backup_retention_days = 91;
    check_invalid(&spec, "automatic_backup_retention_days", "90");
    let mut spec = blueprint();
    spec.extra_tags
        .insert("trnkit:name".to_owned(), "other".to_owned());
    check_invalid(&spec, "extra_tags", "set by trnkit");
    let mut spec = blueprint();
    spec.name = "my cluster".to_owned();
    assert!(matches!(
        spec.validate(),
        Err(Error::InvalidName {
            what: "file-system name",
            ..
        })
    ));
}

#[test]
fn s3_on_persistent_1_needs_backups_off() {
    let mut spec = blueprint();
    spec.data_repository = Some(DataRepository {
        s3_path: "s3://bucket/prefix".to_owned(),
        file_system_path: "/".to_owned(),
        auto_import: AutoImport::NewChanged,
    });
    check_invalid(
        &spec,
        "data_repository",
        "automatic_backup_retention_days to 0",
    );
    spec.automatic_backup_retention_days = 0;
    spec.validate().unwrap();
    let lustre = spec.lustre_configuration();
    assert_eq!(lustre.import_path(), Some("s3://bucket/prefix"));
    assert_eq!(lustre.export_path(), Some("s3://bucket/prefix"));
    assert_eq!(
        lustre.auto_import_policy().map(|policy| policy.as_str()),
        Some("NEW_CHANGED")
    );
    assert_eq!(
        lustre.daily_automatic_backup_start_time(),
        None,
        "no backup window without backups"
    );
    assert_eq!(
        lustre.copy_tags_to_backups(),
        None,
        "not allowed on linked file systems"
    );

    spec.data_repository.as_mut().unwrap().file_system_path = "/s3".to_owned();
    check_invalid(&spec, "data_repository.file_system_path", "PERSISTENT_2");
    spec.data_repository.as_mut().unwrap().s3_path = "bucket".to_owned();
    check_invalid(&spec, "data_repository.s3_path", "s3://");

    let mut spec = blueprint();
    spec.deployment_type = DeploymentType::Persistent2;
    spec.per_unit_storage_throughput = 125;
    spec.data_repository = Some(DataRepository {
        s3_path: "s3://bucket".to_owned(),
        file_system_path: "/s3".to_owned(),
        auto_import: AutoImport::None,
    });
    spec.validate().unwrap();
    assert_eq!(
        spec.lustre_configuration().import_path(),
        None,
        "PERSISTENT_2 links S3 with an association"
    );
}

#[test]
fn the_request_carries_every_blueprint_value() {
    let lustre = blueprint().lustre_configuration();
    assert_eq!(
        lustre.deployment_type().map(|value| value.as_str()),
        Some("PERSISTENT_1")
    );
    assert_eq!(lustre.per_unit_storage_throughput(), Some(200));
    assert_eq!(lustre.automatic_backup_retention_days(), Some(1));
    assert_eq!(lustre.daily_automatic_backup_start_time(), Some("00:00"));
    assert_eq!(lustre.copy_tags_to_backups(), Some(true));
    assert_eq!(
        lustre.data_compression_type().map(|value| value.as_str()),
        Some("NONE")
    );
    assert_eq!(lustre.weekly_maintenance_start_time(), Some("7:09:00"));
    assert_eq!(lustre.import_path(), None);
}

#[test]
fn tags_and_request_token_identify_the_spec() {
    let mut spec = blueprint();
    spec.extra_tags.insert("team".to_owned(), "ml".to_owned());
    let tags = spec.tags();
    assert_eq!(tags.get("trnkit:name").map(String::as_str), Some("trnkit"));
    assert_eq!(tags.get("Name").map(String::as_str), Some("trnkit"));
    assert_eq!(tags.get("team").map(String::as_str), Some("ml"));
    assert_eq!(spec.sdk_tags().len(), 3);

    let token = spec.client_request_token();
    assert!(
        token.starts_with("trnkit-trnkit-") && token.len() <= 63,
        "{token}"
    );
    assert_eq!(
        token,
        spec.clone().client_request_token(),
        "the same spec gives the same token"
    );
    spec.storage_capacity_gib = 2400;
    assert_ne!(
        token,
        spec.client_request_token(),
        "another spec gives another token"
    );
    spec.name = "n".repeat(200);
    assert!(spec.client_request_token().len() <= 63);
}

#[test]
fn deployment_type_parses_leniently_and_rejects_scratch() {
    assert_eq!(
        "persistent-2".parse::<DeploymentType>().unwrap(),
        DeploymentType::Persistent2
    );
    assert_eq!(
        "PERSISTENT_1".parse::<DeploymentType>().unwrap(),
        DeploymentType::Persistent1
    );
    let error = "SCRATCH_2"
        .parse::<DeploymentType>()
        .unwrap_err()
        .to_string();
    assert!(error.contains("PERSISTENT_1 or PERSISTENT_2"), "{error}");
}
