//! The metrics pane: device and memory, context gauge and KV bytes, prefill/decode speed,
//! time to first token and a sparkline of decode speed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph, Sparkline};

use super::status::context;
use super::{format_bytes, format_tokens, pane_block};
use crate::tui::app::{App, ModelState, Pane, context_percent};

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
    // (priority, line): when the pane is short, the most useful lines stay. Values are short
    // (one figure a row) so that each row fits the 30 columns the pane has at 80x24.
    let ram = if on_cpu { "RAM" } else { "GPU" };
    let mut rows = vec![
        (5, row(app, "device", memory.device_name.clone())),
        (6, row(app, "model", format_bytes(memory.model_bytes))),
        (
            4,
            row(
                app,
                &format!("{ram} free"),
                format_bytes(memory.device_free_bytes),
            ),
        ),
        (
            9,
            row(
                app,
                &format!("{ram} used"),
                format_bytes(memory.device_used_bytes),
            ),
        ),
    ];
    if on_cpu {
        rows.push((10, row(app, "RSS", format_bytes(memory.process_rss_bytes))));
    }
    rows.push((7, row(app, "KV cache", format_bytes(memory.kv_cache_bytes))));
    rows.push((
        1,
        row(app, "prefill", format!("{:.1} tok/s", turn.prefill_tok_s())),
    ));
    rows.push((
        8,
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
        0,
        row(
            app,
            "decode",
            format!(
                "{:.1} tok/s · avg {:.1}",
                sample.decode_tok_s_now,
                turn.decode_tok_s()
            ),
        ),
    ));
    rows.push((
        2,
        row(
            app,
            "TTFT",
            format!(
                "{:.0} ms · {} tok",
                turn.time_to_first_token_ms, turn.decode_tokens
            ),
        ),
    ));
    // One row for the context gauge; the sparkline gets what is left (at least 2 rows when
    // all text fits).
    let room = usize::from(inner.height.saturating_sub(1));
    let keep = rows.len().min(room);
    let mut by_priority: Vec<u8> = rows.iter().map(|(p, _)| *p).collect();
    by_priority.sort_unstable();
    let cutoff = by_priority
        .get(keep.saturating_sub(1))
        .copied()
        .unwrap_or(0);
    let lines: Vec<Line<'static>> = if keep == 0 {
        Vec::new()
    } else {
        rows.into_iter()
            .filter(|(p, _)| *p <= cutoff)
            .map(|(_, l)| l)
            .collect()
    };

    let text_rows = lines.len() as u16;
    let [text_area, gauge_area, spark_area] = Layout::vertical([
        Constraint::Length(text_rows.min(inner.height.saturating_sub(1))),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines), text_area);
    let (used, limit) = context(app);
    let percent = context_percent(used, limit);
    let gauge_style = if percent >= 90.0 {
        app.theme.error
    } else if percent >= 75.0 {
        app.theme.warning
    } else {
        app.theme.good
    };
    frame.render_widget(
        LineGauge::default()
            .filled_style(gauge_style)
            .unfilled_style(app.theme.dim)
            .label(format!(
                "ctx {}/{} {percent:.0}%",
                format_tokens(used),
                format_tokens(limit)
            ))
            .ratio((percent / 100.0).clamp(0.0, 1.0)),
        gauge_area,
    );
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
