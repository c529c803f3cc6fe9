//! One-line gauges for the metrics pane, each a `Line` that fits the pane's width (30 columns
//! at 80x24): the memory bar and its legend, a speed row with the previous turns beside this
//! one, the context gauge, and the scale that marks the fitted limit within the model's
//! maximum.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::{format_bytes, format_tokens};
use crate::memory::breakdown::MemoryBreakdown;
use crate::tui::theme::Theme;

/// The memory bar's glyph for each part, in [`MemoryBreakdown::parts`] order: weights, KV in
/// use, KV reserved, scratch, other, free (colours are lost in copied text; glyphs are not).
pub const MEMORY_GLYPHS: [char; 6] = ['█', '▓', '▒', '░', '▪', '·'];
/// Sparkline levels, lowest first.
const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Between the previous turns' points and this turn's.
const TURN_SEPARATOR: char = '│';
/// Marks the fitted context limit on the context scale.
const LIMIT_MARKER: char = '┃';
/// Panes at least this wide get the legend in words and bytes with units.
const WIDE_LEGEND_COLS: usize = 44;

fn styles(theme: &Theme) -> [Style; 6] {
    [
        theme.accent,
        theme.good,
        theme.good,
        theme.warning,
        theme.dim,
        theme.dim,
    ]
}

/// Cells each part gets in a bar `width` cells wide: in proportion to its bytes against the
/// larger of `total` and the parts' sum; a part that is not zero keeps at least one cell
/// (taken from the part given the most above its share) so a small KV cache still shows.
pub fn bar_cells(parts: &[u64], total: u64, width: usize) -> Vec<usize> {
    let sum: u64 = parts.iter().sum();
    let scale = total.max(sum);
    if scale == 0 || width == 0 {
        return vec![0; parts.len()];
    }
    let exact: Vec<f64> = parts
        .iter()
        .map(|&p| p as f64 * width as f64 / scale as f64)
        .collect();
    let mut cells: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    // Hand out what flooring left, biggest remainder first (only when the parts fill the
    // scale; otherwise the rest of the bar stays empty).
    let filled = (sum as f64 * width as f64 / scale as f64).round() as usize;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .partial_cmp(&(exact[a] - exact[a].floor()))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for &i in order.iter().cycle().take(parts.len() * 2) {
        if cells.iter().sum::<usize>() >= filled.min(width) {
            break;
        }
        if parts[i] > 0 {
            cells[i] += 1;
        }
    }
    for i in 0..parts.len() {
        if parts[i] > 0 && cells[i] == 0 {
            let donor = (0..parts.len()).filter(|&j| cells[j] > 1).max_by(|&a, &b| {
                (cells[a] as f64 - exact[a])
                    .partial_cmp(&(cells[b] as f64 - exact[b]))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            if let Some(donor) = donor {
                cells[donor] -= 1;
                cells[i] = 1;
            }
        }
    }
    cells
}

/// The memory bar, `width` cells: weights | KV in use | KV reserved | scratch | other | free.
pub fn memory_bar(memory: &MemoryBreakdown, width: usize, theme: &Theme) -> Line<'static> {
    let parts = memory.parts();
    let cells = bar_cells(&parts, memory.total_bytes, width);
    let spans: Vec<Span<'static>> = cells
        .iter()
        .zip(MEMORY_GLYPHS)
        .zip(styles(theme))
        .filter(|((n, _), _)| **n > 0)
        .map(|((n, glyph), style)| Span::styled(glyph.to_string().repeat(*n), style))
        .collect();
    Line::from(spans)
}

/// Bytes in at most 5 characters: "13G", "6.6G", "412M", "0".
pub fn short_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if bytes == 0 {
        "0".into()
    } else if value < 10.0 && unit > 0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// The bar's legend in two lines: weights and KV (in use / reserved for the whole limit),
/// then scratch, other and free. Compact below [`WIDE_LEGEND_COLS`] columns.
pub fn memory_legend(memory: &MemoryBreakdown, width: usize, theme: &Theme) -> [Line<'static>; 2] {
    let wide = width >= WIDE_LEGEND_COLS;
    let bytes = |b: u64| {
        if wide {
            format_bytes(b)
        } else {
            short_bytes(b)
        }
    };
    let [weights, kv_used, kv_reserved, scratch, other, free] = MEMORY_GLYPHS;
    let [w_style, kv_style, _, scratch_style, other_style, free_style] = styles(theme);
    let names: [&str; 5] = if wide {
        ["weights", "KV", "scratch", "other", "free"]
    } else {
        ["wts", "KV", "scr", "oth", "free"]
    };
    let item = |glyph: String, style: Style, name: &str, value: String| {
        [
            Span::styled(glyph, style),
            Span::styled(format!("{name} "), theme.dim),
            Span::styled(value, theme.text),
        ]
    };
    let mut first: Vec<Span<'static>> = Vec::new();
    first.extend(item(
        weights.to_string(),
        w_style,
        names[0],
        bytes(memory.weights_bytes),
    ));
    first.push(Span::raw(" "));
    first.extend(item(
        format!("{kv_used}{kv_reserved}"),
        kv_style,
        names[1],
        format!(
            "{}/{}",
            bytes(memory.kv_in_use_bytes),
            bytes(memory.kv_in_use_bytes + memory.kv_reserved_bytes)
        ),
    ));
    let mut second: Vec<Span<'static>> = Vec::new();
    second.extend(item(
        scratch.to_string(),
        scratch_style,
        names[2],
        bytes(memory.scratch_bytes),
    ));
    second.push(Span::raw(" "));
    second.extend(item(
        other.to_string(),
        other_style,
        names[3],
        bytes(memory.other_bytes),
    ));
    second.push(Span::raw(" "));
    second.extend(item(
        free.to_string(),
        free_style,
        names[4],
        bytes(memory.free_bytes),
    ));
    [Line::from(first), Line::from(second)]
}

/// A sparkline of `values` scaled to `max`: a blank for zero, then eight levels.
pub fn spark(values: &[f64], max: f64) -> String {
    values
        .iter()
        .map(|&v| {
            if v <= 0.0 || max <= 0.0 || !v.is_finite() {
                ' '
            } else {
                let level = ((v / max) * SPARK_LEVELS.len() as f64).ceil() as usize;
                SPARK_LEVELS[level.clamp(1, SPARK_LEVELS.len()) - 1]
            }
        })
        .collect()
}

/// A speed in tok/s: one decimal below 100, none above.
pub fn format_speed(tok_s: f64) -> String {
    if tok_s >= 100.0 {
        format!("{tok_s:.0} tok/s")
    } else {
        format!("{tok_s:.1} tok/s")
    }
}

/// "decode   20.5 tok/s ▃▅▆│▂▅█▇": the label, the speed now, then the previous turns'
/// averages and this turn's points as one sparkline (one scale, so turns compare), in
/// `width` cells. The newest points win when they do not all fit; the previous turns get at
/// most half the room.
pub fn speed_row(
    label: &str,
    label_cells: usize,
    now: f64,
    previous: &[f64],
    current: &[f64],
    width: usize,
    theme: &Theme,
) -> Line<'static> {
    let head = format!("{label:<label_cells$}");
    let value = format!("{} ", format_speed(now));
    let room = width.saturating_sub(head.chars().count() + value.chars().count());
    let show_previous = !previous.is_empty() && room >= 4;
    let previous_room = if show_previous { room / 2 } else { 0 };
    let previous = &previous[previous.len().saturating_sub(previous_room)..];
    let separator = usize::from(show_previous);
    let current_room = room.saturating_sub(previous.len() + separator);
    let current = &current[current.len().saturating_sub(current_room)..];
    let max = previous
        .iter()
        .chain(current)
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let mut spans = vec![
        Span::styled(head, theme.dim),
        Span::styled(value, theme.text),
    ];
    if show_previous {
        spans.push(Span::styled(spark(previous, max), theme.dim));
        spans.push(Span::styled(TURN_SEPARATOR.to_string(), theme.dim));
    }
    spans.push(Span::styled(spark(current, max), theme.accent));
    Line::from(spans)
}

/// The style for a context `percent` full: calm, then a warning, then an error.
pub fn context_style(percent: f64, theme: &Theme) -> Style {
    if percent >= 90.0 {
        theme.error
    } else if percent >= 75.0 {
        theme.warning
    } else {
        theme.good
    }
}

/// "ctx 412/8.2k 5% ━━───": the context used against the fitted limit, in `width` cells.
pub fn context_gauge(used: usize, limit: usize, width: usize, theme: &Theme) -> Line<'static> {
    let percent = crate::tui::app::context_percent(used, limit);
    let label = format!(
        "ctx {}/{} {percent:.0}% ",
        format_tokens(used),
        format_tokens(limit)
    );
    let cells = width.saturating_sub(label.chars().count());
    let filled = ((percent / 100.0).clamp(0.0, 1.0) * cells as f64).round() as usize;
    Line::from(vec![
        Span::styled(label, theme.text),
        Span::styled("━".repeat(filled), context_style(percent, theme)),
        Span::styled("─".repeat(cells - filled), theme.dim),
    ])
}

/// "━┃··········· ┃8.2k of 131k": the model's whole context as a scale; the used part, the
/// fitted limit's marker, and beyond it what the model could take but memory cannot. `None`
/// when the maximum is unknown or the width is too small to read.
pub fn context_scale(
    used: usize,
    limit: usize,
    model_max: usize,
    width: usize,
    theme: &Theme,
) -> Option<Line<'static>> {
    if model_max == 0 || limit == 0 {
        return None;
    }
    let suffix = format!(
        " {LIMIT_MARKER}{} of {}",
        format_tokens(limit),
        format_tokens(model_max)
    );
    let cells = width.checked_sub(suffix.chars().count())?;
    if cells < 4 {
        return None;
    }
    let at = |tokens: usize| tokens as f64 / model_max as f64 * cells as f64;
    let marker = (at(limit).round() as usize).clamp(1, cells) - 1;
    let used_cells = if used == 0 {
        0
    } else {
        (at(used).ceil() as usize).clamp(1, marker.max(1))
    };
    let percent = crate::tui::app::context_percent(used, limit);
    let before_marker = marker.saturating_sub(used_cells);
    Some(Line::from(vec![
        Span::styled(
            "━".repeat(used_cells.min(marker)),
            context_style(percent, theme),
        ),
        Span::styled("─".repeat(before_marker), theme.dim),
        Span::styled(LIMIT_MARKER.to_string(), theme.accent),
        Span::styled("·".repeat(cells - marker - 1), theme.dim),
        Span::styled(suffix, theme.dim),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn bar_cells_are_proportional_fill_the_width_and_keep_small_parts_visible() {
        assert_eq!(bar_cells(&[10, 0, 10], 20, 10), [5, 0, 5]);
        // 1 byte of 1000 still gets a cell, taken from the largest part.
        assert_eq!(bar_cells(&[999, 1], 1000, 10), [9, 1]);
        // Parts worth a quarter of the total fill a quarter of the bar.
        assert_eq!(bar_cells(&[25], 100, 20), [5]);
        assert_eq!(bar_cells(&[0, 0], 0, 10), [0, 0]);
        let cells = bar_cells(&[13, 1, 2, 1, 3, 12], 32, 30);
        assert_eq!(cells.iter().sum::<usize>(), 30, "{cells:?}");
    }

    #[test]
    fn the_memory_bar_and_legend_fit_thirty_columns() {
        let mut memory = MemoryBreakdown {
            weights_bytes: 13 * GIB,
            kv_in_use_bytes: 48 << 20,
            kv_reserved_bytes: GIB,
            scratch_bytes: 412 << 20,
            other_bytes: 6 * GIB,
            free_bytes: 11 * GIB,
            total_bytes: 0,
        };
        memory.total_bytes = memory.parts().iter().sum();
        let theme = Theme::default();
        let bar = text(&memory_bar(&memory, 30, &theme));
        assert_eq!(bar.chars().count(), 30, "{bar}");
        assert_eq!(
            bar, "████████████▓▒░▪▪▪▪▪··········",
            "weights 13 of 31.5 GiB in 30 cells; the small parts keep a cell each"
        );
        let [first, second] = memory_legend(&memory, 30, &theme);
        assert_eq!(text(&first), "█wts 13G ▓▒KV 48M/1.0G");
        assert_eq!(text(&second), "░scr 412M ▪oth 6.0G ·free 11G");
        let [first, _] = memory_legend(&memory, 60, &theme);
        assert_eq!(text(&first), "█weights 13.0 GiB ▓▒KV 48.0 MiB/1.0 GiB");
    }

    #[test]
    fn short_bytes_stay_short() {
        assert_eq!(short_bytes(0), "0");
        assert_eq!(short_bytes(512), "512B");
        assert_eq!(short_bytes(412 << 20), "412M");
        assert_eq!(short_bytes(6 * GIB + GIB / 2), "6.5G");
        assert_eq!(short_bytes(139 * GIB), "139G");
    }

    #[test]
    fn a_speed_row_puts_the_previous_turns_beside_this_one_on_one_scale() {
        let theme = Theme::default();
        let row = speed_row("decode", 9, 20.0, &[10.0, 40.0], &[20.0, 40.0], 30, &theme);
        assert_eq!(text(&row), "decode   20.0 tok/s ▂█│▄█");
        // Narrow: the newest points win.
        let row = speed_row("decode", 9, 20.0, &[], &[1.0, 2.0, 4.0, 8.0], 22, &theme);
        assert_eq!(text(&row), "decode   20.0 tok/s ▄█");
        assert_eq!(spark(&[0.0, f64::NAN, 1.0], 8.0), "  ▁");
    }

    #[test]
    fn the_context_scale_marks_the_fitted_limit_within_the_models_maximum() {
        let theme = Theme::default();
        let line = context_scale(2048, 65_536, 131_072, 34, &theme).expect("wide enough");
        assert_eq!(
            text(&line),
            "━───────┃········ ┃65.5k of 131.1k",
            "2k used is a cell; the limit is half the model's maximum"
        );
        // The limit at the model's maximum: the marker ends the scale.
        let line = context_scale(0, 4096, 4096, 20, &theme).expect("wide enough");
        assert_eq!(text(&line), "─────┃ ┃4.1k of 4.1k");
        assert!(
            context_scale(1, 10, 0, 30, &theme).is_none(),
            "no maximum known"
        );
        let gauge = context_gauge(1024, 4096, 24, &theme);
        assert_eq!(text(&gauge), "ctx 1.0k/4.1k 25% ━━────");
    }
}
