//! Tool calls on screen: each call's block in the chat, its line in the reasoning pane, and
//! the approval prompt.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use super::centered;
use crate::tui::app::App;
use crate::tui::app::tools::{
    ApprovalPrompt, COLLAPSED_RESULT_LINES, CallState, ToolBlock, pretty_arguments, where_label,
};
use crate::tui::keys::Action;

/// Rows of arguments a collapsed block shows.
const COLLAPSED_ARGUMENT_LINES: usize = 3;

/// "0.3 s", "12 ms".
pub(super) fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// "running…", "0.3 s · error": how the call stands. A call no prompt asks about (a chat
/// saved while it waited) was never answered.
fn status(app: &App, block: &ToolBlock) -> String {
    let asked_now = app
        .tools
        .prompt
        .as_ref()
        .and_then(|p| app.tools.blocks.get(p.block))
        .is_some_and(|asked| asked.call.id == block.call.id);
    match &block.state {
        CallState::Asking if asked_now => "waiting for approval".into(),
        CallState::Asking => "not answered".into(),
        CallState::Running => "running…".into(),
        CallState::Done(result) => {
            let outcome = if result.is_error { "error" } else { "done" };
            format!("{} · {outcome}", format_duration(result.duration))
        }
    }
}

/// `text`'s lines, cut to `keep` with a line saying how many more there are.
fn capped(text: &str, keep: Option<usize>, more_hint: &str) -> (Vec<String>, Option<String>) {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    match keep {
        Some(keep) if lines.len() > keep => {
            let more = lines.len() - keep;
            (
                lines[..keep].to_vec(),
                Some(format!("… {more} more lines ({more_hint})")),
            )
        }
        _ => (lines, None),
    }
}

/// The chat lines of the call in block `index`.
pub(super) fn block_lines(app: &App, index: usize, block: &ToolBlock) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let selected = app.tools.selected == Some(index);
    let marker = if selected { "▶ " } else { "⚙ " };
    let head_style = if selected {
        theme.accent.add_modifier(Modifier::BOLD)
    } else {
        theme.accent
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{marker}{}", block.call.recipient), head_style),
        Span::styled(format!(" · {}", status(app, block)), theme.dim),
    ])];
    let keep = (!block.expanded).then_some(COLLAPSED_ARGUMENT_LINES);
    let hint = format!(
        "{} expands, {} selects",
        app.keymap.label(Action::ToggleToolBlock),
        app.keymap.label(Action::SelectToolBlock)
    );
    let (arguments, more) = capped(&pretty_arguments(&block.call.arguments), keep, &hint);
    for line in arguments {
        lines.push(Line::from(Span::styled(format!("│ {line}"), theme.dim)));
    }
    lines.extend(more.map(|m| Line::from(Span::styled(format!("│ {m}"), theme.dim))));
    if let CallState::Done(result) = &block.state {
        let style = if result.is_error {
            theme.error
        } else {
            theme.text
        };
        let keep = (!block.expanded).then_some(COLLAPSED_RESULT_LINES);
        let (result_lines, more) = capped(&result.text, keep, &hint);
        for (i, line) in result_lines.into_iter().enumerate() {
            let lead = if i == 0 { "← " } else { "  " };
            lines.push(Line::from(Span::styled(format!("{lead}{line}"), style)));
        }
        lines.extend(more.map(|m| Line::from(Span::styled(format!("  {m}"), theme.dim))));
    }
    lines
}

/// The reasoning pane's line for a call between two turns of reasoning.
pub(super) fn reasoning_line(app: &App, block: &ToolBlock) -> Line<'static> {
    Line::from(Span::styled(
        format!("⚙ {} · {}", block.call.recipient, status(app, block)),
        app.theme.accent,
    ))
}

/// The approval prompt over the chat: tool, where it runs, the arguments (scrollable), and
/// the keys in its footer. Hidden while the arguments are edited in the input box.
pub(super) fn draw_approval(frame: &mut Frame<'_>, area: Rect, app: &App, prompt: &ApprovalPrompt) {
    if prompt.editing {
        return;
    }
    let Some(block) = app.tools.blocks.get(prompt.block) else {
        return;
    };
    let theme = &app.theme;
    let mut lines = vec![
        Line::from(vec![
            Span::styled("tool   ", theme.dim),
            Span::styled(block.call.recipient.clone(), theme.accent),
        ]),
        Line::from(vec![
            Span::styled("runs   ", theme.dim),
            Span::styled(where_label(&block.where_runs), theme.text),
        ]),
        Line::default(),
    ];
    let arguments: Vec<Line<'static>> = pretty_arguments(&block.call.arguments)
        .lines()
        .map(|l| Line::from(Span::styled(l.to_string(), theme.text)))
        .collect();
    let width = 76.min(area.width);
    let height = (arguments.len() as u16 + 6)
        .min(area.height.saturating_sub(2))
        .max(7);
    // Rows left for the arguments inside the border, under the three header lines.
    let argument_rows = usize::from(height.saturating_sub(5));
    let last_start = arguments.len().saturating_sub(argument_rows);
    let start = usize::from(prompt.scroll_lines).min(last_start);
    let below = arguments.len().saturating_sub(start + argument_rows);
    lines.extend(arguments.into_iter().skip(start).take(argument_rows));
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    let scroll_note = if start > 0 || below > 0 {
        format!(" ↑↓ {below} more ")
    } else {
        String::new()
    };
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Double)
                .border_style(theme.warning)
                .title(Span::styled(" Run this tool call? ", theme.warning))
                .title(Line::from(Span::styled(scroll_note, theme.dim)).right_aligned())
                .title_bottom(Span::styled(
                    " y once · a this chat · n deny · e edit · Esc stop ",
                    theme.dim,
                )),
        ),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::protocol::SamplingParams;
    use crate::harmony::{Conversation, Message, ReasoningEffort};
    use crate::store::{ChatMeta, ChatSnapshot};
    use crate::tui::app::AppOptions;
    use crate::tui::keys::KeyMap;
    use crate::tui::theme::Theme;

    #[test]
    fn a_call_saved_while_it_waited_reads_as_not_answered() {
        let mut app = App::new(AppOptions {
            theme: Theme::default(),
            keymap: KeyMap::default(),
            effort: ReasoningEffort::Medium,
            sampling: SamplingParams::default(),
            developer_instructions: String::new(),
            chat_id: "c".into(),
            today: "2026-12-03".into(),
        });
        let call = Message::assistant("analysis", "print(1)").with_recipient("python");
        app.open_chat(ChatSnapshot {
            id: "saved".into(),
            meta: ChatMeta::default(),
            conversation: Conversation::from_messages([Message::user("run it"), call]),
        });
        assert!(app.tools.prompt.is_none(), "a reopened chat asks nothing");
        let block = &app.tools.blocks[0];
        assert_eq!(status(&app, block), "not answered");
        assert_eq!(duration_label_examples(), ["12 ms", "1.5 s"]);
    }

    fn duration_label_examples() -> [String; 2] {
        [
            format_duration(Duration::from_millis(12)),
            format_duration(Duration::from_millis(1500)),
        ]
    }
}
