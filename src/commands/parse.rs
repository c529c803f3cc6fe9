//! `ossterm parse` (placeholder until its issue lands).

use crate::cli::ParseArgs;

/// Runs the command.
pub fn run(_args: &ParseArgs) -> anyhow::Result<()> {
    anyhow::bail!("'parse' is not built yet")
}
