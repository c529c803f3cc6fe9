//! `ossterm config` (placeholder until its issue lands).

use crate::cli::ConfigArgs;

/// Runs the command.
pub fn run(_args: &ConfigArgs) -> anyhow::Result<()> {
    anyhow::bail!("'config' is not built yet")
}
