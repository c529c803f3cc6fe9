//! Settings: a TOML file in the user's config dir, overridden by command-line flags.
//!
//! The file is parsed by hand from a `toml::Table` (not derived) so that every error can name
//! the exact key (`sampling.top_p`) and the file, and so that unknown keys are refused with the
//! list of known ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::{AppArgs, DeviceChoice, DtypeChoice};
use crate::engine::protocol::SamplingParams;
use crate::engine::sampler::check_setting;
use crate::harmony::ReasoningEffort;

/// The default model: Intel's int4 AutoRound build of gpt-oss-20b.
pub const DEFAULT_MODEL: &str = "Intel/gpt-oss-20b-int4-g64-rtn-AutoRound";
/// The config file's name inside the config dir.
pub const CONFIG_FILE_NAME: &str = "config.toml";
/// Overrides the config dir (tests, the e2e test, portable installs).
pub const CONFIG_DIR_ENV: &str = "OSSTERM_CONFIG_DIR";
/// Overrides the data dir where chats are stored.
pub const DATA_DIR_ENV: &str = "OSSTERM_DATA_DIR";
/// Overrides the cache dir where chats' KV snapshots are kept.
pub const CACHE_DIR_ENV: &str = "OSSTERM_CACHE_DIR";
/// The default disk budget for chats' KV snapshots: about 175k tokens of gpt-oss-20b's f16
/// cache (24,576 bytes a token).
pub const DEFAULT_KV_DISK_BUDGET_MIB: u64 = 4096;

const TOP_LEVEL_KEYS: &[&str] = &[
    "model",
    "revision",
    "device",
    "dtype",
    "context",
    "effort",
    "max_tokens",
    "theme",
    "developer_instructions",
    "sampling",
    "keybindings",
    "tools",
    "mcp",
    "python",
    "browser",
    "kv_disk_budget_mib",
];
const SAMPLING_KEYS: &[&str] = &["temperature", "top_p", "top_k", "min_p", "seed"];

/// Errors finding, reading or validating the settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither the env override nor the OS gives a home for ossterm's files.
    #[error("cannot find a {what} directory: set {env} to a folder ossterm may use")]
    NoDirectory {
        what: &'static str,
        env: &'static str,
    },
    /// The file exists but could not be read (or an explicit `--config` file is missing).
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A key ossterm does not know (often a typo).
    #[error("config file {path}: unknown key `{key}` (known keys: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    /// A known key with a value ossterm cannot use.
    #[error("config file {path}: `{key}` {problem}")]
    BadValue {
        path: PathBuf,
        key: String,
        problem: String,
    },
    /// A command-line flag with a value ossterm cannot use.
    #[error("--{flag} {problem}")]
    BadFlag { flag: &'static str, problem: String },
    /// `[keybindings]` the app cannot use.
    #[error("config file {path}: [keybindings]: {source}")]
    Keybindings {
        path: PathBuf,
        source: crate::tui::keys::KeyError,
    },
}

/// The effective settings: defaults, then the config file, then flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The config file these settings were read from (it may not exist).
    pub path: PathBuf,
    /// Whether `path` existed and was read.
    pub file_found: bool,
    /// Hub id or local folder.
    pub model: String,
    /// Hub revision; `None` means `main`.
    pub revision: Option<String>,
    pub device: DeviceChoice,
    pub dtype: DtypeChoice,
    /// Context limit in tokens; `None` lets the planner pick the largest that fits.
    pub context: Option<usize>,
    pub effort: ReasoningEffort,
    /// Tokens one answer may generate at most (`max_tokens`); `None`: until the model stops
    /// or the context is full.
    pub max_tokens: Option<usize>,
    /// Theme name from `themes/`.
    pub theme: String,
    pub sampling: SamplingParams,
    /// True when the file or a flag set the temperature (the demo is greedy otherwise).
    pub temperature_set: bool,
    /// Action name -> key, as written; the TUI validates both.
    pub keybindings: BTreeMap<String, String>,
    /// Developer message text sent with every chat.
    pub developer_instructions: Option<String>,
    /// `[tools]`, `[mcp.NAME]`, `[python]`, `[browser]` (see `tools::settings`).
    pub tools: crate::tools::ToolSettings,
    /// Disk space for chats' KV snapshots (`kv_disk_budget_mib`); 0 keeps none.
    pub kv_disk_budget_bytes: u64,
}

impl Settings {
    /// Built-in defaults, attributed to `path`.
    pub fn defaults(path: PathBuf) -> Self {
        Self {
            path,
            file_found: false,
            model: DEFAULT_MODEL.to_string(),
            revision: None,
            device: DeviceChoice::Auto,
            dtype: DtypeChoice::Auto,
            context: None,
            effort: ReasoningEffort::Medium,
            max_tokens: None,
            theme: "dark".to_string(),
            sampling: SamplingParams::default(),
            temperature_set: false,
            keybindings: BTreeMap::new(),
            developer_instructions: None,
            tools: crate::tools::ToolSettings::default(),
            kv_disk_budget_bytes: DEFAULT_KV_DISK_BUDGET_MIB << 20,
        }
    }

    /// Loads the config file: `path_override` if given (it must exist), else `config.toml`
    /// in [`config_dir`] (a missing default file means defaults).
    pub fn load(path_override: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match path_override {
            Some(path) => (path.to_path_buf(), true),
            None => (config_path()?, false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_toml(&text, &path),
            Err(source) if !required && source.kind() == std::io::ErrorKind::NotFound => {
                Ok(Self::defaults(path))
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses config text; `path` names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string().trim_end().to_string(),
                })?;
        let reader = Reader { path };
        let mut settings = Self::defaults(path.to_path_buf());
        settings.file_found = true;
        for (key, value) in &table {
            match key.as_str() {
                "model" => settings.model = reader.non_empty_string(key, value)?,
                "revision" => settings.revision = Some(reader.non_empty_string(key, value)?),
                "device" => {
                    let text = reader.string(key, value)?;
                    settings.device = text.parse().map_err(|e: String| reader.bad(key, e))?;
                }
                "dtype" => settings.dtype = reader.parse_dtype(key, value)?,
                "context" => {
                    let n = reader.integer(key, value)?;
                    if n == 0 {
                        return Err(reader.bad(key, "must be at least 1 token".into()));
                    }
                    settings.context = Some(to_usize(n));
                }
                "effort" => {
                    let text = reader.string(key, value)?;
                    settings.effort = parse_effort(&text).map_err(|e| reader.bad(key, e))?;
                }
                "max_tokens" => {
                    let n = reader.integer(key, value)?;
                    if n == 0 {
                        return Err(reader.bad(key, "must be at least 1 token".into()));
                    }
                    settings.max_tokens = Some(to_usize(n));
                }
                "theme" => settings.theme = reader.non_empty_string(key, value)?,
                "kv_disk_budget_mib" => {
                    let mib = reader.integer(key, value)?;
                    settings.kv_disk_budget_bytes = mib.checked_mul(1 << 20).ok_or_else(|| {
                        reader.bad(key, format!("is {mib}: more MiB than a disk holds"))
                    })?;
                }
                "developer_instructions" => {
                    settings.developer_instructions = Some(reader.string(key, value)?)
                }
                "sampling" => {
                    reader.sampling(value, &mut settings.sampling)?;
                    settings.temperature_set |= value.get("temperature").is_some();
                }
                "keybindings" => settings.keybindings = reader.keybindings(value)?,
                "tools" | "mcp" | "python" | "browser" => {
                    crate::tools::settings::read_section(&reader, key, value, &mut settings.tools)?
                }
                other => return Err(reader.unknown(other, TOP_LEVEL_KEYS)),
            }
        }
        Ok(settings)
    }

    /// Applies command-line flags over the file's values.
    pub fn apply_args(&mut self, args: &AppArgs) -> Result<(), ConfigError> {
        if let Some(model) = &args.model.model {
            self.model = model.clone();
        }
        if let Some(revision) = &args.model.revision {
            self.revision = Some(revision.clone());
        }
        if let Some(device) = args.model.device {
            self.device = device;
        }
        // `--dtype` has a default of `auto`, so only an explicit other value overrides the file.
        if args.model.dtype != DtypeChoice::Auto {
            self.dtype = args.model.dtype;
        }
        if let Some(context) = args.context {
            if context == 0 {
                return Err(ConfigError::BadFlag {
                    flag: "context",
                    problem: "must be at least 1 token".into(),
                });
            }
            self.context = Some(context);
        }
        if let Some(effort) = &args.effort {
            self.effort = parse_effort(effort).map_err(|problem| ConfigError::BadFlag {
                flag: "effort",
                problem,
            })?;
        }
        if let Some(theme) = &args.theme {
            self.theme = theme.clone();
        }
        let s = &args.sampling;
        let sampling = &mut self.sampling;
        let checks: [(&'static str, Option<f64>, &mut f64); 3] = [
            ("temperature", s.temperature, &mut sampling.temperature),
            ("top-p", s.top_p, &mut sampling.top_p),
            ("min-p", s.min_p, &mut sampling.min_p),
        ];
        for (flag, value, slot) in checks {
            if let Some(value) = value {
                check_setting(flag, value).map_err(|e| ConfigError::BadFlag {
                    flag,
                    problem: e.problem(),
                })?;
                *slot = value;
            }
        }
        self.temperature_set |= s.temperature.is_some();
        if let Some(top_k) = s.top_k {
            sampling.top_k = top_k;
        }
        if let Some(seed) = s.seed {
            sampling.seed = seed;
        }
        // The demo model is tiny: sampled at temperature 1 it answers nonsense ("6 × 7 = 24").
        if args.demo && !self.temperature_set {
            self.sampling.temperature = 0.0;
        }
        Ok(())
    }

    /// The key map: the defaults with `[keybindings]` applied and checked
    /// (`KeyMap::with_overrides`); the app and `ossterm config` both call this.
    pub fn keymap(&self) -> Result<crate::tui::keys::KeyMap, ConfigError> {
        let overrides = self
            .keybindings
            .iter()
            .map(|(action, keys)| {
                let keys = keys.split_whitespace().map(str::to_string).collect();
                (action.clone(), keys)
            })
            .collect();
        crate::tui::keys::KeyMap::with_overrides(&overrides).map_err(|source| {
            ConfigError::Keybindings {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// The effective values as TOML (a valid config file).
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_json()).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The effective values as JSON (same keys as the file).
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "model": self.model,
            "device": self.device.to_string(),
            "dtype": dtype_name(self.dtype),
            "effort": effort_name(self.effort),
            "theme": self.theme,
            "kv_disk_budget_mib": self.kv_disk_budget_bytes >> 20,
            "sampling": {
                "temperature": self.sampling.temperature,
                "top_p": self.sampling.top_p,
                "top_k": self.sampling.top_k,
                "min_p": self.sampling.min_p,
                "seed": self.sampling.seed,
            },
            "keybindings": self.keybindings,
        });
        let object = value
            .as_object_mut()
            .expect("json! of an object literal is an object");
        if let Some(revision) = &self.revision {
            object.insert("revision".into(), revision.clone().into());
        }
        if let Some(context) = self.context {
            object.insert("context".into(), context.into());
        }
        if let Some(max_tokens) = self.max_tokens {
            object.insert("max_tokens".into(), max_tokens.into());
        }
        if let Some(text) = &self.developer_instructions {
            object.insert("developer_instructions".into(), text.clone().into());
        }
        value
    }
}

/// The folder holding `config.toml`: `$OSSTERM_CONFIG_DIR`, else the OS config dir.
pub fn config_dir() -> Result<PathBuf, ConfigError> {
    dir_from_env_or(CONFIG_DIR_ENV, "config", |dirs| {
        dirs.config_dir().to_path_buf()
    })
}

/// The default config file path.
pub fn config_path() -> Result<PathBuf, ConfigError> {
    Ok(config_dir()?.join(CONFIG_FILE_NAME))
}

/// The folder for saved chats: `$OSSTERM_DATA_DIR`, else the OS data dir.
pub fn data_dir() -> Result<PathBuf, ConfigError> {
    dir_from_env_or(DATA_DIR_ENV, "data", |dirs| dirs.data_dir().to_path_buf())
}

/// The folder for files ossterm can make again (chats' KV snapshots): `$OSSTERM_CACHE_DIR`;
/// else `cache/` in `$OSSTERM_DATA_DIR` when that is set, so a portable install (or a test)
/// keeps everything in one place; else the OS cache dir.
pub fn cache_dir() -> Result<PathBuf, ConfigError> {
    if std::env::var_os(CACHE_DIR_ENV).is_none_or(|v| v.is_empty())
        && let Some(data) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty())
    {
        return Ok(PathBuf::from(data).join("cache"));
    }
    dir_from_env_or(CACHE_DIR_ENV, "cache", |dirs| {
        dirs.cache_dir().to_path_buf()
    })
}

fn dir_from_env_or(
    env: &'static str,
    what: &'static str,
    pick: impl Fn(&directories::ProjectDirs) -> PathBuf,
) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "ossterm")
        .map(|dirs| pick(&dirs))
        .ok_or(ConfigError::NoDirectory { what, env })
}

/// Parses `low`, `medium` or `high`.
pub fn parse_effort(text: &str) -> Result<ReasoningEffort, String> {
    match text.to_ascii_lowercase().as_str() {
        "low" => Ok(ReasoningEffort::Low),
        "medium" => Ok(ReasoningEffort::Medium),
        "high" => Ok(ReasoningEffort::High),
        _ => Err(format!("is '{text}': use low, medium or high")),
    }
}

/// The config-file spelling of an effort.
pub fn effort_name(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::Low => "low",
        ReasoningEffort::Medium => "medium",
        ReasoningEffort::High => "high",
    }
}

fn dtype_name(dtype: DtypeChoice) -> &'static str {
    match dtype {
        DtypeChoice::Auto => "auto",
        DtypeChoice::F32 => "f32",
        DtypeChoice::Bf16 => "bf16",
        DtypeChoice::Q8Dense => "q8-dense",
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Reads typed values out of the table, with errors naming key and file.
pub(crate) struct Reader<'a> {
    path: &'a Path,
}

impl Reader<'_> {
    pub(crate) fn bad(&self, key: &str, problem: String) -> ConfigError {
        ConfigError::BadValue {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            problem,
        }
    }

    pub(crate) fn unknown(&self, key: &str, known: &[&str]) -> ConfigError {
        ConfigError::UnknownKey {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            known: known.join(", "),
        }
    }

    pub(crate) fn wrong_type(&self, key: &str, expected: &str, value: &toml::Value) -> ConfigError {
        self.bad(
            key,
            format!("must be {expected}, found {} {value}", value.type_str()),
        )
    }

    pub(crate) fn string(&self, key: &str, value: &toml::Value) -> Result<String, ConfigError> {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.wrong_type(key, "a string", value))
    }

    pub(crate) fn non_empty_string(
        &self,
        key: &str,
        value: &toml::Value,
    ) -> Result<String, ConfigError> {
        let text = self.string(key, value)?;
        if text.trim().is_empty() {
            return Err(self.bad(key, "must not be empty".into()));
        }
        Ok(text)
    }

    pub(crate) fn integer(&self, key: &str, value: &toml::Value) -> Result<u64, ConfigError> {
        let n = value
            .as_integer()
            .ok_or_else(|| self.wrong_type(key, "a whole number", value))?;
        u64::try_from(n).map_err(|_| self.bad(key, format!("is {n}: must not be negative")))
    }

    fn float(&self, key: &str, value: &toml::Value) -> Result<f64, ConfigError> {
        match value {
            toml::Value::Float(x) => Ok(*x),
            toml::Value::Integer(n) => Ok(*n as f64),
            other => Err(self.wrong_type(key, "a number", other)),
        }
    }

    fn parse_dtype(&self, key: &str, value: &toml::Value) -> Result<DtypeChoice, ConfigError> {
        match self.string(key, value)?.as_str() {
            "auto" => Ok(DtypeChoice::Auto),
            "f32" => Ok(DtypeChoice::F32),
            "bf16" => Ok(DtypeChoice::Bf16),
            "q8-dense" => Ok(DtypeChoice::Q8Dense),
            other => Err(self.bad(
                key,
                format!("is '{other}': use auto, f32, bf16 or q8-dense"),
            )),
        }
    }

    fn sampling(
        &self,
        value: &toml::Value,
        sampling: &mut SamplingParams,
    ) -> Result<(), ConfigError> {
        let table = value
            .as_table()
            .ok_or_else(|| self.wrong_type("sampling", "a table ([sampling])", value))?;
        for (name, value) in table {
            let key = format!("sampling.{name}");
            match name.as_str() {
                "temperature" | "top_p" | "min_p" => {
                    let x = self.float(&key, value)?;
                    check_setting(name, x).map_err(|e| self.bad(&key, e.problem()))?;
                    match name.as_str() {
                        "temperature" => sampling.temperature = x,
                        "top_p" => sampling.top_p = x,
                        _ => sampling.min_p = x,
                    }
                }
                "top_k" => sampling.top_k = to_usize(self.integer(&key, value)?),
                "seed" => sampling.seed = self.integer(&key, value)?,
                _ => return Err(self.unknown(&key, SAMPLING_KEYS)),
            }
        }
        Ok(())
    }

    fn keybindings(&self, value: &toml::Value) -> Result<BTreeMap<String, String>, ConfigError> {
        let table = value
            .as_table()
            .ok_or_else(|| self.wrong_type("keybindings", "a table ([keybindings])", value))?;
        table
            .iter()
            .map(|(action, key)| {
                let name = format!("keybindings.{action}");
                Ok((action.clone(), self.non_empty_string(&name, key)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("/cfg/config.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let settings = parse("").expect("empty config is valid");
        assert_eq!(settings.model, DEFAULT_MODEL);
        assert_eq!(settings.effort, ReasoningEffort::Medium);
        assert_eq!(settings.theme, "dark");
        assert_eq!(settings.sampling, SamplingParams::default());
        assert!(settings.file_found);
    }

    #[test]
    fn the_kv_disk_budget_is_in_mib_and_checked() {
        assert_eq!(
            parse("").expect("defaults").kv_disk_budget_bytes,
            4096 << 20
        );
        let settings = parse("kv_disk_budget_mib = 0").expect("0 turns snapshots off");
        assert_eq!(settings.kv_disk_budget_bytes, 0);
        let settings = parse("kv_disk_budget_mib = 512").expect("valid");
        assert_eq!(settings.kv_disk_budget_bytes, 512 << 20);
        assert!(settings.to_toml().contains("kv_disk_budget_mib = 512"));
        let err = parse("kv_disk_budget_mib = 9223372036854775807")
            .expect_err("overflows")
            .to_string();
        assert!(
            err.contains("`kv_disk_budget_mib` is 9223372036854775807: more MiB than a disk holds"),
            "{err}"
        );
        let err = parse("kv_disk_budget_mib = -1")
            .expect_err("negative")
            .to_string();
        assert!(
            err.contains("`kv_disk_budget_mib` is -1: must not be negative"),
            "{err}"
        );
    }

    #[test]
    fn reads_every_key() {
        let settings = parse(
            r#"
model = "/models/oss"
revision = "v1"
device = "cuda:1"
dtype = "f32"
context = 16384
effort = "high"
theme = "light"
developer_instructions = "Be brief."
[sampling]
temperature = 0
top_p = 0.9
top_k = 40
min_p = 0.05
seed = 7
[keybindings]
submit = "ctrl-enter"
"#,
        )
        .expect("valid config");
        assert_eq!(settings.model, "/models/oss");
        assert_eq!(settings.revision.as_deref(), Some("v1"));
        assert_eq!(settings.device, DeviceChoice::Cuda(1));
        assert_eq!(settings.dtype, DtypeChoice::F32);
        assert_eq!(settings.context, Some(16384));
        assert_eq!(settings.effort, ReasoningEffort::High);
        assert_eq!(settings.theme, "light");
        assert_eq!(
            settings.developer_instructions.as_deref(),
            Some("Be brief.")
        );
        assert_eq!(settings.sampling.temperature, 0.0);
        assert_eq!(settings.sampling.top_p, 0.9);
        assert_eq!(settings.sampling.top_k, 40);
        assert_eq!(settings.sampling.min_p, 0.05);
        assert_eq!(settings.sampling.seed, 7);
        assert_eq!(settings.keybindings["submit"], "ctrl-enter");
    }

    #[test]
    fn every_dtype_reads_and_renders_back() {
        for (name, dtype) in [
            ("auto", DtypeChoice::Auto),
            ("f32", DtypeChoice::F32),
            ("bf16", DtypeChoice::Bf16),
            ("q8-dense", DtypeChoice::Q8Dense),
        ] {
            let settings = parse(&format!("dtype = \"{name}\"\n")).expect("valid dtype");
            assert_eq!(settings.dtype, dtype);
            assert_eq!(parse(&settings.to_toml()).expect("renders").dtype, dtype);
        }
        let err = parse("dtype = \"q4\"\n").expect_err("refused").to_string();
        assert!(err.contains("use auto, f32, bf16 or q8-dense"), "{err}");
    }

    #[test]
    fn rendered_settings_read_back_the_same() {
        let mut settings = parse("effort = \"low\"\ncontext = 4096\n[sampling]\ntop_k = 3\n")
            .expect("valid config");
        settings.keybindings.insert("quit".into(), "ctrl-q".into());
        let mut again = parse(&settings.to_toml()).expect("rendered config parses");
        // The rendered file writes every setting, the temperature too.
        assert!(again.temperature_set);
        again.temperature_set = settings.temperature_set;
        assert_eq!(again, settings);
    }

    #[test]
    fn flags_override_the_file() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "ossterm",
            "--model",
            "/m",
            "--device",
            "cpu",
            "--dtype",
            "f32",
            "--context",
            "8192",
            "--effort",
            "LOW",
            "--temperature",
            "0",
            "--top-k",
            "5",
        ])
        .expect("flags parse");
        let mut settings = parse("model = \"hub/x\"\ndevice = \"cuda\"\ncontext = 100\neffort = \"high\"\n[sampling]\ntemperature = 0.7\nseed = 3\n")
            .expect("valid config");
        settings.apply_args(&cli.app).expect("valid flags");
        assert_eq!(settings.model, "/m");
        assert_eq!(settings.device, DeviceChoice::Cpu);
        assert_eq!(settings.dtype, DtypeChoice::F32);
        assert_eq!(settings.context, Some(8192));
        assert_eq!(settings.effort, ReasoningEffort::Low);
        assert_eq!(settings.sampling.temperature, 0.0);
        assert_eq!(settings.sampling.top_k, 5);
        assert_eq!(
            settings.sampling.seed, 3,
            "a value no flag sets stays from the file"
        );
    }

    #[test]
    fn bad_flags_are_named() {
        use clap::Parser;
        for (args, flag) in [
            (["ossterm", "--effort", "max"], "--effort"),
            (["ossterm", "--top-p", "0"], "--top-p"),
            (["ossterm", "--context", "0"], "--context"),
        ] {
            let cli = crate::cli::Cli::try_parse_from(args).expect("flags parse");
            let mut settings = parse("").expect("empty config");
            let err = settings.apply_args(&cli.app).expect_err("bad flag refused");
            assert!(err.to_string().starts_with(flag), "{err}");
        }
    }

    #[test]
    fn the_demo_is_greedy_unless_a_temperature_is_set() {
        use clap::Parser;
        let flags = |extra: &[&str]| {
            let mut argv = vec!["ossterm", "--demo"];
            argv.extend_from_slice(extra);
            crate::cli::Cli::try_parse_from(argv)
                .expect("flags parse")
                .app
        };
        let mut settings = parse("").expect("valid config");
        assert_eq!(settings.sampling.temperature, 1.0);
        settings.apply_args(&flags(&[])).expect("valid flags");
        assert_eq!(settings.sampling.temperature, 0.0);
        let mut settings = parse("[sampling]\ntemperature = 0.7\n").expect("valid config");
        settings.apply_args(&flags(&[])).expect("valid flags");
        assert_eq!(
            settings.sampling.temperature, 0.7,
            "the file's choice stays"
        );
        let mut settings = parse("").expect("valid config");
        settings
            .apply_args(&flags(&["--temperature", "1"]))
            .expect("valid flags");
        assert_eq!(
            settings.sampling.temperature, 1.0,
            "the flag's choice stays"
        );
    }

    #[test]
    fn max_tokens_is_read_checked_and_written_back() {
        assert_eq!(parse("").expect("valid").max_tokens, None);
        let settings = parse("max_tokens = 256\n").expect("valid");
        assert_eq!(settings.max_tokens, Some(256));
        assert_eq!(settings.to_json()["max_tokens"], 256);
        for (text, why) in [
            ("max_tokens = 0\n", "must be at least 1 token"),
            ("max_tokens = -3\n", "must not be negative"),
            ("max_tokens = \"many\"\n", "a whole number"),
        ] {
            let message = parse(text).expect_err(text).to_string();
            assert!(
                message.contains("/cfg/config.toml")
                    && message.contains("max_tokens")
                    && message.contains(why),
                "{text}: {message}"
            );
        }
    }
}
