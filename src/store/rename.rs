//! Renaming a saved chat from the list: only its metadata file is rewritten (atomically), so
//! the conversation file is never touched and the list order (by last update) stays.

use super::{ChatStore, StoreError, write_atomic};

/// The longest title kept (longer ones are cut).
pub const TITLE_MAX_CHARS: usize = 200;

/// `title` trimmed, on one line and cut to `TITLE_MAX_CHARS`; `None` when nothing is left.
pub(crate) fn clean_title(title: &str) -> Option<String> {
    let one_line = title.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = one_line.chars().take(TITLE_MAX_CHARS).collect();
    (!cut.is_empty()).then_some(cut)
}

impl ChatStore {
    /// Gives a saved chat a new title; refused while another copy of the app has it open.
    /// Returns the title as saved.
    pub fn rename(&self, id: &str, title: &str) -> Result<String, StoreError> {
        let title = clean_title(title).ok_or(StoreError::EmptyTitle)?;
        // Read first: a missing chat must not leave a lock file behind.
        let mut chat = self.load(id)?;
        let Some(_lock) = self.try_lock(id)? else {
            return Err(StoreError::Locked { id: id.to_string() });
        };
        chat.meta.title = title.clone();
        let meta = serde_json::to_vec_pretty(&chat.meta).map_err(|source| StoreError::Encode {
            id: id.to_string(),
            source,
        })?;
        self.index.forget(id);
        write_atomic(&self.meta_path(id), &meta)?;
        Ok(title)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::chat;

    #[test]
    fn renaming_rewrites_the_title_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        store.save(&chat("a", "2026-01-01T00:00:00Z")).unwrap();
        let before = std::fs::read(store.chat_path("a")).unwrap();
        assert_eq!(store.rename("a", "  new\n name ").unwrap(), "new name");
        let listed = store.list().unwrap();
        assert_eq!(listed[0].title, "new name");
        assert_eq!(listed[0].updated, "2026-01-01T00:00:00Z");
        assert_eq!(std::fs::read(store.chat_path("a")).unwrap(), before);
        assert_eq!(
            store.rename("a", " \n ").unwrap_err().to_string(),
            "a chat title cannot be empty"
        );
        let long = "x".repeat(500);
        assert_eq!(
            store.rename("a", &long).unwrap().chars().count(),
            TITLE_MAX_CHARS
        );
    }

    #[test]
    fn a_missing_chat_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        let err = store.rename("gone", "t").unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read ") && err.contains("gone.json"),
            "{err}"
        );
    }
}
