//! Dev-only helpers for trnkit's tests.
//!
//! - `services`: finds the real local services that `scripts/test` starts (Docker engine,
//!   registry with htpasswd auth, moto), failing under `CI=true` when one is missing.
//! - `fake_apiserver`: an in-process FAKE Kubernetes API server (`FakeApiServer`) for testing
//!   kube client code over a real HTTP stack, without a cluster.
//!
//! - `aws`: the SDK configuration for tests against moto.
//! - `silent`: an endpoint that accepts connections and never answers.
//! - `http_stub`: a minimal HTTP server whose answers a test decides.
//!
//! No library crate depends on this crate except as a `[dev-dependency]`.

pub mod aws;
pub mod fake_apiserver;
pub mod http_stub;
pub mod services;
pub mod silent;
