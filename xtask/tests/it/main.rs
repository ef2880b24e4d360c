//! Integration tests of xtask's Kubernetes IO (`xtask::kube_apply`) against the FAKE Kubernetes
//! API server, and an opt-in suite against a real cluster (`cluster` module).

mod cluster;
mod kube_apply;
mod preflight;
