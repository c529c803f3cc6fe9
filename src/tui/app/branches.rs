//! Messages picked with the keyboard, and the chat's versions: copy a selected message or a
//! turn's reasoning, edit an earlier message and resend it (the conversation branches there;
//! the old rest is kept), regenerate an answer as a new version, and switch between versions
//! (which switches everything below). The tree itself is `store::Branches`; this module keeps
//! the chat pane in step with it.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{App, Effect, Entry, ModelState, Pane};
use crate::harmony::Role;
use crate::store::{ShownPath, VersionLabel};
use crate::tui::keys::Action;

/// Select mode and an edit in progress.
#[derive(Debug, Clone, Default)]
pub struct BranchState {
    /// The chat entry picked with the keyboard; `None` outside select mode.
    pub selected: Option<usize>,
    /// The user message being edited in the input box: its chat and message index.
    editing: Option<(String, usize)>,
}

/// What select mode's keys do.
enum SelectKey {
    Move(bool),
    Version(bool),
    CopyMessage,
    CopyReasoning,
    Edit,
    Regenerate,
    Leave,
}

fn select_key(key: &KeyEvent, action: Option<Action>) -> Option<SelectKey> {
    if key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return (action == Some(Action::SelectMessage)).then_some(SelectKey::Leave);
    }
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => SelectKey::Move(true),
        KeyCode::Down | KeyCode::Char('j') => SelectKey::Move(false),
        KeyCode::Left | KeyCode::Char('h') => SelectKey::Version(false),
        KeyCode::Right | KeyCode::Char('l') => SelectKey::Version(true),
        KeyCode::Char('y') | KeyCode::Char('c') => SelectKey::CopyMessage,
        KeyCode::Char('r') => SelectKey::CopyReasoning,
        KeyCode::Char('e') | KeyCode::Enter => SelectKey::Edit,
        KeyCode::Char('g') => SelectKey::Regenerate,
        KeyCode::Esc => SelectKey::Leave,
        _ => return None,
    })
}

impl App {
    /// Where each chat entry's messages start in `messages` (an answer still streaming
    /// starts at the end).
    fn entry_starts(&self) -> Vec<usize> {
        let mut cursor = 0;
        let mut starts = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            match entry {
                Entry::User(_) => {
                    let at = self.messages[cursor.min(self.messages.len())..]
                        .iter()
                        .position(|m| m.role == Role::User)
                        .map_or(self.messages.len(), |i| cursor + i);
                    starts.push(at);
                    cursor = (at + 1).min(self.messages.len());
                }
                Entry::Assistant(_) => {
                    starts.push(cursor);
                    while self
                        .messages
                        .get(cursor)
                        .is_some_and(|m| m.role != Role::User)
                    {
                        cursor += 1;
                    }
                }
            }
        }
        starts
    }

    /// "2/3" for an entry where the chat branched (the version shown, of how many).
    pub fn version_label(&self, entry: usize) -> Option<VersionLabel> {
        // Drawing asks for every entry: a chat that never branched answers at once.
        if self.meta.branches.is_empty() {
            return None;
        }
        let at = *self.entry_starts().get(entry)?;
        self.meta.branches.label_at(at)
    }

    /// The keys that act on the selected entry, for its header.
    pub fn selection_hint(&self, entry: usize) -> String {
        let versions = if self.version_label(entry).is_some() {
            " · ←→ version"
        } else {
            ""
        };
        match self.entries.get(entry) {
            Some(Entry::User(_)) => {
                format!("↑↓ · y copy · e edit & resend{versions} · Esc")
            }
            _ => format!("↑↓ · y copy · r copy reasoning · g regenerate{versions} · Esc"),
        }
    }

    /// Enters select mode on the newest message (or leaves it).
    pub(super) fn select_message(&mut self) -> Vec<Effect> {
        if self.branching.selected.take().is_some() {
            return Vec::new();
        }
        let Some(last) = self.entries.len().checked_sub(1) else {
            self.notice = Some("no messages to select yet".into());
            return Vec::new();
        };
        self.branching.selected = Some(last);
        self.focus = Pane::Chat;
        self.reveal_selected();
        Vec::new()
    }

    /// Keys for select mode, an edit in progress, or neither (`None`: handle as usual).
    /// Other keys leave select mode and do their usual job.
    pub(super) fn branch_key(
        &mut self,
        key: KeyEvent,
        action: Option<Action>,
    ) -> Option<Vec<Effect>> {
        let Some(selected) = self.branching.selected else {
            if action == Some(Action::Stop) && !self.generating && self.branching.editing.is_some()
            {
                self.branching.editing = None;
                self.input.take();
                self.notice = Some("edit cancelled".into());
                return Some(Vec::new());
            }
            return None;
        };
        let Some(what) = select_key(&key, action) else {
            self.branching.selected = None;
            return None;
        };
        let Some(last) = self.entries.len().checked_sub(1) else {
            self.branching.selected = None;
            return None;
        };
        let selected = selected.min(last);
        self.notice = None;
        let effects = match what {
            SelectKey::Move(up) => {
                self.branching.selected = Some(if up {
                    selected.saturating_sub(1)
                } else {
                    (selected + 1).min(last)
                });
                self.reveal_selected();
                Vec::new()
            }
            SelectKey::Version(next) => {
                self.switch_version(selected, next);
                Vec::new()
            }
            SelectKey::CopyMessage => self.copy_entry(selected, false),
            SelectKey::CopyReasoning => self.copy_entry(selected, true),
            SelectKey::Edit => {
                self.edit_entry(selected);
                Vec::new()
            }
            SelectKey::Regenerate => self.regenerate_entry(selected),
            SelectKey::Leave => {
                self.branching.selected = None;
                Vec::new()
            }
        };
        Some(effects)
    }

    /// Scrolls the chat pane so the selected entry shows (as far as the last draw tells).
    fn reveal_selected(&mut self) {
        let Some(selected) = self.branching.selected else {
            return;
        };
        let width = self.rects.get().chat.width.saturating_sub(2);
        if width == 0 {
            return;
        }
        let lines = crate::tui::ui::chat::entry_lines(self, width);
        if let Some(&(first, count)) = lines.get(selected) {
            let view = self.views.get().chat;
            self.chat_scroll.reveal(first, count, view);
        }
    }

    fn copy_entry(&mut self, entry: usize, reasoning: bool) -> Vec<Effect> {
        let text = match (self.entries.get(entry), reasoning) {
            (Some(Entry::User(doc)), false) => doc.text().to_string(),
            (Some(Entry::Assistant(turn)), false) => turn.answer.text().to_string(),
            (Some(Entry::Assistant(turn)), true) => turn.reasoning.text().to_string(),
            (_, true) => {
                self.notice = Some("select an answer to copy its reasoning".into());
                return Vec::new();
            }
            (None, false) => return Vec::new(),
        };
        let what = if reasoning { "reasoning" } else { "message" };
        if text.is_empty() {
            self.notice = Some(format!("this {what} is empty: nothing copied"));
            return Vec::new();
        }
        self.notice = Some(format!(
            "copied the {what} ({} characters; OSC 52)",
            text.chars().count()
        ));
        vec![Effect::Copy(text)]
    }

    /// True when the chat can take a new turn; otherwise says why in the notice.
    fn can_branch(&mut self) -> bool {
        if self.generating || self.tools.busy() {
            self.notice = Some(format!(
                "still answering: wait, or press {} to stop",
                self.keymap.label(Action::Stop)
            ));
            return false;
        }
        if !matches!(self.model, ModelState::Ready(_)) {
            self.notice = Some("the model is not loaded yet".into());
            return false;
        }
        true
    }

    /// Puts a user message into the input box; sending it branches the chat there.
    fn edit_entry(&mut self, entry: usize) {
        let Some(Entry::User(doc)) = self.entries.get(entry) else {
            self.notice = Some(format!(
                "only your messages can be edited; g (or {}) makes a new answer",
                self.keymap.label(Action::Regenerate)
            ));
            return;
        };
        let text = doc.text().to_string();
        let Some(&at) = self.entry_starts().get(entry) else {
            return;
        };
        self.input.set(&text);
        self.branching.editing = Some((self.chat_id.clone(), at));
        self.branching.selected = None;
        self.focus = Pane::Input;
        self.notice = Some(format!(
            "editing: {} sends it as a new version (the old one is kept) · {} cancels",
            self.keymap.label(Action::Send),
            self.keymap.label(Action::Stop)
        ));
    }

    /// Called as a message is sent: when it is an edit, the chat branches at the edited
    /// message first (the message then goes where it was).
    pub(super) fn branch_if_editing(&mut self) {
        let Some((chat, at)) = self.branching.editing.take() else {
            return;
        };
        // An edit begun in another chat, or of a message no longer there, is a plain send.
        let still_there = self.messages.get(at).is_some_and(|m| m.role == Role::User);
        if chat != self.chat_id || !still_there {
            return;
        }
        self.fork_at(at);
    }

    /// Starts a new version at message `at` and shows the chat up to there.
    fn fork_at(&mut self, at: usize) {
        let mut path = ShownPath {
            messages: &mut self.messages,
            turns: &mut self.meta.turns,
        };
        self.meta.branches.fork(at, &mut path);
        self.reshow();
    }

    /// Regenerates the last answer as a new version (the old one is kept).
    pub(super) fn regenerate(&mut self) -> Vec<Effect> {
        let Some(last_user) = self.messages.iter().rposition(|m| m.role == Role::User) else {
            self.notice = Some("nothing to regenerate".into());
            return Vec::new();
        };
        self.regenerate_from(last_user + 1)
    }

    fn regenerate_entry(&mut self, entry: usize) -> Vec<Effect> {
        let starts = self.entry_starts();
        match (self.entries.get(entry), starts.get(entry)) {
            (Some(Entry::Assistant(_)), Some(&at)) if at > 0 => self.regenerate_from(at),
            _ => {
                self.notice = Some("select an answer to regenerate it".into());
                Vec::new()
            }
        }
    }

    /// A new answer to the messages before `at`, as a new version of what followed.
    fn regenerate_from(&mut self, at: usize) -> Vec<Effect> {
        if !self.can_branch() {
            return Vec::new();
        }
        self.branching.selected = None;
        if at < self.messages.len() {
            self.fork_at(at);
        }
        self.tool_user_message();
        self.submit()
    }

    /// Shows the previous or next version of an entry where the chat branched.
    fn switch_version(&mut self, entry: usize, next: bool) {
        let Some(label) = self.version_label(entry) else {
            self.notice = Some("this message has one version".into());
            return;
        };
        if !self.can_branch() {
            return;
        }
        let shown = label.shown - 1;
        let to = if next {
            (shown + 1) % label.count
        } else {
            (shown + label.count - 1) % label.count
        };
        let Some(&at) = self.entry_starts().get(entry) else {
            return;
        };
        let mut path = ShownPath {
            messages: &mut self.messages,
            turns: &mut self.meta.turns,
        };
        if !self.meta.branches.switch(at, to, &mut path) {
            return;
        }
        self.reshow();
        self.branching.selected = Some(entry.min(self.entries.len().saturating_sub(1)));
        self.reveal_selected();
        self.notice = Some(format!("version {}/{}", to + 1, label.count));
    }

    /// Rebuilds the chat pane from the messages (after a fork or a switch), as reopening
    /// the chat would; the chat's tool permissions and the notice stay.
    fn reshow(&mut self) {
        let notice = self.notice.take();
        let allowed = std::mem::take(&mut self.tools.allowed_for_chat);
        let chat_time = self.tools.chat_time;
        let selected = self.branching.selected;
        self.open_chat(self.snapshot());
        self.tools.allowed_for_chat = allowed;
        self.tools.chat_time = chat_time;
        self.branching.selected = selected;
        self.notice = notice;
    }

    /// Drops a reopened chat's versions when they do not fit its conversation (a file
    /// edited by hand, or from another program), and says so.
    pub(super) fn check_opened_branches(&mut self) {
        if let Err(why) = self.meta.branches.check(self.messages.len()) {
            self.meta.branches = Default::default();
            self.notice = Some(format!(
                "opened '{}' without its other versions: {why}",
                self.meta.title
            ));
        }
    }
}
