//! The types shared by the front ends and the tool host: calls, approvals, results.

use std::time::Duration;

use crate::harmony::{Message, Role};

/// One call the model made: the last assistant message of a turn that ended in `<|call|>`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// Unique within the app's run; results and cancels name it.
    pub id: u64,
    /// The full recipient the model wrote: `functions.get_time`, `python`, `browser.search`.
    pub recipient: String,
    /// The channel the call was on (`commentary` or `analysis`); the result goes back on it.
    pub channel: String,
    /// `<|constrain|>json` or similar, when the model declared one.
    pub content_type: Option<String>,
    /// The arguments as the model wrote them (JSON for functions and browser, code for python).
    pub arguments: String,
}

impl ToolCall {
    /// The call in `message`, when it is an assistant message to someone other than `all`.
    pub fn from_message(id: u64, message: &Message) -> Option<Self> {
        if message.role != Role::Assistant {
            return None;
        }
        let recipient = message.recipient.as_deref()?.trim();
        if recipient.is_empty() || recipient == "all" {
            return None;
        }
        Some(Self {
            id,
            recipient: recipient.to_string(),
            channel: message
                .channel
                .clone()
                .unwrap_or_else(|| "commentary".to_string()),
            content_type: message.content_type.clone(),
            arguments: message.text(),
        })
    }
}

/// Where a call will run, shown in the approval prompt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ToolWhere {
    /// An MCP server started from the config (`[mcp.NAME]`), with its command line.
    McpServer { server: String, command: String },
    /// The python tool: a local sandboxed process, or a docker image.
    Python { runner: String },
    /// The browser tool: fetches over the network through this backend.
    Browser { backend: String },
    /// No configured tool answers to this recipient (the model is told so).
    Unknown,
}

/// The user's (or the allowlist's) answer to a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Approval {
    /// Run this call.
    AllowOnce,
    /// Run this call and every later call of this tool in this chat without asking.
    AllowForChat,
    /// Do not run it; the model is told it was denied.
    Deny,
    /// Run it with these arguments instead of the model's.
    Edited(String),
}

/// What a tool answered (or why it did not run).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolResult {
    /// The call this answers.
    pub call_id: u64,
    /// The tool message's author: the call's recipient (`functions.get_time`, `python`).
    pub author: String,
    /// The channel the call was on.
    pub channel: String,
    /// The text the model reads (already capped in size).
    pub text: String,
    /// True when the tool failed, timed out, was denied or stopped (the text says which).
    pub is_error: bool,
    /// Wall time the tool ran.
    pub duration: Duration,
}

impl ToolResult {
    /// The harmony message that carries this result back to the model:
    /// `<|start|>{author} to=assistant<|channel|>{channel}<|message|>{text}<|end|>`.
    pub fn to_message(&self) -> Message {
        Message::tool(self.author.clone(), self.text.clone())
            .with_recipient("assistant")
            .with_channel(self.channel.clone())
    }
}

/// What the tool host offers, and how each recipient runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCatalog {
    /// System-message namespaces (`browser`, `python`), as harmony renders them.
    pub builtin: Vec<crate::harmony::ToolNamespaceConfig>,
    /// The developer message's `functions` namespace (MCP tools, names as the model calls them).
    pub functions: Vec<crate::harmony::ToolDescription>,
    /// Every recipient the model may call (`functions.get_time`, `python`, `browser.search`).
    pub entries: std::collections::BTreeMap<String, CatalogEntry>,
}

/// How one recipient runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    /// Shown in the approval prompt.
    pub where_runs: ToolWhere,
    /// The server marked it read-only (MCP `readOnlyHint`); may auto-approve only if the
    /// config says so.
    pub read_only: bool,
}

/// The two ends of a running tool host (see `tools::host::spawn`).
#[derive(Debug)]
pub struct ToolHostHandle {
    /// Commands in.
    pub commands: std::sync::mpsc::Sender<ToolCommand>,
    /// Events out.
    pub events: std::sync::mpsc::Receiver<ToolEvent>,
}

/// What a front end asks of the tool host.
#[derive(Debug, Clone)]
pub enum ToolCommand {
    /// Run an approved call for this chat (python keeps its state per chat).
    Run { chat_id: String, call: ToolCall },
    /// Stop a running call; it answers with an error result saying it was stopped.
    Cancel { call_id: u64 },
    /// Forget a chat's python state (a new chat, or `/restart`).
    ResetChat { chat_id: String },
    /// Stop every server and runner and end the thread.
    Shutdown,
}

/// What the tool host tells a front end.
#[derive(Debug, Clone)]
pub enum ToolEvent {
    /// The tools now offered to the model (sent at start and when an MCP server starts or
    /// dies).
    Tools(ToolCatalog),
    /// A call started running.
    Started { call_id: u64 },
    /// A call finished (or failed, timed out, was stopped).
    Finished(ToolResult),
    /// A server or runner failed outside a call (shown; never fatal to the app).
    Problem { source: String, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_an_assistant_message_with_a_recipient() {
        let message = Message::assistant("commentary", "{\"tz\":\"UTC\"}")
            .with_recipient("functions.get_time")
            .with_content_type("<|constrain|>json");
        let call = ToolCall::from_message(7, &message).expect("a call");
        assert_eq!(call.recipient, "functions.get_time");
        assert_eq!(call.channel, "commentary");
        assert_eq!(call.arguments, "{\"tz\":\"UTC\"}");
        assert!(ToolCall::from_message(1, &Message::assistant("final", "hi")).is_none());
        let to_all = Message::assistant("final", "hi").with_recipient("all");
        assert!(ToolCall::from_message(1, &to_all).is_none());
    }

    #[test]
    fn a_result_goes_back_as_a_tool_message_to_the_assistant() {
        let result = ToolResult {
            call_id: 7,
            author: "functions.get_time".into(),
            channel: "commentary".into(),
            text: "12:00".into(),
            is_error: false,
            duration: Duration::from_millis(3),
        };
        let message = result.to_message();
        assert_eq!(message.role, Role::Tool);
        assert_eq!(message.name.as_deref(), Some("functions.get_time"));
        assert_eq!(message.recipient.as_deref(), Some("assistant"));
        assert_eq!(message.channel.as_deref(), Some("commentary"));
    }
}
