//! Pages as gpt-oss's browser tool shows them: text with link markers `【id†text†domain】`,
//! wrapped at 80 columns, shown as `L{n}: ` numbered lines under a `[cursor] title (url)`
//! header (the openai/gpt-oss reference `SimpleBrowserTool` layout).

use std::collections::BTreeMap;

use html2text::render::RichAnnotation;

/// Lines are wrapped to this width, as the reference does.
pub const WRAP_COLUMNS: usize = 80;
/// Lines of context a `find` match shows.
const FIND_CONTEXT_LINES: usize = 4;
/// The most `find` matches listed.
const FIND_MAX_MATCHES: usize = 50;

/// One page in a chat's browsing history.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Empty for a search results page.
    pub url: String,
    pub title: String,
    /// The text, wrapped, with link markers.
    pub lines: Vec<String>,
    /// Link id → absolute URL.
    pub links: BTreeMap<usize, String>,
    /// Search and find pages list results; `find` does not run on them.
    pub is_listing: bool,
}

impl Page {
    /// A page from text that already carries link markers.
    pub fn from_text(
        url: &str,
        title: &str,
        text: &str,
        links: BTreeMap<usize, String>,
        is_listing: bool,
    ) -> Self {
        Self {
            url: url.to_string(),
            title: title.to_string(),
            lines: wrap_lines(text),
            links,
            is_listing,
        }
    }

    /// `[cursor] title (url)`, the scrollbar, and lines `loc..` within `max_chars`
    /// (or exactly `num_lines` when given).
    pub fn display(
        &self,
        cursor: usize,
        loc: usize,
        num_lines: Option<usize>,
        max_chars: usize,
    ) -> Result<String, String> {
        let total = self.lines.len();
        if loc >= total.max(1) {
            return Err(format!(
                "Invalid location parameter: `{loc}`. Cannot exceed page maximum of {}.",
                total.saturating_sub(1)
            ));
        }
        let mut body = Vec::new();
        let mut used = 0;
        for (index, line) in self.lines.iter().enumerate().skip(loc) {
            let numbered = format!("L{index}: {line}");
            let full = match num_lines {
                Some(n) => body.len() >= n,
                None => !body.is_empty() && used + numbered.len() + 1 > max_chars,
            };
            if full {
                break;
            }
            used += numbered.len() + 1;
            body.push(numbered);
        }
        let end = loc + body.len().max(1) - 1;
        let mut header = format!("[{cursor}] {}", self.title);
        if !self.url.is_empty() {
            header.push_str(&format!(" ({})", self.url));
        }
        Ok(format!(
            "{header}\n**viewing lines [{loc} - {end}] of {}**\n\n{}",
            total.saturating_sub(1),
            body.join("\n")
        ))
    }

    /// The page listing where `pattern` (case-insensitive) occurs, each match a link
    /// `# 【n†match at Lk】` with the lines that follow.
    pub fn find(&self, pattern: &str) -> Page {
        let pattern = pattern.to_lowercase();
        let plain: Vec<String> = self.lines.iter().map(|l| strip_links(l)).collect();
        let mut chunks = Vec::new();
        let mut links = BTreeMap::new();
        let mut index = 0;
        while index < plain.len() && chunks.len() < FIND_MAX_MATCHES {
            if !plain[index].to_lowercase().contains(&pattern) {
                index += 1;
                continue;
            }
            let end = (index + FIND_CONTEXT_LINES).min(plain.len());
            links.insert(chunks.len(), self.url.clone());
            chunks.push(format!(
                "# 【{}†match at L{index}】\n{}",
                chunks.len(),
                plain[index..end].join("\n")
            ));
            index += FIND_CONTEXT_LINES;
        }
        let text = if chunks.is_empty() {
            format!("No `find` results for pattern: `{pattern}`")
        } else {
            chunks.join("\n\n")
        };
        Page::from_text(
            &format!("{}/find?pattern={}", self.url, url_escape(&pattern)),
            &format!("Find results for text: `{pattern}` in `{}`", self.title),
            &text,
            links,
            true,
        )
    }
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Link markers out, their text kept: `【3†Rust†rust-lang.org】` → `Rust`.
pub fn strip_links(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('【') {
        out.push_str(&rest[..start]);
        let after = &rest[start + '【'.len_utf8()..];
        match after.find('】') {
            Some(end) => {
                let inner = &after[..end];
                out.push_str(inner.split('†').nth(1).unwrap_or(inner));
                rest = &after[end + '】'.len_utf8()..];
            }
            None => {
                out.push_str(after);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The host part of a URL (shown in link markers).
pub fn domain(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// Wraps each line at [`WRAP_COLUMNS`] on spaces (a word longer than a line is cut).
pub fn wrap_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let mut current = String::new();
        let mut width = 0;
        for word in line.split_inclusive(' ') {
            let word_width = word.chars().count();
            if width + word_width > WRAP_COLUMNS && width > 0 {
                out.push(std::mem::take(&mut current));
                width = 0;
            }
            for c in word.chars() {
                if width == WRAP_COLUMNS {
                    out.push(std::mem::take(&mut current));
                    width = 0;
                }
                current.push(c);
                width += 1;
            }
        }
        out.push(current);
    }
    out
}

/// HTML as text with numbered link markers; relative links resolved against `base`.
pub fn html_to_page(html: &[u8], base: &str) -> Result<Page, String> {
    let lines = html2text::config::rich()
        .allow_width_overflow()
        .lines_from_read(html, 1000)
        .map_err(|e| format!("cannot read the HTML: {e}"))?;
    let base_url = url::Url::parse(base).ok();
    let mut links = BTreeMap::new();
    let mut text = String::new();
    for line in &lines {
        let mut current_link: Option<String> = None;
        let mut link_text = String::new();
        for piece in line.tagged_strings() {
            let target = piece.tag.iter().find_map(|a| match a {
                RichAnnotation::Link(target) => Some(target.clone()),
                _ => None,
            });
            if target != current_link {
                flush_link(
                    &mut text,
                    &mut links,
                    current_link.take(),
                    &mut link_text,
                    &base_url,
                );
                current_link = target;
            }
            if current_link.is_some() {
                link_text.push_str(&piece.s);
            } else {
                text.push_str(&piece.s);
            }
        }
        flush_link(
            &mut text,
            &mut links,
            current_link,
            &mut link_text,
            &base_url,
        );
        text.push('\n');
    }
    let title = html_title(html).unwrap_or_else(|| domain(base));
    Ok(Page::from_text(base, &title, text.trim_end(), links, false))
}

fn flush_link(
    text: &mut String,
    links: &mut BTreeMap<usize, String>,
    target: Option<String>,
    link_text: &mut String,
    base: &Option<url::Url>,
) {
    let Some(target) = target else {
        return;
    };
    let label = std::mem::take(link_text);
    let absolute = match base {
        Some(base) => base.join(&target).map(|u| u.to_string()).unwrap_or(target),
        None => target,
    };
    if !absolute.starts_with("http://") && !absolute.starts_with("https://") {
        // mailto:, javascript:, fragments: nothing the browser can open.
        text.push_str(&label);
        return;
    }
    let id = links.len();
    let label = label.trim().replace(['†', '【', '】'], " ");
    text.push_str(&format!("【{id}†{label}†{}】", domain(&absolute)));
    links.insert(id, absolute);
}

/// The document's `<title>`, whitespace collapsed.
fn html_title(html: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(html);
    let lower = text.to_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let title = text[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_become_numbered_markers_with_their_domain() {
        let html = b"<html><head><title>Home  page</title></head><body><p>See <a href=\"/docs\">the docs</a> or <a href=\"mailto:x@y\">mail</a>.</p></body></html>";
        let page = html_to_page(html, "http://127.0.0.1:8000/index.html").expect("html");
        assert_eq!(page.title, "Home page");
        assert_eq!(page.lines, ["See 【0†the docs†127.0.0.1】 or mail."]);
        assert_eq!(page.links[&0], "http://127.0.0.1:8000/docs");
    }

    #[test]
    fn the_display_numbers_lines_under_a_cursor_header() {
        let page = Page::from_text("http://a/", "A", "one\ntwo\nthree", BTreeMap::new(), false);
        assert_eq!(
            page.display(2, 1, None, 1000),
            Ok("[2] A (http://a/)\n**viewing lines [1 - 2] of 2**\n\nL1: two\nL2: three".into())
        );
        assert_eq!(
            page.display(2, 9, None, 1000),
            Err("Invalid location parameter: `9`. Cannot exceed page maximum of 2.".into())
        );
    }

    #[test]
    fn long_lines_wrap_at_80_columns() {
        let line = "word ".repeat(30);
        let lines = wrap_lines(line.trim_end());
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.chars().count() <= WRAP_COLUMNS));
    }

    #[test]
    fn strip_links_keeps_the_link_text() {
        assert_eq!(strip_links("a 【3†Rust†rust-lang.org】 b"), "a Rust b");
    }
}
