//! `ossterm download` (placeholder until its issue lands).

use crate::cli::DownloadArgs;

/// Runs the command.
pub fn run(_args: &DownloadArgs) -> anyhow::Result<()> {
    anyhow::bail!("'download' is not built yet")
}
