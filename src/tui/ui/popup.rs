//! Popups: an error with what to do, and the saved-chats list.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, BorderType, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap,
};

use super::centered;
use crate::store::ChatSummary;
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

pub(super) fn draw_chats(
    frame: &mut Frame<'_>,
    area: Rect,
    app: &App,
    chats: &[ChatSummary],
    selected: usize,
) {
    let theme = &app.theme;
    let items: Vec<ListItem<'static>> = if chats.is_empty() {
        vec![ListItem::new(Span::styled("no saved chats yet", theme.dim))]
    } else {
        chats
            .iter()
            .map(|c| {
                let when = c.updated.get(..16).unwrap_or(&c.updated).replace('T', " ");
                let current = if c.id == app.chat_id { " (open)" } else { "" };
                ListItem::new(Line::from(vec![
                    Span::styled(format!("{when:<17}"), theme.dim),
                    Span::styled(format!("{}{current}", c.title), theme.text),
                ]))
            })
            .collect()
    };
    let popup = centered(
        area,
        72,
        (items.len() as u16 + 3)
            .min(area.height.saturating_sub(2))
            .max(5),
    );
    frame.render_widget(Clear, popup);
    let mut state = ListState::default().with_selected(Some(selected));
    frame.render_stateful_widget(
        List::new(items)
            .highlight_style(theme.accent.add_modifier(Modifier::REVERSED))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_type(BorderType::Rounded)
                    .border_style(theme.border_focus)
                    .title(" Chats ")
                    .title_bottom(Span::styled(
                        " Enter open · d delete · Esc close ",
                        theme.dim,
                    )),
            ),
        popup,
        &mut state,
    );
}
