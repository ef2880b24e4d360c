//! Integration tests of xtask's Kubernetes IO (`xtask::kube`) against the FAKE Kubernetes
//! API server, the compile-cache check Job's command run with the real `trnkit-stage`
//! (`cache_check`), the staging Jobs' tokenization commands run with it, sharded and single
//! (`sharded`), the installed command line (`cli`), TensorBoard's basic auth through real nginx
//! (`tensorboard_proxy`), and an opt-in suite against a real cluster (`cluster` module).

mod cache_check;
mod cli;
mod cluster;
mod kube_apply;
mod preflight;
mod sharded;
mod tensorboard_proxy;
