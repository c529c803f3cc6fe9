//! `ossterm generate` (placeholder until its issue lands).

use crate::cli::GenerateArgs;

/// Runs the command.
pub fn run(_args: &GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("'generate' is not built yet")
}
