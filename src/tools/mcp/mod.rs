//! Function tools from MCP servers (the official Rust SDK, `rmcp`): each `[mcp.NAME]` is a
//! child process spoken to over stdio.
//!
//! Naming: every tool is offered as `functions.NAME__tool` (server name, two underscores,
//! the tool's name with anything but letters, digits and `_` made `_`). Always prefixed, so
//! an allowlist entry keeps meaning the same tool when another server is added.
//!
//! The tool list is read once at start (`notifications/tools/list_changed` is not followed);
//! a server that dies is reported once and its tools leave the catalog.

mod content;
mod schema;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ServiceError, ServiceExt};

use crate::harmony::ToolDescription;
use crate::tools::error::ToolError;
use crate::tools::host::{CallControl, ToolAnswer};
use crate::tools::settings::McpServerSettings;
use crate::tools::{CatalogEntry, ToolWhere};

pub use content::describe;
pub use schema::clean_schema;

/// The longest a server may take to start and list its tools.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the watcher checks that each server is still there.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Called once when a server stops outside ossterm's control: (server, why).
pub type DeathCallback = Arc<dyn Fn(&str, String) + Send + Sync>;

struct Server {
    name: String,
    /// The command line, for the approval prompt.
    command_line: String,
    timeout: Duration,
    client: RunningService<RoleClient, ()>,
    tools: Vec<Tool>,
    alive: AtomicBool,
}

/// All running MCP servers and the tokio runtime `rmcp` needs.
pub struct McpHub {
    servers: BTreeMap<String, Arc<Server>>,
    /// `NAME__tool` → (server, tool name as the server spells it).
    functions: BTreeMap<String, (String, String)>,
    on_death: Arc<Mutex<Option<DeathCallback>>>,
    /// Last, so it is dropped after the servers (their cleanup spawns tasks on it).
    runtime: tokio::runtime::Runtime,
}

impl Drop for McpHub {
    fn drop(&mut self) {
        // rmcp's child-process cleanup calls `tokio::spawn`: it needs the runtime entered.
        let _entered = self.runtime.enter();
        self.shutdown();
        self.servers.clear();
    }
}

impl std::fmt::Debug for McpHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHub")
            .field("servers", &self.servers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct McpFunction {
    /// As rendered in the `functions` namespace.
    pub description: ToolDescription,
    /// How it runs.
    pub entry: CatalogEntry,
}

impl McpHub {
    /// Starts every configured server; a server that fails is left out and reported in the
    /// returned list as (server, why), never fatal.
    pub fn start(
        settings: &BTreeMap<String, McpServerSettings>,
    ) -> Result<(Self, Vec<(String, String)>), ToolError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mcp")
            .enable_all()
            .build()
            .map_err(|source| ToolError::Spawn {
                what: "the MCP runtime".into(),
                source,
            })?;
        let mut servers = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, server) in settings {
            let started = runtime
                .block_on(async { tokio::time::timeout(STARTUP_TIMEOUT, connect(server)).await });
            match started {
                Ok(Ok((client, tools))) => {
                    servers.insert(
                        name.clone(),
                        Arc::new(Server {
                            name: name.clone(),
                            command_line: command_line(server),
                            timeout: server.timeout,
                            client,
                            tools,
                            alive: AtomicBool::new(true),
                        }),
                    );
                }
                Ok(Err(why)) => problems.push((name.clone(), why)),
                Err(_) => problems.push((
                    name.clone(),
                    format!(
                        "did not start and list its tools within {} s",
                        STARTUP_TIMEOUT.as_secs()
                    ),
                )),
            }
        }
        let mut functions = BTreeMap::new();
        for (name, server) in &servers {
            for tool in &server.tools {
                functions.insert(
                    function_name(name, &tool.name),
                    (name.clone(), tool.name.to_string()),
                );
            }
        }
        let hub = Self {
            runtime,
            servers,
            functions,
            on_death: Arc::new(Mutex::new(None)),
        };
        hub.watch();
        Ok((hub, problems))
    }

    /// Sets what to do when a server dies (the host reports it and re-sends the catalog).
    pub fn set_on_death(&self, callback: DeathCallback) {
        if let Ok(mut slot) = self.on_death.lock() {
            *slot = Some(callback);
        }
    }

    /// The functions of every live server.
    pub fn functions(&self) -> Vec<McpFunction> {
        let mut out = Vec::new();
        for (function, (server_name, tool_name)) in &self.functions {
            let Some(server) = self.servers.get(server_name) else {
                continue;
            };
            if !server.alive.load(Ordering::SeqCst) {
                continue;
            }
            let Some(tool) = server.tools.iter().find(|t| t.name == *tool_name) else {
                continue;
            };
            out.push(McpFunction {
                description: tool_description(function, tool),
                entry: CatalogEntry {
                    where_runs: ToolWhere::McpServer {
                        server: server.name.clone(),
                        command: server.command_line.clone(),
                    },
                    read_only: tool
                        .annotations
                        .as_ref()
                        .and_then(|a| a.read_only_hint)
                        .unwrap_or(false),
                },
            });
        }
        out
    }

    /// True when `function` (`NAME__tool`, without `functions.`) belongs to a server.
    pub fn knows(&self, function: &str) -> bool {
        self.functions.contains_key(function)
    }

    /// Calls `function` with the model's JSON `arguments`, within the server's timeout.
    pub fn call(&self, function: &str, arguments: &str, control: &CallControl) -> ToolAnswer {
        let Some((server_name, tool_name)) = self.functions.get(function) else {
            return ToolAnswer::error(format!("no MCP tool is called `{function}`"));
        };
        let Some(server) = self.servers.get(server_name).cloned() else {
            return ToolAnswer::error(format!("MCP server `{server_name}` is not running"));
        };
        if !server.alive.load(Ordering::SeqCst) {
            return ToolAnswer::error(format!(
                "MCP server `{server_name}` has stopped; its tools cannot run"
            ));
        }
        let arguments = match parse_arguments(arguments) {
            Ok(arguments) => arguments,
            Err(why) => return ToolAnswer::error(why),
        };
        let mut params = CallToolRequestParams::new(tool_name.clone());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let peer = server.client.peer().clone();
        let timeout = server.timeout;
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, peer.call_tool(params)).await });
        let abort = task.abort_handle();
        control.on_cancel(Box::new(move || abort.abort()));
        match self.runtime.block_on(task) {
            Err(_) => ToolAnswer::error("stopped by the user"),
            Ok(Err(_elapsed)) => ToolAnswer::error(format!(
                "MCP server `{server_name}` did not answer `{tool_name}` within {} s",
                timeout.as_secs()
            )),
            Ok(Ok(Ok(result))) => describe(&result),
            Ok(Ok(Err(error))) => {
                if server.client.peer().is_transport_closed()
                    || matches!(error, ServiceError::TransportClosed)
                {
                    let why = format!("stopped during a call of `{tool_name}` ({error})");
                    self.mark_dead(&server, why.clone());
                    ToolAnswer::error(format!("MCP server `{server_name}` {why}"))
                } else {
                    ToolAnswer::error(format!(
                        "MCP server `{server_name}` failed `{tool_name}`: {error}"
                    ))
                }
            }
        }
    }

    /// Stops every server.
    pub fn shutdown(&self) {
        for server in self.servers.values() {
            server.alive.store(false, Ordering::SeqCst);
            server.client.cancellation_token().cancel();
        }
    }

    fn mark_dead(&self, server: &Server, why: String) {
        report_death(server, &self.on_death, why);
    }

    /// A task per server that notices when its process has gone.
    fn watch(&self) {
        for server in self.servers.values() {
            let server = Arc::clone(server);
            let on_death = Arc::clone(&self.on_death);
            self.runtime.spawn(async move {
                loop {
                    tokio::time::sleep(WATCH_INTERVAL).await;
                    if !server.alive.load(Ordering::SeqCst) {
                        return;
                    }
                    if server.client.peer().is_transport_closed() {
                        report_death(&server, &on_death, "exited".into());
                        return;
                    }
                }
            });
        }
    }
}

/// Marks `server` dead and tells the host, once.
fn report_death(server: &Server, on_death: &Mutex<Option<DeathCallback>>, why: String) {
    if !server.alive.swap(false, Ordering::SeqCst) {
        return;
    }
    let callback = on_death.lock().ok().and_then(|slot| slot.clone());
    if let Some(callback) = callback {
        callback(&server.name, why);
    }
}

async fn connect(
    settings: &McpServerSettings,
) -> Result<(RunningService<RoleClient, ()>, Vec<Tool>), String> {
    let mut command = tokio::process::Command::new(&settings.command);
    command
        .args(&settings.args)
        .envs(&settings.env)
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", command_line(settings)))?;
    let client = ().serve(transport).await.map_err(|e| format!("failed the MCP handshake: {e}"))?;
    let tools = client
        .list_all_tools()
        .await
        .map_err(|e| format!("failed tools/list: {e}"))?;
    Ok((client, tools))
}

fn command_line(settings: &McpServerSettings) -> String {
    std::iter::once(settings.command.as_str())
        .chain(settings.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `NAME__tool`, with characters harmony's function names cannot hold made `_`.
pub fn function_name(server: &str, tool: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    format!("{}__{}", clean(server), clean(tool))
}

fn tool_description(function: &str, tool: &Tool) -> ToolDescription {
    let description = tool
        .description
        .as_deref()
        .or(tool.title.as_deref())
        .unwrap_or_default()
        .to_string();
    let schema = clean_schema(&serde_json::Value::Object((*tool.input_schema).clone()));
    let has_parameters = schema
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .is_some_and(|p| !p.is_empty());
    ToolDescription {
        name: function.to_string(),
        description,
        // harmony writes a function without parameters as `() => any`.
        parameters: has_parameters.then_some(schema),
    }
}

/// The model's arguments as a JSON object (`None` for no arguments).
fn parse_arguments(arguments: &str) -> Result<Option<rmcp::model::JsonObject>, String> {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(other) => Err(format!(
            "the arguments must be a JSON object, not {}",
            json_kind(&other)
        )),
        Err(e) => Err(format!("the arguments are not valid JSON: {e}")),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_are_server_then_tool() {
        assert_eq!(
            function_name("time", "get_current_time"),
            "time__get_current_time"
        );
        assert_eq!(function_name("my-srv", "a.b-c"), "my_srv__a_b_c");
    }

    #[test]
    fn arguments_must_be_a_json_object() {
        assert_eq!(parse_arguments("  "), Ok(None));
        assert!(parse_arguments("{\"a\":1}").is_ok_and(|a| a.is_some()));
        assert_eq!(
            parse_arguments("[1]"),
            Err("the arguments must be a JSON object, not an array".into())
        );
        assert!(
            parse_arguments("{oops")
                .is_err_and(|e| e.starts_with("the arguments are not valid JSON"))
        );
    }
}
