//! Deleted chats go to `chats/.trash/<deleted unix ms>-<id>/` (both files moved, not copied,
//! so deleting is one rename per file) and can be restored from there until they are
//! `TRASH_KEEP_DAYS` old; the app purges older ones on start.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ChatMeta, ChatStore, StoreError, check_id};

/// Days a deleted chat stays restorable.
pub const TRASH_KEEP_DAYS: u64 = 30;

/// A chat in the trash.
#[derive(Debug, Clone, PartialEq)]
pub struct TrashedChat {
    /// Its folder in the trash (what restoring names).
    pub entry: String,
    pub id: String,
    pub title: String,
    /// When it was deleted (ms since the Unix epoch).
    pub deleted_unix_ms: u64,
}

/// `(deleted ms, chat id)` of a trash folder name, if it is one.
fn parse_entry(entry: &str) -> Option<(u64, &str)> {
    let (ms, id) = entry.split_once('-')?;
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    check_id(id).ok()?;
    Some((ms.parse().ok()?, id))
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Renames `from` to `to`; a missing `from` is fine (a chat may have no meta file).
fn move_file(from: &Path, to: &Path) -> Result<(), StoreError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Write {
            path: from.to_path_buf(),
            source,
        }),
    }
}

impl ChatStore {
    /// The trash folder (hidden, so listings skip it).
    pub fn trash_dir(&self) -> PathBuf {
        self.dir.join(".trash")
    }

    fn trashed_title(&self, folder: &Path, id: &str) -> String {
        fs::read_to_string(folder.join(format!("{id}.meta.json")))
            .ok()
            .and_then(|t| serde_json::from_str::<ChatMeta>(&t).ok())
            .map(|m| m.title)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| id.to_string())
    }

    /// Moves a chat to the trash; refused while another copy of the app has it open.
    pub fn move_to_trash(&self, id: &str) -> Result<TrashedChat, StoreError> {
        check_id(id)?;
        let Some(_lock) = self.try_lock(id)? else {
            return Err(StoreError::Locked { id: id.to_string() });
        };
        let deleted_unix_ms = unix_ms(SystemTime::now());
        let entry = format!("{deleted_unix_ms}-{id}");
        let folder = self.trash_dir().join(&entry);
        fs::create_dir_all(&folder).map_err(|source| StoreError::Write {
            path: folder.clone(),
            source,
        })?;
        // The chat file first: once it is gone the chat is out of the list.
        move_file(&self.chat_path(id), &folder.join(format!("{id}.json")))?;
        move_file(&self.meta_path(id), &folder.join(format!("{id}.meta.json")))?;
        let _ = fs::remove_file(self.lock_path(id));
        self.index.forget(id);
        Ok(TrashedChat {
            title: self.trashed_title(&folder, id),
            entry,
            id: id.to_string(),
            deleted_unix_ms,
        })
    }

    /// Puts a trashed chat back; refused when a chat with its id exists. Returns its id.
    pub fn restore_from_trash(&self, entry: &str) -> Result<String, StoreError> {
        let bad = || StoreError::BadTrashEntry {
            entry: entry.to_string(),
        };
        let (_, id) = parse_entry(entry).ok_or_else(bad)?;
        let folder = self.trash_dir().join(entry);
        let trashed_chat = folder.join(format!("{id}.json"));
        if !trashed_chat.exists() {
            return Err(bad());
        }
        if self.chat_path(id).exists() {
            return Err(StoreError::Exists { id: id.to_string() });
        }
        // The meta file first, so the chat never lists without its title.
        move_file(&folder.join(format!("{id}.meta.json")), &self.meta_path(id))?;
        move_file(&trashed_chat, &self.chat_path(id))?;
        let _ = fs::remove_dir(&folder);
        self.index.forget(id);
        Ok(id.to_string())
    }

    /// The chats in the trash, most recently deleted first.
    pub fn list_trash(&self) -> Result<Vec<TrashedChat>, StoreError> {
        let dir = self.trash_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Read { path: dir, source }),
        };
        let mut trashed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((deleted_unix_ms, id)) = parse_entry(&name) else {
                continue;
            };
            trashed.push(TrashedChat {
                title: self.trashed_title(&entry.path(), id),
                id: id.to_string(),
                deleted_unix_ms,
                entry: name,
            });
        }
        trashed.sort_by_key(|t| std::cmp::Reverse(t.deleted_unix_ms));
        Ok(trashed)
    }

    /// Removes what was deleted more than `TRASH_KEEP_DAYS` before `now`; returns how many.
    pub fn purge_trash(&self, now: SystemTime) -> Result<usize, StoreError> {
        let keep = Duration::from_secs(TRASH_KEEP_DAYS * 24 * 60 * 60);
        let oldest_kept_ms = unix_ms(now).saturating_sub(unix_ms(UNIX_EPOCH + keep));
        let mut purged = 0;
        for chat in self.list_trash()? {
            if chat.deleted_unix_ms < oldest_kept_ms {
                let folder = self.trash_dir().join(&chat.entry);
                fs::remove_dir_all(&folder).map_err(|source| StoreError::Write {
                    path: folder,
                    source,
                })?;
                purged += 1;
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::chat;

    #[test]
    fn a_deleted_chat_leaves_the_list_and_comes_back_from_the_trash() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("a", "2026-01-01T00:00:00Z")).unwrap();
        store.save(&chat("b", "2026-01-02T00:00:00Z")).unwrap();
        let trashed = store.move_to_trash("a").unwrap();
        assert_eq!(
            (trashed.id.as_str(), trashed.title.as_str()),
            ("a", "chat a")
        );
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, vec!["b"]);
        assert_eq!(store.list_trash().unwrap(), vec![trashed.clone()]);
        assert_eq!(store.restore_from_trash(&trashed.entry).unwrap(), "a");
        assert_eq!(store.load("a").unwrap(), chat("a", "2026-01-01T00:00:00Z"));
        assert!(store.list_trash().unwrap().is_empty());
        assert_eq!(store.list().unwrap().len(), 2);
    }

    #[test]
    fn restoring_never_overwrites_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("a", "2026-01-01T00:00:00Z")).unwrap();
        let trashed = store.move_to_trash("a").unwrap();
        store.save(&chat("a", "2026-02-01T00:00:00Z")).unwrap();
        let err = store.restore_from_trash(&trashed.entry).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a chat a exists already: it is not replaced by the one in the trash"
        );
        for entry in ["../x", "12-../../etc", "nope", "1-missing"] {
            let err = store.restore_from_trash(entry).unwrap_err().to_string();
            assert_eq!(err, format!("'{entry}' is not a chat in the trash"));
        }
    }

    #[test]
    fn a_chat_open_elsewhere_is_not_trashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("a", "2026-01-01T00:00:00Z")).unwrap();
        let _held = store.try_lock("a").unwrap().expect("free");
        let err = store.move_to_trash("a").unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn purging_removes_only_what_is_older_than_the_keep_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("a", "")).unwrap();
        store.save(&chat("b", "")).unwrap();
        let a = store.move_to_trash("a").unwrap();
        let b = store.move_to_trash("b").unwrap();
        // Pretend "a" was deleted 31 days ago, "b" 29.
        let day_ms = 24 * 60 * 60 * 1000;
        let now = UNIX_EPOCH + Duration::from_millis(b.deleted_unix_ms + 29 * day_ms);
        let old = format!("{}-a", b.deleted_unix_ms - 2 * day_ms);
        fs::rename(
            store.trash_dir().join(&a.entry),
            store.trash_dir().join(&old),
        )
        .unwrap();
        assert_eq!(store.purge_trash(now).unwrap(), 1);
        let left: Vec<String> = store
            .list_trash()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(left, vec!["b"]);
    }
}
