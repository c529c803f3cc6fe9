//! The chat list's index and its search. Listing reads each chat once and keeps its summary
//! (title, dates, message count, searchable text) in memory; later listings only look at the
//! files' size and modification time and re-read the chats that changed (a save through this
//! store forgets its chat at once). Searching runs over the summaries in memory, so typing in
//! the list never touches the disk.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{ChatMeta, ChatStore, ChatSummary, StoreError, first_user_text};
use crate::harmony::{Conversation, Message, Role};

/// Text to search, kept with its case-folded copy. Folding maps a character only to a
/// lower case of the same UTF-8 length, so a match's byte offsets in the folded copy are its
/// offsets in the original too (the snippet is cut from the original).
#[derive(Clone, Default, PartialEq)]
pub struct SearchText {
    original: Arc<str>,
    folded: Arc<str>,
}

impl SearchText {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        Self {
            original: text.into(),
            folded: fold(text).into(),
        }
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.original
    }
}

impl fmt::Debug for SearchText {
    // A chat's whole text would drown every debug print of the list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SearchText({} bytes)", self.original.len())
    }
}

/// Lower case, one character for one of the same byte length (others kept as they are).
fn fold(text: &str) -> String {
    text.chars()
        .map(|c| {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) if l.len_utf8() == c.len_utf8() => l,
                _ => c,
            }
        })
        .collect()
}

/// A match in a chat's content: the text around it, the match itself cut out to highlight.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    pub before: String,
    pub matched: String,
    pub after: String,
}

/// One chat the search found.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// Index into the searched list.
    pub index: usize,
    /// Where the content matched; `None` when the title did (or the query is empty).
    pub snippet: Option<Snippet>,
}

/// Characters of context shown before a match.
const SNIPPET_BEFORE_CHARS: usize = 24;
/// Characters shown from the match on.
const SNIPPET_AFTER_CHARS: usize = 60;

/// The chats whose title or content contains `query` (case-insensitive): title matches first,
/// then content matches, each in list order. An empty query keeps every chat.
pub fn search(chats: &[ChatSummary], query: &str) -> Vec<SearchHit> {
    let query = fold(query.trim());
    if query.is_empty() {
        return (0..chats.len())
            .map(|index| SearchHit {
                index,
                snippet: None,
            })
            .collect();
    }
    let mut by_title = Vec::new();
    let mut by_content = Vec::new();
    for (index, chat) in chats.iter().enumerate() {
        if fold(&chat.title).contains(&query) {
            by_title.push(SearchHit {
                index,
                snippet: None,
            });
        } else if let Some(at) = chat.text.folded.find(&query) {
            by_content.push(SearchHit {
                index,
                snippet: Some(snippet(chat.text.as_str(), at, query.len())),
            });
        }
    }
    by_title.extend(by_content);
    by_title
}

/// The text around bytes `at..at + len` of `text` (char boundaries: folding keeps them), on
/// one line.
fn snippet(text: &str, at: usize, len: usize) -> Snippet {
    let one_line = |s: &str| s.replace(['\n', '\r', '\t'], " ");
    let head = &text[..at];
    let start = head
        .char_indices()
        .rev()
        .nth(SNIPPET_BEFORE_CHARS - 1)
        .map_or(0, |(i, _)| i);
    let mut before = one_line(&head[start..]);
    if start > 0 {
        before.insert(0, '…');
    }
    let matched = &text[at..at + len];
    let rest = &text[at + len..];
    let after_chars = SNIPPET_AFTER_CHARS.saturating_sub(matched.chars().count());
    let mut after: String = one_line(&rest.chars().take(after_chars).collect::<String>());
    if rest.chars().nth(after_chars).is_some() {
        after.push('…');
    }
    Snippet {
        before,
        matched: one_line(matched),
        after,
    }
}

/// Size and modification time of a chat's two files: a change in either means re-read.
type FileStamp = (Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The summaries read so far, by chat id.
#[derive(Debug, Default)]
struct Index {
    chats: HashMap<String, (FileStamp, ChatSummary)>,
    /// Chat files read since the store was made (tests check nothing is re-read).
    files_read: usize,
}

/// The index, shared by the store's clones.
#[derive(Debug, Clone, Default)]
pub(super) struct SharedIndex(Arc<Mutex<Index>>);

impl SharedIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // The index is only a cache: what a panicking holder left is still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops a chat's summary, so the next listing reads it again.
    pub(super) fn forget(&self, id: &str) {
        self.lock().chats.remove(id);
    }

    /// Chat files read so far.
    #[cfg(test)]
    pub(super) fn files_read(&self) -> usize {
        self.lock().files_read
    }

    /// The chats in `store`, newest first, reading only those that changed.
    pub(super) fn refresh(&self, store: &ChatStore) -> Result<Vec<ChatSummary>, StoreError> {
        let entries = match fs::read_dir(&store.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Read {
                    path: store.dir.clone(),
                    source,
                });
            }
        };
        let mut index = self.lock();
        let mut fresh = HashMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if id.ends_with(".meta") || id.starts_with('.') {
                continue;
            }
            let stamp = (
                stamp_of(&store.chat_path(id)),
                stamp_of(&store.meta_path(id)),
            );
            let known = index.chats.remove(id).filter(|(seen, _)| *seen == stamp);
            let summary = match known {
                Some((_, summary)) => summary,
                None => {
                    index.files_read += 1;
                    summarize(store, id)
                }
            };
            fresh.insert(id.to_string(), (stamp, summary));
        }
        index.chats = fresh;
        let mut chats: Vec<ChatSummary> = index.chats.values().map(|(_, s)| s.clone()).collect();
        chats.sort_by(|a, b| (&b.updated, &b.id).cmp(&(&a.updated, &a.id)));
        Ok(chats)
    }
}

/// A user message or an answer (what the list counts and searches).
fn is_shown(message: &Message) -> bool {
    match message.role {
        Role::User => true,
        Role::Assistant => {
            message.recipient.is_none()
                && matches!(message.channel.as_deref(), None | Some("final"))
        }
        _ => false,
    }
}

/// One chat's list entry; a chat file that does not parse still lists (by its metadata), so
/// it can be seen and deleted.
fn summarize(store: &ChatStore, id: &str) -> ChatSummary {
    let conversation: Option<Conversation> = fs::read_to_string(store.chat_path(id))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let meta: Option<ChatMeta> = fs::read_to_string(store.meta_path(id))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let shown: Vec<&Message> = conversation
        .iter()
        .flat_map(|c| c.messages.iter())
        .filter(|m| is_shown(m))
        .collect();
    let text: Vec<String> = shown.iter().map(|m| m.text()).collect();
    let title = match &meta {
        Some(m) if !m.title.is_empty() => m.title.clone(),
        _ => conversation
            .as_ref()
            .and_then(first_user_text)
            .unwrap_or_else(|| id.to_string()),
    };
    let (created, updated) = meta.map_or_else(Default::default, |m| (m.created, m.updated));
    ChatSummary {
        id: id.to_string(),
        title,
        created,
        updated,
        messages: shown.len(),
        text: SearchText::new(&text.join("\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(title: &str, text: &str) -> ChatSummary {
        ChatSummary {
            id: title.replace(' ', "-"),
            title: title.into(),
            text: SearchText::new(text),
            ..ChatSummary::default()
        }
    }

    #[test]
    fn finds_titles_first_then_content_case_insensitively() {
        let chats = [
            summary("rust lifetimes", "what is 'a"),
            summary("cooking", "A RISOTTO needs Rust-free pans"),
            summary("other", "nothing here"),
        ];
        let hits = search(&chats, "  RuSt ");
        assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(hits[0].snippet, None);
        assert_eq!(
            hits[1].snippet,
            Some(Snippet {
                before: "A RISOTTO needs ".into(),
                matched: "Rust".into(),
                after: "-free pans".into(),
            })
        );
        assert_eq!(search(&chats, "").len(), 3);
        assert!(search(&chats, "absent").is_empty());
    }

    #[test]
    fn a_snippet_is_one_line_cut_around_the_match_and_keeps_accents() {
        let text = format!("{}\nÉCOLE du soir\n{}", "x".repeat(100), "y".repeat(100));
        let chats = [summary("t", &text)];
        let hit = &search(&chats, "école")[0];
        let snip = hit.snippet.as_ref().expect("a content match");
        assert_eq!(snip.matched, "ÉCOLE");
        assert_eq!(snip.before, format!("…{} ", "x".repeat(23)));
        assert!(snip.after.starts_with(" du soir y"), "{}", snip.after);
        assert!(snip.after.ends_with('…'));
        assert!(!snip.after.contains('\n'));
    }

    #[test]
    fn folding_keeps_byte_offsets() {
        // 'İ' lower-cases to two characters: it is kept, so offsets still line up.
        let text = "İstanbul ΣΟΦΙΑ ǅ";
        assert_eq!(fold(text).len(), text.len());
        assert_eq!(fold("ΣΟΦΙΑ"), "σοφια");
    }

    #[test]
    fn listing_reads_each_chat_once_and_again_only_after_it_changes() {
        use crate::store::tests::chat;
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        for i in 0..50 {
            store
                .save(&chat(&format!("c{i}"), "2026-01-01T00:00:00Z"))
                .unwrap();
        }
        let first = store.list().unwrap();
        assert_eq!(store.index.files_read(), 50);
        assert_eq!(first[0].messages, 2);
        assert_eq!(first[0].text.as_str(), "hi\nhello");
        assert_eq!(store.list().unwrap(), first);
        assert_eq!(
            store.index.files_read(),
            50,
            "nothing changed: nothing re-read"
        );
        let mut changed = chat("c7", "2026-02-01T00:00:00Z");
        changed.meta.title = "renamed".into();
        store.save(&changed).unwrap();
        let listed = store.list().unwrap();
        assert_eq!(store.index.files_read(), 51);
        assert_eq!(
            (listed[0].id.as_str(), listed[0].title.as_str()),
            ("c7", "renamed")
        );
        // Another copy's write is seen by its size and time.
        std::fs::write(
            store.meta_path("c3"),
            "{\"title\": \"x\", \"created\": \"\", \"updated\": \"2027-01-01T00:00:00Z\"}",
        )
        .unwrap();
        assert_eq!(store.list().unwrap()[0].title, "x");
        std::fs::remove_file(store.chat_path("c3")).unwrap();
        assert_eq!(store.list().unwrap().len(), 49);
    }

    /// Timing, not a check: `cargo test --lib search_time -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints a timing"]
    fn search_time_over_a_large_index() {
        let text = "the quick brown fox jumps over the lazy dog. ".repeat(450); // ~20 KB
        let chats: Vec<ChatSummary> = (0..2000)
            .map(|i| summary(&format!("chat {i}"), &text))
            .collect();
        let start = std::time::Instant::now();
        let hits = search(&chats, "zebra");
        println!(
            "search over 2000 chats x {} bytes: {:?} ({} hits)",
            text.len(),
            start.elapsed(),
            hits.len()
        );
    }
}
