//! `ossterm config`: where the config file is and what the effective settings are.

use crate::cli::ConfigArgs;
use crate::config::Settings;

/// Runs the command.
pub fn run(args: &ConfigArgs) -> anyhow::Result<()> {
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
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let state = if settings.file_found {
            "found"
        } else {
            "not found; built-in defaults below"
        };
        println!("# config file: {} ({state})", settings.path.display());
        if let Ok(dir) = crate::config::data_dir() {
            println!("# chats are saved under: {}", dir.display());
        }
        print!("{}", settings.to_toml());
    }
    Ok(())
}
