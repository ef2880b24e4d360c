//! Tests of `cargo xtask cache`'s root selection and size formatting.

use std::path::PathBuf;

use crate::config::Config;

#[test]
fn the_default_root_is_the_local_profiles_compile_cache() {
    let mut config = Config::default();
    config.cluster.work_dir = PathBuf::from("/tmp/work");
    assert_eq!(
        super::cache_root(None, &config),
        PathBuf::from("/tmp/work/shared/neuron_cache")
    );
    assert_eq!(
        super::cache_root(Some(PathBuf::from("/mnt/c")), &config),
        PathBuf::from("/mnt/c")
    );
}

#[test]
fn sizes_are_readable() {
    assert_eq!(super::bytes(0), "0 B");
    assert_eq!(super::bytes(1023), "1023 B");
    assert_eq!(super::bytes(1536), "1.5 KiB");
    assert_eq!(super::bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
}
