//! The supervisor's pure part: a restart re-creates only the job deploy applied.

use serde_json::json;

use super::*;

fn manifest(image: &str) -> Manifest {
    Manifest {
        kind: "MPIJob".to_owned(),
        name: "test-mpi-train".to_owned(),
        value: json!({"kind": "MPIJob", "metadata": {"name": "test-mpi-train"}, "spec": {"image": image}}),
    }
}

#[test]
fn only_the_applied_job_is_re_created() {
    let applied = manifest("training:abc");
    let digest = crate::deploy::plan::digest(&applied.value);
    assert_eq!(is_applied_job(Some(&digest), &applied), Ok(true));
    assert_eq!(is_applied_job(None, &applied), Ok(false));
    let error = is_applied_job(Some(&digest), &manifest("training:def")).unwrap_err();
    assert!(
        error.contains("MPIJob test-mpi-train") && error.contains("deploy --no-follow"),
        "{error}"
    );
}
