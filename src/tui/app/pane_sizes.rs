//! The height of the metrics pane under the reasoning pane, resized from the keyboard. The
//! offset the keys change is kept within what the screen can show, so after many presses one
//! key the other way moves the border at once.

/// Rows the metrics pane wants before any resizing.
pub const METRICS_DEFAULT_ROWS: u16 = 15;
/// Rows each of the two side panes keeps at least.
const SIDE_PANE_MIN_ROWS: u16 = 3;

/// The metrics pane's default height in a side column of `side_rows`.
fn default_rows(side_rows: u16) -> u16 {
    METRICS_DEFAULT_ROWS
        .min(side_rows / 2)
        .max(side_rows.min(7))
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
