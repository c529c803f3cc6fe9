//! `ossterm fit` (placeholder until its issue lands).

use crate::cli::FitArgs;

/// Runs the command.
pub fn run(_args: &FitArgs) -> anyhow::Result<()> {
    anyhow::bail!("'fit' is not built yet")
}
