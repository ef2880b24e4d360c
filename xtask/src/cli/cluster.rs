//! The EKS side of `deploy` (being written).

use crate::config::Config;
use crate::deploy::plan::{Plan, Rendered};
use crate::deploy::run::Selection;

pub(crate) async fn deploy(
    _config: &Config,
    _plan: &Plan,
    _rendered: &Rendered,
    _selection: Selection,
) -> anyhow::Result<()> {
    anyhow::bail!("deploying to EKS is being written")
}
