//! Word-wrapping of styled lines to a width, so panes know their line counts (for scrolling)
//! without asking the widget to lay out everything every frame.

use super::safe_text::{char_cells, tab_cells};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

/// Wraps each line to at most `width` cells, breaking after spaces when possible and inside a
/// word only when it is longer than the width. Empty lines stay as one empty line.
pub fn wrap_lines(lines: &[Line<'static>], width: u16) -> Vec<Line<'static>> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        wrap_line(line, width.max(1) as usize, &mut out);
    }
    out
}

/// Wraps one line, appending the pieces to `out`.
pub fn wrap_line(line: &Line<'static>, width: usize, out: &mut Vec<Line<'static>>) {
    let chars: Vec<(char, Style)> = line
        .spans
        .iter()
        .flat_map(|s| {
            let style = line.style.patch(s.style);
            s.content.chars().map(move |c| (c, style))
        })
        .filter(|(c, _)| *c != '\n' && *c != '\r')
        .collect();
    let chars = expand_tabs(chars);
    if chars.is_empty() {
        out.push(Line::default());
        return;
    }
    let hang = hanging_prefix(&chars, width);
    let hang_width: usize = hang.iter().map(|(c, _)| cell(*c)).sum();
    let mut start = 0;
    while start < chars.len() {
        let continuation = start > 0;
        let room = if continuation {
            width - hang_width
        } else {
            width
        };
        let mut used = 0;
        let mut end = start;
        let mut last_break = None;
        while end < chars.len() {
            let w = cell(chars[end].0);
            if used + w > room && end > start {
                break;
            }
            used += w;
            if chars[end].0 == ' ' {
                last_break = Some(end + 1);
            }
            end += 1;
        }
        if end < chars.len()
            && let Some(b) = last_break
            && b > start
        {
            end = b;
        }
        if continuation {
            let mut piece = hang.clone();
            piece.extend_from_slice(&chars[start..end]);
            out.push(to_line(&piece));
        } else {
            out.push(to_line(&chars[start..end]));
        }
        start = end;
    }
}

/// Display cells of a character (tabs are expanded before wrapping).
fn cell(c: char) -> usize {
    char_cells(c)
}

/// The characters with each tab replaced by spaces up to the next tab stop (in the tab's
/// style), counting columns from the start of the unwrapped line.
fn expand_tabs(chars: Vec<(char, Style)>) -> Vec<(char, Style)> {
    if !chars.iter().any(|(c, _)| *c == '\t') {
        return chars;
    }
    let mut out = Vec::with_capacity(chars.len() + 8);
    let mut column = 0;
    for (c, style) in chars {
        if c == '\t' {
            let spaces = tab_cells(column);
            out.extend(std::iter::repeat_n((' ', style), spaces));
            column += spaces;
        } else {
            out.push((c, style));
            column += cell(c);
        }
    }
    out
}

/// What continuation lines of a wrapped line start with, so they stay under its text: the
/// line's leading quote bars and indentation, and the width of one list marker ("• ", "- ",
/// "* ", "12. ", "3) ") as spaces. Empty when that would leave less than half the width.
fn hanging_prefix(chars: &[(char, Style)], width: usize) -> Vec<(char, Style)> {
    let mut len = chars
        .iter()
        .take_while(|(c, _)| *c == ' ' || *c == '│')
        .count();
    let rest: String = chars[len..].iter().take(12).map(|(c, _)| *c).collect();
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let marker = if rest.starts_with("• ") || rest.starts_with("- ") || rest.starts_with("* ") {
        2
    } else if digits > 0 && (rest[digits..].starts_with(". ") || rest[digits..].starts_with(") ")) {
        digits + 2
    } else {
        0
    };
    len += marker;
    let prefix: Vec<(char, Style)> = chars[..len.min(chars.len())]
        .iter()
        .map(|&(c, style)| {
            if c == '│' {
                (c, style)
            } else {
                (' ', Style::default())
            }
        })
        .collect();
    let prefix_width: usize = prefix.iter().map(|(c, _)| cell(*c)).sum();
    if prefix_width == 0 || prefix_width * 2 > width || len >= chars.len() {
        return Vec::new();
    }
    prefix
}

fn to_line(chars: &[(char, Style)]) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut style = chars.first().map(|(_, s)| *s).unwrap_or_default();
    for (c, s) in chars {
        if *s != style {
            spans.push(Span::styled(std::mem::take(&mut text), style));
            style = *s;
        }
        text.push(*c);
    }
    spans.push(Span::styled(text, style));
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tui::line_texts as texts;

    #[test]
    fn breaks_after_spaces_and_inside_long_words() {
        let lines = vec![
            Line::from("the quick brown fox"),
            Line::default(),
            Line::from("abcdefghij"),
        ];
        assert_eq!(
            texts(&wrap_lines(&lines, 10)),
            vec!["the quick ", "brown fox", "", "abcdefghij"]
        );
        assert_eq!(
            texts(&wrap_lines(&[Line::from("abcdefghij")], 4)),
            vec!["abcd", "efgh", "ij"]
        );
    }

    #[test]
    fn continuation_lines_hang_under_list_items_quotes_and_code() {
        let wrap =
            |text: &str, width: u16| texts(&wrap_lines(&[Line::from(text.to_string())], width));
        assert_eq!(
            wrap("• alpha beta gamma", 10),
            vec!["• alpha ", "  beta ", "  gamma"]
        );
        assert_eq!(
            wrap("  12. one two three", 12),
            vec!["  12. one ", "      two ", "      three"]
        );
        assert_eq!(
            wrap("│ quoted words here", 10),
            vec!["│ quoted ", "│ words ", "│ here"]
        );
        assert_eq!(
            wrap("│     let total = a + b;", 16),
            vec!["│     let total ", "│     = a + b;"]
        );
        // A prefix wider than half the width is not repeated.
        assert_eq!(wrap("      • ab cd", 8), vec!["      • ", "ab cd"]);
    }

    #[test]
    fn tabs_expand_to_the_next_stop_and_controls_take_one_cell() {
        let wrap =
            |text: &str, width: u16| texts(&wrap_lines(&[Line::from(text.to_string())], width));
        assert_eq!(wrap("a\tb\tc", 20), vec!["a   b   c"]);
        assert_eq!(wrap("abcde\tf", 20), vec!["abcde   f"]);
        // Counted as laid out: "a   bc" needs 6 cells, so it breaks after the tab's spaces.
        assert_eq!(wrap("a\tbc", 5), vec!["a   ", "bc"]);
        // ESC counts one cell (drawn as its picture), as ratatui counts it.
        assert_eq!(wrap("\x1b[7mabc", 4), vec!["\x1b[7m", "abc"]);
    }

    #[test]
    fn keeps_styles_and_counts_wide_chars() {
        let line = Line::from(vec![
            Span::styled(
                "ab",
                Style::new().add_modifier(ratatui::style::Modifier::BOLD),
            ),
            Span::raw("漢字漢"),
        ]);
        let wrapped = wrap_lines(&[line], 4);
        assert_eq!(texts(&wrapped), vec!["ab漢", "字漢"]);
        assert_eq!(
            wrapped[0].spans[0].style,
            Style::new().add_modifier(ratatui::style::Modifier::BOLD)
        );
    }
}
