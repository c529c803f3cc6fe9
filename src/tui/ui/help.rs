//! The help overlay: every key (from the live key map) and every slash command.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use super::centered;
use crate::tui::app::App;
use crate::tui::keys::Action;

const SLASH_COMMANDS: [(&str, &str); 8] = [
    (
        "/system TEXT",
        "developer instructions (/system alone edits them)",
    ),
    ("/effort LEVEL", "reasoning effort low, medium or high"),
    ("/ctx N", "context limit in tokens"),
    ("/new", "new chat"),
    ("/chats", "saved chats"),
    ("/rename TITLE", "rename this chat"),
    ("/export [PATH]", "write this chat as Markdown"),
    ("/quit", "quit"),
];

pub(super) fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let theme = &app.theme;
    let mut lines = Vec::new();
    for action in Action::ALL {
        let keys: Vec<String> = app
            .keymap
            .keys_for(action)
            .iter()
            .map(ToString::to_string)
            .collect();
        lines.push(Line::from(vec![
            Span::styled(format!("{:<18}", keys.join(" ")), theme.accent),
            Span::styled(action.description(), theme.text),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled(format!("{:<18}", "?"), theme.accent),
        Span::styled("this help (when the input is empty)", theme.text),
    ]));
    lines.push(Line::default());
    for (command, what) in SLASH_COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(format!("{command:<18}"), theme.user),
            Span::styled(what, theme.text),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        "Keys are set in the config file's [keybindings]. Any key closes this.",
        theme.dim,
    )));
    let popup = centered(area, 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Rounded)
                .border_style(theme.border_focus)
                .title(" Help "),
        ),
        popup,
    );
}
