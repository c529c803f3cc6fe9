//! Tool calls in the app: the approval prompt, each call's block in the chat (arguments,
//! where it ran, duration, result), and the time tools took apart from decoding.
//!
//! A turn that ends in `<|call|>` leaves the call as the last message. The approval policy
//! decides first (allowlist, allowed for this chat, read-only when configured, unknown tools
//! denied); otherwise the prompt asks. An approved call goes to the tool
//! host as an effect; its result comes back as an input like an engine event, is appended to
//! the conversation and the model continues. The UI never waits for a tool.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent};

use super::{App, Effect, Entry, Pane};
use crate::engine::StopReason;
use crate::harmony::{Content, DeveloperContent, Message, Role};
use crate::tools::{
    Approval, ApprovalPolicy, Decision, DenyReason, ToolCall, ToolCatalog, ToolCommand, ToolEvent,
    ToolResult, ToolWhere,
};
use crate::tui::keys::Action;

/// Calls one user message may lead to; later ones are denied and the model is not asked
/// to go on (a model calling a missing tool again and again must not loop forever).
pub const MAX_CALLS_PER_MESSAGE: usize = 16;
/// What the model reads when the user stopped a running call (or the prompt with Esc).
pub const STOPPED_TEXT: &str = "The user stopped this tool call before it finished.";
/// What the model reads when no tool host runs the call (it did not start, or it ended).
pub const NO_HOST_TEXT: &str =
    "No tool can run here: the tool host is not running, so the call did not run.";
/// How long after the prompt appears its answer keys start to count.
pub const ANSWER_DELAY: Duration = Duration::from_millis(500);
/// Rows of a result a collapsed block shows.
pub const COLLAPSED_RESULT_LINES: usize = 3;

/// Where a call is.
#[derive(Debug, Clone, PartialEq)]
pub enum CallState {
    /// Waiting for the user's answer in the approval prompt.
    Asking,
    /// Sent to the tool host.
    Running,
    /// Answered (also denied, stopped or failed: the result says which).
    Done(ToolResult),
}

/// One call as the chat shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolBlock {
    /// The call as it runs (edited arguments included).
    pub call: ToolCall,
    /// Where it runs, from the catalog.
    pub where_runs: ToolWhere,
    /// The index in `App::entries` of the assistant turn that made the call.
    pub after_entry: usize,
    pub state: CallState,
    /// Shows the whole result instead of its first lines.
    pub expanded: bool,
}

/// The approval prompt over the chat.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalPrompt {
    /// The block (index in `ToolState::blocks`) being asked about.
    pub block: usize,
    /// Lines the arguments are scrolled down.
    pub scroll_lines: u16,
    /// When it appeared: answer keys count only [`ANSWER_DELAY`] later.
    pub shown_at: Instant,
    /// True while the arguments are being edited in the input box.
    pub editing: bool,
    /// What the input box held before editing, put back afterwards.
    draft: String,
}

/// The app's tool state, reset with the chat.
#[derive(Debug, Clone, Default)]
pub struct ToolState {
    /// What the tool host offers (empty until it reports, or without a host).
    pub catalog: ToolCatalog,
    /// What runs without asking (the config's allowlist and read-only rule).
    pub policy: ApprovalPolicy,
    /// Recipients the user allowed for this chat.
    pub allowed_for_chat: BTreeSet<String>,
    /// Every call of this chat, oldest first.
    pub blocks: Vec<ToolBlock>,
    pub prompt: Option<ApprovalPrompt>,
    /// The block Ctrl+O expands (the newest unless the user picked another).
    pub selected: Option<usize>,
    /// Tool time since the last user message, and over the chat.
    pub turn_time: Duration,
    pub chat_time: Duration,
    /// Calls since the last user message.
    pub turn_calls: usize,
    next_call_id: u64,
}

impl ToolState {
    /// True while a call waits for approval or runs: the chat cannot take a new message.
    pub fn busy(&self) -> bool {
        self.running().is_some() || self.prompt.is_some()
    }

    /// The running block's index.
    pub fn running(&self) -> Option<usize> {
        self.blocks
            .iter()
            .position(|b| b.state == CallState::Running)
    }

    /// The blocks made by the assistant turn at `entry`.
    pub fn blocks_after(&self, entry: usize) -> impl Iterator<Item = (usize, &ToolBlock)> {
        self.blocks
            .iter()
            .enumerate()
            .filter(move |(_, b)| b.after_entry == entry)
    }

    /// Forgets the chat's calls and permissions (a new or reopened chat); the catalog and
    /// the config's policy stay.
    pub fn reset_chat(&mut self) {
        *self = Self {
            catalog: std::mem::take(&mut self.catalog),
            policy: std::mem::take(&mut self.policy),
            next_call_id: self.next_call_id,
            ..Self::default()
        };
    }

    /// What the policy says before asking; someone is at the terminal, so it may ask.
    fn decide(&self, call: &ToolCall) -> Decision {
        if self.turn_calls >= MAX_CALLS_PER_MESSAGE {
            return Decision::Deny(DenyReason::CallLimit);
        }
        let policy = ApprovalPolicy {
            interactive: true,
            ..self.policy.clone()
        };
        policy.decide(
            call,
            self.catalog.entries.get(&call.recipient),
            &self.allowed_for_chat,
        )
    }

    fn where_runs(&self, recipient: &str) -> ToolWhere {
        self.catalog
            .entries
            .get(recipient)
            .map_or(ToolWhere::Unknown, |entry| entry.where_runs.clone())
    }
}

/// A result that did not come from a tool: denied, stopped, or nothing to run it.
pub fn local_result(call: &ToolCall, text: &str) -> ToolResult {
    ToolResult {
        call_id: call.id,
        author: call.recipient.clone(),
        channel: call.channel.clone(),
        text: text.to_string(),
        is_error: true,
        duration: Duration::ZERO,
    }
}

/// "python (local sandbox)", "MCP server time (uvx mcp-server-time)": the prompt's line.
pub fn where_label(where_runs: &ToolWhere) -> String {
    match where_runs {
        ToolWhere::McpServer { server, command } => format!("MCP server {server} ({command})"),
        ToolWhere::Python { runner } => format!("python, {runner}"),
        ToolWhere::Browser { backend } => format!("browser, through {backend}"),
        ToolWhere::Unknown => "no configured tool answers to this name (the model is told)".into(),
    }
}

/// The arguments as the prompt and the block show them: JSON pretty-printed, code as is.
pub fn pretty_arguments(arguments: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(value @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| arguments.to_string())
        }
        _ => arguments.to_string(),
    }
}

/// `system` offering the catalog's built-in namespaces (`browser`, `python`).
pub(super) fn with_builtin_tools(mut system: Message, catalog: &ToolCatalog) -> Message {
    for content in &mut system.content {
        if let Content::SystemContent(c) = content {
            for namespace in &catalog.builtin {
                c.tools
                    .get_or_insert_with(Default::default)
                    .insert(namespace.name.clone(), namespace.clone());
            }
        }
    }
    system
}

/// A new chat's developer message: the user's instructions and the catalog's function
/// tools; `None` when it would say nothing.
pub(super) fn new_developer_message(instructions: &str, catalog: &ToolCatalog) -> Option<Message> {
    let mut content = DeveloperContent::new();
    if !instructions.is_empty() {
        content = content.with_instructions(instructions);
    }
    if !catalog.functions.is_empty() {
        content = content.with_function_tools(catalog.functions.clone());
    }
    (content != DeveloperContent::new()).then(|| Message::developer(content))
}

impl App {
    /// The turn just ended: when it ended in a call, the policy or the user decides.
    pub(super) fn tool_turn_done(&mut self, stop: StopReason) -> Vec<Effect> {
        if stop != StopReason::Call {
            return Vec::new();
        }
        let id = self.tools.next_call_id;
        let Some(call) = self
            .messages
            .last()
            .and_then(|message| ToolCall::from_message(id, message))
        else {
            return Vec::new();
        };
        self.tools.next_call_id += 1;
        // The streamed "→ recipient: …" line becomes the call's block.
        let streamed = format!("→ {}: ", call.recipient);
        if let Some(turn) = self.last_turn_mut() {
            turn.commentary.retain(|line| !line.starts_with(&streamed));
        }
        let decision = self.tools.decide(&call);
        self.tools.blocks.push(ToolBlock {
            where_runs: self.tools.where_runs(&call.recipient),
            after_entry: self.entries.len().saturating_sub(1),
            call,
            state: CallState::Asking,
            expanded: false,
        });
        let block = self.tools.blocks.len() - 1;
        self.tools.selected = Some(block);
        match decision {
            Decision::Run(_) => self.run_call(block),
            Decision::Ask => {
                self.tools.prompt = Some(ApprovalPrompt {
                    block,
                    scroll_lines: 0,
                    editing: false,
                    draft: String::new(),
                    shown_at: Instant::now(),
                });
                Vec::new()
            }
            Decision::Deny(reason) => {
                let recipient = &self.tools.blocks[block].call.recipient;
                let text = reason.explain(recipient);
                self.notice = Some(text.clone());
                let result = local_result(&self.tools.blocks[block].call, &text);
                self.finish_call(block, result, reason != DenyReason::CallLimit)
            }
        }
    }

    /// Keys while the approval prompt is up: only its own keys answer; anything else is
    /// ignored, so typing on never approves a call.
    pub(super) fn approval_key(&mut self, key: KeyEvent, action: Option<Action>) -> Vec<Effect> {
        let Some(prompt) = &mut self.tools.prompt else {
            return Vec::new();
        };
        let block = prompt.block;
        if action == Some(Action::Quit) {
            return self.quit();
        }
        if prompt.editing {
            match action {
                Some(Action::Send) => {
                    let edited = self.input.take();
                    return self.answer_call(block, Approval::Edited(edited));
                }
                Some(Action::Stop) => {
                    let draft = std::mem::take(&mut prompt.draft);
                    prompt.editing = false;
                    self.input.set(&draft);
                    self.notice = Some("editing cancelled: the call still waits".into());
                }
                Some(Action::Newline) => self.input.insert("\n"),
                Some(_) => {}
                None => self.edit(key),
            }
            return Vec::new();
        }
        // Someone typing when the prompt pops up must not answer it with the next letter.
        let answer_key = matches!(key.code, KeyCode::Char('y' | 'a' | 'n' | 'e'));
        if answer_key && prompt.shown_at.elapsed() < ANSWER_DELAY {
            self.notice =
                Some("the prompt just appeared: read it, then press the key again".into());
            return Vec::new();
        }
        match key.code {
            KeyCode::Char('y') => return self.answer_call(block, Approval::AllowOnce),
            KeyCode::Char('a') => return self.answer_call(block, Approval::AllowForChat),
            KeyCode::Char('n') => return self.answer_call(block, Approval::Deny),
            KeyCode::Char('e') => {
                let arguments = self.tools.blocks[block].call.arguments.clone();
                prompt.editing = true;
                prompt.draft = self.input.take();
                self.input.set(&arguments);
                self.focus = Pane::Input;
                self.notice = Some("edit the arguments · Enter runs them · Esc goes back".into());
            }
            KeyCode::Up => prompt.scroll_lines = prompt.scroll_lines.saturating_sub(1),
            KeyCode::Down => prompt.scroll_lines = prompt.scroll_lines.saturating_add(1),
            KeyCode::PageUp => prompt.scroll_lines = prompt.scroll_lines.saturating_sub(10),
            KeyCode::PageDown => prompt.scroll_lines = prompt.scroll_lines.saturating_add(10),
            _ if action == Some(Action::Stop) => return self.stop_call(block),
            _ => {}
        }
        Vec::new()
    }

    /// Carries out the answer to the call in `block`.
    fn answer_call(&mut self, block: usize, approval: Approval) -> Vec<Effect> {
        if let Some(prompt) = self.tools.prompt.take() {
            self.input.set(&prompt.draft);
        }
        let recipient = self.tools.blocks[block].call.recipient.clone();
        match approval {
            Approval::Deny => {
                let text = DenyReason::User.explain(&recipient);
                let result = local_result(&self.tools.blocks[block].call, &text);
                self.notice = Some(format!("denied {recipient}: the model is told"));
                self.finish_call(block, result, true)
            }
            Approval::AllowForChat => {
                self.tools.allowed_for_chat.insert(recipient.clone());
                self.notice = Some(format!("{recipient} is allowed for this chat"));
                self.run_call(block)
            }
            Approval::AllowOnce => self.run_call(block),
            Approval::Edited(arguments) => {
                // The model reads the arguments that ran, not the ones it wrote.
                if let Some(message) = self.messages.last_mut()
                    && message.role == Role::Assistant
                    && message.recipient.as_deref() == Some(recipient.as_str())
                {
                    let mut edited = Message::assistant(
                        self.tools.blocks[block].call.channel.clone(),
                        arguments.clone(),
                    );
                    edited.recipient = message.recipient.clone();
                    edited.content_type = message.content_type.clone();
                    *message = edited;
                }
                self.tools.blocks[block].call.arguments = arguments;
                self.run_call(block)
            }
        }
    }

    fn run_call(&mut self, block: usize) -> Vec<Effect> {
        let entry = &mut self.tools.blocks[block];
        entry.state = CallState::Running;
        vec![Effect::Tool(ToolCommand::Run {
            chat_id: self.chat_id.clone(),
            call: entry.call.clone(),
        })]
    }

    /// Esc while a call waits or runs: the call ends as stopped, the model is told at the
    /// next message, and nothing more is generated now.
    pub(super) fn stop_call(&mut self, block: usize) -> Vec<Effect> {
        let was_running = self.tools.blocks[block].state == CallState::Running;
        if let Some(prompt) = self.tools.prompt.take() {
            self.input.set(&prompt.draft);
        }
        let call_id = self.tools.blocks[block].call.id;
        let result = local_result(&self.tools.blocks[block].call, STOPPED_TEXT);
        self.notice = Some("tool call stopped: the model is told with your next message".into());
        let mut effects = Vec::new();
        if was_running {
            effects.push(Effect::Tool(ToolCommand::Cancel { call_id }));
        }
        effects.extend(self.finish_call(block, result, false));
        effects
    }

    /// Records `result`, puts it in the conversation and, when `continue_turn`, lets the
    /// model go on.
    fn finish_call(
        &mut self,
        block: usize,
        result: ToolResult,
        continue_turn: bool,
    ) -> Vec<Effect> {
        self.tools.turn_time += result.duration;
        self.tools.chat_time += result.duration;
        self.tools.turn_calls += 1;
        self.messages.push(result.to_message());
        self.tools.blocks[block].state = CallState::Done(result);
        if continue_turn {
            self.submit()
        } else {
            vec![self.save()]
        }
    }

    /// An event from the tool host.
    pub(super) fn tool_event(&mut self, event: ToolEvent) -> Vec<Effect> {
        match event {
            ToolEvent::Tools(catalog) => {
                self.tools.catalog = catalog;
                Vec::new()
            }
            // Shown as running from the moment it was sent.
            ToolEvent::Started { .. } => Vec::new(),
            ToolEvent::Finished(result) => {
                // A call stopped with Esc has its answer already; a late one is dropped.
                let Some(block) = self.tools.running() else {
                    return Vec::new();
                };
                if self.tools.blocks[block].call.id != result.call_id {
                    return Vec::new();
                }
                self.finish_call(block, result, true)
            }
            ToolEvent::Problem { source, message } => {
                self.notice = Some(format!("{source}: {message}"));
                Vec::new()
            }
        }
    }

    /// Ctrl+O: expands or collapses the selected block.
    pub(super) fn toggle_tool_block(&mut self) {
        match self
            .tools
            .selected
            .and_then(|i| self.tools.blocks.get_mut(i))
        {
            Some(block) => block.expanded = !block.expanded,
            None => self.notice = Some("no tool call in this chat".into()),
        }
    }

    /// Ctrl+B: selects the previous block, wrapping to the newest.
    pub(super) fn select_tool_block(&mut self) {
        let count = self.tools.blocks.len();
        if count == 0 {
            self.notice = Some("no tool call in this chat".into());
            return;
        }
        let selected = match self.tools.selected {
            Some(i) if i > 0 && i < count => i - 1,
            _ => count - 1,
        };
        self.tools.selected = Some(selected);
        let call = &self.tools.blocks[selected].call;
        self.notice = Some(format!(
            "selected tool call {} of {count}: {}",
            selected + 1,
            call.recipient
        ));
    }

    /// A new user message starts a new tool turn.
    pub(super) fn tool_user_message(&mut self) {
        self.tools.turn_time = Duration::ZERO;
        self.tools.turn_calls = 0;
    }

    /// Rebuilds the blocks of a reopened chat from its call and tool messages.
    pub(super) fn reopen_tool_message(&mut self, message: &Message) {
        let entry = self.entries.len().saturating_sub(1);
        if message.role == Role::Tool {
            let author = message.name.clone().unwrap_or_default();
            if let Some(block) = self
                .tools
                .blocks
                .iter_mut()
                .rev()
                .find(|b| b.state == CallState::Asking && b.call.recipient == author)
            {
                let result = ToolResult {
                    call_id: block.call.id,
                    author,
                    channel: block.call.channel.clone(),
                    text: message.text(),
                    is_error: false,
                    duration: Duration::ZERO,
                };
                block.state = CallState::Done(result);
            }
            return;
        }
        let id = self.tools.next_call_id;
        if let Some(call) = ToolCall::from_message(id, message)
            && matches!(self.entries.last(), Some(Entry::Assistant(_)))
        {
            self.tools.next_call_id += 1;
            self.tools.blocks.push(ToolBlock {
                where_runs: self.tools.where_runs(&call.recipient),
                after_entry: entry,
                call,
                // Until its result is read; a call left unanswered stays so.
                state: CallState::Asking,
                expanded: false,
            });
            self.tools.selected = Some(self.tools.blocks.len() - 1);
        }
    }
}
