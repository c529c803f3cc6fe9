//! Untrusted text on the screen: model output, reasoning, chat titles, file names, tool output
//! and pasted text may hold escape and control characters, which a terminal would obey
//! (retitle the window, switch to reverse video, move the cursor). Everything drawn goes
//! through `ui::draw`, which ends with `neutralize_buffer`: every cell still holding a control
//! character shows its visible picture instead (ESC as `␛`). ratatui lays a control character
//! out as one cell, and its picture is one cell too, so nothing moves.
//!
//! Tabs are the one control that must be laid out rather than pictured: the text layout
//! (`wrap`, the input box) expands them to the next multiple of `TAB_WIDTH_CELLS` columns with
//! `tab_cells`, so wrapping, drawing and the cursor agree.

use ratatui::buffer::Buffer;

/// Columns between tab stops.
pub const TAB_WIDTH_CELLS: usize = 4;

/// Cells a tab takes when it starts at `column` (to the next tab stop).
pub fn tab_cells(column: usize) -> usize {
    TAB_WIDTH_CELLS - column % TAB_WIDTH_CELLS
}

/// Cells one character takes in laid-out text other than a tab: a control character counts as
/// one (its picture), like ratatui counts it; others as Unicode says.
pub fn char_cells(c: char) -> usize {
    if c.is_control() {
        1
    } else {
        unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)
    }
}

/// The visible stand-in for a control character: the Unicode control picture of a C0 control
/// (`␛` for ESC) or DEL, `�` for a C1 control, a space for a tab; other characters unchanged.
pub fn visible(c: char) -> char {
    match c {
        '\t' => ' ',
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
        '\u{7f}' => '\u{2421}',
        c if c.is_control() => '\u{fffd}',
        c => c,
    }
}

/// Replaces every cell whose symbol holds a control character with the picture of that
/// character, so no control byte reaches the terminal whatever the widgets were given.
pub fn neutralize_buffer(buffer: &mut Buffer) {
    for cell in &mut buffer.content {
        if let Some(control) = cell.symbol().chars().find(|c| c.is_control()) {
            let mut picture = [0; 4];
            cell.set_symbol(visible(control).encode_utf8(&mut picture));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::text::Line;
    use ratatui::widgets::{Paragraph, Widget};

    #[test]
    fn controls_become_one_cell_pictures() {
        assert_eq!(visible('\x1b'), '␛');
        assert_eq!(visible('\x07'), '␇');
        assert_eq!(visible('\0'), '␀');
        assert_eq!(visible('\x7f'), '␡');
        assert_eq!(visible('\u{9b}'), '\u{fffd}');
        assert_eq!(visible('a'), 'a');
        for c in ['\x1b', '\x07', '\x7f', '\u{9b}'] {
            assert_eq!(char_cells(c), 1);
            assert_eq!(
                unicode_width::UnicodeWidthChar::width(visible(c)),
                Some(1),
                "{c:?}"
            );
        }
    }

    #[test]
    fn tabs_reach_the_next_stop() {
        assert_eq!(tab_cells(0), 4);
        assert_eq!(tab_cells(3), 1);
        assert_eq!(tab_cells(4), 4);
    }

    #[test]
    fn an_escape_sequence_is_drawn_as_text_in_place() {
        let area = Rect::new(0, 0, 12, 1);
        let mut buffer = Buffer::empty(area);
        Paragraph::new(Line::from("a\x1b[7mb\x07c")).render(area, &mut buffer);
        neutralize_buffer(&mut buffer);
        let shown: String = buffer.content.iter().map(|c| c.symbol()).collect();
        assert_eq!(shown, "a␛[7mb␇c    ");
    }
}
