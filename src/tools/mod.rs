//! Tools gpt-oss may call: function tools from MCP servers, the python tool, the browser tool.
//!
//! The engine only generates: a turn that ends in `<|call|>` leaves a message with a recipient.
//! The front end (the app, `ask`, a remote session) turns it into a [`ToolCall`], asks the
//! [`Approval`] policy (and the user), and sends it to the tool host thread, which answers
//! with a [`ToolResult`]; the front end appends `result.to_message()` and submits again
//! (the reasoning stays in the prompt, so the engine re-uses the whole cached prefix).
//!
//! The tool host speaks [`ToolCommand`] in and [`ToolEvent`] out, like the engine, so the
//! UI never blocks on a tool.

pub mod agent;
pub mod agent_driver;
pub mod error;
pub mod host;
pub mod policy;
pub mod protocol;
pub mod python;
pub mod settings;

pub use agent::{AgentError, AgentLoop, AgentStep, ToolExchange};
pub use error::ToolError;
pub use policy::{ApprovalPolicy, Decision, DenyReason, RunReason};
pub use protocol::{
    Approval, CatalogEntry, ToolCall, ToolCatalog, ToolCommand, ToolEvent, ToolHostHandle,
    ToolResult, ToolWhere,
};
pub use settings::ToolSettings;
