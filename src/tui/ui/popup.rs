//! Popups: an error with what to do (the saved-chats list is `chat_list`).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use super::centered;
use crate::tui::app::App;
use crate::tui::keys::Action;

pub(super) fn draw_error(frame: &mut Frame<'_>, area: Rect, app: &App, message: &str, fatal: bool) {
    let theme = &app.theme;
    let mut lines: Vec<Line<'static>> = message
        .lines()
        .map(|l| Line::from(Span::styled(l.to_string(), theme.text)))
        .collect();
    lines.push(Line::default());
    let hint = if fatal {
        format!(
            "Press {} or q to quit (your chats are saved).",
            app.keymap.label(Action::Quit)
        )
    } else {
        "Press any key to continue.".to_string()
    };
    lines.push(Line::from(Span::styled(hint, theme.dim)));
    let width = 70.min(area.width);
    let wrapped_rows: u16 = lines
        .iter()
        .map(|l| {
            (l.width() as u16)
                .div_ceil(width.saturating_sub(2).max(1))
                .max(1)
        })
        .sum();
    let popup = centered(area, width, wrapped_rows + 2);
    frame.render_widget(Clear, popup);
    let title = if fatal { " Error " } else { " Problem " };
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Double)
                .border_style(theme.error)
                .title(Span::styled(title, theme.error)),
        ),
        popup,
    );
}
