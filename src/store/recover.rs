//! Starting where the last run left off: saves that were killed between writing their
//! temporary file and renaming it (`.<id>.json.<pid>.tmp`) are recovered or removed, and the
//! newest chat that loads and is not open in another copy is reopened. Everything skipped is
//! reported, so nothing disappears without a word.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{ChatLock, ChatMeta, ChatSnapshot, ChatStore, check_id};
use crate::harmony::Conversation;

/// What was done with one interrupted save.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// The temporary file was complete and newer than the chat's file: it is the chat now.
    Restored { file: PathBuf },
    /// The temporary file was torn or older than the chat's file: it is gone.
    Removed { file: PathBuf, why: String },
    /// It could not be handled (the text says why); it stays.
    Failed { file: PathBuf, why: String },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Restored { file } => {
                write!(f, "recovered an interrupted save: {}", file.display())
            }
            Self::Removed { file, why } => {
                write!(f, "removed an interrupted save {} ({why})", file.display())
            }
            Self::Failed { file, why } => {
                write!(f, "cannot recover {}: {why}", file.display())
            }
        }
    }
}

/// The chat to continue, if any, and what was noticed on the way (for the status line).
#[derive(Debug)]
pub struct Resumed {
    /// The newest chat that loads, locked for this copy.
    pub chat: Option<(ChatSnapshot, ChatLock)>,
    /// Recoveries, skipped chats and why.
    pub notes: Vec<String>,
}

/// `(the file it would have replaced, the chat id)` of a temporary save file name
/// (`.<id>.json.<pid>.tmp` or `.<id>.meta.json.<pid>.tmp`).
fn interrupted_target(name: &str) -> Option<(&str, &str)> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (target, pid) = inner.rsplit_once('.')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id = target
        .strip_suffix(".meta.json")
        .or_else(|| target.strip_suffix(".json"))?;
    check_id(id).ok()?;
    Some((target, id))
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Why `text` is not a complete file of the kind `target` names, if it is not.
fn incomplete(target: &str, text: &str) -> Option<String> {
    let parsed = if target.ends_with(".meta.json") {
        serde_json::from_str::<ChatMeta>(text).map(drop)
    } else {
        serde_json::from_str::<Conversation>(text).map(drop)
    };
    parsed.err().map(|e| format!("incomplete: {e}"))
}

impl ChatStore {
    /// Recovers or removes the temporary files of saves that never finished. A chat open in
    /// another copy is left alone (its save may be running now).
    pub fn recover_interrupted_saves(&self) -> Vec<Recovery> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut done = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((target, id)) = interrupted_target(&name) else {
                continue;
            };
            let file = entry.path();
            match self.try_lock(id) {
                Ok(Some(_lock)) => done.push(self.recover_one(&file, &self.dir.join(target))),
                Ok(None) => {}
                Err(e) => done.push(Recovery::Failed {
                    file,
                    why: e.to_string(),
                }),
            }
        }
        done.sort_by_key(ToString::to_string);
        done
    }

    fn recover_one(&self, file: &Path, target: &Path) -> Recovery {
        let target_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let why_not = match fs::read_to_string(file) {
            Err(e) => Some(format!("unreadable: {e}")),
            Ok(text) => incomplete(&target_name, &text).or_else(|| {
                let newer = match (modified(file), modified(target)) {
                    (Some(tmp), Some(chat)) => tmp >= chat,
                    _ => !target.exists(),
                };
                (!newer).then(|| format!("older than {target_name}"))
            }),
        };
        let result = match &why_not {
            None => fs::rename(file, target),
            Some(_) => fs::remove_file(file),
        };
        match (result, why_not) {
            (Err(e), _) => Recovery::Failed {
                file: file.to_path_buf(),
                why: e.to_string(),
            },
            (Ok(()), None) => Recovery::Restored {
                file: target.to_path_buf(),
            },
            (Ok(()), Some(why)) => Recovery::Removed {
                file: file.to_path_buf(),
                why,
            },
        }
    }

    /// What to show at start: interrupted saves recovered, then the newest chat that loads,
    /// locked for this copy. A chat that does not load is skipped with its file and the
    /// reason in `notes`; when the newest is open in another copy, nothing is opened (this
    /// copy starts a new chat) and `notes` says so.
    pub fn resume_newest(&self) -> Resumed {
        let mut notes: Vec<String> = self
            .recover_interrupted_saves()
            .iter()
            .map(ToString::to_string)
            .collect();
        let chats = match self.list() {
            Ok(chats) => chats,
            Err(e) => {
                notes.push(e.to_string());
                Vec::new()
            }
        };
        for summary in chats {
            let lock = match self.try_lock(&summary.id) {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    notes.push(format!(
                        "'{}' is open in another copy of ossterm: this one starts a new chat",
                        summary.title
                    ));
                    break;
                }
                Err(e) => {
                    notes.push(e.to_string());
                    break;
                }
            };
            match self.load(&summary.id) {
                Ok(chat) => {
                    return Resumed {
                        chat: Some((chat, lock)),
                        notes,
                    };
                }
                Err(e) => notes.push(format!("skipped a chat: {e}")),
            }
        }
        Resumed { chat: None, notes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harmony::{Content, Message, Role};

    fn conversation(texts: &[&str]) -> Conversation {
        Conversation::from_messages(
            texts
                .iter()
                .map(|t| Message::from_role_and_content(Role::User, Content::text(*t))),
        )
    }

    fn chat(id: &str, updated: &str, texts: &[&str]) -> ChatSnapshot {
        ChatSnapshot {
            id: id.into(),
            meta: ChatMeta {
                title: format!("chat {id}"),
                updated: updated.into(),
                ..ChatMeta::default()
            },
            conversation: conversation(texts),
        }
    }

    fn names(store: &ChatStore) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_complete_newer_interrupted_save_becomes_the_chat() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("a", "2026-01-01", &["one"])).unwrap();
        // Killed after writing the newest message, before the rename.
        let tmp = store.dir().join(".a.json.4242.tmp");
        let newest = serde_json::to_string(&conversation(&["one", "two"])).unwrap();
        fs::write(&tmp, newest).unwrap();
        let resumed = store.resume_newest();
        let (opened, _lock) = resumed.chat.expect("the chat reopens");
        assert_eq!(opened.conversation, conversation(&["one", "two"]));
        assert_eq!(
            resumed.notes,
            vec![format!(
                "recovered an interrupted save: {}",
                store.chat_path("a").display()
            )]
        );
        assert_eq!(names(&store), vec!["a.json", "a.meta.json"]);
    }

    #[test]
    fn torn_or_older_interrupted_saves_are_removed_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        fs::create_dir_all(store.dir()).unwrap();
        let torn = store.dir().join(".a.json.7.tmp");
        fs::write(&torn, "{\"messages\": [{\"role\": \"us").unwrap();
        let old = store.dir().join(".a.meta.json.7.tmp");
        fs::write(&old, serde_json::to_string(&ChatMeta::default()).unwrap()).unwrap();
        // The chat was saved again later, so the meta temp file is the older one.
        std::thread::sleep(std::time::Duration::from_millis(20));
        store.save(&chat("a", "2026-01-01", &["one"])).unwrap();
        let notes: Vec<String> = store
            .recover_interrupted_saves()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with(&format!(
                "removed an interrupted save {} (incomplete: EOF",
                torn.display()
            )),
            "{notes:?}"
        );
        assert_eq!(
            notes[1],
            format!(
                "removed an interrupted save {} (older than a.meta.json)",
                old.display()
            )
        );
        assert_eq!(names(&store), vec!["a.json", "a.meta.json"]);
        assert_eq!(
            store.load("a").unwrap().conversation,
            conversation(&["one"])
        );
    }

    #[test]
    fn an_interrupted_save_of_a_chat_open_elsewhere_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("a", "2026-01-01", &["one"])).unwrap();
        let tmp = store.dir().join(".a.json.7.tmp");
        fs::write(&tmp, "{").unwrap();
        let _other_copy = ChatStore::new(dir.path()).try_lock("a").unwrap();
        assert!(store.recover_interrupted_saves().is_empty());
        assert!(tmp.exists());
    }

    #[test]
    fn a_corrupt_newest_chat_is_skipped_with_its_file_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("old", "2026-01-01", &["kept"])).unwrap();
        store.save(&chat("new", "2026-01-02", &["x"])).unwrap();
        fs::write(store.chat_path("new"), "{\"messages\": 5}").unwrap();
        let resumed = store.resume_newest();
        let (opened, _lock) = resumed.chat.expect("the older chat opens");
        assert_eq!(opened.id, "old");
        assert_eq!(resumed.notes.len(), 1);
        let note = &resumed.notes[0];
        assert!(
            note.starts_with(&format!(
                "skipped a chat: {} is not a valid chat file: invalid type: integer `5`",
                store.chat_path("new").display()
            )),
            "{note}"
        );
    }

    #[test]
    fn the_newest_chat_open_in_another_copy_is_not_opened_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("a", "2026-01-01", &["one"])).unwrap();
        let first = store.resume_newest();
        assert!(first.chat.is_some());
        let second = ChatStore::new(dir.path()).resume_newest();
        assert!(second.chat.is_none());
        assert_eq!(
            second.notes,
            vec!["'chat a' is open in another copy of ossterm: this one starts a new chat"]
        );
    }
}
