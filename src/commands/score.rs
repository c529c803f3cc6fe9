//! `ossterm score` (placeholder until its issue lands).

use crate::cli::ScoreArgs;

/// Runs the command.
pub fn run(_args: &ScoreArgs) -> anyhow::Result<()> {
    anyhow::bail!("'score' is not built yet")
}
