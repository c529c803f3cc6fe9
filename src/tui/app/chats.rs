//! The open chat: building the conversation to submit and save, new chats, and reopening a
//! saved chat as it was (the saved-chats overlay is `chat_list`).

use super::scroll::PaneScroll;
use super::tools::{new_developer_message, with_builtin_tools};
use super::{App, CommandKind, Effect, Entry, PendingMessage, message_text, system_message};
use crate::harmony::{Content, Conversation, Message, ReasoningEffort, Role};
use crate::store::{ChatMeta, ChatSnapshot};
use crate::tui::doc::{DocKind, StreamDoc};

/// A saved system message with the app's reasoning effort (everything else kept).
fn with_effort(mut system: Message, effort: ReasoningEffort) -> Message {
    for content in &mut system.content {
        if let Content::SystemContent(c) = content {
            c.reasoning_effort = Some(effort);
        }
    }
    system
}

/// A saved developer message with the app's instructions (its tools and other fields kept);
/// `None` when nothing would be left in it.
fn with_instructions(mut developer: Message, instructions: &str) -> Option<Message> {
    let instructions = (!instructions.is_empty()).then(|| instructions.to_string());
    let mut keep = !developer.extra.is_empty();
    for content in &mut developer.content {
        match content {
            Content::DeveloperContent(d) => {
                d.instructions = instructions.clone();
                keep |= d.instructions.is_some() || d.tools.is_some() || !d.extra.is_empty();
            }
            Content::Text { text } => {
                *text = instructions.clone().unwrap_or_default();
                keep |= !text.is_empty();
            }
            Content::SystemContent(_) => keep = true,
        }
    }
    keep.then_some(developer)
}

impl App {
    /// The full conversation: system, developer (when it has instructions or tools), then
    /// messages. A reopened chat keeps its own system and developer messages (identity, date,
    /// tools, fields this version does not know); only the effort and the instructions follow
    /// the app's settings.
    pub fn conversation(&self) -> Conversation {
        // A new chat offers the tool host's tools: built-ins in the system message,
        // functions in the developer message.
        let catalog = &self.tools.catalog;
        let system = match &self.opened_system {
            Some(saved) => with_effort(saved.clone(), self.effort),
            None => with_builtin_tools(system_message(self.effort, &self.today), catalog),
        };
        let mut messages = vec![system];
        let instructions = self.developer_instructions.trim();
        match &self.opened_developer {
            Some(saved) => messages.extend(with_instructions(saved.clone(), instructions)),
            None => messages.extend(new_developer_message(instructions, catalog)),
        }
        messages.extend(self.messages.iter().cloned());
        Conversation {
            messages,
            extra: self.conversation_extra.clone(),
        }
    }

    /// What to save now.
    pub fn snapshot(&self) -> ChatSnapshot {
        ChatSnapshot {
            id: self.chat_id.clone(),
            meta: self.meta.clone(),
            conversation: self.conversation(),
        }
    }

    pub(super) fn save(&self) -> Effect {
        Effect::Save(Box::new(self.snapshot()))
    }

    pub(super) fn new_chat(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.generating {
            effects.push(Effect::Engine(CommandKind::Stop));
        }
        if !self.messages.is_empty() {
            effects.push(self.save());
        }
        // The python tool keeps state per chat: the old chat's goes.
        effects.push(Effect::Tool(crate::tools::ToolCommand::ResetChat {
            chat_id: self.chat_id.clone(),
        }));
        self.reset_chat(crate::store::new_chat_id(), ChatMeta::default());
        effects.push(Effect::Engine(CommandKind::NewChat));
        self.notice = Some("new chat".into());
        effects
    }

    pub(super) fn reset_chat(&mut self, id: String, meta: ChatMeta) {
        let now = chrono::Utc::now().to_rfc3339();
        self.chat_id = id;
        self.meta = ChatMeta {
            created: if meta.created.is_empty() {
                now.clone()
            } else {
                meta.created.clone()
            },
            updated: if meta.updated.is_empty() {
                now
            } else {
                meta.updated.clone()
            },
            ..meta
        };
        self.opened_system = None;
        self.opened_developer = None;
        self.conversation_extra = Default::default();
        self.messages.clear();
        self.entries.clear();
        self.generating = false;
        self.pending = PendingMessage::default();
        self.chat_scroll = PaneScroll::default();
        self.reasoning_scroll = PaneScroll::default();
        self.saved_context_tokens = None;
        self.tools.reset_chat();
        self.branching = Default::default();
    }

    /// Replaces the chat with a saved one (the driver's answer to `Effect::OpenChat`). The
    /// engine re-uses whatever prefix of it is still cached.
    pub fn open_chat(&mut self, chat: ChatSnapshot) {
        self.reset_chat(chat.id, chat.meta);
        self.conversation_extra = chat.conversation.extra;
        let mut turn_index = 0;
        for message in chat.conversation.messages {
            let text = message_text(&message);
            match message.role {
                Role::System => {
                    self.opened_system = Some(message);
                    continue;
                }
                Role::Developer => {
                    self.developer_instructions = message
                        .content
                        .iter()
                        .find_map(|c| match c {
                            Content::DeveloperContent(d) => d.instructions.clone(),
                            Content::Text { text } => Some(text.clone()),
                            Content::SystemContent(_) => None,
                        })
                        .unwrap_or_default();
                    self.opened_developer = Some(message);
                    continue;
                }
                Role::User => {
                    self.entries.push(Entry::User(StreamDoc::finished(
                        DocKind::Plain,
                        self.theme.text,
                        &text,
                        &self.theme,
                    )));
                }
                Role::Assistant | Role::Tool => {
                    if !matches!(self.entries.last(), Some(Entry::Assistant(_))) {
                        let turn = self.new_turn();
                        self.entries.push(turn);
                    }
                    let is_call = crate::tools::ToolCall::from_message(0, &message).is_some();
                    if is_call || message.role == Role::Tool {
                        self.reopen_tool_message(&message);
                    }
                    let theme = self.theme.clone();
                    if let Some(turn) = self.last_turn_mut() {
                        match message.channel.as_deref() {
                            // Calls and results are shown as their blocks.
                            _ if is_call || message.role == Role::Tool => {}
                            Some("analysis") => turn.reasoning.push(&text, &theme),
                            Some("commentary") => {
                                let to = message
                                    .recipient
                                    .as_deref()
                                    .map(|r| format!("→ {r}: "))
                                    .unwrap_or_default();
                                turn.commentary.push(format!("{to}{text}"));
                            }
                            _ => turn.answer.push(&text, &theme),
                        }
                        turn.reasoning.finish(&theme);
                        turn.answer.finish(&theme);
                    }
                }
            }
            self.messages.push(message);
            // Attach stats to the turn they belong to.
            while let Some(record) = self.meta.turns.get(turn_index) {
                if record.messages_after > self.messages.len() {
                    break;
                }
                turn_index += 1;
                let record = *record;
                if let Some(turn) = self.last_turn_mut() {
                    turn.stats = Some(record.stats);
                    turn.stop = Some(record.stop);
                }
            }
        }
        // Until the next turn the engine's figure is of the chat shown before: show what
        // this chat held when its last turn ended.
        self.saved_context_tokens = Some(self.meta.turns.last().map_or(0, |record| {
            let stats = record.stats;
            stats.cached_tokens + stats.prefill_tokens + stats.decode_tokens
        }));
        self.notice = Some(format!("opened '{}'", self.meta.title));
        self.check_opened_branches();
    }
}
