//! Word-wrapping of styled lines to a width, so panes know their line counts (for scrolling)
//! without asking the widget to lay out everything every frame.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

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
    if chars.is_empty() {
        out.push(Line::default());
        return;
    }
    let cell = |c: char| if c == '\t' { 4 } else { c.width().unwrap_or(0) };
    let mut start = 0;
    while start < chars.len() {
        let mut used = 0;
        let mut end = start;
        let mut last_break = None;
        while end < chars.len() {
            let w = cell(chars[end].0);
            if used + w > width && end > start {
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
        out.push(to_line(&chars[start..end]));
        start = end;
    }
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
        text.push(if *c == '\t' { ' ' } else { *c });
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
