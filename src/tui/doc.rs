//! A growing text (an answer or a reasoning trace) whose rendered lines are cached: finished
//! blocks are rendered once when they settle, and wrapped lines are kept per width, so a
//! frame only renders and wraps the unsettled tail. Long answers therefore don't make
//! streaming slower.

use std::cell::RefCell;

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::markdown;
use super::theme::Theme;
use super::wrap::wrap_lines;

/// How a document's text becomes lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// Markdown with highlighted code (answers).
    Markdown,
    /// Plain text in one style (reasoning, user messages).
    Plain,
}

/// A text that grows at its end, with its settled part rendered once.
#[derive(Debug, Clone)]
pub struct StreamDoc {
    kind: DocKind,
    style: Style,
    text: String,
    settled_len: usize,
    settled_lines: Vec<Line<'static>>,
    wrapped: RefCell<WrapCache>,
}

#[derive(Debug, Clone, Default)]
struct WrapCache {
    width: u16,
    /// How many of `settled_lines` are wrapped into `lines`.
    source_lines: usize,
    lines: Vec<Line<'static>>,
}

impl StreamDoc {
    /// An empty document; `style` is the plain-text style (ignored for markdown).
    pub fn new(kind: DocKind, style: Style) -> Self {
        Self {
            kind,
            style,
            text: String::new(),
            settled_len: 0,
            settled_lines: Vec::new(),
            wrapped: RefCell::new(WrapCache::default()),
        }
    }

    /// A finished document (everything settles at once).
    pub fn finished(kind: DocKind, style: Style, text: &str, theme: &Theme) -> Self {
        let mut doc = Self::new(kind, style);
        doc.push(text, theme);
        doc.finish(theme);
        doc
    }

    /// The whole text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Appends streamed text; renders whatever part of the tail settled.
    pub fn push(&mut self, delta: &str, theme: &Theme) {
        self.text.push_str(delta);
        let tail = &self.text[self.settled_len..];
        let settle = match self.kind {
            DocKind::Markdown => markdown::settled_prefix_len(tail),
            DocKind::Plain => tail.rfind('\n').map_or(0, |i| i + 1),
        };
        if settle > 0 {
            let piece = self.text[self.settled_len..self.settled_len + settle].to_string();
            self.settle(&piece, theme);
            self.settled_len += settle;
        }
    }

    /// Settles everything (the message is complete).
    pub fn finish(&mut self, theme: &Theme) {
        if self.settled_len < self.text.len() {
            let piece = self.text[self.settled_len..].to_string();
            self.settle(&piece, theme);
            self.settled_len = self.text.len();
        }
    }

    fn settle(&mut self, piece: &str, theme: &Theme) {
        let lines = self.render(piece, theme);
        if self.kind == DocKind::Markdown && !self.settled_lines.is_empty() && !lines.is_empty() {
            self.settled_lines.push(Line::default());
        }
        self.settled_lines.extend(lines);
    }

    fn render(&self, text: &str, theme: &Theme) -> Vec<Line<'static>> {
        match self.kind {
            DocKind::Markdown => markdown::render(text, theme),
            DocKind::Plain => text
                .strip_suffix('\n')
                .unwrap_or(text)
                .split('\n')
                .map(|l| Line::from(Span::styled(l.to_string(), self.style)))
                .collect(),
        }
    }

    /// The tail that has not settled, rendered now.
    fn tail_lines(&self, theme: &Theme) -> Vec<Line<'static>> {
        let tail = &self.text[self.settled_len..];
        if tail.is_empty() {
            return Vec::new();
        }
        let mut lines = self.render(tail, theme);
        if self.kind == DocKind::Markdown && !self.settled_lines.is_empty() && !lines.is_empty() {
            lines.insert(0, Line::default());
        }
        lines
    }

    /// Calls `visit` with the settled lines wrapped to `width` (cached) and the tail's lines
    /// wrapped now.
    pub fn with_wrapped<R>(
        &self,
        width: u16,
        theme: &Theme,
        visit: impl FnOnce(&[Line<'static>], &[Line<'static>]) -> R,
    ) -> R {
        let mut cache = self.wrapped.borrow_mut();
        if cache.width != width || cache.source_lines > self.settled_lines.len() {
            *cache = WrapCache {
                width,
                ..WrapCache::default()
            };
        }
        if cache.source_lines < self.settled_lines.len() {
            let new = wrap_lines(&self.settled_lines[cache.source_lines..], width);
            cache.lines.extend(new);
            cache.source_lines = self.settled_lines.len();
        }
        let tail = wrap_lines(&self.tail_lines(theme), width);
        visit(&cache.lines, &tail)
    }

    /// All lines wrapped to `width` (settled then tail).
    pub fn wrapped_lines(&self, width: u16, theme: &Theme) -> Vec<Line<'static>> {
        self.with_wrapped(width, theme, |settled, tail| {
            settled.iter().chain(tail).cloned().collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tui::line_texts as texts;

    #[test]
    fn streamed_markdown_matches_rendering_the_whole_text() {
        let theme = Theme::default();
        let text = "# Plan\n\nFirst *point* here.\n\n- a\n- b\n\n```rust\nfn f() {}\n\nfn g() {}\n```\n\nDone.";
        let mut doc = StreamDoc::new(DocKind::Markdown, Style::default());
        for piece in text.as_bytes().chunks(3) {
            doc.push(std::str::from_utf8(piece).unwrap(), &theme);
        }
        let streamed = doc.wrapped_lines(60, &theme);
        let whole = wrap_lines(&markdown::render(text, &theme), 60);
        assert_eq!(texts(&streamed), texts(&whole));
        doc.finish(&theme);
        assert_eq!(texts(&doc.wrapped_lines(60, &theme)), texts(&whole));
    }

    #[test]
    fn plain_text_settles_at_newlines_and_rewraps_on_resize() {
        let theme = Theme::default();
        let mut doc = StreamDoc::new(DocKind::Plain, Style::default());
        doc.push("one two three\nfour", &theme);
        assert_eq!(
            texts(&doc.wrapped_lines(40, &theme)),
            vec!["one two three", "four"]
        );
        assert_eq!(
            texts(&doc.wrapped_lines(8, &theme)),
            vec!["one two ", "three", "four"]
        );
        doc.push(" five\n", &theme);
        assert_eq!(
            texts(&doc.wrapped_lines(40, &theme)),
            vec!["one two three", "four five"]
        );
    }
}
