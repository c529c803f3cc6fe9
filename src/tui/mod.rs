//! The terminal app: state and update (`app`), keys, terminal setup/restore, markdown and
//! code highlighting, themes, one drawing module per pane (`ui`), and the filter that keeps
//! untrusted text from driving the terminal (`safe_text`).

pub mod app;
pub mod doc;
pub mod highlight;
pub mod input;
pub mod keys;
pub mod markdown;
pub mod safe_text;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod wrap;

/// The plain text of rendered lines (for tests that compare what a pane shows).
#[cfg(test)]
pub(crate) fn line_texts(lines: &[ratatui::text::Line<'_>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
        .collect()
}
