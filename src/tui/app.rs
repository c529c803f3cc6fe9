//! The app's state and its one `update` function: keys, paste, mouse and engine events go in;
//! state changes, and the effects the driver must perform (engine commands, saves, clipboard)
//! come out as data. Nothing here does IO, so every behaviour is testable with scripted events.

use std::cell::Cell;
use std::path::PathBuf;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

pub use self::metrics_state::{Metrics, SPEED_HISTORY_LEN};
use self::scroll::{PaneScroll, PaneView};
use super::doc::{DocKind, StreamDoc};
use super::input::InputBox;
use super::keys::{Action, KeyBinding, KeyMap};
use super::markdown;
use super::theme::Theme;
use crate::engine::protocol::{ModelInfo, SamplingParams};
use crate::engine::{Command, Event, StopReason, TurnStats};
use crate::harmony::{Content, Conversation, Message, ReasoningEffort, Role, SystemContent};
use crate::store::{ChatMeta, ChatSnapshot, TurnRecord};
use crate::structured::TurnConstraint;
use crate::tools::{ToolCommand, ToolEvent};

/// Tokens one answer may generate at most (the context limit usually ends it first).
pub const MAX_NEW_TOKENS: usize = 32_768;
/// Lines one wheel notch or scroll key moves.
const SCROLL_STEP_LINES: usize = 3;

/// Everything the app reacts to.
#[derive(Debug, Clone)]
pub enum Input {
    Key(KeyEvent),
    Paste(String),
    Mouse(MouseEvent),
    Resize,
    Engine(Event),
    /// An event from the tool host.
    Tool(ToolEvent),
    /// A signal (SIGTERM, SIGINT, SIGHUP) asks the app to end: save and quit as Ctrl+Q does.
    Terminate,
}

/// What the driver must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a command to the engine thread.
    Engine(CommandKind),
    /// Save this chat (atomically).
    Save(Box<ChatSnapshot>),
    /// Put text on the clipboard (OSC 52).
    Copy(String),
    /// Write the chat to a file (Markdown or harmony JSON).
    Export(Box<chat_files::ExportRequest>),
    /// Import a chat from this file (harmony JSON or our Markdown), save it and open it.
    Import(PathBuf),
    /// Read the saved chats and hand them to `App::show_chat_list`.
    ListChats,
    /// Load a saved chat and hand it to `App::open_chat`.
    OpenChat(String),
    /// Move a saved chat to the trash, then list again and tell `App::chat_trashed`.
    DeleteChat(String),
    /// Give a saved chat (not the open one) a new title, then list again.
    RenameChat { id: String, title: String },
    /// Read the trash and hand it to `App::show_trash`.
    ListTrash,
    /// Put this trash entry back, then hand the list to `App::chat_restored`.
    RestoreChat(String),
    /// Send a command to the tool host.
    Tool(ToolCommand),
    /// Read and check the JSON schema at this path (`/json FILE`), then hand it to
    /// `App::set_answer_format`.
    LoadAnswerFormat(PathBuf),
    /// Leave the app.
    Quit,
}

/// `engine::Command` without the non-comparable parts, so tests can match effects; the
/// driver turns it into a real command with `into_command`.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandKind {
    /// The conversation, and the answer format set by `/json` (if any).
    Submit(Conversation, Option<TurnConstraint>),
    Stop,
    SetEffort(ReasoningEffort),
    SetSampling(SamplingParams),
    NewChat,
    SetContextLimit(usize),
}

impl CommandKind {
    /// The engine command.
    pub fn into_command(self) -> Command {
        match self {
            CommandKind::Submit(conversation, constraint) => Command::Submit {
                conversation,
                max_new_tokens: MAX_NEW_TOKENS,
                constraint,
            },
            CommandKind::Stop => Command::Stop,
            CommandKind::SetEffort(e) => Command::SetEffort(e),
            CommandKind::SetSampling(s) => Command::SetSampling(s),
            CommandKind::NewChat => Command::NewChat,
            CommandKind::SetContextLimit(n) => Command::SetContextLimit(n),
        }
    }
}

/// The model's state, for the status line and the loading screen.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelState {
    Loading {
        stage: String,
        done_bytes: u64,
        total_bytes: u64,
    },
    Ready(ModelInfo),
    Failed,
}

/// The panes focus moves between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Input,
    Chat,
    Reasoning,
    Metrics,
}

/// A popup drawn over the panes.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    None,
    Help,
    /// An error with what to do; fatal ones stay until quit.
    Error {
        message: String,
        fatal: bool,
    },
    /// Saved chats: search, open, rename, delete, trash.
    Chats(Box<chat_list::ChatList>),
}

/// One assistant turn as shown: reasoning, tool calls/preambles, answer and stats.
#[derive(Debug, Clone)]
pub struct AssistantTurn {
    pub reasoning: StreamDoc,
    pub answer: StreamDoc,
    /// Commentary-channel lines (tool calls, preambles).
    pub commentary: Vec<String>,
    pub prefill: Option<TurnStats>,
    pub stats: Option<TurnStats>,
    pub stop: Option<StopReason>,
}

/// One item of the chat pane.
#[derive(Debug, Clone)]
pub enum Entry {
    User(StreamDoc),
    Assistant(Box<AssistantTurn>),
}

/// Context used as a percentage of the limit (0 when the limit is unknown).
pub fn context_percent(used: usize, limit: usize) -> f64 {
    if limit == 0 {
        0.0
    } else {
        used as f64 * 100.0 / limit as f64
    }
}

/// The message being streamed, until `MessageDone` replaces it with the engine's.
#[derive(Debug, Clone, Default)]
struct PendingMessage {
    channel: Option<String>,
    recipient: Option<String>,
    text: String,
}

/// Where the panes were last drawn (for mouse hit-testing and page sizes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PaneRects {
    pub chat: Rect,
    pub reasoning: Option<Rect>,
    pub metrics: Rect,
    pub input: Rect,
}

/// The whole app state.
pub struct App {
    pub theme: Theme,
    pub keymap: KeyMap,
    pub model: ModelState,
    pub effort: ReasoningEffort,
    /// What the engine samples with (changed by /temp, /top-p, /top-k, /min-p, /seed).
    pub sampling: SamplingParams,
    pub developer_instructions: String,
    pub chat_id: String,
    pub meta: ChatMeta,
    /// The conversation without system/developer messages (those are built per submit).
    pub messages: Vec<Message>,
    /// A reopened chat's system message, kept as saved (identity, date, tools, unknown
    /// fields); `None` for a new chat.
    opened_system: Option<Message>,
    /// A reopened chat's developer message, kept as saved (tools, unknown fields).
    opened_developer: Option<Message>,
    /// A reopened chat's conversation-level fields this version does not know.
    conversation_extra: crate::harmony::ExtraFields,
    pub entries: Vec<Entry>,
    pub generating: bool,
    pending: PendingMessage,
    pub input: InputBox,
    /// Sent messages and commands for ↑/↓ recall.
    pub history: history::InputHistory,
    pub focus: Pane,
    pub overlay: Overlay,
    pub show_reasoning: bool,
    /// True when the terminal tells Shift+Enter from Enter (keyboard enhancement); otherwise
    /// the hints name another new-line key.
    pub shift_enter_works: bool,
    pub expand_earlier_reasoning: bool,
    /// Lines the help overlay is scrolled down.
    pub help_scroll: u16,
    /// Where the chat pane is scrolled (it follows new text until the user scrolls up).
    pub chat_scroll: PaneScroll,
    pub reasoning_scroll: PaneScroll,
    /// Width of the chat pane in percent of the screen.
    pub chat_width_percent: u16,
    /// Rows added to (or taken from) the metrics pane's default height.
    pub metrics_rows_offset: i16,
    pub metrics: Metrics,
    /// Tool calls: the approval prompt, the calls' blocks, tool time.
    pub tools: tools::ToolState,
    /// The message picked with the keyboard, and an edit in progress.
    pub branching: branches::BranchState,
    /// A reopened chat's context in tokens (as its last turn left it), shown until the
    /// engine reports on this chat's next turn.
    pub saved_context_tokens: Option<usize>,
    /// The final answer's JSON schema (`/json FILE`) and the file it came from; every submit
    /// carries it until `/json off`.
    pub answer_format: Option<(PathBuf, TurnConstraint)>,
    /// A one-line message under the input (copied, saved, usage hints).
    pub notice: Option<String>,
    /// Tokens one answer may generate (`/max N`, config `max_tokens`); `None`: no limit but
    /// [`MAX_NEW_TOKENS`].
    pub max_new_tokens: Option<usize>,
    /// Rendered tokens of each of `messages` as the engine last counted them.
    pub message_tokens: numbers::MessageTokens,
    /// "2026-11-27", for the system message.
    pub today: String,
    pub quit: bool,
    /// Set by drawing; read by mouse and paging.
    pub rects: Cell<PaneRects>,
    /// What the chat and reasoning panes held when last drawn; set by drawing, read by
    /// scrolling.
    pub views: Cell<ScrollViews>,
}

/// The chat and reasoning panes as last drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScrollViews {
    pub chat: PaneView,
    pub reasoning: PaneView,
}

/// The parts of `App` that come from settings.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub theme: Theme,
    pub keymap: KeyMap,
    pub effort: ReasoningEffort,
    pub sampling: SamplingParams,
    pub developer_instructions: String,
    pub chat_id: String,
    pub today: String,
}

/// One line with every sampling setting, for `/sampling` and after a change.
pub fn sampling_summary(s: &SamplingParams) -> String {
    let off_if_zero = |v: f64| {
        if v == 0.0 {
            "off".to_string()
        } else {
            v.to_string()
        }
    };
    format!(
        "temperature {}{} · top-p {} · top-k {} · min-p {} · seed {}",
        s.temperature,
        if s.temperature == 0.0 {
            " (greedy)"
        } else {
            ""
        },
        s.top_p,
        if s.top_k == 0 {
            "off".to_string()
        } else {
            s.top_k.to_string()
        },
        off_if_zero(s.min_p),
        s.seed
    )
}

/// `sampling` with one setting changed by a slash command ("/temp 0.7"), or the usage line.
fn with_sampling_setting(
    mut sampling: SamplingParams,
    command: &str,
    value: &str,
) -> Result<SamplingParams, String> {
    let key = match command {
        "/temp" | "/temperature" => "temperature",
        "/top-p" => "top-p",
        "/top-k" => "top-k",
        "/min-p" => "min-p",
        _ => "seed",
    };
    let usage = |why: String| match key {
        "temperature" => {
            format!("/temp {why}: give a number >= 0 (0 = greedy; gpt-oss default 1.0)")
        }
        "top-p" => format!("/top-p {why}: give a number in (0, 1] (1 = off)"),
        "top-k" => format!("/top-k {why}: give a whole number (0 = off)"),
        "min-p" => format!("/min-p {why}: give a number in [0, 1] (0 = off)"),
        _ => format!("/seed {why}: give a whole number"),
    };
    if value.is_empty() {
        return Err(usage("needs a value".into()));
    }
    match key {
        "top-k" => sampling.top_k = value.parse().map_err(|_| usage(format!("'{value}'")))?,
        "seed" => sampling.seed = value.parse().map_err(|_| usage(format!("'{value}'")))?,
        _ => {
            let number: f64 = value.parse().map_err(|_| usage(format!("'{value}'")))?;
            crate::engine::sampler::check_setting(key, number)
                .map_err(|_| usage(format!("{value} is out of range")))?;
            match key {
                "temperature" => sampling.temperature = number,
                "top-p" => sampling.top_p = number,
                _ => sampling.min_p = number,
            }
        }
    }
    Ok(sampling)
}

/// Parses "low", "medium", "high".
pub fn parse_effort(text: &str) -> Option<ReasoningEffort> {
    crate::config::parse_effort(text.trim()).ok()
}

pub use crate::config::effort_name;

fn text_message(role: Role, channel: Option<&str>, text: &str) -> Message {
    let mut message = Message::from_role_and_content(role, Content::text(text));
    message.channel = channel.map(str::to_string);
    message
}

/// The text of a message's content (system/developer content has none).
pub fn message_text(message: &Message) -> String {
    message.text()
}

/// The harmony system message: identity, knowledge cutoff, today's date, reasoning effort and
/// the required channels (openai_harmony's defaults plus effort and date).
pub fn system_message(effort: ReasoningEffort, today: &str) -> Message {
    Message::system(
        SystemContent::new()
            .with_reasoning_effort(effort)
            .with_conversation_start_date(today),
    )
}

impl App {
    /// A new app with an empty chat, waiting for the engine to load.
    pub fn new(options: AppOptions) -> Self {
        let now = chrono::Utc::now().to_rfc3339();
        Self {
            theme: options.theme,
            keymap: options.keymap,
            model: ModelState::Loading {
                stage: "starting".into(),
                done_bytes: 0,
                total_bytes: 0,
            },
            effort: options.effort,
            sampling: options.sampling,
            developer_instructions: options.developer_instructions,
            chat_id: options.chat_id,
            meta: ChatMeta {
                created: now.clone(),
                updated: now,
                ..ChatMeta::default()
            },
            messages: Vec::new(),
            opened_system: None,
            opened_developer: None,
            conversation_extra: Default::default(),
            entries: Vec::new(),
            generating: false,
            pending: PendingMessage::default(),
            input: InputBox::default(),
            history: history::InputHistory::default(),
            focus: Pane::Input,
            overlay: Overlay::None,
            show_reasoning: true,
            shift_enter_works: false,
            expand_earlier_reasoning: false,
            help_scroll: 0,
            chat_scroll: PaneScroll::default(),
            reasoning_scroll: PaneScroll::default(),
            chat_width_percent: 60,
            metrics_rows_offset: 0,
            metrics: Metrics::default(),
            tools: tools::ToolState::default(),
            branching: Default::default(),
            saved_context_tokens: None,
            answer_format: None,
            notice: None,
            max_new_tokens: None,
            message_tokens: numbers::MessageTokens::default(),
            today: options.today,
            quit: false,
            rects: Cell::new(PaneRects::default()),
            views: Cell::new(ScrollViews::default()),
        }
    }

    /// The assistant turn being streamed (or the last one).
    pub fn last_turn(&self) -> Option<&AssistantTurn> {
        self.entries.iter().rev().find_map(|e| match e {
            Entry::Assistant(t) => Some(t.as_ref()),
            Entry::User(_) => None,
        })
    }

    fn last_turn_mut(&mut self) -> Option<&mut AssistantTurn> {
        match self.entries.last_mut() {
            Some(Entry::Assistant(t)) => Some(t.as_mut()),
            _ => None,
        }
    }

    fn new_turn(&self) -> Entry {
        Entry::Assistant(Box::new(AssistantTurn {
            reasoning: StreamDoc::new(DocKind::Plain, self.theme.reasoning),
            answer: StreamDoc::new(DocKind::Markdown, self.theme.text),
            commentary: Vec::new(),
            prefill: None,
            stats: None,
            stop: None,
        }))
    }

    /// Handles one input; returns what the driver must do.
    pub fn update(&mut self, input: Input) -> Vec<Effect> {
        match input {
            Input::Key(key) => self.key(key),
            Input::Paste(text) => {
                self.input.insert(&text);
                self.focus = Pane::Input;
                Vec::new()
            }
            Input::Mouse(mouse) => {
                self.mouse(mouse);
                Vec::new()
            }
            Input::Resize => Vec::new(),
            Input::Engine(event) => self.engine_event(event),
            Input::Tool(event) => self.tool_event(event),
            Input::Terminate => self.quit(),
        }
    }

    // ─── Engine events ───

    fn engine_event(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::LoadProgress {
                stage,
                done_bytes,
                total_bytes,
            } => {
                self.model = ModelState::Loading {
                    stage,
                    done_bytes,
                    total_bytes,
                };
                Vec::new()
            }
            Event::Ready(info) => {
                self.model = ModelState::Ready(info);
                Vec::new()
            }
            Event::PromptTokens { message_tokens } => {
                self.set_message_tokens(&message_tokens);
                Vec::new()
            }
            Event::PrefillDone { stats } => {
                if let Some(turn) = self.last_turn_mut() {
                    turn.prefill = Some(stats);
                }
                Vec::new()
            }
            Event::Token {
                channel,
                recipient,
                delta,
                ..
            } => {
                self.token(channel, recipient, &delta);
                Vec::new()
            }
            Event::MessageDone(message) => {
                self.pending = PendingMessage::default();
                let theme = self.theme.clone();
                if let Some(turn) = self.last_turn_mut() {
                    turn.reasoning.finish(&theme);
                    turn.answer.finish(&theme);
                }
                self.messages.push(message);
                vec![self.save()]
            }
            Event::TurnDone { stop, stats } => self.turn_done(stop, stats),
            Event::Metrics(sample) => {
                self.metrics.push(sample);
                Vec::new()
            }
            Event::ChatRestored {
                restored_tokens, ..
            } => self.kv_restored(restored_tokens),
            Event::Notice(text) => {
                self.notice = Some(text);
                Vec::new()
            }
            Event::Error { message, fatal } => {
                self.overlay = Overlay::Error { message, fatal };
                if fatal {
                    self.model = ModelState::Failed;
                    self.generating = false;
                    return Vec::new();
                }
                // The engine sends no TurnDone after a failed turn (prompt over the limit,
                // non-finite logits): end it here, or the app would wait for it forever.
                if self.generating {
                    return self.turn_failed();
                }
                Vec::new()
            }
        }
    }

    fn token(&mut self, channel: Option<String>, recipient: Option<String>, delta: &str) {
        if !self.generating {
            return;
        }
        let starts_message = self.pending.text.is_empty()
            && (self.pending.channel != channel || self.pending.recipient != recipient);
        if starts_message || self.pending.channel != channel {
            self.pending.channel = channel.clone();
            self.pending.recipient = recipient.clone();
        }
        self.pending.text.push_str(delta);
        let theme = self.theme.clone();
        let Some(turn) = self.last_turn_mut() else {
            return;
        };
        match channel.as_deref() {
            Some("analysis") => turn.reasoning.push(delta, &theme),
            Some("commentary") => {
                if starts_message || turn.commentary.is_empty() {
                    let to = recipient
                        .as_deref()
                        .map(|r| format!("→ {r}: "))
                        .unwrap_or_default();
                    turn.commentary.push(to);
                }
                if let Some(line) = turn.commentary.last_mut() {
                    line.push_str(delta);
                }
            }
            _ => turn.answer.push(delta, &theme),
        }
    }

    /// Ends the streamed turn: the engine is idle again, and a message cut short (stop,
    /// length, full context, an error) never gets MessageDone, so what arrived is kept for the
    /// chat to show and save.
    fn end_turn(&mut self) {
        self.generating = false;
        let pending = std::mem::take(&mut self.pending);
        if !pending.text.is_empty() {
            let mut message =
                text_message(Role::Assistant, pending.channel.as_deref(), &pending.text);
            message.recipient = pending.recipient;
            self.messages.push(message);
        }
        let theme = self.theme.clone();
        if let Some(turn) = self.last_turn_mut() {
            turn.reasoning.finish(&theme);
            turn.answer.finish(&theme);
        }
    }

    /// The engine reported an error instead of finishing the turn (the popup shows it).
    fn turn_failed(&mut self) -> Vec<Effect> {
        self.end_turn();
        self.notice = Some("the answer failed (see the message); the chat is saved".into());
        self.meta.updated = chrono::Utc::now().to_rfc3339();
        vec![self.save()]
    }

    fn turn_done(&mut self, stop: StopReason, stats: TurnStats) -> Vec<Effect> {
        self.end_turn();
        self.metrics.turn_done(&stats);
        self.note_length_stop(stop);
        if let Some(turn) = self.last_turn_mut() {
            turn.stop = Some(stop);
            turn.stats = Some(stats);
        }
        self.meta.turns.push(TurnRecord {
            messages_after: self.messages.len(),
            stop,
            stats,
        });
        self.meta.updated = chrono::Utc::now().to_rfc3339();
        let mut effects = vec![self.save()];
        effects.extend(self.tool_turn_done(stop));
        effects
    }

    // ─── Keys ───

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let action = self.keymap.action_for(&key);
        match &self.overlay {
            Overlay::Help => {
                match key.code {
                    KeyCode::Up => self.help_scroll = self.help_scroll.saturating_sub(1),
                    KeyCode::Down => self.help_scroll = self.help_scroll.saturating_add(1),
                    KeyCode::PageUp => self.help_scroll = self.help_scroll.saturating_sub(10),
                    KeyCode::PageDown => self.help_scroll = self.help_scroll.saturating_add(10),
                    _ if action == Some(Action::Quit) => return self.quit(),
                    _ => self.overlay = Overlay::None,
                }
                return Vec::new();
            }
            Overlay::Error { fatal, .. } => {
                let fatal = *fatal;
                if action == Some(Action::Quit) || (fatal && matches!(key.code, KeyCode::Char('q')))
                {
                    return self.quit();
                }
                if fatal {
                    return Vec::new();
                }
                self.overlay = Overlay::None;
                // Esc and Enter only close the popup; any other key closes it and does its
                // own job too, so typing on ("/chats") does not lose its first key.
                if matches!(action, Some(Action::Stop | Action::Send)) {
                    return Vec::new();
                }
            }
            Overlay::Chats(_) => return self.chat_list_key(key, action),
            Overlay::None => {}
        }
        if self.tools.prompt.is_some() {
            return self.approval_key(key, action);
        }
        if let Some(effects) = self.branch_key(key, action) {
            return effects;
        }
        if let Some(action) = action {
            // '?' opens help only when it can't be the start of a question.
            return self.action(action);
        }
        if key.code == KeyCode::Char('?') && self.input.is_empty() {
            self.overlay = Overlay::Help;
            return Vec::new();
        }
        self.edit(key);
        Vec::new()
    }

    fn edit(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char(c) if !ctrl => {
                self.history.stop_browsing();
                self.input.insert(c.encode_utf8(&mut [0; 4]));
                self.focus = Pane::Input;
            }
            KeyCode::Char('u') if ctrl => {
                self.input.take();
            }
            KeyCode::Char('w') if ctrl => self.input.delete_word_back(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Backspace if alt => self.input.delete_word_back(),
            KeyCode::Left if alt => self.input.word_left(),
            KeyCode::Right if alt => self.input.word_right(),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            // In the box, ↑/↓ move between lines; on a one-line box (or while a recalled
            // line is shown) they walk the history of sent messages instead.
            KeyCode::Up => match self.focus {
                Pane::Input => {
                    if !self.input.up()
                        && (self.history.is_browsing() || !self.input.text().contains('\n'))
                        && let Some(line) = self.history.older(self.input.text())
                    {
                        let line = line.to_string();
                        self.input.set(&line);
                    }
                }
                pane => self.scroll(pane, 1, true),
            },
            KeyCode::Down => match self.focus {
                Pane::Input => {
                    if !self.input.down()
                        && let Some(line) = self.history.newer()
                    {
                        self.input.set(&line);
                    }
                }
                pane => self.scroll(pane, 1, false),
            },
            _ => {}
        }
    }

    fn action(&mut self, action: Action) -> Vec<Effect> {
        self.notice = None;
        match action {
            Action::Send => return self.send(),
            Action::Newline => self.input.insert("\n"),
            Action::Stop => {
                if self.generating {
                    self.notice = Some("stopping…".into());
                    return vec![Effect::Engine(CommandKind::Stop)];
                }
                if let Some(block) = self.tools.running() {
                    return self.stop_call(block);
                }
                self.notice = Some(format!(
                    "nothing to stop · {} quits",
                    self.keymap.label(Action::Quit)
                ));
            }
            Action::FocusNext | Action::FocusPrev => self.cycle_focus(action == Action::FocusNext),
            Action::ScrollUp => self.scroll(self.scroll_target(), SCROLL_STEP_LINES, true),
            Action::ScrollDown => self.scroll(self.scroll_target(), SCROLL_STEP_LINES, false),
            Action::PageUp => self.scroll(self.scroll_target(), self.page_lines(), true),
            Action::PageDown => self.scroll(self.scroll_target(), self.page_lines(), false),
            Action::ToggleReasoning => {
                self.show_reasoning = !self.show_reasoning;
                if !self.show_reasoning && self.focus == Pane::Reasoning {
                    self.focus = Pane::Chat;
                }
            }
            Action::ToggleEarlierReasoning => {
                self.expand_earlier_reasoning = !self.expand_earlier_reasoning;
            }
            Action::CycleEffort => {
                self.effort = match self.effort {
                    ReasoningEffort::Low => ReasoningEffort::Medium,
                    ReasoningEffort::Medium => ReasoningEffort::High,
                    ReasoningEffort::High => ReasoningEffort::Low,
                };
                self.notice = Some(self.effort_notice(self.effort));
                return vec![Effect::Engine(CommandKind::SetEffort(self.effort))];
            }
            Action::NewChat => return self.new_chat(),
            Action::Regenerate => return self.regenerate(),
            Action::SelectMessage => return self.select_message(),
            Action::CopyAnswer => {
                let answer = self
                    .last_turn()
                    .filter(|t| !t.answer.is_empty())
                    .map(|t| t.answer.text().to_string());
                return match answer {
                    Some(answer) => {
                        self.notice = Some("copied the last answer".into());
                        vec![Effect::Copy(answer)]
                    }
                    None => {
                        self.notice = Some("no answer to copy yet".into());
                        Vec::new()
                    }
                };
            }
            Action::CopyCode => {
                let block = self
                    .last_turn()
                    .and_then(|t| markdown::code_blocks(t.answer.text()).pop());
                return match block {
                    Some(block) => {
                        self.notice = Some(format!(
                            "copied a {} code block",
                            if block.lang.is_empty() {
                                "plain"
                            } else {
                                &block.lang
                            }
                        ));
                        vec![Effect::Copy(block.code)]
                    }
                    None => {
                        self.notice = Some("no code block in the last answer".into());
                        Vec::new()
                    }
                };
            }
            Action::ChatList => return vec![Effect::ListChats],
            Action::Help => {
                self.help_scroll = 0;
                self.overlay = Overlay::Help;
            }
            Action::Quit => return self.quit(),
            Action::ToggleToolBlock => self.toggle_tool_block(),
            Action::SelectToolBlock => self.select_tool_block(),
            Action::GrowChat => self.chat_width_percent = (self.chat_width_percent + 5).min(85),
            Action::GrowMetrics => self.resize_metrics(2),
            Action::ShrinkMetrics => self.resize_metrics(-2),
            Action::ShrinkChat => {
                self.chat_width_percent = self.chat_width_percent.saturating_sub(5).max(30)
            }
        }
        Vec::new()
    }

    /// The key to show for `action`: its first binding this terminal can deliver.
    pub fn key_label(&self, action: Action) -> String {
        let shift_enter = KeyBinding::with(KeyCode::Enter, KeyModifiers::SHIFT);
        self.keymap
            .keys_for(action)
            .into_iter()
            .find(|key| self.shift_enter_works || *key != shift_enter)
            .map_or_else(|| self.keymap.label(action), |key| key.to_string())
    }

    fn quit(&mut self) -> Vec<Effect> {
        self.quit = true;
        let mut effects = Vec::new();
        if self.generating {
            effects.push(Effect::Engine(CommandKind::Stop));
        }
        if let Some(block) = self.tools.running() {
            let call_id = self.tools.blocks[block].call.id;
            effects.push(Effect::Tool(ToolCommand::Cancel { call_id }));
        }
        if !self.messages.is_empty() {
            effects.push(self.save());
        }
        effects.push(Effect::Quit);
        effects
    }

    fn cycle_focus(&mut self, forward: bool) {
        // Panes a narrow screen hides are skipped (before the first draw, all count).
        let rects = self.rects.get();
        let drawn = rects.chat.width > 0;
        let mut order = vec![Pane::Input, Pane::Chat];
        if self.show_reasoning && (!drawn || rects.reasoning.is_some()) {
            order.push(Pane::Reasoning);
        }
        if !drawn || rects.metrics.width > 0 {
            order.push(Pane::Metrics);
        }
        let i = order.iter().position(|p| *p == self.focus).unwrap_or(0);
        let n = order.len();
        self.focus = order[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }];
    }

    fn scroll_target(&self) -> Pane {
        match self.focus {
            Pane::Reasoning => Pane::Reasoning,
            _ => Pane::Chat,
        }
    }

    fn page_lines(&self) -> usize {
        let rects = self.rects.get();
        let rect = match self.scroll_target() {
            Pane::Reasoning => rects.reasoning.unwrap_or(rects.chat),
            _ => rects.chat,
        };
        usize::from(rect.height.saturating_sub(3)).max(1)
    }

    fn scroll(&mut self, pane: Pane, lines: usize, up: bool) {
        let views = self.views.get();
        let (scroll, view) = match pane {
            Pane::Reasoning => (&mut self.reasoning_scroll, views.reasoning),
            _ => (&mut self.chat_scroll, views.chat),
        };
        if up {
            scroll.up(lines, view);
        } else {
            scroll.down(lines, view);
        }
    }

    /// Moves the border between the reasoning and metrics panes `delta` rows (positive grows
    /// the metrics pane), from where it is drawn now.
    fn resize_metrics(&mut self, delta: i16) {
        let rects = self.rects.get();
        let side_rows = rects.metrics.height + rects.reasoning.map_or(0, |r| r.height);
        self.metrics_rows_offset =
            pane_sizes::resized_offset(side_rows, self.metrics_rows_offset, delta);
    }

    fn mouse(&mut self, mouse: MouseEvent) {
        let up = match mouse.kind {
            MouseEventKind::ScrollUp => true,
            MouseEventKind::ScrollDown => false,
            MouseEventKind::Down(MouseButton::Left) => return self.focus_at(mouse),
            _ => return,
        };
        let at = Position::new(mouse.column, mouse.row);
        let rects = self.rects.get();
        let pane = if rects.reasoning.is_some_and(|r| r.contains(at)) {
            Pane::Reasoning
        } else {
            Pane::Chat
        };
        self.scroll(pane, SCROLL_STEP_LINES, up);
    }

    // ─── Sending ───

    fn send(&mut self) -> Vec<Effect> {
        let text = self.input.text().trim().to_string();
        if text.is_empty() {
            return Vec::new();
        }
        if text.starts_with('/') {
            self.input.take();
            self.history.push(&text);
            return self.slash_command(&text);
        }
        if self.generating || self.tools.busy() {
            self.notice = Some(format!(
                "still answering: wait, or press {} to stop",
                self.keymap.label(Action::Stop)
            ));
            return Vec::new();
        }
        if !matches!(self.model, ModelState::Ready(_)) {
            self.notice = Some("the model is not loaded yet; your message stays in the box".into());
            return Vec::new();
        }
        self.branch_if_editing();
        self.input.take();
        self.history.push(&text);
        self.tool_user_message();
        if self.meta.title.is_empty() {
            self.meta.title = title_from(&text);
        }
        self.messages.push(text_message(Role::User, None, &text));
        self.entries.push(Entry::User(StreamDoc::finished(
            DocKind::Plain,
            self.theme.text,
            &text,
            &self.theme,
        )));
        self.submit()
    }

    fn submit(&mut self) -> Vec<Effect> {
        self.saved_context_tokens = None;
        self.entries.push(self.new_turn());
        self.generating = true;
        self.pending = PendingMessage::default();
        self.chat_scroll = PaneScroll::default();
        self.reasoning_scroll = PaneScroll::default();
        self.meta.updated = chrono::Utc::now().to_rfc3339();
        vec![
            self.save(),
            Effect::Engine(CommandKind::Submit(
                self.conversation(),
                self.answer_format.as_ref().map(|(_, c)| c.clone()),
            )),
        ]
    }

    /// `/json FILE`'s schema, read and checked by the driver (or why it could not be).
    pub fn set_answer_format(&mut self, path: PathBuf, loaded: Result<TurnConstraint, String>) {
        match loaded {
            Ok(constraint) => {
                self.notice = Some(format!(
                    "answers follow the JSON schema in {} from the next message (reasoning stays free)",
                    path.display()
                ));
                self.answer_format = Some((path, constraint));
            }
            Err(why) => self.notice = Some(format!("/json: {why}")),
        }
    }

    fn slash_command(&mut self, line: &str) -> Vec<Effect> {
        let (command, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match command {
            "/new" => return self.new_chat(),
            "/chats" => return vec![Effect::ListChats],
            "/help" => self.overlay = Overlay::Help,
            "/quit" => return self.quit(),
            "/ctx" => match rest.parse::<usize>() {
                Ok(n) if n > 0 => {
                    self.notice = Some(format!("context limit: {n} tokens"));
                    return vec![Effect::Engine(CommandKind::SetContextLimit(n))];
                }
                _ => self.notice = Some("usage: /ctx TOKENS (e.g. /ctx 16384)".into()),
            },
            "/effort" => match parse_effort(rest) {
                Some(effort) => {
                    self.effort = effort;
                    self.notice = Some(self.effort_notice(effort));
                    return vec![Effect::Engine(CommandKind::SetEffort(effort))];
                }
                None => self.notice = Some("usage: /effort low|medium|high".into()),
            },
            "/system" => {
                if rest.is_empty() {
                    // Put the current instructions in the box to edit them.
                    self.input
                        .set(&format!("/system {}", self.developer_instructions));
                    self.notice = Some(
                        "edit the instructions and press Enter (/system - clears them)".into(),
                    );
                } else {
                    self.developer_instructions = if rest == "-" {
                        String::new()
                    } else {
                        rest.to_string()
                    };
                    self.notice = Some(
                        "developer instructions set (they apply from the next message)".into(),
                    );
                    if !self.messages.is_empty() {
                        return vec![self.save()];
                    }
                }
            }
            "/sampling" => self.notice = Some(sampling_summary(&self.sampling)),
            "/temp" | "/temperature" | "/top-p" | "/top-k" | "/min-p" | "/seed" => {
                match with_sampling_setting(self.sampling, command, rest) {
                    Ok(sampling) => {
                        self.sampling = sampling;
                        self.notice = Some(format!(
                            "{} (from the next message)",
                            sampling_summary(&sampling)
                        ));
                        return vec![Effect::Engine(CommandKind::SetSampling(sampling))];
                    }
                    Err(usage) => self.notice = Some(usage),
                }
            }
            "/export" => return self.export_command(rest),
            "/import" => return self.import_command(rest),
            "/max" => return self.max_command(rest),
            "/json" => match rest {
                "" => {
                    self.notice = Some(match &self.answer_format {
                        Some((path, _)) => format!(
                            "answers follow the JSON schema in {} (/json off to stop)",
                            path.display()
                        ),
                        None => {
                            "usage: /json FILE (a JSON schema for the answers) or /json off".into()
                        }
                    })
                }
                "off" => {
                    self.answer_format = None;
                    self.notice = Some("answers are free text again".into());
                }
                path => return vec![Effect::LoadAnswerFormat(PathBuf::from(path))],
            },
            "/rename" => {
                if rest.is_empty() {
                    self.notice = Some("usage: /rename NEW TITLE".into());
                } else {
                    self.meta.title = rest.to_string();
                    self.notice = Some(format!("renamed to '{rest}'"));
                    return vec![self.save()];
                }
            }
            other => {
                self.notice = Some(format!(
                    "unknown command {other}: try /new /chats /ctx /max /effort /temp /sampling /system /json /export /import /rename /help"
                ));
            }
        }
        Vec::new()
    }
}

fn title_from(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut title: String = line.chars().take(48).collect();
    if line.chars().count() > 48 {
        title.push('…');
    }
    title
}

mod branches;
#[cfg(test)]
mod branches_tests;
pub mod chat_files;
pub mod chat_list;
#[cfg(test)]
mod chat_list_tests;
mod chats;
pub mod history;
pub mod metrics_state;
mod mouse;
pub mod numbers;
pub mod pane_sizes;
mod resume;
pub mod scroll;
#[cfg(test)]
mod tests;
pub mod tools;
#[cfg(test)]
mod tools_tests;
