//! The multi-line input box: text plus a cursor, edited by keys and paste. Where its rows
//! start is kept between frames and only re-wrapped from an edit on, so typing at the end of
//! a long input costs the same per key as at the start of a short one.

use std::cell::RefCell;

use super::safe_text::{char_cells, tab_cells};

/// Text being typed; `cursor` is a byte offset on a char boundary.
#[derive(Debug, Clone, Default)]
pub struct InputBox {
    text: String,
    cursor: usize,
    rows: RefCell<RowStarts>,
}

impl PartialEq for InputBox {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.cursor == other.cursor
    }
}

/// Where the rows of the wrapped text start, for one width.
#[derive(Debug, Clone, Default)]
struct RowStarts {
    width: usize,
    /// Byte offsets where rows start; the first is 0 once computed.
    starts: Vec<usize>,
    /// Cells used on the last row.
    last_row_cells: usize,
    /// True when `starts` covers the whole text.
    complete: bool,
    /// Characters wrapped so far: the work layout did (tests bound it).
    chars_wrapped: usize,
}

/// The rows of the input box to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct InputWindow {
    /// At most the asked height of rows, the cursor's among them.
    pub rows: Vec<String>,
    /// The cursor's (row, column) within `rows`.
    pub cursor: (u16, u16),
    /// Rows of the whole text.
    pub total_rows: usize,
}

/// Cells `c` takes at `used` cells into a row (a tab runs to the next stop, at most a row).
fn cells_at(c: char, used: usize, width: usize) -> usize {
    match c {
        '\t' if used == 0 => tab_cells(0).min(width),
        '\t' => tab_cells(used),
        _ => char_cells(c),
    }
}

/// Cells `c` takes after `used` cells of a row, or `None` when it does not fit there and
/// starts the next row (a tab is measured to its stop first, then cut to the row).
fn fits(c: char, used: usize, width: usize) -> Option<usize> {
    let w = if c == '\t' {
        tab_cells(used)
    } else {
        char_cells(c)
    };
    (used + w <= width).then_some(w)
}

impl InputBox {
    /// Forgets the row starts an edit at byte `offset` may have moved.
    fn edited_at(&mut self, offset: usize) {
        let rows = self.rows.get_mut();
        // A row starting at or after the edit may start elsewhere now; the one holding it is
        // re-wrapped from its start.
        let keep = rows.starts.partition_point(|&s| s < offset).max(1);
        rows.starts.truncate(keep);
        rows.complete = false;
    }

    /// Brings the row starts up to date for `width` cells, wrapping only what changed.
    fn wrap(&self, width: usize) {
        let mut rows = self.rows.borrow_mut();
        if rows.width != width || rows.starts.is_empty() {
            rows.width = width;
            rows.starts = vec![0];
            rows.complete = false;
        }
        if rows.complete {
            return;
        }
        let start = rows.starts.last().copied().unwrap_or(0);
        let n = rows.starts.len();
        // A row that began because its first character did not fit the row before: that
        // character is already placed (measuring it again would start yet another row).
        let mut placed_first = (start != 0 && !self.text[..start].ends_with('\n'))
            || (n >= 2 && rows.starts[n - 2] == start);
        let mut used = 0;
        for (i, c) in self.text[start..].char_indices() {
            let offset = start + i;
            rows.chars_wrapped += 1;
            if std::mem::take(&mut placed_first) {
                used = cells_at(c, 0, width);
                continue;
            }
            if c == '\n' {
                rows.starts.push(offset + 1);
                used = 0;
                continue;
            }
            used = match fits(c, used, width) {
                Some(w) => used + w,
                None => {
                    rows.starts.push(offset);
                    cells_at(c, 0, width)
                }
            };
        }
        rows.last_row_cells = used;
        rows.complete = true;
    }

    /// Rows the text takes at `width` cells (an empty row after a full last one holds the
    /// cursor when it is at the end).
    pub fn row_count(&self, width: u16) -> usize {
        let width = usize::from(width.max(1));
        self.wrap(width);
        let rows = self.rows.borrow();
        rows.starts.len() + usize::from(self.cursor_past_full_row(&rows))
    }

    fn cursor_past_full_row(&self, rows: &RowStarts) -> bool {
        self.cursor == self.text.len() && rows.last_row_cells >= rows.width
    }

    /// The `height` rows around the cursor (the cursor on the last of them when the text is
    /// longer) at `width` cells; only those rows are built.
    pub fn window(&self, width: u16, height: u16) -> InputWindow {
        let width_cells = usize::from(width.max(1));
        self.wrap(width_cells);
        let rows = self.rows.borrow();
        let total_rows = rows.starts.len() + usize::from(self.cursor_past_full_row(&rows));
        let (cursor_row, cursor_col) = if self.cursor_past_full_row(&rows) {
            (rows.starts.len(), 0)
        } else {
            let row = rows.starts.partition_point(|&s| s <= self.cursor) - 1;
            let mut used = 0;
            for c in self.text[rows.starts[row]..self.cursor].chars() {
                used += cells_at(c, used, width_cells);
            }
            (row, used)
        };
        let first = cursor_row.saturating_sub(usize::from(height.max(1)) - 1);
        let last = (first + usize::from(height.max(1))).min(total_rows);
        let built = (first..last)
            .map(|row| {
                let Some(&start) = rows.starts.get(row) else {
                    return String::new();
                };
                let end = rows.starts.get(row + 1).copied().unwrap_or(self.text.len());
                let mut out = String::new();
                let mut used = 0;
                for c in self.text[start..end].chars() {
                    if c == '\n' {
                        break;
                    }
                    let w = cells_at(c, used, width_cells);
                    if c == '\t' {
                        out.extend(std::iter::repeat_n(' ', w));
                    } else {
                        out.push(c);
                    }
                    used += w;
                }
                out
            })
            .collect();
        // Within u16: a row is at most `width` cells and the window at most `height` rows.
        InputWindow {
            rows: built,
            cursor: ((cursor_row - first) as u16, cursor_col as u16),
            total_rows,
        }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor's byte offset.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Replaces the text, cursor at the end.
    pub fn set(&mut self, text: &str) {
        self.edited_at(0);
        self.text = text.to_string();
        self.cursor = self.text.len();
    }

    /// Takes the text out, leaving the box empty.
    pub fn take(&mut self) -> String {
        self.edited_at(0);
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// Inserts text at the cursor (typing or paste; `\r\n` becomes `\n`).
    pub fn insert(&mut self, text: &str) {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        self.edited_at(self.cursor);
        self.text.insert_str(self.cursor, &text);
        self.cursor += text.len();
    }

    /// Deletes the char before the cursor.
    pub fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.edited_at(self.cursor);
            self.text.remove(self.cursor);
        }
    }

    /// Deletes the char at the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.edited_at(self.cursor);
            self.text.remove(self.cursor);
        }
    }

    /// Moves one char left.
    pub fn left(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    /// Moves one char right.
    pub fn right(&mut self) {
        if let Some(c) = self.text[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    /// Where the word before the cursor starts: back over whitespace, then over the word
    /// (a word is a run of alphanumerics or `_`, or a run of other non-space characters).
    fn word_start_before(&self) -> usize {
        let before = &self.text[..self.cursor];
        let mut chars = before
            .char_indices()
            .rev()
            .skip_while(|(_, c)| c.is_whitespace())
            .peekable();
        let Some(&(mut start, first)) = chars.peek() else {
            return 0;
        };
        let wordish = is_word_char(first);
        for (i, c) in chars {
            if c.is_whitespace() || is_word_char(c) != wordish {
                break;
            }
            start = i;
        }
        start
    }

    /// Where the word after the cursor ends: over whitespace, then over the word.
    fn word_end_after(&self) -> usize {
        let after = &self.text[self.cursor..];
        let mut chars = after
            .char_indices()
            .skip_while(|(_, c)| c.is_whitespace())
            .peekable();
        let Some(&(_, first)) = chars.peek() else {
            return self.text.len();
        };
        let wordish = is_word_char(first);
        for (i, c) in chars {
            if c.is_whitespace() || is_word_char(c) != wordish {
                return self.cursor + i;
            }
        }
        self.text.len()
    }

    /// Moves to the start of the word before the cursor (Alt+←).
    pub fn word_left(&mut self) {
        self.cursor = self.word_start_before();
    }

    /// Moves past the end of the word after the cursor (Alt+→).
    pub fn word_right(&mut self) {
        self.cursor = self.word_end_after();
    }

    /// Deletes from the start of the word before the cursor to the cursor (Ctrl+W,
    /// Alt+Backspace).
    pub fn delete_word_back(&mut self) {
        let start = self.word_start_before();
        if start < self.cursor {
            self.edited_at(start);
            self.text.replace_range(start..self.cursor, "");
            self.cursor = start;
        }
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    /// Moves to the start of the line.
    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    /// Moves to the end of the line.
    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Moves up a line, keeping the column; false when already on the first line.
    pub fn up(&mut self) -> bool {
        let start = self.line_start();
        if start == 0 {
            return false;
        }
        let column = self.text[start..self.cursor].chars().count();
        let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        self.cursor = advance(&self.text, prev_start, start - 1, column);
        true
    }

    /// Moves down a line, keeping the column; false when already on the last line.
    pub fn down(&mut self) -> bool {
        let end = self.line_end();
        if end == self.text.len() {
            return false;
        }
        let column = self.text[self.line_start()..self.cursor].chars().count();
        let next_start = end + 1;
        let next_end = self.text[next_start..]
            .find('\n')
            .map_or(self.text.len(), |i| next_start + i);
        self.cursor = advance(&self.text, next_start, next_end, column);
        true
    }

    /// The text split into rows of at most `width` cells (hard wrap), and the cursor's
    /// (row, column) in them: all of it at once, the reference `window` is checked against.
    #[cfg(test)]
    pub fn layout(&self, width: u16) -> (Vec<String>, (u16, u16)) {
        let width = usize::from(width.max(1));
        let mut rows = vec![String::new()];
        let mut used = 0;
        let mut cursor = (0u16, 0u16);
        for (offset, c) in self.text.char_indices() {
            if offset == self.cursor {
                cursor = (rows.len() as u16 - 1, used as u16);
            }
            if c == '\n' {
                rows.push(String::new());
                used = 0;
                continue;
            }
            // A tab runs to the next tab stop of its row, drawn as spaces.
            let w = match fits(c, used, width) {
                Some(w) => w,
                None => {
                    rows.push(String::new());
                    used = 0;
                    if offset == self.cursor {
                        cursor = (rows.len() as u16 - 1, 0);
                    }
                    cells_at(c, 0, width)
                }
            };
            if let Some(row) = rows.last_mut() {
                if c == '\t' {
                    row.extend(std::iter::repeat_n(' ', w));
                } else {
                    row.push(c);
                }
            }
            used += w;
        }
        if self.cursor == self.text.len() {
            if used >= width {
                rows.push(String::new());
                used = 0;
            }
            cursor = (rows.len() as u16 - 1, used as u16);
        }
        (rows, cursor)
    }
}

fn advance(text: &str, start: usize, end: usize, column: usize) -> usize {
    text[start..end]
        .char_indices()
        .nth(column)
        .map_or(end, |(i, _)| start + i)
}

/// Letters, digits and `_` make words; other visible characters make words of their own.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_movement_and_deletion_stop_at_word_edges() {
        let mut input = InputBox::default();
        input.set("let  héllo_wörld = f(x);");
        input.word_left();
        assert_eq!(&input.text()[input.cursor()..], ");");
        input.word_left();
        assert_eq!(&input.text()[input.cursor()..], "x);");
        input.home();
        input.word_right();
        assert_eq!(&input.text()[input.cursor()..], "  héllo_wörld = f(x);");
        input.word_right();
        assert_eq!(
            &input.text()[input.cursor()..],
            " = f(x);",
            "multi-byte letters are word"
        );
        input.delete_word_back();
        assert_eq!(input.text(), "let   = f(x);");
        input.delete_word_back();
        assert_eq!(
            input.text(),
            " = f(x);",
            "spaces, then the word before them"
        );
        input.delete_word_back();
        assert_eq!(
            input.text(),
            " = f(x);",
            "nothing before the cursor: nothing deleted"
        );
        input.end();
        input.delete_word_back();
        assert_eq!(
            input.text(),
            " = f(x",
            "punctuation runs are words of their own"
        );
    }

    #[test]
    fn edits_across_lines() {
        let mut input = InputBox::default();
        input.insert("héllo\r\nworld");
        assert_eq!(input.text(), "héllo\nworld");
        assert!(input.up());
        assert_eq!(&input.text()[..input.cursor()], "héllo");
        input.home();
        input.right();
        input.right();
        input.backspace();
        assert_eq!(input.text(), "hllo\nworld");
        assert!(input.down());
        assert_eq!(&input.text()[..input.cursor()], "hllo\nw");
        assert!(!input.down());
        input.end();
        input.delete();
        assert_eq!(input.take(), "hllo\nworld");
        assert!(input.is_empty());
    }

    #[test]
    fn layout_wraps_and_places_the_cursor() {
        let mut input = InputBox::default();
        input.insert("abcdef\nxy");
        let (rows, cursor) = input.layout(4);
        assert_eq!(rows, vec!["abcd", "ef", "xy"]);
        assert_eq!(cursor, (2, 2));
        input.set("abcd");
        assert_eq!(
            input.layout(4),
            (vec!["abcd".to_string(), String::new()], (1, 0))
        );
    }

    #[test]
    fn tabs_and_controls_are_laid_out_as_drawn() {
        let mut input = InputBox::default();
        input.insert("a\tb");
        // The tab runs to column 4 as spaces; the cursor sits after "b".
        assert_eq!(input.layout(20), (vec!["a   b".to_string()], (0, 5)));
        input.set("\x1b[7m");
        // ESC is drawn as one cell (its picture), so the cursor is after four cells.
        assert_eq!(input.layout(20).1, (0, 4));
        input.set("abc\td");
        assert_eq!(input.layout(4).0, vec!["abc ", "d"]);
    }

    #[test]
    fn the_window_matches_the_whole_layout_through_edits() {
        let texts = [
            "",
            "abcd",
            "abcdef\nxy",
            "a\tb\tcdefgh\n\n\tx",
            "日本語のテキスト\nabc",
            "\x1b[7m red",
        ];
        for width in [1u16, 3, 4, 7] {
            for text in texts {
                let mut input = InputBox::default();
                input.insert(text);
                for step in 0..=text.chars().count() {
                    let (rows, cursor) = input.layout(width);
                    let window = input.window(width, u16::MAX);
                    assert_eq!(window.rows, rows, "{text:?} at width {width}, step {step}");
                    assert_eq!(
                        window.cursor, cursor,
                        "{text:?} at width {width}, step {step}"
                    );
                    assert_eq!(input.row_count(width), rows.len());
                    // Edit mid-text and back, so the kept row starts are re-checked.
                    input.insert("é");
                    input.window(width, 2);
                    input.backspace();
                    input.left();
                }
            }
        }
    }

    #[test]
    fn typing_at_the_end_rewraps_only_the_last_row() {
        let mut input = InputBox::default();
        for _ in 0..20_000 {
            input.insert("a");
            let window = input.window(78, 6);
            assert!(window.rows.len() <= 6);
        }
        assert_eq!(input.row_count(78), 20_000 / 78 + 1);
        // Each key re-wraps at most one row of 78 characters (whole-text wrapping per key
        // would be 200 million).
        let wrapped = input.rows.borrow().chars_wrapped;
        assert!(wrapped <= 20_000 * 79, "{wrapped} characters wrapped");
    }
}
