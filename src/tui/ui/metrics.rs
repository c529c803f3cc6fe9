//! The metrics pane: the memory bar (weights | KV in use | KV reserved | scratch | other |
//! free) with its legend, decode and prefill speed with the previous turns beside this one,
//! time to first token, the context gauge and the scale marking the fitted limit within the
//! model's maximum; spare rows get a taller sparkline of this turn's decode speed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::status::context;
use super::{format_bytes, format_tokens, gauges, pane_block};
use crate::memory::breakdown::MemoryBreakdown;
use crate::tui::app::{App, ModelState, Pane};

/// Cells of the label column ("KV cache" and a space).
const LABEL_CELLS: usize = 9;

fn row(app: &App, label: &str, value: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{label:<LABEL_CELLS$}"), app.theme.dim),
        Span::styled(value, app.theme.text),
    ])
}

pub(super) fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let block = pane_block(app, Pane::Metrics, " Metrics ".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(sample) = &app.metrics.latest else {
        let text = match &app.model {
            ModelState::Ready(info) => format!("{} · waiting for the first sample", info.device),
            _ => "waiting for the engine…".into(),
        };
        frame.render_widget(Paragraph::new(Span::styled(text, app.theme.dim)), inner);
        return;
    };
    let memory = &sample.memory;
    let on_cpu = matches!(&app.model, ModelState::Ready(info) if info.device.starts_with("cpu"));
    let turn = sample.turn;
    let width = usize::from(inner.width);
    let (used, limit) = context(app);
    let model_max = match &app.model {
        ModelState::Ready(info) => info.max_context,
        _ => 0,
    };
    // (priority, line) in display order: when the pane is short, the lowest priorities stay.
    // Every row fits the 30 columns the pane has at 80x24.
    let mut rows: Vec<(u8, Line<'static>)> = Vec::new();
    if let Some(remote) = &sample.remote {
        // A remote server's memory is not ours to see; its KV use comes from its /metrics.
        let kv = remote.kv_cache_used_fraction.map_or_else(
            || "server: n/a".into(),
            |f| format!("server {:.1}%", f * 100.0),
        );
        rows.push((8, row(app, "server", remote.server.clone())));
        rows.push((9, row(app, "memory", "remote".into())));
        rows.push((5, row(app, "KV cache", kv)));
    } else {
        let parts = MemoryBreakdown::from_sample(memory);
        rows.push((
            8,
            Line::from(vec![
                Span::styled(memory.device_name.clone(), app.theme.text),
                Span::styled(
                    format!(" · {}", format_bytes(parts.total_bytes)),
                    app.theme.dim,
                ),
            ]),
        ));
        rows.push((3, gauges::memory_bar(&parts, width, &app.theme)));
        let [weights_kv, rest] = gauges::memory_legend(&parts, width, &app.theme);
        rows.push((5, weights_kv));
        rows.push((9, rest));
        if on_cpu {
            rows.push((11, row(app, "RSS", format_bytes(memory.process_rss_bytes))));
        }
    }
    let previous = app.metrics.previous_turns();
    let decode_now = if sample.generating {
        sample.decode_tok_s_now
    } else {
        turn.decode_tok_s()
    };
    let previous_decode: Vec<f64> = previous.iter().map(|t| t.decode_tok_s).collect();
    let current_decode: Vec<f64> = app.metrics.decode_history.iter().copied().collect();
    rows.push((
        0,
        gauges::speed_row(
            "decode",
            LABEL_CELLS,
            decode_now,
            &previous_decode,
            &current_decode,
            width,
            &app.theme,
        ),
    ));
    let previous_prefill: Vec<f64> = previous.iter().map(|t| t.prefill_tok_s).collect();
    rows.push((
        2,
        gauges::speed_row(
            "prefill",
            LABEL_CELLS,
            turn.prefill_tok_s(),
            &previous_prefill,
            &app.metrics.prefill_history,
            width,
            &app.theme,
        ),
    ));
    rows.push((
        10,
        row(
            app,
            "prompt",
            format!(
                "{} + {} cached",
                format_tokens(turn.prefill_tokens),
                format_tokens(turn.cached_tokens)
            ),
        ),
    ));
    rows.push((
        4,
        row(
            app,
            "TTFT",
            format!(
                "{:.0} ms · {} tok",
                turn.time_to_first_token_ms, turn.decode_tokens
            ),
        ),
    ));
    // Tool time is not decode time: its own row, once the chat has called a tool.
    if !app.tools.blocks.is_empty() {
        rows.push((
            6,
            row(
                app,
                "tool",
                format!(
                    "{} · {} call{}",
                    super::tools::format_duration(app.tools.turn_time),
                    app.tools.turn_calls,
                    if app.tools.turn_calls == 1 { "" } else { "s" }
                ),
            ),
        ));
    }
    rows.push((1, gauges::context_gauge(used, limit, width, &app.theme)));
    if let Some(scale) = gauges::context_scale(used, limit, model_max, width, &app.theme) {
        rows.push((7, scale));
    }
    // The rows that fit, most useful first; the sparkline gets what is left.
    let keep = rows.len().min(usize::from(inner.height));
    let mut by_priority: Vec<u8> = rows.iter().map(|(p, _)| *p).collect();
    by_priority.sort_unstable();
    let lines: Vec<Line<'static>> = match keep.checked_sub(1).map(|i| by_priority[i]) {
        None => Vec::new(),
        Some(cutoff) => rows
            .into_iter()
            .filter(|(p, _)| *p <= cutoff)
            .map(|(_, l)| l)
            .collect(),
    };

    let text_rows = lines.len() as u16;
    let [text_area, spark_area] =
        Layout::vertical([Constraint::Length(text_rows), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(lines), text_area);
    if spark_area.height > 0 {
        // Sparkline takes integers: tenths of tok/s keep small speeds visible.
        let points: Vec<u64> = app
            .metrics
            .decode_history
            .iter()
            .map(|v| (v * 10.0).max(0.0) as u64)
            .collect();
        let shown = &points[points.len().saturating_sub(usize::from(spark_area.width))..];
        frame.render_widget(
            Sparkline::default().data(shown).style(app.theme.accent),
            spark_area,
        );
    }
}
