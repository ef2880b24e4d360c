//! Kubernetes IO of the deploy workflow, one concern per module: [`apply`] server-side applies
//! rendered objects in dependency order (and deletes them in reverse), [`preflight`] reads the
//! cluster and decides whether (and for which MPI Operator) deploy can go on.

pub mod apply;
pub mod preflight;
