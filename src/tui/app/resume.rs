//! A reopened chat whose KV cache came back from disk: say so, and show the context it
//! holds from the engine's own figure (the saved one is an estimate).

use super::{App, Effect};

impl App {
    /// The engine restored `restored_tokens` of the open chat's cache (`Event::ChatRestored`).
    pub(super) fn chat_restored(&mut self, restored_tokens: usize) -> Vec<Effect> {
        let note = format!("restored {restored_tokens} tokens from disk");
        self.notice = Some(match self.notice.take() {
            Some(opened) if opened.starts_with("opened ") => format!("{opened}: {note}"),
            _ => note,
        });
        // The metrics sample that follows holds the restored cache's size.
        self.saved_context_tokens = None;
        Vec::new()
    }
}
