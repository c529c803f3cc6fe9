//! The tool sections of the config file: `[tools]`, `[mcp.NAME]`, `[python]`, `[browser]`.
//!
//! Parsed by `config::Settings::from_toml` through its `Reader`, so every error names the
//! file and the full key (`mcp.time.timeout_s`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, Reader};

const TOOLS_KEYS: &[&str] = &["allow", "auto_approve_read_only", "work_dir"];
const MCP_KEYS: &[&str] = &["command", "args", "env", "timeout_s"];
const PYTHON_KEYS: &[&str] = &[
    "enabled",
    "runner",
    "timeout_s",
    "memory_mb",
    "output_bytes",
    "docker_image",
];
const BROWSER_KEYS: &[&str] = &["searxng_url", "timeout_s", "page_bytes", "result_bytes"];

/// Default per-call wall time for MCP servers (users report 60 s as too short for some).
pub const DEFAULT_MCP_TIMEOUT: Duration = Duration::from_secs(120);
/// Default python wall time per call: what harmony's python tool text promises the model.
pub const DEFAULT_PYTHON_TIMEOUT: Duration = Duration::from_secs(120);

/// Every tool setting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolSettings {
    /// `[tools] allow`: recipients that run without asking (`python`, `functions.time__now`).
    pub allow: Vec<String>,
    /// `[tools] auto_approve_read_only`: MCP tools marked `readOnlyHint` run without asking.
    pub auto_approve_read_only: bool,
    /// `[tools] work_dir`: where per-chat python folders live (default: the temp dir).
    pub work_dir: Option<PathBuf>,
    /// `[mcp.NAME]` servers, by name.
    pub mcp: BTreeMap<String, McpServerSettings>,
    /// `[python]`.
    pub python: PythonSettings,
    /// `[browser]`.
    pub browser: BrowserSettings,
}

/// One `[mcp.NAME]` server: a child process speaking MCP over stdio.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerSettings {
    /// The program to start (looked up on PATH).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment for it (the rest is inherited).
    pub env: BTreeMap<String, String>,
    /// Wall-time limit for one `tools/call`.
    pub timeout: Duration,
}

/// How python code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PythonRunner {
    /// A `python3` child of ossterm (rlimits, its own network namespace where allowed).
    Local,
    /// `docker run --network none` of `docker_image`.
    Docker,
}

impl PythonRunner {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Docker => "docker",
        }
    }
}

/// `[python]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonSettings {
    /// Off unless the config turns it on (the model's code runs on this machine).
    pub enabled: bool,
    /// Local process or docker.
    pub runner: PythonRunner,
    /// Wall-time limit of one call.
    pub timeout: Duration,
    /// Address-space limit of the python process (docker: `--memory`).
    pub memory_mb: u64,
    /// Output kept per call; the rest is cut with a note.
    pub output_bytes: usize,
    /// The image for `runner = "docker"`.
    pub docker_image: String,
}

impl Default for PythonSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            runner: PythonRunner::Local,
            timeout: DEFAULT_PYTHON_TIMEOUT,
            memory_mb: 1024,
            output_bytes: 16 * 1024,
            docker_image: "python:3.11".to_string(),
        }
    }
}

/// `[browser]`: off until a search backend is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserSettings {
    /// A SearXNG instance (its `/search?format=json` API is used).
    pub searxng_url: Option<String>,
    /// Wall-time limit of one fetch.
    pub timeout: Duration,
    /// Pages larger than this are refused.
    pub page_bytes: usize,
    /// Text returned to the model per call.
    pub result_bytes: usize,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        Self {
            searxng_url: None,
            timeout: Duration::from_secs(20),
            page_bytes: 5 * 1024 * 1024,
            result_bytes: 16 * 1024,
        }
    }
}

impl BrowserSettings {
    /// True once a search backend is set.
    pub fn enabled(&self) -> bool {
        self.searxng_url.is_some()
    }
}

/// Reads one top-level tool section (`key` is `tools`, `mcp`, `python` or `browser`).
pub(crate) fn read_section(
    reader: &Reader<'_>,
    key: &str,
    value: &toml::Value,
    settings: &mut ToolSettings,
) -> Result<(), ConfigError> {
    let table = value
        .as_table()
        .ok_or_else(|| reader.wrong_type(key, &format!("a table ([{key}])"), value))?;
    match key {
        "tools" => read_tools(reader, table, settings),
        "mcp" => {
            for (name, server) in table {
                let server_key = format!("mcp.{name}");
                if !valid_server_name(name) {
                    return Err(reader.bad(
                        &server_key,
                        "name must be letters, digits, `_` or `-`".into(),
                    ));
                }
                let server_table = server.as_table().ok_or_else(|| {
                    reader.wrong_type(&server_key, &format!("a table ([{server_key}])"), server)
                })?;
                let parsed = read_mcp_server(reader, &server_key, server_table)?;
                settings.mcp.insert(name.clone(), parsed);
            }
            Ok(())
        }
        "python" => read_python(reader, table, &mut settings.python),
        _ => read_browser(reader, table, &mut settings.browser),
    }
}

/// MCP server names become part of function names (`NAME__tool`).
fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn read_tools(
    reader: &Reader<'_>,
    table: &toml::Table,
    settings: &mut ToolSettings,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = format!("tools.{name}");
        match name.as_str() {
            "allow" => settings.allow = string_list(reader, &key, value)?,
            "auto_approve_read_only" => {
                settings.auto_approve_read_only = boolean(reader, &key, value)?
            }
            "work_dir" => settings.work_dir = Some(reader.non_empty_string(&key, value)?.into()),
            _ => return Err(reader.unknown(&key, TOOLS_KEYS)),
        }
    }
    Ok(())
}

fn read_mcp_server(
    reader: &Reader<'_>,
    server_key: &str,
    table: &toml::Table,
) -> Result<McpServerSettings, ConfigError> {
    let mut command = None;
    let mut server = McpServerSettings {
        command: String::new(),
        args: Vec::new(),
        env: BTreeMap::new(),
        timeout: DEFAULT_MCP_TIMEOUT,
    };
    for (name, value) in table {
        let key = format!("{server_key}.{name}");
        match name.as_str() {
            "command" => command = Some(reader.non_empty_string(&key, value)?),
            "args" => server.args = string_list(reader, &key, value)?,
            "env" => {
                let env = value
                    .as_table()
                    .ok_or_else(|| reader.wrong_type(&key, "a table of strings", value))?;
                for (var, text) in env {
                    let var_key = format!("{key}.{var}");
                    server
                        .env
                        .insert(var.clone(), reader.string(&var_key, text)?);
                }
            }
            "timeout_s" => server.timeout = seconds(reader, &key, value)?,
            _ => return Err(reader.unknown(&key, MCP_KEYS)),
        }
    }
    server.command = command.ok_or_else(|| {
        reader.bad(
            &format!("{server_key}.command"),
            "is missing: say which program starts the server".into(),
        )
    })?;
    Ok(server)
}

fn read_python(
    reader: &Reader<'_>,
    table: &toml::Table,
    python: &mut PythonSettings,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = format!("python.{name}");
        match name.as_str() {
            "enabled" => python.enabled = boolean(reader, &key, value)?,
            "runner" => {
                python.runner = match reader.string(&key, value)?.as_str() {
                    "local" => PythonRunner::Local,
                    "docker" => PythonRunner::Docker,
                    other => {
                        return Err(reader.bad(&key, format!("is '{other}': use local or docker")));
                    }
                }
            }
            "timeout_s" => python.timeout = seconds(reader, &key, value)?,
            "memory_mb" => python.memory_mb = at_least(reader, &key, value, 64)?,
            "output_bytes" => python.output_bytes = byte_count(reader, &key, value)?,
            "docker_image" => python.docker_image = reader.non_empty_string(&key, value)?,
            _ => return Err(reader.unknown(&key, PYTHON_KEYS)),
        }
    }
    Ok(())
}

fn read_browser(
    reader: &Reader<'_>,
    table: &toml::Table,
    browser: &mut BrowserSettings,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = format!("browser.{name}");
        match name.as_str() {
            "searxng_url" => {
                let text = reader.non_empty_string(&key, value)?;
                let parsed = url::Url::parse(&text)
                    .map_err(|e| reader.bad(&key, format!("is '{text}', not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(reader.bad(&key, format!("is '{text}': use an http(s) URL")));
                }
                browser.searxng_url = Some(text);
            }
            "timeout_s" => browser.timeout = seconds(reader, &key, value)?,
            "page_bytes" => browser.page_bytes = byte_count(reader, &key, value)?,
            "result_bytes" => browser.result_bytes = byte_count(reader, &key, value)?,
            _ => return Err(reader.unknown(&key, BROWSER_KEYS)),
        }
    }
    Ok(())
}

fn boolean(reader: &Reader<'_>, key: &str, value: &toml::Value) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| reader.wrong_type(key, "true or false", value))
}

fn string_list(
    reader: &Reader<'_>,
    key: &str,
    value: &toml::Value,
) -> Result<Vec<String>, ConfigError> {
    let items = value
        .as_array()
        .ok_or_else(|| reader.wrong_type(key, "a list of strings", value))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| reader.string(&format!("{key}[{i}]"), item))
        .collect()
}

fn at_least(
    reader: &Reader<'_>,
    key: &str,
    value: &toml::Value,
    min: u64,
) -> Result<u64, ConfigError> {
    let n = reader.integer(key, value)?;
    if n < min {
        return Err(reader.bad(key, format!("is {n}: must be at least {min}")));
    }
    Ok(n)
}

fn seconds(reader: &Reader<'_>, key: &str, value: &toml::Value) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(at_least(reader, key, value, 1)?))
}

fn byte_count(reader: &Reader<'_>, key: &str, value: &toml::Value) -> Result<usize, ConfigError> {
    let n = at_least(reader, key, value, 256)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Settings;

    use super::*;

    fn parse(text: &str) -> Result<ToolSettings, String> {
        Settings::from_toml(text, Path::new("/cfg/config.toml"))
            .map(|s| s.tools)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_leave_every_tool_off() {
        let tools = parse("").expect("empty config");
        assert!(!tools.python.enabled);
        assert!(!tools.browser.enabled());
        assert!(tools.mcp.is_empty());
        assert!(!tools.auto_approve_read_only);
    }

    #[test]
    fn reads_every_tool_key() {
        let tools = parse(
            r#"
[tools]
allow = ["python", "functions.time__now"]
auto_approve_read_only = true
work_dir = "/tmp/w"
[mcp.time]
command = "mcp-server-time"
args = ["--local-timezone", "UTC"]
env = { TZ = "UTC" }
timeout_s = 5
[python]
enabled = true
runner = "docker"
timeout_s = 3
memory_mb = 256
output_bytes = 1000
[browser]
searxng_url = "http://127.0.0.1:8888"
timeout_s = 4
page_bytes = 4096
result_bytes = 2048
"#,
        )
        .expect("valid");
        assert_eq!(tools.allow, ["python", "functions.time__now"]);
        assert!(tools.auto_approve_read_only);
        let time = &tools.mcp["time"];
        assert_eq!(time.command, "mcp-server-time");
        assert_eq!(time.args, ["--local-timezone", "UTC"]);
        assert_eq!(time.env["TZ"], "UTC");
        assert_eq!(time.timeout, Duration::from_secs(5));
        assert!(tools.python.enabled);
        assert_eq!(tools.python.runner, PythonRunner::Docker);
        assert_eq!(tools.python.timeout, Duration::from_secs(3));
        assert_eq!(tools.python.memory_mb, 256);
        assert_eq!(tools.python.output_bytes, 1000);
        assert_eq!(
            tools.browser.searxng_url.as_deref(),
            Some("http://127.0.0.1:8888")
        );
        assert_eq!(tools.browser.page_bytes, 4096);
        assert!(tools.browser.enabled());
    }

    #[test]
    fn bad_values_name_the_file_and_key() {
        let cases = [
            (
                "[python]\nrunner = \"vm\"",
                "`python.runner` is 'vm': use local or docker",
            ),
            (
                "[python]\ntimeout_s = 0",
                "`python.timeout_s` is 0: must be at least 1",
            ),
            ("[python]\nmemroy_mb = 5", "unknown key `python.memroy_mb`"),
            ("[mcp.time]\nargs = []", "`mcp.time.command` is missing"),
            (
                "[mcp.time]\ncommand = \"x\"\nargs = [1]",
                "`mcp.time.args[0]` must be a string",
            ),
            (
                "[mcp.\"a b\"]\ncommand = \"x\"",
                "`mcp.a b` name must be letters",
            ),
            (
                "[browser]\nsearxng_url = \"ftp://x\"",
                "`browser.searxng_url` is 'ftp://x'",
            ),
            (
                "[tools]\nallow = \"python\"",
                "`tools.allow` must be a list of strings",
            ),
            ("python = 3", "`python` must be a table ([python])"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains("/cfg/config.toml"), "{error}");
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
