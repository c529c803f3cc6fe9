//! Drawing: `draw(frame, &app)` lays out the panes and draws each from the app's state.
//! Nothing here changes state (the pane rectangles are recorded for mouse hit-testing).

pub(crate) mod chat;
mod chat_list;
mod gauges;
mod help;
mod input;
mod metrics;
mod popup;
mod reasoning;
mod status;
mod tools;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, BorderType, Borders};

use super::app::{App, Overlay, Pane, PaneRects, pane_sizes};
use super::safe_text;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    let input_rows = input::height(app, area.width);
    let [status_area, body, input_area, hints_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(input_rows),
        Constraint::Length(1),
    ])
    .areas(area);
    let side_cols = pane_sizes::side_columns(body.width, app.chat_width_percent);
    let [chat_area, side] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(side_cols)]).areas(body);
    let (reasoning_area, metrics_area) =
        if app.show_reasoning && pane_sizes::reasoning_fits(side_cols) {
            // Resized from the keyboard, but each pane keeps at least 3 rows.
            let metrics_rows = pane_sizes::metrics_rows(side.height, app.metrics_rows_offset);
            let [r, m] = Layout::vertical([Constraint::Min(3), Constraint::Length(metrics_rows)])
                .areas(side);
            (Some(r), m)
        } else {
            (None, side)
        };
    app.rects.set(PaneRects {
        chat: chat_area,
        reasoning: reasoning_area,
        metrics: metrics_area,
        input: input_area,
    });

    status::draw(frame, status_area, app);
    chat::draw(frame, chat_area, app);
    if let Some(r) = reasoning_area {
        reasoning::draw(frame, r, app);
    }
    if metrics_area.width > 0 {
        metrics::draw(frame, metrics_area, app);
    }
    input::draw(frame, input_area, app);
    status::draw_hints(frame, hints_area, app);

    match &app.overlay {
        Overlay::None => {
            if let Some(prompt) = &app.tools.prompt {
                tools::draw_approval(frame, area, app, prompt);
            }
        }
        Overlay::Help => help::draw(frame, area, app),
        Overlay::Error { message, fatal } => popup::draw_error(frame, area, app, message, *fatal),
        Overlay::Chats(list) => chat_list::draw(frame, area, app, list),
    }
    if let Some(background) = app.theme.background {
        fill_background(frame.buffer_mut(), background);
    }
    // Last, over everything drawn: no control character from untrusted text reaches the
    // terminal.
    safe_text::neutralize_buffer(frame.buffer_mut());
}

/// Gives every cell left in the terminal's default colours the theme's background and text
/// colour (done last, so popups drawn over cleared cells get it too).
fn fill_background(buffer: &mut Buffer, background: Style) {
    for cell in &mut buffer.content {
        if cell.bg == Color::Reset
            && let Some(bg) = background.bg
        {
            cell.set_bg(bg);
        }
        if cell.fg == Color::Reset
            && let Some(fg) = background.fg
        {
            cell.set_fg(fg);
        }
    }
}

/// A pane's frame: rounded border, title, highlighted when focused.
fn pane_block<'a>(app: &App, pane: Pane, title: String) -> Block<'a> {
    let focused = app.focus == pane;
    let style: Style = if focused {
        app.theme.border_focus
    } else {
        app.theme.border
    };
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(style)
        .title(title)
        .title_style(if focused {
            app.theme.border_focus
        } else {
            app.theme.accent
        })
}

/// A rectangle of at most `width` x `height` centred in `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

/// Human-readable bytes for the panes: "12.3 GiB".
pub fn format_bytes(bytes: u64) -> String {
    crate::memory::planner::format_bytes_with_decimals(bytes, 1)
}

/// Token counts as "950", "12.3k".
pub fn format_tokens(tokens: usize) -> String {
    if tokens < 1000 {
        tokens.to_string()
    } else {
        format!("{:.1}k", tokens as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
        assert_eq!(format_tokens(950), "950");
        assert_eq!(format_tokens(12_345), "12.3k");
    }
}
