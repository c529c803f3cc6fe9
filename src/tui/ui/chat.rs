//! The chat pane: user messages, answers (markdown, streamed), tool calls and per-answer stats.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph};

use super::{format_bytes, format_tokens, pane_block};
use crate::engine::StopReason;
use crate::tui::app::scroll::{PaneScroll, PaneView};
use crate::tui::app::{App, Entry, ModelState, Pane};
use crate::tui::doc::StreamDoc;
use crate::tui::theme::Theme;
use crate::tui::wrap::wrap_lines;

/// A piece of a pane's content: fixed lines, or a cached streaming document.
pub(super) enum Segment<'a> {
    Lines(Vec<Line<'static>>),
    Doc(&'a StreamDoc),
}

/// The last `need` wrapped lines of `segments` (fewer when there aren't that many), touching
/// only the segments that reach into them.
pub(super) fn tail_lines(
    segments: &[Segment<'_>],
    width: u16,
    theme: &Theme,
    need: usize,
) -> Vec<Line<'static>> {
    let mut reversed: Vec<Line<'static>> = Vec::with_capacity(need);
    for segment in segments.iter().rev() {
        if reversed.len() >= need {
            break;
        }
        let missing = need - reversed.len();
        match segment {
            Segment::Lines(lines) => {
                let wrapped = wrap_lines(lines, width);
                reversed.extend(wrapped.into_iter().rev().take(missing));
            }
            Segment::Doc(doc) => doc.with_wrapped(width, theme, |settled, tail| {
                reversed.extend(
                    tail.iter()
                        .rev()
                        .chain(settled.iter().rev())
                        .take(missing)
                        .cloned(),
                );
            }),
        }
    }
    reversed.reverse();
    reversed
}

/// How many wrapped lines `segments` make at `width` (documents answer from their caches).
fn total_lines(segments: &[Segment<'_>], width: u16, theme: &Theme) -> usize {
    segments
        .iter()
        .map(|segment| match segment {
            Segment::Lines(lines) => wrap_lines(lines, width).len(),
            Segment::Doc(doc) => {
                doc.with_wrapped(width, theme, |settled, tail| settled.len() + tail.len())
            }
        })
        .sum()
}

/// The visible part of a scrollable pane.
pub(super) struct Window {
    pub lines: Vec<Line<'static>>,
    /// Lines between the last visible one and the end of the content.
    pub lines_below: usize,
    /// True when text arrived below since the user scrolled up.
    pub new_text_below: bool,
    /// What the pane held, for scrolling.
    pub view: PaneView,
}

/// The visible window of `segments` in a pane of `height` rows scrolled to `scroll`.
pub(super) fn window(
    segments: &[Segment<'_>],
    width: u16,
    theme: &Theme,
    height: usize,
    scroll: &PaneScroll,
) -> Window {
    let total = total_lines(segments, width, theme);
    let from_bottom = scroll.lines_from_bottom(total, height);
    let (lines, lines_below) = tail_window(segments, width, theme, height, from_bottom);
    Window {
        lines,
        lines_below,
        new_text_below: scroll.new_text_below(total),
        view: PaneView {
            total_lines: total,
            height,
        },
    }
}

/// The window of `height` lines ending `scroll` lines above the bottom; returns the lines
/// and the scroll actually applied.
fn tail_window(
    segments: &[Segment<'_>],
    width: u16,
    theme: &Theme,
    height: usize,
    scroll: usize,
) -> (Vec<Line<'static>>, usize) {
    let need = height + scroll;
    let mut lines = tail_lines(segments, width, theme, need);
    let applied = if lines.len() < need {
        lines.len().saturating_sub(height)
    } else {
        scroll
    };
    lines.truncate(height);
    (lines, applied)
}

fn stop_label(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Return | StopReason::EndOfText => "done",
        StopReason::Call => "tool call",
        StopReason::Length => "length limit",
        StopReason::ContextFull => "context full",
        StopReason::Stopped => "stopped",
    }
}

/// The first line and line count of each chat entry at `width` (for scrolling a selected
/// message into view).
pub(crate) fn entry_lines(app: &App, width: u16) -> Vec<(usize, usize)> {
    let (segments, starts) = segments_by_entry(app);
    let mut first = 0;
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let end = starts.get(i + 1).copied().unwrap_or(segments.len());
            let count = total_lines(&segments[start..end], width, &app.theme);
            let at = first;
            first += count;
            (at, count)
        })
        .collect()
}

/// An entry's first line: who wrote it, its version ("‹2/3›") where the chat branched there,
/// and when it is selected, highlighted with the keys that act on it.
fn header(app: &App, entry: usize, who: &'static str, style: Style) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let selected = app.branching.selected == Some(entry);
    let mut spans = vec![Span::styled(
        who,
        if selected {
            style.add_modifier(Modifier::REVERSED)
        } else {
            style
        },
    )];
    if let Some(label) = app.version_label(entry) {
        spans.push(Span::styled(
            format!(" ‹{}/{}›", label.shown, label.count),
            theme.accent,
        ));
    }
    if selected {
        spans.push(Span::styled(
            format!("  {}", app.selection_hint(entry)),
            theme.dim,
        ));
    }
    vec![Line::from(spans)]
}

fn segments(app: &App) -> Vec<Segment<'_>> {
    segments_by_entry(app).0
}

/// The pane's segments, and the index of each entry's first segment.
fn segments_by_entry(app: &App) -> (Vec<Segment<'_>>, Vec<usize>) {
    let theme = &app.theme;
    let mut out = Vec::new();
    let mut starts = Vec::with_capacity(app.entries.len());
    let last = app.entries.len().saturating_sub(1);
    // The k-th user entry shows the k-th user message's rendered tokens.
    let mut user_tokens = app.user_message_tokens().into_iter();
    for (i, entry) in app.entries.iter().enumerate() {
        starts.push(out.len());
        match entry {
            Entry::User(doc) => {
                let mut lines = header(app, i, "▌ You", theme.user);
                if let (Some(tokens), Some(line)) =
                    (user_tokens.next().flatten(), lines.first_mut())
                {
                    line.spans.push(Span::styled(
                        format!(" · {} tok", format_tokens(tokens)),
                        theme.dim,
                    ));
                }
                out.push(Segment::Lines(lines));
                out.push(Segment::Doc(doc));
                out.push(Segment::Lines(vec![Line::default()]));
            }
            Entry::Assistant(turn) => {
                out.push(Segment::Lines(header(app, i, "▌ gpt-oss", theme.accent)));
                let streaming = app.generating && i == last;
                let mut head = Vec::new();
                if !turn.reasoning.is_empty() && app.rects.get().reasoning.is_none() {
                    let words = turn.reasoning.text().split_whitespace().count();
                    let how = if app.show_reasoning {
                        "screen too narrow".to_string()
                    } else {
                        format!(
                            "{} to show",
                            app.keymap.label(crate::tui::keys::Action::ToggleReasoning)
                        )
                    };
                    head.push(Line::from(Span::styled(
                        format!("▸ reasoned {words} words ({how})"),
                        theme.dim,
                    )));
                }
                for call in &turn.commentary {
                    head.push(Line::from(Span::styled(call.clone(), theme.dim)));
                }
                if streaming && turn.answer.is_empty() {
                    let what = if turn.reasoning.is_empty() {
                        "reading the prompt…"
                    } else {
                        "thinking…"
                    };
                    head.push(Line::from(Span::styled(what, theme.reasoning)));
                }
                out.push(Segment::Lines(head));
                out.push(Segment::Doc(&turn.answer));
                for (index, block) in app.tools.blocks_after(i) {
                    out.push(Segment::Lines(super::tools::block_lines(app, index, block)));
                }
                let mut foot = Vec::new();
                if let (Some(stats), Some(stop)) = (turn.stats, turn.stop) {
                    foot.push(Line::from(Span::styled(
                        format!(
                            "{} tok · {:.1} tok/s · prefill {:.0} tok/s · TTFT {:.0} ms · {}",
                            stats.decode_tokens,
                            stats.decode_tok_s(),
                            stats.prefill_tok_s(),
                            stats.time_to_first_token_ms,
                            stop_label(stop)
                        ),
                        theme.dim,
                    )));
                }
                foot.push(Line::default());
                out.push(Segment::Lines(foot));
            }
        }
    }
    (out, starts)
}

fn welcome(app: &App) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let mut lines = vec![Line::default()];
    match &app.model {
        ModelState::Ready(info) => {
            lines.push(Line::from(Span::styled(
                format!("{} is ready on {}.", info.name, info.device),
                theme.good,
            )));
            lines.push(Line::default());
            lines.push(Line::from(Span::styled(
                "Type a message and press Enter.",
                theme.text,
            )));
            lines.push(Line::from(Span::styled(
                "/system sets instructions · /effort low|medium|high · /ctx N · /chats · /export",
                theme.dim,
            )));
        }
        ModelState::Loading { stage, .. } => {
            lines.push(Line::from(Span::styled("Loading the model…", theme.text)));
            lines.push(Line::from(Span::styled(stage.clone(), theme.dim)));
        }
        ModelState::Failed => {
            lines.push(Line::from(Span::styled(
                "The model could not be loaded.",
                theme.error,
            )));
        }
    }
    lines
}

pub(super) fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let title_base = if app.meta.title.is_empty() {
        "Chat".to_string()
    } else {
        format!("Chat: {}", app.meta.title)
    };
    let inner_height = usize::from(area.height.saturating_sub(2));
    let inner_width = area.width.saturating_sub(2);
    let segments = segments(app);
    let shown = window(
        &segments,
        inner_width,
        &app.theme,
        inner_height,
        &app.chat_scroll,
    );
    let mut views = app.views.get();
    views.chat = shown.view;
    app.views.set(views);
    let lines = if app.entries.is_empty() {
        welcome(app)
    } else {
        shown.lines
    };
    let title = if shown.lines_below > 0 {
        format!(" {title_base} ↑{} ", shown.lines_below)
    } else {
        format!(" {title_base} ")
    };
    let mut block = pane_block(app, Pane::Chat, title);
    // The chat's size in tokens (what the context holds of it), top right.
    let (chat_tokens, _) = super::status::context(app);
    if chat_tokens > 0 {
        block = block.title_top(
            Line::from(Span::styled(
                format!(" {} tok ", format_tokens(chat_tokens)),
                app.theme.dim,
            ))
            .right_aligned(),
        );
    }
    if shown.new_text_below {
        block = block.title_bottom(
            Line::from(Span::styled(" ↓ new text ", app.theme.accent)).right_aligned(),
        );
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    frame.render_widget(Paragraph::new(lines), inner);

    if let ModelState::Loading {
        stage,
        done_bytes,
        total_bytes,
    } = &app.model
        && inner.height >= 4
    {
        let gauge_area = Rect {
            y: inner.y + 3,
            height: 1,
            ..inner
        };
        let ratio = if *total_bytes > 0 {
            (*done_bytes as f64 / *total_bytes as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        // The stage is the line above; the bar says how far it is (a long stage such as a
        // shard's file name would push the numbers out of a narrow pane).
        let label = if *total_bytes > 0 {
            format!(
                "{} / {} ({:.0}%)",
                format_bytes(*done_bytes),
                format_bytes(*total_bytes),
                (ratio * 100.0).floor()
            )
        } else {
            stage.clone()
        };
        frame.render_widget(
            Gauge::default()
                .gauge_style(app.theme.accent)
                .ratio(ratio)
                .label(label),
            gauge_area,
        );
    }
}
