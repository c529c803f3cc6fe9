//! `ossterm app` (placeholder until its issue lands).

use crate::cli::AppArgs;

/// Runs the command.
pub fn run(_args: &AppArgs) -> anyhow::Result<()> {
    anyhow::bail!("'app' is not built yet")
}
