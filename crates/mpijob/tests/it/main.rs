//! Integration tests of `mpijob::io` against the FAKE Kubernetes API server (`test_support::
//! fake_apiserver`), and an opt-in suite against a real cluster (`cluster` module).

mod cluster;
mod fake;
