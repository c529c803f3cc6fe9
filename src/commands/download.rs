//! `ossterm download [MODEL]`: fetch a model into the Hugging Face cache, with a progress line
//! on stderr (bytes, rate, ETA). Interrupted downloads resume on the next run.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::cli::DownloadArgs;
use crate::config::Settings;
use crate::hub::{self, DownloadProgress};

/// Without a terminal, print a progress line at most this often.
const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the command.
pub fn run(args: &DownloadArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let settings = Settings::load(None)?;
    let model = args.model.as_deref().unwrap_or(&settings.model);
    let revision = args.revision.as_deref().or(settings.revision.as_deref());
    let terminal = std::io::stderr().is_terminal();
    let mut last_plain: Option<Instant> = None;
    let mut report = |p: DownloadProgress| {
        let mut err = std::io::stderr().lock();
        if terminal {
            let _ = write!(err, "\r\x1b[2K{}", p.line());
            if p.finished {
                let _ = writeln!(err);
            }
        } else if p.finished || last_plain.is_none_or(|t| t.elapsed() >= PLAIN_INTERVAL) {
            last_plain = Some(Instant::now());
            let _ = writeln!(err, "{}", p.line());
        }
    };
    let dir = hub::resolve(model, revision, &mut report)?;
    writeln!(out, "{}", dir.display())?;
    Ok(())
}
