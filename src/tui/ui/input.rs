//! The input box: multi-line, grows up to a few rows, shows the cursor.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::pane_block;
use crate::tui::app::{App, Overlay, Pane};

/// Most text rows the box grows to.
const MAX_TEXT_ROWS: u16 = 6;

/// Rows the box needs at this screen width (borders included).
pub(super) fn height(app: &App, width: u16) -> u16 {
    let rows = app.input.row_count(width.saturating_sub(2));
    // Within u16: clamped to a few rows.
    rows.clamp(1, usize::from(MAX_TEXT_ROWS)) as u16 + 2
}

pub(super) fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let title = if app.generating {
        " Message (answering…) "
    } else {
        " Message "
    };
    let block = pane_block(app, Pane::Input, title.into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let window = app.input.window(inner.width, inner.height);
    let (cursor_row, cursor_col) = window.cursor;
    let lines: Vec<Line<'static>> = if app.input.is_empty() {
        vec![Line::from(Span::styled(
            "Ask anything · /help for commands",
            app.theme.dim,
        ))]
    } else {
        window
            .rows
            .into_iter()
            .map(|r| Line::from(Span::styled(r, app.theme.text)))
            .collect()
    };
    frame.render_widget(Paragraph::new(lines), inner);
    if app.overlay == Overlay::None && inner.width > 0 && inner.height > 0 {
        frame.set_cursor_position(Position::new(
            inner.x + cursor_col.min(inner.width - 1),
            inner.y + cursor_row.min(inner.height - 1),
        ));
    }
}
