//! Markdown to styled lines (pulldown-cmark), code blocks highlighted by syntect.
//!
//! Rendering is width-independent (wrapping happens later, see `wrap`), so a finished
//! message's lines are computed once and cached. `settled_prefix_len` finds how much of a
//! streaming text can no longer change its rendering, so only the tail is re-rendered per frame.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::highlight::highlight_code;
use super::theme::Theme;

/// A fenced code block found in markdown text (for copying).
#[derive(Debug, Clone, PartialEq)]
pub struct CodeBlock {
    pub lang: String,
    pub code: String,
}

/// Renders markdown to lines: headings, emphasis, lists, quotes, tables, links, rules and
/// highlighted code blocks.
pub fn render(text: &str, theme: &Theme) -> Vec<Line<'static>> {
    let mut r = Renderer::new(theme);
    let parser = Parser::new_ext(
        text,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS,
    );
    for event in parser {
        r.event(event);
    }
    r.finish()
}

/// The fenced code blocks in `text`, in order.
pub fn code_blocks(text: &str) -> Vec<CodeBlock> {
    let mut blocks = Vec::new();
    let mut current: Option<CodeBlock> = None;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                current = Some(CodeBlock {
                    lang: fence_lang(&kind),
                    code: String::new(),
                });
            }
            Event::Text(t) => {
                if let Some(block) = current.as_mut() {
                    block.code.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            _ => {}
        }
    }
    blocks
}

/// How many leading bytes of a growing markdown text form complete blocks: everything up to
/// the last blank line outside a code fence. Rendering that prefix alone gives the same lines
/// as rendering it inside the whole text (block boundaries don't move when text is appended),
/// so it can be rendered once and cached.
pub fn settled_prefix_len(text: &str) -> usize {
    let mut in_fence = false;
    let mut settled = 0;
    let mut offset = 0;
    let mut previous_blank = false;
    for line in text.split_inclusive('\n') {
        let complete = line.ends_with('\n');
        let trimmed = line.trim();
        if !complete {
            // A partial line after a blank one already shows whether it starts a new block.
            if !in_fence && previous_blank && !line.starts_with([' ', '\t']) {
                settled = offset;
            }
            break;
        }
        offset += line.len();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            if !in_fence {
                // A closed fence ends a block.
                settled = offset;
            }
            previous_blank = false;
            continue;
        }
        let blank = trimmed.is_empty();
        // A blank line ends a block unless a list or quote may continue after it; indented
        // continuation is rare in answers, so a blank line followed by an unindented line
        // settles everything before the blank.
        if !in_fence && blank {
            previous_blank = true;
        } else if !in_fence && previous_blank {
            let starts_flush = !line.starts_with(' ') && !line.starts_with('\t');
            if starts_flush {
                settled = offset - line.len();
            }
            previous_blank = false;
        }
    }
    settled
}

fn fence_lang(kind: &CodeBlockKind<'_>) -> String {
    match kind {
        CodeBlockKind::Fenced(info) => info.split_whitespace().next().unwrap_or("").to_string(),
        CodeBlockKind::Indented => String::new(),
    }
}

struct ListState {
    next_number: Option<u64>,
}

struct Renderer<'t> {
    theme: &'t Theme,
    lines: Vec<Line<'static>>,
    spans: Vec<Span<'static>>,
    styles: Vec<Style>,
    quote_depth: usize,
    lists: Vec<ListState>,
    /// The bullet or number waiting to start the current item's first line.
    item_marker: Option<String>,
    code: Option<CodeBlock>,
    link: Option<String>,
    table: Option<Table>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<Vec<Span<'static>>>>,
    header_rows: usize,
}

impl<'t> Renderer<'t> {
    fn new(theme: &'t Theme) -> Self {
        Self {
            theme,
            lines: Vec::new(),
            spans: Vec::new(),
            styles: vec![theme.text],
            quote_depth: 0,
            lists: Vec::new(),
            item_marker: None,
            code: None,
            link: None,
            table: None,
        }
    }

    fn style(&self) -> Style {
        self.styles.last().copied().unwrap_or(self.theme.text)
    }

    fn push_style(&mut self, patch: Style) {
        let style = self.style().patch(patch);
        self.styles.push(style);
    }

    fn pop_style(&mut self) {
        if self.styles.len() > 1 {
            self.styles.pop();
        }
    }

    fn prefix(&mut self) -> Vec<Span<'static>> {
        let mut prefix = Vec::new();
        if self.quote_depth > 0 {
            prefix.push(Span::styled(
                "│ ".repeat(self.quote_depth),
                self.theme.quote,
            ));
        }
        if !self.lists.is_empty() {
            let indent = "  ".repeat(self.lists.len() - 1);
            match self.item_marker.take() {
                Some(marker) => {
                    prefix.push(Span::styled(format!("{indent}{marker}"), self.theme.accent))
                }
                None => prefix.push(Span::raw(format!("{indent}  "))),
            }
        }
        prefix
    }

    fn flush(&mut self) {
        if self.spans.is_empty() && self.item_marker.is_none() {
            return;
        }
        let mut spans = self.prefix();
        spans.append(&mut self.spans);
        self.lines.push(Line::from(spans));
    }

    fn blank(&mut self) {
        if self.lines.last().is_some_and(|l| !l.spans.is_empty()) && self.lists.is_empty() {
            self.lines.push(Line::default());
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(code) = self.code.as_mut() {
            code.code.push_str(text);
            return;
        }
        let style = self.style();
        if let Some(table) = self.table.as_mut() {
            if let Some(cell) = table.rows.last_mut().and_then(|r| r.last_mut()) {
                cell.push(Span::styled(text.to_string(), style));
            }
            return;
        }
        self.spans.push(Span::styled(text.to_string(), style));
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.text(&t),
            Event::Code(t) => {
                let style = self.style().patch(self.theme.inline_code);
                if let Some(cell) = self
                    .table
                    .as_mut()
                    .and_then(|t| t.rows.last_mut())
                    .and_then(|r| r.last_mut())
                {
                    cell.push(Span::styled(t.to_string(), style));
                } else {
                    self.spans.push(Span::styled(t.to_string(), style));
                }
            }
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => self.flush(),
            Event::Rule => {
                self.flush();
                self.lines
                    .push(Line::from(Span::styled("─".repeat(40), self.theme.dim)));
                self.lines.push(Line::default());
            }
            Event::TaskListMarker(done) => self.text(if done { "[x] " } else { "[ ] " }),
            Event::Html(t) | Event::InlineHtml(t) => self.text(&t),
            Event::FootnoteReference(t) => self.text(&format!("[{t}]")),
            Event::InlineMath(t) | Event::DisplayMath(t) => self.text(&t),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {}
            Tag::Heading { level, .. } => {
                self.flush();
                let hashes = match level {
                    HeadingLevel::H1 => "# ",
                    HeadingLevel::H2 => "## ",
                    HeadingLevel::H3 => "### ",
                    _ => "#### ",
                };
                self.push_style(self.theme.heading);
                if level == HeadingLevel::H1 {
                    self.push_style(Style::default().add_modifier(Modifier::UNDERLINED));
                }
                self.text(hashes);
            }
            Tag::BlockQuote(_) => {
                self.flush();
                self.quote_depth += 1;
                self.push_style(self.theme.quote);
            }
            Tag::CodeBlock(kind) => {
                self.flush();
                self.code = Some(CodeBlock {
                    lang: fence_lang(&kind),
                    code: String::new(),
                });
            }
            Tag::List(start) => {
                self.flush();
                self.lists.push(ListState { next_number: start });
            }
            Tag::Item => {
                self.flush();
                let marker = match self.lists.last_mut() {
                    Some(ListState {
                        next_number: Some(n),
                    }) => {
                        let marker = format!("{n}. ");
                        *n += 1;
                        marker
                    }
                    _ => "• ".to_string(),
                };
                self.item_marker = Some(marker);
            }
            Tag::Emphasis => self.push_style(Style::default().add_modifier(Modifier::ITALIC)),
            Tag::Strong => self.push_style(Style::default().add_modifier(Modifier::BOLD)),
            Tag::Strikethrough => {
                self.push_style(Style::default().add_modifier(Modifier::CROSSED_OUT))
            }
            Tag::Link { dest_url, .. } => {
                self.link = Some(dest_url.to_string());
                self.push_style(self.theme.link);
            }
            Tag::Image { dest_url, .. } => {
                self.link = Some(dest_url.to_string());
                self.push_style(self.theme.link);
                self.text("image: ");
            }
            Tag::Table(_) => {
                self.flush();
                self.table = Some(Table::default());
            }
            Tag::TableHead => {
                if let Some(t) = self.table.as_mut() {
                    t.rows.push(Vec::new());
                    t.header_rows += 1;
                }
                self.push_style(Style::default().add_modifier(Modifier::BOLD));
            }
            Tag::TableRow => {
                if let Some(t) = self.table.as_mut() {
                    t.rows.push(Vec::new());
                }
            }
            Tag::TableCell => {
                if let Some(row) = self.table.as_mut().and_then(|t| t.rows.last_mut()) {
                    row.push(Vec::new());
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                self.flush();
                self.blank();
            }
            TagEnd::Heading(level) => {
                self.pop_style();
                if level == HeadingLevel::H1 {
                    self.pop_style();
                }
                self.flush();
                self.blank();
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.quote_depth = self.quote_depth.saturating_sub(1);
                self.pop_style();
                self.blank();
            }
            TagEnd::CodeBlock => {
                if let Some(block) = self.code.take() {
                    let label = if block.lang.is_empty() {
                        "code".to_string()
                    } else {
                        block.lang.clone()
                    };
                    self.lines.push(Line::from(Span::styled(
                        format!("╭─ {label}"),
                        self.theme.dim,
                    )));
                    let code = highlight_code(
                        &block.code,
                        &block.lang,
                        &self.theme.code_theme,
                        self.theme.inline_code,
                    );
                    for line in code {
                        let mut spans = vec![Span::styled("│ ", self.theme.dim)];
                        spans.extend(line.spans);
                        self.lines.push(Line::from(spans));
                    }
                    self.lines
                        .push(Line::from(Span::styled("╰─", self.theme.dim)));
                    self.blank();
                }
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                self.blank();
            }
            TagEnd::Item => self.flush(),
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => self.pop_style(),
            TagEnd::Link | TagEnd::Image => {
                self.pop_style();
                if let Some(url) = self.link.take() {
                    let shown: String = self.spans.iter().map(|s| s.content.as_ref()).collect();
                    if !shown.ends_with(&url) && !url.is_empty() {
                        self.spans
                            .push(Span::styled(format!(" ({url})"), self.theme.dim));
                    }
                }
            }
            TagEnd::TableHead => self.pop_style(),
            TagEnd::Table => {
                if let Some(table) = self.table.take() {
                    self.table_lines(table);
                    self.blank();
                }
            }
            _ => {}
        }
    }

    fn table_lines(&mut self, table: Table) {
        let width = |cell: &Vec<Span<'static>>| cell.iter().map(Span::width).sum::<usize>();
        let columns = table.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &table.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(width(cell));
            }
        }
        for (r, row) in table.rows.into_iter().enumerate() {
            let mut spans = Vec::new();
            for (i, cell) in row.into_iter().enumerate() {
                if i > 0 {
                    spans.push(Span::styled(" │ ", self.theme.dim));
                }
                let pad = widths[i].saturating_sub(width(&cell));
                spans.extend(cell);
                spans.push(Span::raw(" ".repeat(pad)));
            }
            self.lines.push(Line::from(spans));
            if r + 1 == table.header_rows {
                let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
                self.lines
                    .push(Line::from(Span::styled(rule.join("─┼─"), self.theme.dim)));
            }
        }
    }

    fn finish(mut self) -> Vec<Line<'static>> {
        if let Some(block) = self.code.take() {
            // An unterminated fence while streaming: show what arrived.
            self.code = Some(block);
            self.end(TagEnd::CodeBlock);
        }
        self.flush();
        while self.lines.last().is_some_and(|l| l.spans.is_empty()) {
            self.lines.pop();
        }
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tui::line_texts as texts;

    #[test]
    fn renders_headings_lists_quotes_and_links() {
        let theme = Theme::default();
        let md = "# Title\n\nSome *em* and **strong**.\n\n- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n[site](https://example.com)";
        let lines = render(md, &theme);
        let t = texts(&lines);
        assert_eq!(t[0], "# Title");
        assert!(t.contains(&"Some em and strong.".to_string()), "{t:?}");
        assert!(t.contains(&"• one".to_string()) && t.contains(&"• two".to_string()));
        assert!(t.contains(&"1. first".to_string()) && t.contains(&"2. second".to_string()));
        assert!(t.contains(&"│ quoted".to_string()));
        assert!(
            t.contains(&"site (https://example.com)".to_string()),
            "{t:?}"
        );
        let strong = lines
            .iter()
            .flat_map(|l| &l.spans)
            .find(|s| s.content == "strong")
            .unwrap();
        assert!(strong.style.add_modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn renders_tables_aligned() {
        let lines = render("| a | bb |\n|---|---|\n| ccc | d |\n", &Theme::default());
        let t = texts(&lines);
        assert_eq!(t[0], "a   │ bb");
        assert_eq!(t[1], "────┼───");
        assert_eq!(t[2], "ccc │ d ");
    }

    #[test]
    fn code_blocks_are_framed_highlighted_and_listed() {
        let md = "text\n\n```rust\nfn main() {}\n```\n";
        let lines = render(md, &Theme::default());
        let t = texts(&lines);
        assert!(t.contains(&"╭─ rust".to_string()));
        assert!(t.contains(&"│ fn main() {}".to_string()));
        assert_eq!(
            code_blocks(md),
            vec![CodeBlock {
                lang: "rust".into(),
                code: "fn main() {}\n".into()
            }]
        );
    }

    #[test]
    fn an_open_fence_while_streaming_still_shows_the_code() {
        let t = texts(&render("```py\nprint(1)\n", &Theme::default()));
        assert!(t.contains(&"│ print(1)".to_string()), "{t:?}");
    }

    #[test]
    fn settled_prefix_stops_at_blocks_and_skips_open_fences() {
        assert_eq!(settled_prefix_len("para one\n\n"), 0);
        assert_eq!(settled_prefix_len("para one\n\n  indented"), 0);
        assert_eq!(settled_prefix_len("para one\n\npara two"), 10);
        let text = "para one\n\npara two\n\nthree";
        let settled = settled_prefix_len(text);
        assert_eq!(&text[..settled], "para one\n\npara two\n\n");
        let fenced = "intro\n\n```\ncode\n\nmore\n";
        assert_eq!(&fenced[..settled_prefix_len(fenced)], "");
        let closed = "intro\n\n```\ncode\n\nmore\n```\nafter";
        assert_eq!(
            &closed[..settled_prefix_len(closed)],
            "intro\n\n```\ncode\n\nmore\n```\n"
        );
    }

    #[test]
    fn rendering_in_settled_pieces_matches_rendering_whole() {
        let theme = Theme::default();
        let text = "# H\n\npara *x*\n\n- a\n- b\n\n```rust\nlet x = 1;\n```\nend\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nlast";
        let settled = settled_prefix_len(text);
        assert!(settled > 0);
        let mut pieces = render(&text[..settled], &theme);
        pieces.push(Line::default());
        pieces.extend(render(&text[settled..], &theme));
        assert_eq!(texts(&pieces), texts(&render(text, &theme)));
    }
}
