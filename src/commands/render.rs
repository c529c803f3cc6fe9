//! `ossterm render` (placeholder until its issue lands).

use crate::cli::RenderArgs;

/// Runs the command.
pub fn run(_args: &RenderArgs) -> anyhow::Result<()> {
    anyhow::bail!("'render' is not built yet")
}
