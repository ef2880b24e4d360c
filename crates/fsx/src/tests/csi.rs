//! Tests of the CSI objects: snapshots, errors, and validation by `kubernetes-validate --strict`.

use crate::csi::{self, ReclaimPolicy};
use crate::spec::FileSystemSpec;
use crate::{Error, static_volume};

use super::available_file_system;

fn blueprint_spec() -> FileSystemSpec {
    FileSystemSpec::blueprint(
        "trnkit",
        "subnet-0a1b2c3d4e5f60718",
        &["sg-0123456789abcdef0", "sg-0fedcba9876543210"],
    )
}

#[test]
fn static_volume_and_bound_claim() {
    let (volume, claim) =
        static_volume(&available_file_system(), "fsx-claim", "default", 1200).unwrap();
    let volume_spec = volume.spec.as_ref().unwrap();
    let csi = volume_spec.csi.as_ref().unwrap();
    assert_eq!(csi.driver, "fsx.csi.aws.com");
    assert_eq!(csi.volume_handle, "fs-0199e5a63bd90f796");
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(
        claim_spec.volume_name, volume.metadata.name,
        "the claim names the volume"
    );
    assert_eq!(
        volume_spec
            .claim_ref
            .as_ref()
            .and_then(|reference| reference.name.as_deref()),
        Some("fsx-claim"),
        "the volume is reserved for the claim"
    );
    assert_eq!(
        claim_spec.storage_class_name.as_deref(),
        Some(""),
        "no dynamic provisioning"
    );
    insta::assert_yaml_snapshot!("static_volume", volume);
    insta::assert_yaml_snapshot!("static_claim", claim);
}

#[test]
fn dynamic_storage_class_and_claim_match_the_blueprint() {
    let class = csi::storage_class(
        &blueprint_spec(),
        csi::BLUEPRINT_STORAGE_CLASS,
        ReclaimPolicy::Delete,
    )
    .unwrap();
    let parameters = class.parameters.as_ref().unwrap();
    assert_eq!(
        parameters["securityGroupIds"],
        "sg-0123456789abcdef0,sg-0fedcba9876543210"
    );
    assert_eq!(parameters["deploymentType"], "PERSISTENT_1");
    assert_eq!(parameters["perUnitStorageThroughput"], "200");
    assert_eq!(parameters["fileSystemTypeVersion"], "2.12");
    let claim = csi::dynamic_claim(
        csi::BLUEPRINT_STORAGE_CLASS,
        csi::BLUEPRINT_CLAIM,
        "default",
        1200,
    )
    .unwrap();
    insta::assert_yaml_snapshot!("storage_class", class);
    insta::assert_yaml_snapshot!("dynamic_claim", claim);
}

#[test]
fn missing_mount_name_or_dns_name_is_explained() {
    let mut file_system = available_file_system();
    file_system.mount_name = None;
    file_system.lifecycle = None;
    let error = static_volume(&file_system, "fsx-claim", "default", 1200).unwrap_err();
    assert!(
        matches!(&error, Error::MissingMountName { lifecycle, .. } if lifecycle == "unknown"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("wait until it is AVAILABLE"),
        "{error}"
    );
    file_system.mount_name = Some("abc".to_owned());
    file_system.dns_name = None;
    assert!(matches!(
        static_volume(&file_system, "fsx-claim", "default", 1200),
        Err(Error::MissingDnsName { .. })
    ));
}

#[test]
fn bad_names_and_capacities_are_rejected() {
    let file_system = available_file_system();
    let error = static_volume(&file_system, "FSX_claim", "default", 1200)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("invalid claim name") && error.contains("'F'"),
        "{error}"
    );
    let error = static_volume(&file_system, "fsx-claim", "my.namespace", 1200)
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid namespace"), "{error}");
    let error = static_volume(&file_system, "fsx-claim", "-x", 1200)
        .unwrap_err()
        .to_string();
    assert!(error.contains("start and end"), "{error}");
    let error = static_volume(&file_system, "fsx-claim", "default", 2400)
        .unwrap_err()
        .to_string();
    assert!(error.contains("holds only 1200 GiB"), "{error}");
    assert!(matches!(
        static_volume(&file_system, "fsx-claim", "default", 0),
        Err(Error::InvalidCapacity { .. })
    ));
    let mut unknown_capacity = file_system.clone();
    unknown_capacity.storage_capacity_gib = None;
    assert!(static_volume(&unknown_capacity, "fsx-claim", "default", 2400).is_ok());
}

#[test]
fn persistent_2_with_s3_cannot_be_provisioned_dynamically() {
    let mut spec = blueprint_spec();
    spec.deployment_type = crate::DeploymentType::Persistent2;
    spec.per_unit_storage_throughput = 250;
    spec.data_repository = Some(crate::spec::DataRepository {
        s3_path: "s3://bucket".to_owned(),
        file_system_path: "/s3".to_owned(),
        auto_import: crate::spec::AutoImport::New,
    });
    let error = csi::storage_class(&spec, "fsx", ReclaimPolicy::Retain)
        .unwrap_err()
        .to_string();
    assert!(error.contains("static volume"), "{error}");
}

/// Every generated object passes `kubernetes-validate --strict` for the oldest supported
/// Kubernetes (1.33, the k8s-openapi feature). `scripts/test` installs the tool from PyPI.
///
/// The objects are written as JSON (what the API server receives, and valid YAML). Plain YAML
/// from `serde_norway` would fail here for a reason worth knowing: it leaves `7:09:00` (the
/// weekly maintenance window) unquoted, and YAML 1.1 readers such as PyYAML read that as the
/// base-60 integer 25740. Any YAML trnkit writes for humans must quote such strings.
#[tokio::test]
async fn generated_objects_pass_kubernetes_validate_strict() {
    let (volume, claim) =
        static_volume(&available_file_system(), "fsx-claim", "default", 1200).unwrap();
    let class = csi::storage_class(&blueprint_spec(), "fsx", ReclaimPolicy::Delete).unwrap();
    let dynamic = csi::dynamic_claim("fsx", "fsx-claim", "default", 1200).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, yaml) in [
        ("pv.json", to_json(&volume)),
        ("pvc.json", to_json(&claim)),
        ("storageclass.json", to_json(&class)),
        ("dynamic-pvc.json", to_json(&dynamic)),
    ] {
        let path = directory.path().join(name);
        std::io::Write::write_all(&mut fs_file(&path), yaml.as_bytes()).unwrap();
        files.push(path);
    }
    let Some(output) =
        test_support::services::kubernetes_validate_strict(directory.path(), &files).await
    else {
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubernetes-validate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches(" passed for resource ").count(),
        4,
        "{stdout}"
    );

    // The check can fail: an unknown field is rejected under --strict.
    let path = directory.path().join("bad.json");
    let bad = to_json(&volume).replace("\"volumeMode\":", "\"volumeModus\":");
    assert_ne!(bad, to_json(&volume));
    std::io::Write::write_all(&mut fs_file(&path), bad.as_bytes()).unwrap();
    let output = test_support::services::kubernetes_validate_strict(directory.path(), &[path])
        .await
        .expect("kubernetes-validate ran above");
    assert!(
        !output.status.success(),
        "a misspelled field must fail strict validation"
    );
}

fn to_json<T: serde::Serialize>(object: &T) -> String {
    serde_json::to_string_pretty(object).unwrap()
}

fn fs_file(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// The blueprint's terraform-made StorageClass `fsx` (`blueprint.md` §4.5): no `extraTags`, no
/// labels, reclaim policy and binding mode left to their defaults.
fn terraform_storage_class(
    subnet: &str,
    groups: &str,
) -> k8s_openapi::api::storage::v1::StorageClass {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fsx"},
        "provisioner": "fsx.csi.aws.com",
        "parameters": {
            "subnetId": subnet, "securityGroupIds": groups, "deploymentType": "PERSISTENT_1",
            "automaticBackupRetentionDays": "1", "dailyAutomaticBackupStartTime": "00:00",
            "copyTagsToBackups": "true", "perUnitStorageThroughput": "200",
            "dataCompressionType": "NONE", "weeklyMaintenanceStartTime": "7:09:00",
            "fileSystemTypeVersion": "2.12",
        },
        "mountOptions": ["flock"],
    }))
    .unwrap()
}

#[test]
fn the_blueprint_storage_class_fits_except_for_tags() {
    let wanted = csi::storage_class(&blueprint_spec(), "fsx", ReclaimPolicy::Delete).unwrap();
    // The same groups in another order; only trnkit's extraTags differ, which does not matter.
    let existing = terraform_storage_class(
        "subnet-0a1b2c3d4e5f60718",
        "sg-0fedcba9876543210, sg-0123456789abcdef0",
    );
    let differences = csi::compare_storage_classes(&existing, &wanted);
    assert_eq!(
        differences
            .iter()
            .map(|difference| (difference.parameter.as_str(), difference.must_match))
            .collect::<Vec<_>>(),
        [("extraTags", false)],
        "{differences:#?}"
    );
}

#[test]
fn another_subnet_driver_type_or_no_flock_does_not_fit() {
    let wanted = csi::storage_class(&blueprint_spec(), "fsx", ReclaimPolicy::Delete).unwrap();
    let mut existing = terraform_storage_class("subnet-0ffffffffffffffff", "sg-0123456789abcdef0");
    existing.provisioner = "ebs.csi.aws.com".to_owned();
    existing.mount_options = None;
    let parameters = existing.parameters.as_mut().unwrap();
    parameters.remove("deploymentType");
    parameters.insert("perUnitStorageThroughput".to_owned(), "100".to_owned());
    let differences = csi::compare_storage_classes(&existing, &wanted);
    let must: Vec<&str> = differences
        .iter()
        .filter(|difference| difference.must_match)
        .map(|difference| difference.parameter.as_str())
        .collect();
    assert_eq!(
        must,
        [
            "deploymentType",
            "mountOptions",
            "provisioner",
            "securityGroupIds",
            "subnetId"
        ]
    );
    let deployment = differences
        .iter()
        .find(|difference| difference.parameter == "deploymentType")
        .unwrap();
    assert_eq!(
        deployment.existing.as_deref(),
        Some("SCRATCH_1"),
        "the driver's default"
    );
    assert!(differences.iter().any(|difference| difference.parameter
        == "perUnitStorageThroughput"
        && !difference.must_match));
}
