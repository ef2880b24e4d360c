//! Unit tests of `fsx`: the pure builders and checks, and the IO functions against scripted
//! (`aws-smithy-mocks`) FSx answers for what moto cannot model.

mod csi;
mod io;
mod layout;
mod spec;

/// A file system as real FSx describes it once it is available.
fn available_file_system() -> crate::FileSystem {
    crate::FileSystem {
        file_system_id: "fs-0199e5a63bd90f796".to_owned(),
        lifecycle: Some(crate::Lifecycle::Available),
        dns_name: Some("fs-0199e5a63bd90f796.fsx.us-west-2.amazonaws.com".to_owned()),
        mount_name: Some("x3bkzbmv".to_owned()),
        storage_capacity_gib: Some(1200),
        deployment_type: Some("PERSISTENT_1".to_owned()),
        per_unit_storage_throughput: Some(200),
        lustre_version: Some("2.12".to_owned()),
        subnet_ids: vec!["subnet-0a1b2c3d4e5f60718".to_owned()],
        vpc_id: Some("vpc-0123456789abcdef0".to_owned()),
        resource_arn: None,
        failure_message: None,
        tags: [("trnkit:name".to_owned(), "trnkit".to_owned())].into(),
    }
}
