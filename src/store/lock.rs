//! One copy of the app per chat: a copy that has a chat open holds an exclusive advisory lock
//! (`flock`) on `.<id>.lock` next to it, so a second copy on the same data dir cannot open the
//! same chat and overwrite its turns with an older view. The operating system drops the lock
//! when the holder exits or is killed, so a crash never leaves a chat locked.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::PathBuf;

use super::{ChatStore, StoreError, check_id};

/// A held chat lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ChatLock {
    id: String,
    _file: File,
}

impl ChatLock {
    /// The chat this lock holds.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl ChatStore {
    /// The lock file of a chat (hidden, so listings skip it).
    pub fn lock_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!(".{id}.lock"))
    }

    /// Locks a chat for this copy of the app; `Ok(None)` when another copy holds it.
    pub fn try_lock(&self, id: &str) -> Result<Option<ChatLock>, StoreError> {
        check_id(id)?;
        let path = self.lock_path(id);
        let err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ChatLock {
                id: id.to_string(),
                _file: file,
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(err(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_is_locked_until_its_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        // Two stores stand for two copies of the app (flock locks are per open file).
        let first = ChatStore::new(dir.path());
        let second = ChatStore::new(dir.path());
        let held = first
            .try_lock("a")
            .unwrap()
            .expect("the first copy gets the lock");
        assert_eq!(held.id(), "a");
        assert!(second.try_lock("a").unwrap().is_none());
        // Another chat is free.
        assert!(second.try_lock("b").unwrap().is_some());
        drop(held);
        assert!(second.try_lock("a").unwrap().is_some());
    }

    #[test]
    fn a_chat_open_elsewhere_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        let _held = store.try_lock("a").unwrap();
        let err = ChatStore::new(dir.path()).delete("a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "chat a is open in another copy of ossterm: close it there first"
        );
    }
}
