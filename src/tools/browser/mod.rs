//! The browser tool (`browser.search`, `browser.open`, `browser.find`), with the page layout
//! gpt-oss was trained on (see [`page`]). Off until `[browser] searxng_url` is set; search
//! goes through SearXNG's JSON API, pages are fetched with ureq (timeouts, size cap).

pub mod page;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::harmony::ToolNamespaceConfig;
use crate::tools::host::ToolAnswer;
use crate::tools::settings::BrowserSettings;

pub use page::Page;

/// The namespace the model calls (`browser.search` …).
pub const NAMESPACE: &str = "browser";
/// Text shown per `open`/`search` when the model gives no `num_lines` (the reference
/// shows about 1024 tokens).
const VIEW_CHARS: usize = 4000;
/// Search results kept.
const MAX_SEARCH_RESULTS: usize = 10;

/// A chat's browsing history: cursors index it.
type History = Arc<Mutex<Vec<Page>>>;

/// The browser tool.
#[derive(Debug)]
pub struct BrowserTool {
    settings: BrowserSettings,
    agent: ureq::Agent,
    chats: Mutex<HashMap<String, History>>,
}

impl BrowserTool {
    /// The tool for these settings (`None` when no search backend is configured).
    pub fn new(settings: &BrowserSettings) -> Option<Self> {
        settings.enabled().then(|| Self {
            agent: ureq::AgentBuilder::new()
                .timeout(settings.timeout)
                .redirects(5)
                .user_agent(concat!("ossterm/", env!("CARGO_PKG_VERSION")))
                .build(),
            settings: settings.clone(),
            chats: Mutex::new(HashMap::new()),
        })
    }

    /// Where it fetches from, for the approval prompt.
    pub fn backend_label(&self) -> String {
        format!(
            "web pages and SearXNG at {}",
            self.settings.searxng_url.as_deref().unwrap_or("?")
        )
    }

    /// The `browser` namespace as the model sees it in the system message: openai_harmony's
    /// text and schemas, byte for byte (the model was trained on them; golden-checked in
    /// `harmony::builtin_tools`).
    pub fn namespace() -> ToolNamespaceConfig {
        ToolNamespaceConfig::browser()
    }

    /// Runs `function` (`search`, `open`, `find`) with the model's JSON arguments.
    /// A cancelled call's fetch runs to its timeout; the host drops its answer.
    pub fn run(&self, chat_id: &str, function: &str, arguments: &str) -> ToolAnswer {
        let arguments: Value = match arguments.trim() {
            "" => json!({}),
            text => match serde_json::from_str(text) {
                Ok(value @ Value::Object(_)) => value,
                Ok(_) | Err(_) => {
                    return ToolAnswer::error("Invalid function arguments: expected a JSON object");
                }
            },
        };
        let history = self.history(chat_id);
        let mut pages = match history.lock() {
            Ok(pages) => pages,
            Err(poisoned) => poisoned.into_inner(),
        };
        let outcome = match function {
            "search" => self.search(&mut pages, &arguments),
            "open" => self.open(&mut pages, &arguments),
            "find" => find(&mut pages, &arguments),
            other => Err(format!("Unknown function: {other}")),
        };
        match outcome {
            Ok(text) => ToolAnswer {
                text,
                is_error: false,
            },
            Err(why) => ToolAnswer::error(why),
        }
    }

    fn history(&self, chat_id: &str) -> History {
        let mut chats = match self.chats.lock() {
            Ok(chats) => chats,
            Err(poisoned) => poisoned.into_inner(),
        };
        chats.entry(chat_id.to_string()).or_default().clone()
    }

    fn search(&self, pages: &mut Vec<Page>, arguments: &Value) -> Result<String, String> {
        let query = arguments
            .get("query")
            .and_then(Value::as_str)
            .filter(|q| !q.trim().is_empty())
            .ok_or("`query` must be a non-empty string")?;
        let base = self
            .settings
            .searxng_url
            .as_deref()
            .ok_or("no search backend is configured")?;
        let mut url = url::Url::parse(base)
            .and_then(|u| u.join("search"))
            .map_err(|e| format!("the SearXNG URL `{base}` is not usable: {e}"))?;
        url.query_pairs_mut()
            .append_pair("q", query)
            .append_pair("format", "json");
        let body = self
            .fetch(url.as_str())
            .map_err(|e| format!("Error during search for `{query}`: {e}"))?;
        let parsed: Value = serde_json::from_slice(&body.bytes).map_err(|e| {
            format!("Error during search for `{query}`: SearXNG did not answer JSON ({e})")
        })?;
        let results = parsed
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                format!("Error during search for `{query}`: the SearXNG answer has no `results`")
            })?;
        let mut chunks = Vec::new();
        let mut links = BTreeMap::new();
        for result in results.iter().take(MAX_SEARCH_RESULTS) {
            let Some(target) = result.get("url").and_then(Value::as_str) else {
                continue;
            };
            let title = result
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or(target);
            let snippet = result.get("content").and_then(Value::as_str).unwrap_or("");
            let id = links.len();
            let title = title.replace(['†', '【', '】'], " ");
            chunks.push(format!(
                "# 【{id}†{title}†{}】\n{snippet}",
                page::domain(target)
            ));
            links.insert(id, target.to_string());
        }
        let text = if chunks.is_empty() {
            format!("No results for `{query}`")
        } else {
            chunks.join("\n\n")
        };
        pages.push(Page::from_text("", query, &text, links, true));
        self.show(pages, 0, None)
    }

    fn open(&self, pages: &mut Vec<Page>, arguments: &Value) -> Result<String, String> {
        let loc = non_negative(arguments, "loc")?;
        let num_lines = non_negative(arguments, "num_lines")?.filter(|n| *n > 0);
        let target = match arguments.get("id") {
            Some(Value::String(url)) => Some(url.clone()),
            None => None,
            Some(id) => match id.as_i64() {
                Some(id) if id < 0 => None,
                Some(id) => {
                    let page = page_at(pages, arguments)?;
                    let id = usize::try_from(id).unwrap_or(usize::MAX);
                    Some(
                        page.links
                            .get(&id)
                            .cloned()
                            .ok_or_else(|| format!("Invalid link id `{id}`."))?,
                    )
                }
                None => return Err(format!("`id` must be a number or a URL, not {id}")),
            },
        };
        match target {
            Some(url) => {
                let page = self.fetch_page(&url)?;
                pages.push(page);
                self.show(pages, loc.unwrap_or(0), num_lines)
            }
            None => {
                // Scroll: the page at `cursor` again, from `loc`.
                let page = page_at(pages, arguments)?.clone();
                pages.push(page);
                self.show(pages, loc.unwrap_or(0), num_lines)
            }
        }
    }

    fn show(
        &self,
        pages: &mut Vec<Page>,
        loc: usize,
        num_lines: Option<usize>,
    ) -> Result<String, String> {
        let cursor = pages.len().saturating_sub(1);
        let Some(page) = pages.last() else {
            return Err("No pages to access!".into());
        };
        let shown = page.display(
            cursor,
            loc,
            num_lines,
            VIEW_CHARS.min(self.settings.result_bytes),
        );
        if shown.is_err() {
            // As the reference: a page that cannot be shown is not kept.
            pages.pop();
        }
        shown
    }

    fn fetch_page(&self, url: &str) -> Result<Page, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}` is not an http(s) URL"));
        }
        let body = self
            .fetch(url)
            .map_err(|e| format!("Error fetching URL `{url}`: {e}"))?;
        let mime = body
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "text/html" | "application/xhtml+xml" => page::html_to_page(&body.bytes, url),
            "" | "text/plain" | "text/markdown" | "application/json" => {
                let text = String::from_utf8(body.bytes).map_err(|_| {
                    format!("Error fetching URL `{url}`: the page is not UTF-8 text")
                })?;
                Ok(Page::from_text(
                    url,
                    &page::domain(url),
                    &text,
                    BTreeMap::new(),
                    false,
                ))
            }
            other => Err(format!(
                "Error fetching URL `{url}`: not a text page (content type {other}, {} bytes)",
                body.bytes.len()
            )),
        }
    }

    /// GET `url`: the body (at most `page_bytes`) and its content type.
    fn fetch(&self, url: &str) -> Result<Body, String> {
        let response = match self.agent.get(url).call() {
            Ok(response) => response,
            Err(ureq::Error::Status(code, response)) => {
                return Err(format!("HTTP {code} {}", response.status_text()));
            }
            Err(error) => return Err(error.to_string()),
        };
        let limit = self.settings.page_bytes;
        if let Some(length) = response
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            && length > limit
        {
            return Err(format!(
                "the page is {length} bytes, over the {limit}-byte limit"
            ));
        }
        let content_type = response.content_type().to_string();
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading the page failed: {e}"))?;
        if bytes.len() > limit {
            return Err(format!("the page is over the {limit}-byte limit"));
        }
        Ok(Body {
            bytes,
            content_type,
        })
    }
}

struct Body {
    bytes: Vec<u8>,
    content_type: String,
}

/// `find` on the page at `cursor` (not on a search or find listing).
fn find(pages: &mut Vec<Page>, arguments: &Value) -> Result<String, String> {
    let pattern = arguments
        .get("pattern")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or("`pattern` must be a non-empty string")?;
    let page = page_at(pages, arguments)?;
    if page.is_listing {
        return Err("Cannot run `find` on search results page or find results page".into());
    }
    let found = page.find(pattern);
    pages.push(found);
    let cursor = pages.len() - 1;
    pages[cursor].display(cursor, 0, None, VIEW_CHARS)
}

/// The page at the arguments' `cursor` (the latest when absent or -1).
fn page_at<'a>(pages: &'a [Page], arguments: &Value) -> Result<&'a Page, String> {
    if pages.is_empty() {
        return Err("No pages to access!".into());
    }
    let last = pages.len() - 1;
    match arguments.get("cursor").map(|c| (c, c.as_i64())) {
        None | Some((_, Some(-1))) => Ok(&pages[last]),
        Some((_, Some(cursor))) if cursor >= 0 && (cursor as usize) <= last => {
            Ok(&pages[cursor as usize])
        }
        Some((_, Some(cursor))) => Err(format!(
            "Cursor `{cursor}` is out of range. Available cursor indices: [0 - {last}]."
        )),
        Some((value, None)) => Err(format!("`cursor` should be an integer, not {value}")),
    }
}

/// An optional whole-number argument; -1 (the reference's "unset") counts as absent.
fn non_negative(arguments: &Value, key: &str) -> Result<Option<usize>, String> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_i64() {
            Some(-1) => Ok(None),
            Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            _ => Err(format!("`{key}` must be a whole number, not {value}")),
        },
    }
}
