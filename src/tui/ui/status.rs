//! The status line (model, device, effort, context) and the key-hint line.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::format_tokens;
use crate::tui::app::{App, ModelState, context_percent, effort_name};
use crate::tui::keys::Action;

pub(super) fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let style = app.theme.status;
    let sep = Span::styled(" │ ", style);
    let mut spans = vec![Span::styled(" ossterm", style.add_modifier(Modifier::BOLD))];
    match &app.model {
        ModelState::Ready(info) => {
            spans.push(sep.clone());
            spans.push(Span::styled(info.name.clone(), style));
            spans.push(sep.clone());
            spans.push(Span::styled(info.device.clone(), style));
        }
        ModelState::Loading { stage, .. } => {
            spans.push(sep.clone());
            spans.push(Span::styled(format!("loading: {stage}"), style));
        }
        ModelState::Failed => {
            spans.push(sep.clone());
            spans.push(Span::styled("no model", style));
        }
    }
    spans.push(sep.clone());
    spans.push(Span::styled(
        format!("effort {}", effort_name(app.effort)),
        style.add_modifier(Modifier::BOLD),
    ));
    let (used, limit) = context(app);
    if limit > 0 {
        spans.push(sep.clone());
        spans.push(Span::styled(
            format!(
                "ctx {}/{} ({:.0}%)",
                format_tokens(used),
                format_tokens(limit),
                context_percent(used, limit)
            ),
            style,
        ));
    }
    if app.generating {
        spans.push(sep);
        spans.push(Span::styled(
            "● generating",
            style.add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(style), area);
}

/// Context used and limit: a reopened chat's saved figure, else the latest metrics sample,
/// else the loaded model's limit.
pub(super) fn context(app: &App) -> (usize, usize) {
    let limit = match (&app.metrics.latest, &app.model) {
        (Some(sample), _) if sample.context_limit > 0 => sample.context_limit,
        (_, ModelState::Ready(info)) => info.context_limit,
        _ => 0,
    };
    if let Some(used) = app.saved_context_tokens {
        return (used, limit);
    }
    match (&app.metrics.latest, &app.model) {
        (Some(sample), _) if sample.context_limit > 0 => {
            (sample.context_used, sample.context_limit)
        }
        (_, ModelState::Ready(info)) => (0, info.context_limit),
        _ => (0, 0),
    }
}

pub(super) fn draw_hints(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let line = if let Some(notice) = &app.notice {
        Line::from(Span::styled(format!(" {notice}"), app.theme.warning))
    } else {
        let k = |a: Action| app.key_label(a);
        let mut hints = vec![(k(Action::Send), "send"), (k(Action::Newline), "newline")];
        if app.generating {
            hints.push((k(Action::Stop), "stop"));
        }
        hints.extend([
            (k(Action::ToggleReasoning), "reasoning"),
            (k(Action::CycleEffort), "effort"),
            (k(Action::NewChat), "new"),
            (k(Action::ChatList), "chats"),
            (k(Action::Help), "help"),
            (k(Action::Quit), "quit"),
        ]);
        let mut spans = vec![Span::raw(" ")];
        let mut used = 1;
        for (i, (key, what)) in hints.into_iter().enumerate() {
            let sep = if i > 0 { " · " } else { "" };
            let width = sep.chars().count() + key.chars().count() + 1 + what.chars().count();
            // Only whole hints: a cut-off one reads as a different key.
            if used + width > usize::from(area.width) {
                break;
            }
            used += width;
            spans.push(Span::styled(sep, app.theme.dim));
            spans.push(Span::styled(key, app.theme.accent));
            spans.push(Span::styled(format!(" {what}"), app.theme.dim));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}
