//! The saved-chats overlay: a search field, one row per chat (title, message count, when it
//! was last updated; a content match adds a snippet row), a line about the selected chat (or
//! the rename field, or the delete question), and the keys. Fits 80 columns.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, List, ListItem, ListState, Paragraph};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::centered;
use crate::store::{ChatSummary, SearchHit, TRASH_KEEP_DAYS};
use crate::tui::app::App;
use crate::tui::app::chat_list::{ChatList, ListMode};

/// The overlay's widest size (80-column terminals get all but 2 columns of it).
const POPUP_MAX_COLS: u16 = 78;
/// Columns for "999 msgs  59 min ago".
const RIGHT_COLS: usize = 22;

/// "just now", "5 min ago", "3 h ago", "yesterday", "4 days ago", then the date.
pub(super) fn relative_time(rfc3339: &str, now: DateTime<Utc>) -> String {
    let Ok(then) = DateTime::parse_from_rfc3339(rfc3339) else {
        return String::new();
    };
    let then = then.with_timezone(&Utc);
    let secs = (now - then).num_seconds();
    match secs {
        0..60 => "just now".into(),
        60..3_600 => format!("{} min ago", secs / 60),
        3_600..86_400 => format!("{} h ago", secs / 3_600),
        86_400..172_800 => "yesterday".into(),
        172_800..604_800 => format!("{} days ago", secs / 86_400),
        _ => then.format("%Y-%m-%d").to_string(),
    }
}

/// `text` cut to `cols` display columns, with '…' when cut.
fn fit(text: &str, cols: usize) -> String {
    if text.width() <= cols {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > cols {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

fn chat_row(
    app: &App,
    list: &ChatList,
    hit: &SearchHit,
    chat: &ChatSummary,
    cols: usize,
) -> ListItem<'static> {
    let theme = &app.theme;
    let open = if chat.id == app.chat_id {
        " (open)"
    } else {
        ""
    };
    let title_cols = cols.saturating_sub(RIGHT_COLS + 1);
    let title = fit(&format!("{}{open}", chat.title), title_cols);
    let pad = title_cols.saturating_sub(title.width());
    let count = match chat.messages {
        1 => "1 msg".to_string(),
        n => format!("{n} msgs"),
    };
    let when = relative_time(&chat.updated, list.listed_at);
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{title}{} ", " ".repeat(pad)), theme.text),
        Span::styled(format!("{count:>9}  {when:<11}"), theme.dim),
    ])];
    if let Some(snippet) = &hit.snippet {
        let room = cols.saturating_sub(4);
        let before = fit(&snippet.before, room / 2);
        let matched = fit(
            &snippet.matched,
            room.saturating_sub(before.chars().count()),
        );
        let used = before.chars().count() + matched.chars().count();
        let after = fit(&snippet.after, room.saturating_sub(used));
        lines.push(Line::from(vec![
            Span::styled(format!("   {before}"), theme.dim),
            Span::styled(matched, theme.accent.add_modifier(Modifier::BOLD)),
            Span::styled(after, theme.dim),
        ]));
    }
    ListItem::new(lines)
}

/// The line under the list: the selected chat's dates, or what the mode asks.
fn footer(app: &App, list: &ChatList) -> Line<'static> {
    let theme = &app.theme;
    let chat = list.selected_chat();
    match (&list.mode, chat) {
        (ListMode::Rename { title }, _) => Line::from(vec![
            Span::styled("New title: ", theme.accent),
            Span::styled(format!("{title}▏"), theme.text),
            Span::styled("  Enter save · Esc cancel", theme.dim),
        ]),
        (ListMode::ConfirmDelete, Some(chat)) => Line::from(Span::styled(
            format!(
                "Delete '{}'? y: to the trash ({TRASH_KEEP_DAYS} days) · other key: keep",
                fit(&chat.title, 20)
            ),
            theme.warning,
        )),
        (ListMode::Browse, Some(chat)) => {
            let absolute = |t: &str| {
                DateTime::parse_from_rfc3339(t).map_or_else(
                    |_| "?".to_string(),
                    |t| t.with_timezone(&Utc).format("%Y-%m-%d %H:%M").to_string(),
                )
            };
            Line::from(Span::styled(
                format!(
                    "created {} · updated {} UTC · {} messages",
                    absolute(&chat.created),
                    absolute(&chat.updated),
                    chat.messages
                ),
                theme.dim,
            ))
        }
        _ => Line::default(),
    }
}

/// Draws the overlay.
pub(super) fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, list: &ChatList) {
    let theme = &app.theme;
    let width = POPUP_MAX_COLS.min(area.width.saturating_sub(2)).max(20);
    let cols = usize::from(width.saturating_sub(2));
    let (title, items, selected, hints) = match &list.mode {
        ListMode::Trash { trashed, selected } => {
            let items: Vec<ListItem<'static>> = if trashed.is_empty() {
                vec![ListItem::new(Span::styled("the trash is empty", theme.dim))]
            } else {
                trashed
                    .iter()
                    .map(|t| {
                        let deleted = chrono::DateTime::from_timestamp_millis(
                            i64::try_from(t.deleted_unix_ms).unwrap_or(i64::MAX),
                        )
                        .map(|d| relative_time(&d.to_rfc3339(), list.listed_at))
                        .unwrap_or_default();
                        let title = fit(&t.title, cols.saturating_sub(RIGHT_COLS + 1));
                        ListItem::new(Line::from(vec![
                            Span::styled(
                                format!("{title:<w$} ", w = cols.saturating_sub(RIGHT_COLS + 1)),
                                theme.text,
                            ),
                            Span::styled(format!("deleted {deleted}"), theme.dim),
                        ]))
                    })
                    .collect()
            };
            let title = format!(" Trash ({}, kept {TRASH_KEEP_DAYS} days) ", trashed.len());
            (title, items, *selected, " ↑↓ · Enter restore · Esc back ")
        }
        _ => {
            let items: Vec<ListItem<'static>> = if list.hits.is_empty() {
                let empty = if list.chats.is_empty() {
                    "no saved chats yet"
                } else {
                    "no chat matches"
                };
                vec![ListItem::new(Span::styled(empty, theme.dim))]
            } else {
                list.hits
                    .iter()
                    .filter_map(|hit| {
                        let chat = list.chats.get(hit.index)?;
                        Some(chat_row(app, list, hit, chat, cols))
                    })
                    .collect()
            };
            let title = if list.query.is_empty() {
                format!(" Chats ({}) ", list.chats.len())
            } else {
                format!(" Chats ({} of {}) ", list.hits.len(), list.chats.len())
            };
            (
                title,
                items,
                list.selected,
                " Enter open · F2 rename · Del delete · ^Z undo · ^T trash · Esc ",
            )
        }
    };
    let rows: usize = items.iter().map(ListItem::height).sum();
    let height = u16::try_from(rows + 4).unwrap_or(u16::MAX);
    let popup = centered(
        area,
        width,
        height.max(7).min(area.height.saturating_sub(2)),
    );
    frame.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(theme.border_focus)
        .title(title)
        .title_bottom(Span::styled(hints, theme.dim));
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let [search_area, list_area, footer_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let search = if matches!(list.mode, ListMode::Trash { .. }) {
        Line::from(Span::styled(
            "Enter puts the chat back in the list",
            theme.dim,
        ))
    } else if list.query.is_empty() {
        Line::from(Span::styled(
            "type to search titles and messages",
            theme.dim,
        ))
    } else {
        Line::from(vec![
            Span::styled("search: ", theme.accent),
            Span::styled(format!("{}▏", list.query), theme.text),
        ])
    };
    frame.render_widget(Paragraph::new(search), search_area);
    let mut state = ListState::default().with_selected(Some(selected));
    frame.render_stateful_widget(
        List::new(items).highlight_style(theme.accent.add_modifier(Modifier::REVERSED)),
        list_area,
        &mut state,
    );
    frame.render_widget(Paragraph::new(footer(app, list)), footer_area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_relative_then_absolute() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |t: &str| relative_time(t, now);
        assert_eq!(at("2026-12-03T11:59:30Z"), "just now");
        assert_eq!(at("2026-12-03T11:15:00Z"), "45 min ago");
        assert_eq!(at("2026-12-03T09:00:00+00:00"), "3 h ago");
        assert_eq!(at("2026-12-02T08:00:00Z"), "yesterday");
        assert_eq!(at("2026-11-29T12:00:00Z"), "4 days ago");
        assert_eq!(at("2026-10-01T12:00:00Z"), "2026-10-01");
        assert_eq!(at("2027-01-01T00:00:00Z"), "2027-01-01");
        assert_eq!(at("garbage"), "");
    }

    #[test]
    fn fitting_cuts_by_display_columns() {
        assert_eq!(fit("hello", 5), "hello");
        assert_eq!(fit("hello world", 6), "hello…");
        assert_eq!(fit("日本語のテキスト", 7), "日本語…");
        assert_eq!(fit("", 3), "");
    }
}
