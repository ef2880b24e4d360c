//! Tests of the configuration-to-spec mapping of `cargo xtask fsx`.

use super::spec_from_config;
use crate::config::Config;

#[test]
fn the_default_configuration_maps_to_the_blueprint_spec() {
    let mut config = Config::default();
    config.storage.subnet_id = "subnet-0a1b2c3d4e5f60718".to_owned();
    config.storage.security_group_ids = vec!["sg-0123456789abcdef0".to_owned()];
    let spec = spec_from_config(&config, "trainium-inferentia").unwrap();
    assert_eq!(
        spec,
        fsx::FileSystemSpec::blueprint(
            "trainium-inferentia",
            "subnet-0a1b2c3d4e5f60718",
            &["sg-0123456789abcdef0"]
        )
    );
    spec.validate().unwrap();
}

#[test]
fn unsupported_values_name_the_key() {
    let mut config = Config::default();
    config.storage.deployment_type = "SCRATCH_2".to_owned();
    let error = format!("{:#}", spec_from_config(&config, "x").unwrap_err());
    assert!(
        error.contains("[storage] deployment_type")
            && error.contains("PERSISTENT_1 or PERSISTENT_2"),
        "{error}"
    );
    let mut config = Config::default();
    config.storage.data_compression_type = "ZSTD".to_owned();
    let error = format!("{:#}", spec_from_config(&config, "x").unwrap_err());
    assert!(error.contains("data_compression_type"), "{error}");
    config.storage.data_compression_type = "lz4".to_owned();
    assert_eq!(
        spec_from_config(&config, "x").unwrap().data_compression,
        fsx::spec::DataCompression::Lz4
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
