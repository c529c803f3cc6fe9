//! Settings from the config file, and the folders ossterm uses.
//!
//! (Minimal version written by the TUI work against the agreed description; the memory work
//! owns this file and may replace it — keep `Settings`' fields, `load`, `data_dir`, `config_dir`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot find a home folder for ossterm's {what}: set {env}")]
    NoDir {
        what: &'static str,
        env: &'static str,
    },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

/// The config file's contents; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Hub id or local folder of the model.
    pub model: Option<String>,
    /// Theme name (dark, light, high-contrast or a file in `<config dir>/themes/`).
    pub theme: Option<String>,
    /// Reasoning effort: low, medium or high.
    pub effort: Option<String>,
    /// Context limit in tokens.
    pub context: Option<usize>,
    /// Developer instructions (the "system prompt") for new chats.
    pub developer_instructions: Option<String>,
    /// Action name -> key (`quit = "ctrl+x"`; several keys separated by spaces).
    pub keybindings: BTreeMap<String, String>,
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "ossterm")
}

/// Where chats live: `$OSSTERM_DATA_DIR`, else the platform data dir.
pub fn data_dir() -> Result<PathBuf, ConfigError> {
    if let Some(dir) = std::env::var_os("OSSTERM_DATA_DIR") {
        return Ok(PathBuf::from(dir));
    }
    project_dirs()
        .map(|d| d.data_dir().to_path_buf())
        .ok_or(ConfigError::NoDir {
            what: "data",
            env: "OSSTERM_DATA_DIR",
        })
}

/// Where the config file and user themes live: `$OSSTERM_CONFIG_DIR`, else the platform's.
pub fn config_dir() -> Result<PathBuf, ConfigError> {
    if let Some(dir) = std::env::var_os("OSSTERM_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    project_dirs()
        .map(|d| d.config_dir().to_path_buf())
        .ok_or(ConfigError::NoDir {
            what: "config",
            env: "OSSTERM_CONFIG_DIR",
        })
}

/// The default config file path.
pub fn config_path() -> Result<PathBuf, ConfigError> {
    Ok(config_dir()?.join("config.toml"))
}

/// Reads settings from `path` (or the default file); a missing default file means defaults.
pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (config_path()?, false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Settings::default());
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })
}
