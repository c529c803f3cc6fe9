//! How the screen is shared: the side column's width (the side panes give way before the chat
//! gets too narrow to read) and the height of the metrics pane under the reasoning pane,
//! resized from the keyboard. The offset the keys change is kept within what the screen can
//! show, so after many presses one key the other way moves the border at once.

/// Columns the chat keeps: on a narrower screen the reasoning, then the metrics give way.
const CHAT_MIN_COLS: u16 = 40;
/// Columns the side column needs to show the metrics.
const SIDE_MIN_COLS: u16 = 20;
/// Columns the side column needs to show the reasoning too.
const REASONING_MIN_COLS: u16 = 24;

/// The side column's width on a screen `width` columns wide with the chat wanting
/// `chat_percent` of it; 0 when the chat needs all of it.
pub fn side_columns(width: u16, chat_percent: u16) -> u16 {
    // Within u16: a percentage of a u16.
    let chat_wanted = (u32::from(width) * u32::from(chat_percent) / 100) as u16;
    let side = width
        .saturating_sub(chat_wanted)
        .max(SIDE_MIN_COLS)
        .min(width.saturating_sub(CHAT_MIN_COLS));
    if side < SIDE_MIN_COLS { 0 } else { side }
}

/// True when a side column `side_cols` wide has room for the reasoning pane.
pub fn reasoning_fits(side_cols: u16) -> bool {
    side_cols >= REASONING_MIN_COLS
}

/// Rows the metrics pane wants before any resizing: borders, up to 10 text rows, the context
/// gauge and a few sparkline rows.
pub const METRICS_DEFAULT_ROWS: u16 = 17;
/// Rows the metrics pane needs for every text row and the gauge (on a CPU, borders included).
const METRICS_ALL_TEXT_ROWS: u16 = 14;
/// Rows the reasoning pane keeps by default (3 of them text).
const REASONING_DEFAULT_MIN_ROWS: u16 = 5;
/// Rows each of the two side panes keeps at least.
const SIDE_PANE_MIN_ROWS: u16 = 3;

/// The metrics pane's default height in a side column of `side_rows`: every text row when
/// the reasoning pane keeps 5 rows, and sparkline rows as room allows.
fn default_rows(side_rows: u16) -> u16 {
    let room = side_rows.saturating_sub(REASONING_DEFAULT_MIN_ROWS);
    if room >= METRICS_ALL_TEXT_ROWS {
        METRICS_DEFAULT_ROWS.min(room)
    } else {
        (side_rows / 2).max(side_rows.min(7))
    }
}

/// The metrics pane's height in a side column of `side_rows`, moved `offset` rows from its
/// default; both panes keep at least 3 rows.
pub fn metrics_rows(side_rows: u16, offset: i16) -> u16 {
    let wanted = i32::from(default_rows(side_rows)) + i32::from(offset);
    let min = i32::from(SIDE_PANE_MIN_ROWS.min(side_rows));
    let max = (i32::from(side_rows) - i32::from(SIDE_PANE_MIN_ROWS)).max(min);
    // Within u16: clamped between two values that came from u16s.
    wanted.clamp(min, max) as u16
}

/// The offset after moving the border `delta` rows from where it is drawn now.
pub fn resized_offset(side_rows: u16, offset: i16, delta: i16) -> i16 {
    let now = metrics_rows(side_rows, offset);
    let new_rows = i32::from(metrics_rows(
        side_rows,
        (i32::from(now) + i32::from(delta) - i32::from(default_rows(side_rows))).clamp(-400, 400)
            as i16,
    ));
    // Within i16: both heights are at most the screen's.
    (new_rows - i32::from(default_rows(side_rows))) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_side_panes_give_way_before_the_chat_gets_narrow() {
        assert_eq!(side_columns(160, 60), 64);
        assert_eq!(side_columns(80, 60), 32);
        assert!(reasoning_fits(side_columns(80, 60)));
        // 62 columns: the chat keeps 40, the metrics get 22, the reasoning is hidden.
        assert_eq!(side_columns(62, 60), 22);
        assert!(!reasoning_fits(22));
        assert_eq!(side_columns(59, 60), 0, "the chat takes the whole screen");
        assert_eq!(side_columns(20, 60), 0);
        // A widened chat still leaves the metrics their 20 columns.
        assert_eq!(side_columns(80, 85), 20);
    }

    #[test]
    fn at_24_rows_every_metrics_text_row_fits() {
        // 24 rows: status, input (3) and hints leave 19 for the side column.
        assert_eq!(metrics_rows(19, 0), METRICS_ALL_TEXT_ROWS);
    }

    #[test]
    fn many_presses_past_the_limit_are_undone_by_one() {
        let mut offset = 0;
        for _ in 0..30 {
            offset = resized_offset(27, offset, -2);
        }
        assert_eq!(metrics_rows(27, offset), 3);
        offset = resized_offset(27, offset, 2);
        assert_eq!(metrics_rows(27, offset), 5, "one press grows it again");
        for _ in 0..30 {
            offset = resized_offset(27, offset, 2);
        }
        assert_eq!(metrics_rows(27, offset), 24);
        offset = resized_offset(27, offset, -2);
        assert_eq!(metrics_rows(27, offset), 22, "one press shrinks it again");
    }
}
