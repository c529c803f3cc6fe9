//! The help overlay: every key (from the live key map) and every slash command.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};

use super::centered;
use crate::tui::app::App;
use crate::tui::keys::Action;

const SLASH_COMMANDS: [(&str, &str); 13] = [
    (
        "/system TEXT",
        "developer instructions (/system alone edits them)",
    ),
    ("/effort LEVEL", "reasoning effort low, medium or high"),
    ("/ctx N", "context limit in tokens"),
    ("/max N", "answers stop after N tokens (/max off)"),
    ("/sampling", "show temperature, top-p, top-k, min-p, seed"),
    (
        "/temp X",
        "set temperature (also /top-p, /top-k, /min-p, /seed)",
    ),
    ("/new", "new chat"),
    ("/chats", "saved chats"),
    ("/json FILE", "answers follow this JSON schema (/json off)"),
    ("/rename TITLE", "rename this chat"),
    (
        "/export [PATH]",
        "Markdown (.json: harmony JSON) to PATH (~ = home) or ./ossterm-ID.md",
    ),
    (
        "/import FILE",
        "open a harmony JSON or Markdown export as a new chat",
    ),
    ("/quit", "quit"),
];

/// How copying reaches the clipboard, and the terminal's own selection.
const CLIPBOARD_NOTES: [&str; 3] = [
    "Copies go to the clipboard by OSC 52 (works over SSH; tmux needs",
    "set-clipboard on; some terminals turn OSC 52 off in their settings).",
    "To select text with the mouse, hold Shift while you drag.",
];

pub(super) fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let theme = &app.theme;
    let mut lines = Vec::new();
    let labels: Vec<String> = Action::ALL
        .iter()
        .map(|a| {
            let keys: Vec<String> = app
                .keymap
                .keys_for(*a)
                .iter()
                .map(ToString::to_string)
                .collect();
            keys.join(" ")
        })
        .collect();
    let key_width = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(16)
        + 2;
    for (action, keys) in Action::ALL.into_iter().zip(labels) {
        lines.push(Line::from(vec![
            Span::styled(format!("{keys:<key_width$}"), theme.accent),
            Span::styled(action.description(), theme.text),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled(format!("{:<key_width$}", "?"), theme.accent),
        Span::styled("this help (when the input is empty)", theme.text),
    ]));
    lines.push(Line::default());
    for (command, what) in SLASH_COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(format!("{command:<key_width$}"), theme.user),
            Span::styled(what, theme.text),
        ]));
    }
    lines.push(Line::default());
    for note in CLIPBOARD_NOTES {
        lines.push(Line::from(Span::styled(note, theme.dim)));
    }
    lines.push(Line::from(Span::styled(
        "Mouse: click focuses a pane, the wheel scrolls; Shift+drag selects text to copy.",
        theme.text,
    )));
    lines.push(Line::from(Span::styled(
        "Keys are set in the config file's [keybindings]. Esc closes this.",
        theme.dim,
    )));
    let popup = centered(area, (key_width + 54) as u16, lines.len() as u16 + 2);
    let hidden_rows = (lines.len() as u16 + 2).saturating_sub(popup.height);
    let scroll = app.help_scroll.min(hidden_rows);
    let title = if hidden_rows > 0 {
        " Help (↑↓ scroll) "
    } else {
        " Help "
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Rounded)
                .border_style(theme.border_focus)
                .title(title),
        ),
        popup,
    );
}
