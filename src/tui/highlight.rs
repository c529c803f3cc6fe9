//! Code-block highlighting with syntect; the syntax and theme sets load once, on first use.

use std::sync::OnceLock;

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use syntect::easy::HighlightLines;
use syntect::highlighting::{FontStyle, ThemeSet};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

fn themes() -> &'static ThemeSet {
    static SET: OnceLock<ThemeSet> = OnceLock::new();
    SET.get_or_init(ThemeSet::load_defaults)
}

/// The names a theme file may give as `code_theme`.
pub fn code_theme_names() -> Vec<&'static str> {
    themes().themes.keys().map(String::as_str).collect()
}

/// Highlights `code` as `lang` (a fence tag like `rust`, `py`, `sh`) with the syntect theme
/// `code_theme`; an unknown language or theme gives the lines in `fallback` style.
pub fn highlight_code(
    code: &str,
    lang: &str,
    code_theme: &str,
    fallback: Style,
) -> Vec<Line<'static>> {
    let plain = || {
        code.lines()
            .map(|l| Line::from(Span::styled(l.to_string(), fallback)))
            .collect()
    };
    let set = syntaxes();
    let syntax = set.find_syntax_by_token(lang).or_else(|| {
        (!lang.is_empty())
            .then(|| set.find_syntax_by_extension(lang))
            .flatten()
    });
    let (Some(syntax), Some(theme)) = (syntax, themes().themes.get(code_theme)) else {
        return plain();
    };
    let mut highlighter = HighlightLines::new(syntax, theme);
    let mut lines = Vec::new();
    for source_line in LinesWithEndings::from(code) {
        let Ok(ranges) = highlighter.highlight_line(source_line, set) else {
            return plain();
        };
        let spans: Vec<Span<'static>> = ranges
            .into_iter()
            .filter_map(|(style, text)| {
                let text = text.trim_end_matches(['\n', '\r']);
                (!text.is_empty()).then(|| Span::styled(text.to_string(), convert(style)))
            })
            .collect();
        lines.push(Line::from(spans));
    }
    lines
}

fn convert(style: syntect::highlighting::Style) -> Style {
    let fg = style.foreground;
    let mut out = Style::default().fg(Color::Rgb(fg.r, fg.g, fg.b));
    if style.font_style.contains(FontStyle::BOLD) {
        out = out.add_modifier(Modifier::BOLD);
    }
    if style.font_style.contains(FontStyle::ITALIC) {
        out = out.add_modifier(Modifier::ITALIC);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_keywords_get_a_colour_unlike_identifiers() {
        let lines = highlight_code(
            "fn main() {}\n",
            "rust",
            "base16-ocean.dark",
            Style::default(),
        );
        assert_eq!(lines.len(), 1);
        let fn_span = lines[0].spans.iter().find(|s| s.content == "fn").unwrap();
        let main_span = lines[0]
            .spans
            .iter()
            .find(|s| s.content.contains("main"))
            .unwrap();
        assert!(fn_span.style.fg.is_some());
        assert_ne!(fn_span.style.fg, main_span.style.fg);
    }

    #[test]
    fn unknown_language_falls_back_to_plain() {
        let style = Style::default().fg(Color::Red);
        let lines = highlight_code("a\nb", "nosuchlang", "base16-ocean.dark", style);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].spans[0].style, style);
    }
}
