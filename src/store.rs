//! Chat persistence: `<data dir>/chats/<id>.json` holds exactly the harmony conversation
//! (openai_harmony's JSON), `<id>.meta.json` the title, times and per-turn stats. Every write
//! goes to a temporary file in the same folder, is synced, then renamed over the old file, so
//! a crash at any moment leaves either the old or the new file, never a torn one; a save
//! killed before its rename is recovered at the next start (`recover`). A chat open in one
//! copy of the app is locked against the others (`lock`).

mod branches;
mod export;
mod import;
mod lock;
mod recover;
mod rename;
mod search;
mod trash;

pub use branches::{BranchError, Branches, Fork, ShownPath, Tail, VersionLabel};
pub use export::{ExportFormat, to_markdown};
pub use import::{IMPORT_MAX_BYTES, ImportError, Imported, import_file};
pub use lock::ChatLock;
pub use recover::{Recovery, Resumed};
pub use rename::TITLE_MAX_CHARS;
pub(crate) use rename::clean_title;
pub use search::{SearchHit, SearchText, Snippet, search};
pub use trash::{TRASH_KEEP_DAYS, TrashedChat};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{StopReason, TurnStats};
use crate::harmony::{Conversation, ExtraFields, Role};

/// Why a chat could not be saved, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write {path}: {source} (is the disk full or the folder read-only?)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid chat file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot encode chat {id}: {source}")]
    Encode {
        id: String,
        source: serde_json::Error,
    },
    #[error("'{id}' is not a chat id (letters, digits, '-' and '_' only)")]
    BadId { id: String },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("chat {id} is open in another copy of ossterm: close it there first")]
    Locked { id: String },
    #[error("a chat {id} exists already: it is not replaced by the one in the trash")]
    Exists { id: String },
    #[error("'{entry}' is not a chat in the trash")]
    BadTrashEntry { entry: String },
    #[error("a chat title cannot be empty")]
    EmptyTitle,
}

/// The stats of one finished assistant turn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// How many conversation messages (system/developer excluded) the chat had after the turn.
    pub messages_after: usize,
    pub stop: StopReason,
    pub stats: TurnStats,
}

/// What the chat list shows, and per-turn stats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMeta {
    pub title: String,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339.
    pub updated: String,
    #[serde(default)]
    pub turns: Vec<TurnRecord>,
    /// The versions not shown where the chat branched (edits, regenerated answers).
    #[serde(default, skip_serializing_if = "Branches::is_empty")]
    pub branches: Branches,
    /// Fields this version does not know (kept on save).
    #[serde(flatten, default, skip_serializing_if = "ExtraFields::is_empty")]
    pub extra: ExtraFields,
}

/// One chat to save: its id, metadata and the whole harmony conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSnapshot {
    pub id: String,
    pub meta: ChatMeta,
    pub conversation: Conversation,
}

/// A saved chat in the list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatSummary {
    pub id: String,
    pub title: String,
    /// RFC 3339 (empty when unknown).
    pub created: String,
    /// RFC 3339 (empty when unknown).
    pub updated: String,
    /// User messages and answers (reasoning, tool traffic and instructions not counted).
    pub messages: usize,
    /// The text the list's search looks through.
    pub text: SearchText,
}

/// The chats folder, with the list's index of it (shared by clones).
#[derive(Debug, Clone)]
pub struct ChatStore {
    dir: PathBuf,
    index: search::SharedIndex,
}

/// A new chat id from the time: sortable, unique enough for one user.
pub fn new_chat_id() -> String {
    chrono::Utc::now().format("%Y%m%d-%H%M%S-%3f").to_string()
}

fn check_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadId { id: id.to_string() })
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same folder, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic_with(path, &mut |file| file.write_all(bytes))
}

/// [`write_atomic`] for contents too large to build in memory first: `write` streams them
/// into the temporary file.
pub fn write_atomic_with(
    path: &Path,
    write: &mut dyn FnMut(&mut fs::File) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        write(&mut file)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(err)
}

impl ChatStore {
    /// The store under `data_dir/chats`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("chats"),
            index: search::SharedIndex::default(),
        }
    }

    /// The chats folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The conversation file of a chat.
    pub fn chat_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.meta.json"))
    }

    /// Saves a chat (metadata first, then the conversation; each atomically). Metadata goes
    /// first because it holds the versions not shown: killed between the two writes, a chat
    /// that just branched still has its old branch (in the old conversation file), where the
    /// other order would have lost it.
    pub fn save(&self, chat: &ChatSnapshot) -> Result<(), StoreError> {
        check_id(&chat.id)?;
        let encode = |source| StoreError::Encode {
            id: chat.id.clone(),
            source,
        };
        let meta = serde_json::to_vec_pretty(&chat.meta).map_err(encode)?;
        let conversation = serde_json::to_vec_pretty(&chat.conversation).map_err(encode)?;
        self.index.forget(&chat.id);
        write_atomic(&self.meta_path(&chat.id), &meta)?;
        write_atomic(&self.chat_path(&chat.id), &conversation)
    }

    /// Loads a chat; a missing or broken meta file gives default metadata.
    pub fn load(&self, id: &str) -> Result<ChatSnapshot, StoreError> {
        check_id(id)?;
        let path = self.chat_path(id);
        let text = fs::read_to_string(&path).map_err(|source| StoreError::Read {
            path: path.clone(),
            source,
        })?;
        let conversation: Conversation =
            serde_json::from_str(&text).map_err(|source| StoreError::Parse { path, source })?;
        let meta = fs::read_to_string(self.meta_path(id))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| ChatMeta {
                title: first_user_text(&conversation).unwrap_or_else(|| id.to_string()),
                ..ChatMeta::default()
            });
        Ok(ChatSnapshot {
            id: id.to_string(),
            meta,
            conversation,
        })
    }

    /// The saved chats, newest first, with counts and search text. Only chats whose files
    /// changed since the last call are read again (see `search`), so a large store lists fast.
    pub fn list(&self) -> Result<Vec<ChatSummary>, StoreError> {
        self.index.refresh(self)
    }

    /// Removes a chat's files; refused while another copy of the app has the chat open.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        check_id(id)?;
        let Some(_lock) = self.try_lock(id)? else {
            return Err(StoreError::Locked { id: id.to_string() });
        };
        for path in [self.chat_path(id), self.meta_path(id), self.lock_path(id)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Write { path, source }),
            }
        }
        self.index.forget(id);
        Ok(())
    }
}

fn first_user_text(conversation: &Conversation) -> Option<String> {
    conversation
        .messages
        .iter()
        .find(|m| m.role == Role::User)
        .map(|m| m.text().chars().take(60).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harmony::{Content, Message};

    fn message(role: Role, channel: Option<&str>, text: &str) -> Message {
        Message {
            role,
            name: None,
            content: vec![Content::Text { text: text.into() }],
            channel: channel.map(str::to_string),
            recipient: None,
            content_type: None,
            extra: Default::default(),
        }
    }

    pub(super) fn chat(id: &str, updated: &str) -> ChatSnapshot {
        ChatSnapshot {
            id: id.into(),
            meta: ChatMeta {
                title: format!("chat {id}"),
                created: updated.into(),
                updated: updated.into(),
                turns: vec![],
                branches: Default::default(),
                extra: Default::default(),
            },
            conversation: Conversation::from_messages([
                message(Role::User, None, "hi"),
                message(Role::Assistant, Some("analysis"), "think"),
                message(Role::Assistant, Some("final"), "hello"),
            ]),
        }
    }

    #[test]
    fn saves_lists_loads_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        assert!(store.list().unwrap().is_empty());
        store.save(&chat("a", "2026-01-01T00:00:00Z")).unwrap();
        store.save(&chat("b", "2026-01-02T00:00:00Z")).unwrap();
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, vec!["b", "a"]);
        assert_eq!(store.load("a").unwrap(), chat("a", "2026-01-01T00:00:00Z"));
        // The chat file is exactly the conversation JSON.
        let raw: Conversation =
            serde_json::from_str(&fs::read_to_string(store.chat_path("a")).unwrap()).unwrap();
        assert_eq!(raw, chat("a", "").conversation);
        store.delete("a").unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        // No temp files are left behind.
        let names: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn the_versions_are_written_before_the_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        // The conversation cannot be written (a folder is in its place).
        fs::create_dir_all(store.chat_path("a").join("x")).unwrap();
        let mut chat = chat("a", "2026-01-01T00:00:00Z");
        chat.meta.branches.forks.push(Fork {
            at: 0,
            active: 1,
            versions: vec![Tail::default(), Tail::default()],
        });
        let err = store.save(&chat).unwrap_err().to_string();
        assert!(err.contains("a.json"), "{err}");
        let meta = fs::read_to_string(store.meta_path("a")).expect("meta written first");
        assert!(meta.contains("\"branches\""), "{meta}");
    }

    #[test]
    fn rejects_ids_that_escape_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        assert!(matches!(store.load("../x"), Err(StoreError::BadId { .. })));
    }

    #[test]
    fn a_broken_chat_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.chat_path("x"), "{not json").unwrap();
        let err = store.load("x").unwrap_err().to_string();
        assert!(
            err.contains("x.json") && err.contains("not a valid chat file"),
            "{err}"
        );
    }
}
