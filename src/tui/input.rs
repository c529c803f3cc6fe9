//! The multi-line input box: text plus a cursor, edited by keys and paste.

use super::safe_text::{char_cells, tab_cells};

/// Text being typed; `cursor` is a byte offset on a char boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputBox {
    text: String,
    cursor: usize,
}

impl InputBox {
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
        self.text = text.to_string();
        self.cursor = self.text.len();
    }

    /// Takes the text out, leaving the box empty.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// Inserts text at the cursor (typing or paste; `\r\n` becomes `\n`).
    pub fn insert(&mut self, text: &str) {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        self.text.insert_str(self.cursor, &text);
        self.cursor += text.len();
    }

    /// Deletes the char before the cursor.
    pub fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    /// Deletes the char at the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
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
    /// (row, column) in them.
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
            let mut w = if c == '\t' {
                tab_cells(used)
            } else {
                char_cells(c)
            };
            if used + w > width {
                rows.push(String::new());
                used = 0;
                if offset == self.cursor {
                    cursor = (rows.len() as u16 - 1, 0);
                }
                if c == '\t' {
                    w = tab_cells(0).min(width);
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
