//! Tests of `cargo xtask fsx`: its overrides of `[storage]` and its durations.

use super::{CreateArgs, overridden};
use crate::config::Config;
use crate::storage;

fn args() -> CreateArgs {
    CreateArgs::plain()
}

#[test]
fn the_default_configuration_maps_to_the_blueprint_spec_named_by_the_cluster() {
    let mut config = Config::default();
    config.storage.subnet_id = "subnet-0a1b2c3d4e5f60718".to_owned();
    config.storage.security_group_ids = vec!["sg-0123456789abcdef0".to_owned()];
    let name = args().target.tag_name(&config);
    assert_eq!(name, config.cluster.name, "the tag deploy puts on");
    let spec =
        storage::file_system_spec_named(&overridden(&config, &args()).unwrap(), &name).unwrap();
    assert_eq!(
        spec,
        fsx::FileSystemSpec::blueprint(
            "trainium-inferentia",
            "subnet-0a1b2c3d4e5f60718",
            &["sg-0123456789abcdef0"]
        )
    );
}

#[test]
fn flags_override_storage_and_bad_values_name_the_flag() {
    let mut config = Config::default();
    config.storage.subnet_id = "subnet-0a1b2c3d4e5f60718".to_owned();
    let mut given = args();
    given.security_group_ids = vec!["sg-0fedcba9876543210".to_owned()];
    given.deployment_type = Some("persistent-2".to_owned());
    given.throughput = Some(250);
    given.target.file_system_id = Some("fs-0199e5a63bd90f796".to_owned());
    let changed = overridden(&config, &given).unwrap();
    let spec = storage::file_system_spec(&changed).unwrap();
    assert_eq!(spec.deployment_type, fsx::DeploymentType::Persistent2);
    assert_eq!(spec.per_unit_storage_throughput, 250);
    assert_eq!(spec.security_group_ids, ["sg-0fedcba9876543210"]);
    assert_eq!(
        storage::adopt(&changed),
        fsx::io::Adopt::Id("fs-0199e5a63bd90f796".to_owned())
    );

    given.deployment_type = Some("SCRATCH_2".to_owned());
    let error = format!("{:#}", overridden(&config, &given).unwrap_err());
    assert!(
        error.contains("--deployment-type") && error.contains("PERSISTENT_1 or PERSISTENT_2"),
        "{error}"
    );
}

#[test]
fn durations_parse_with_a_helpful_error() {
    assert_eq!(
        super::humantime_duration("30m").unwrap(),
        std::time::Duration::from_secs(1800)
    );
    let error = super::humantime_duration("soon").unwrap_err();
    assert!(error.contains("90s, 30m or 2h"), "{error}");
}
