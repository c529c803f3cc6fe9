//! `ossterm config`: where the config file is and what the effective settings are.

use std::io::Write;

use crate::cli::ConfigArgs;
use crate::config::Settings;

/// Runs the command.
pub fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let settings = Settings::load(args.config.as_deref())?;
    // A config the app would refuse is refused here too.
    settings.keymap()?;
    if args.json {
        let report = serde_json::json!({
            "path": settings.path,
            "file_found": settings.file_found,
            "data_dir": crate::config::data_dir().ok(),
            "settings": settings.to_json(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        let state = if settings.file_found {
            "found"
        } else {
            "not found; built-in defaults below"
        };
        writeln!(out, "# config file: {} ({state})", settings.path.display())?;
        if let Ok(dir) = crate::config::data_dir() {
            writeln!(out, "# chats are saved under: {}", dir.display())?;
        }
        write!(out, "{}", settings.to_toml())?;
    }
    Ok(())
}
