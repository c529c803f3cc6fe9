//! `ossterm bench` (placeholder until its issue lands).

use crate::cli::BenchArgs;

/// Runs the command.
pub fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("'bench' is not built yet")
}
