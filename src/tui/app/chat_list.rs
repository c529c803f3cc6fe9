//! The saved-chats overlay: type to search titles and messages, ↑↓ to pick, Enter to open,
//! F2 to rename in place, Del to delete (asks first; the chat goes to the trash), Ctrl+Z to
//! undo the last delete, Ctrl+T to see the trash and restore from it. The chats and their
//! text come from the store's in-memory index, so searching never reads a file.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{App, CommandKind, Effect, Overlay};
use crate::store::{ChatSummary, SearchHit, TrashedChat, search};
use crate::tui::keys::Action;

/// Rows PgUp / PgDn move.
const PAGE_ROWS: usize = 10;

/// What the overlay is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum ListMode {
    /// Searching and picking.
    Browse,
    /// Editing the selected chat's title.
    Rename { title: String },
    /// Asking before the selected chat goes to the trash.
    ConfirmDelete,
    /// The trash: pick a chat to restore.
    Trash {
        trashed: Vec<TrashedChat>,
        selected: usize,
    },
}

/// The saved-chats overlay's state.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatList {
    /// Every saved chat, newest first.
    pub chats: Vec<ChatSummary>,
    /// What is typed in the search field.
    pub query: String,
    /// The chats the query finds (indexes into `chats`), best first.
    pub hits: Vec<SearchHit>,
    /// Index into `hits`.
    pub selected: usize,
    pub mode: ListMode,
    /// The last chat deleted from this list (Ctrl+Z brings it back).
    pub last_trashed: Option<TrashedChat>,
    /// When the list was read (dates are shown relative to it).
    pub listed_at: chrono::DateTime<chrono::Utc>,
}

impl ChatList {
    /// A list of `chats` with nothing typed.
    pub fn new(chats: Vec<ChatSummary>) -> Self {
        let hits = search(&chats, "");
        Self {
            chats,
            query: String::new(),
            hits,
            selected: 0,
            mode: ListMode::Browse,
            last_trashed: None,
            listed_at: chrono::Utc::now(),
        }
    }

    /// The chat under the cursor.
    pub fn selected_chat(&self) -> Option<&ChatSummary> {
        self.hits
            .get(self.selected)
            .and_then(|hit| self.chats.get(hit.index))
    }

    fn select_id(&mut self, id: &str) {
        if let Some(at) = self.hits.iter().position(|h| self.chats[h.index].id == id) {
            self.selected = at;
        }
    }

    fn set_query(&mut self, query: String) {
        self.query = query;
        self.hits = search(&self.chats, &self.query);
        self.selected = 0;
    }
}

/// `selected` moved by the key, within `len` rows; `None` when the key does not move.
fn moved(selected: usize, len: usize, code: KeyCode) -> Option<usize> {
    let last = len.saturating_sub(1);
    Some(match code {
        KeyCode::Up => selected.saturating_sub(1),
        KeyCode::Down => (selected + 1).min(last),
        KeyCode::PageUp => selected.saturating_sub(PAGE_ROWS),
        KeyCode::PageDown => (selected + PAGE_ROWS).min(last),
        KeyCode::Home => 0,
        KeyCode::End => last,
        _ => return None,
    })
}

/// A character typed without Ctrl or Alt.
fn typed(key: &KeyEvent) -> Option<char> {
    match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            Some(c)
        }
        _ => None,
    }
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c) && key.modifiers.contains(KeyModifiers::CONTROL)
}

impl App {
    /// Shows the saved chats (the driver's answer to `Effect::ListChats` and to every change
    /// made from the list). An open list keeps its search and its undo.
    pub fn show_chat_list(&mut self, chats: Vec<ChatSummary>) {
        let mut list = ChatList::new(chats);
        let mut select = self.chat_id.clone();
        if let Overlay::Chats(old) = &self.overlay {
            list.set_query(old.query.clone());
            list.last_trashed = old.last_trashed.clone();
            if let Some(chat) = old.selected_chat() {
                select = chat.id.clone();
            }
        }
        list.select_id(&select);
        self.overlay = Overlay::Chats(Box::new(list));
    }

    /// The driver moved a chat to the trash: Ctrl+Z can bring it back.
    pub fn chat_trashed(&mut self, trashed: TrashedChat) {
        self.notice = Some(format!(
            "'{}' moved to the trash (Ctrl+Z undoes; kept {} days)",
            trashed.title,
            crate::store::TRASH_KEEP_DAYS
        ));
        if let Overlay::Chats(list) = &mut self.overlay {
            list.last_trashed = Some(trashed);
        }
    }

    /// Shows the trash (the driver's answer to `Effect::ListTrash`).
    pub fn show_trash(&mut self, trashed: Vec<TrashedChat>) {
        if let Overlay::Chats(list) = &mut self.overlay {
            list.mode = ListMode::Trash {
                trashed,
                selected: 0,
            };
        }
    }

    /// The driver restored chat `id`: the list shows it selected.
    pub fn chat_restored(&mut self, id: &str, chats: Vec<ChatSummary>) {
        self.show_chat_list(chats);
        if let Overlay::Chats(list) = &mut self.overlay {
            if list.last_trashed.as_ref().is_some_and(|t| t.id == id) {
                list.last_trashed = None;
            }
            list.set_query(String::new());
            list.select_id(id);
            let title = list.selected_chat().map_or(id, |c| c.title.as_str());
            self.notice = Some(format!("restored '{title}'"));
        }
    }

    pub(super) fn chat_list_key(&mut self, key: KeyEvent, action: Option<Action>) -> Vec<Effect> {
        let Overlay::Chats(list) = &mut self.overlay else {
            return Vec::new();
        };
        match &mut list.mode {
            ListMode::Browse => {}
            ListMode::Rename { title } => {
                match key.code {
                    KeyCode::Enter => return self.rename_selected(),
                    KeyCode::Esc => list.mode = ListMode::Browse,
                    KeyCode::Backspace => {
                        title.pop();
                    }
                    _ => {
                        if let Some(c) = typed(&key) {
                            title.push(c);
                        }
                    }
                }
                return Vec::new();
            }
            ListMode::ConfirmDelete => {
                list.mode = ListMode::Browse;
                let yes = matches!(key.code, KeyCode::Char('y' | 'Y') | KeyCode::Enter);
                return match list.selected_chat() {
                    Some(chat) if yes => vec![Effect::DeleteChat(chat.id.clone())],
                    _ => {
                        self.notice = Some("nothing deleted".into());
                        Vec::new()
                    }
                };
            }
            ListMode::Trash { trashed, selected } => {
                if let Some(to) = moved(*selected, trashed.len(), key.code) {
                    *selected = to;
                } else if key.code == KeyCode::Enter {
                    if let Some(chat) = trashed.get(*selected) {
                        return vec![Effect::RestoreChat(chat.entry.clone())];
                    }
                } else if key.code == KeyCode::Esc || ctrl(&key, 't') {
                    list.mode = ListMode::Browse;
                } else if action == Some(Action::Quit) {
                    return self.quit();
                }
                return Vec::new();
            }
        }
        if let Some(to) = moved(list.selected, list.hits.len(), key.code) {
            list.selected = to;
            return Vec::new();
        }
        match key.code {
            KeyCode::Enter => return self.open_selected(),
            KeyCode::Delete => return self.ask_delete_selected(),
            KeyCode::F(2) => {
                if let Some(chat) = list.selected_chat() {
                    list.mode = ListMode::Rename {
                        title: chat.title.clone(),
                    };
                }
            }
            KeyCode::Backspace => {
                let mut query = list.query.clone();
                query.pop();
                list.set_query(query);
            }
            KeyCode::Esc if !list.query.is_empty() => list.set_query(String::new()),
            KeyCode::Esc => self.overlay = Overlay::None,
            _ if ctrl(&key, 'z') => match &list.last_trashed {
                Some(trashed) => return vec![Effect::RestoreChat(trashed.entry.clone())],
                None => self.notice = Some("nothing to undo".into()),
            },
            _ if ctrl(&key, 't') => return vec![Effect::ListTrash],
            _ if action == Some(Action::Quit) => return self.quit(),
            _ if action == Some(Action::ChatList) => self.overlay = Overlay::None,
            _ => {
                if let Some(c) = typed(&key) {
                    let query = format!("{}{c}", list.query);
                    list.set_query(query);
                }
            }
        }
        Vec::new()
    }

    fn open_selected(&mut self) -> Vec<Effect> {
        let Overlay::Chats(list) = &self.overlay else {
            return Vec::new();
        };
        let Some(id) = list.selected_chat().map(|c| c.id.clone()) else {
            return Vec::new();
        };
        self.overlay = Overlay::None;
        if id == self.chat_id {
            return Vec::new();
        }
        let mut effects = Vec::new();
        if self.generating {
            effects.push(Effect::Engine(CommandKind::Stop));
        }
        effects.push(Effect::OpenChat(id));
        effects
    }

    fn ask_delete_selected(&mut self) -> Vec<Effect> {
        let Overlay::Chats(list) = &mut self.overlay else {
            return Vec::new();
        };
        match list.selected_chat() {
            Some(chat) if chat.id == self.chat_id => {
                self.notice = Some("this chat is open: start a new chat to delete it".into());
            }
            Some(_) => list.mode = ListMode::ConfirmDelete,
            None => {}
        }
        Vec::new()
    }

    /// Saves the title typed in rename mode: the open chat is renamed here and saved, any
    /// other through the store.
    fn rename_selected(&mut self) -> Vec<Effect> {
        let Overlay::Chats(list) = &mut self.overlay else {
            return Vec::new();
        };
        let (ListMode::Rename { title }, Some(chat)) = (&list.mode, list.selected_chat()) else {
            return Vec::new();
        };
        let Some(title) = crate::store::clean_title(title) else {
            self.notice = Some("a chat title cannot be empty (Esc keeps the old one)".into());
            return Vec::new();
        };
        let id = chat.id.clone();
        list.mode = ListMode::Browse;
        if id != self.chat_id {
            return vec![Effect::RenameChat { id, title }];
        }
        if let Some(hit) = list.hits.get(list.selected) {
            list.chats[hit.index].title = title.clone();
        }
        self.notice = Some(format!("renamed to '{title}'"));
        self.meta.title = title;
        vec![self.save()]
    }
}
