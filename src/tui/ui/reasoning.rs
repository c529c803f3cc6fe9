//! The reasoning pane: the `analysis` channel, live, one section per turn; earlier turns
//! collapse to their first line unless expanded.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::chat::{Segment, window};
use super::pane_block;
use crate::tui::app::{App, Entry, Pane};
use crate::tui::keys::Action;

pub(super) fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let theme = &app.theme;
    let turns: Vec<_> = app
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Assistant(t) => Some(t.as_ref()),
            Entry::User(_) => None,
        })
        .collect();
    let mut segments = Vec::new();
    let last = turns.len().saturating_sub(1);
    for (i, turn) in turns.iter().enumerate() {
        let header = format!("── turn {} ", i + 1);
        segments.push(Segment::Lines(vec![Line::from(Span::styled(
            header, theme.dim,
        ))]));
        if turn.reasoning.is_empty() {
            let what = if app.generating && i == last {
                "…"
            } else {
                "(no reasoning)"
            };
            segments.push(Segment::Lines(vec![Line::from(Span::styled(
                what, theme.dim,
            ))]));
        } else if i == last || app.expand_earlier_reasoning {
            segments.push(Segment::Doc(&turn.reasoning));
        } else {
            let text = turn.reasoning.text();
            let first: String = text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            let more = text.lines().count().saturating_sub(1);
            let mut lines = vec![Line::from(Span::styled(first, theme.reasoning))];
            if more > 0 {
                lines.push(Line::from(Span::styled(
                    format!(
                        "▸ {more} more lines ({} expands)",
                        app.keymap.label(Action::ToggleEarlierReasoning)
                    ),
                    theme.dim,
                )));
            }
            segments.push(Segment::Lines(lines));
        }
    }
    let inner_height = usize::from(area.height.saturating_sub(2));
    let shown = window(
        &segments,
        area.width.saturating_sub(2),
        theme,
        inner_height,
        &app.reasoning_scroll,
    );
    let mut views = app.views.get();
    views.reasoning = shown.view;
    app.views.set(views);
    let lines = shown.lines;
    let live = if app.generating { " ● live" } else { "" };
    let title = if shown.lines_below > 0 {
        format!(" Reasoning{live} ↑{} ", shown.lines_below)
    } else {
        format!(" Reasoning{live} ")
    };
    let mut block = pane_block(app, Pane::Reasoning, title);
    if shown.new_text_below {
        block = block
            .title_bottom(Line::from(Span::styled(" ↓ new text ", theme.accent)).right_aligned());
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines = if turns.is_empty() {
        vec![Line::from(Span::styled(
            "The model's reasoning streams here.",
            theme.dim,
        ))]
    } else {
        lines
    };
    frame.render_widget(Paragraph::new(lines), inner);
}
