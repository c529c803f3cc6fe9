//! A reopened chat whose KV cache came back from disk: say so, and show the context it
//! holds from the engine's own figure (the saved one is an estimate).

use super::{App, Effect};

impl App {
    /// The engine restored `restored_tokens` of the open chat's cache (`Event::ChatRestored`).
    pub(super) fn kv_restored(&mut self, restored_tokens: usize) -> Vec<Effect> {
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

#[cfg(test)]
mod tests {
    use crate::engine::Event;
    use crate::tui::app::Input;
    use crate::tui::app::tests::app;

    #[test]
    fn a_restore_is_told_after_the_opened_chat_and_the_context_figure_follows_the_engine() {
        let mut app = app();
        app.notice = Some("opened 'Capitals'".into());
        app.saved_context_tokens = Some(120);
        let effects = app.update(Input::Engine(Event::ChatRestored {
            restored_tokens: 131,
            file_bytes: 4096,
            restore_ms: 2.0,
        }));
        assert!(effects.is_empty());
        assert_eq!(
            app.notice.as_deref(),
            Some("opened 'Capitals': restored 131 tokens from disk")
        );
        assert_eq!(app.saved_context_tokens, None);

        // Any other notice is replaced; an engine notice is shown as it comes.
        app.notice = Some("new chat".into());
        app.update(Input::Engine(Event::ChatRestored {
            restored_tokens: 7,
            file_bytes: 10,
            restore_ms: 1.0,
        }));
        assert_eq!(app.notice.as_deref(), Some("restored 7 tokens from disk"));
        app.update(Input::Engine(Event::Notice(
            "ignored the saved KV cache x".into(),
        )));
        assert_eq!(app.notice.as_deref(), Some("ignored the saved KV cache x"));
    }
}
