//! The browser tool through the tool host, against a fake SearXNG and pages on 127.0.0.1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ossterm::tools::host;
use ossterm::tools::settings::BrowserSettings;
use ossterm::tools::{ToolCall, ToolCommand, ToolEvent, ToolHostHandle, ToolResult, ToolSettings};

/// path (without query) → (status line, content type, body).
type Routes = BTreeMap<String, (&'static str, &'static str, Vec<u8>)>;

/// Serves `routes` on 127.0.0.1; returns the base URL.
fn serve(routes: Routes) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let routes = Arc::clone(&routes);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let target = request_line.split_whitespace().nth(1).unwrap_or("/");
                let path = target.split('?').next().unwrap_or("/");
                let (status, mime, body) = routes.get(path).cloned().unwrap_or((
                    "404 Not Found",
                    "text/html",
                    b"<h1>no</h1>".to_vec(),
                ));
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    base
}

fn site() -> String {
    let mut routes = Routes::new();
    routes.insert(
        "/index.html".into(),
        (
            "200 OK",
            "text/html; charset=utf-8",
            b"<html><head><title>Ferris facts</title></head><body>\
              <h1>Ferris</h1><p>Ferris is the <b>crab</b> mascot of Rust.</p>\
              <p>Read <a href=\"/more.html\">more facts</a>.</p>\
              <p>Crabs walk sideways.</p></body></html>"
                .to_vec(),
        ),
    );
    routes.insert(
        "/more.html".into(),
        (
            "200 OK",
            "text/html",
            b"<html><head><title>More</title></head><body><p>Ferris has no official gender.</p></body></html>".to_vec(),
        ),
    );
    routes.insert(
        "/big.html".into(),
        ("200 OK", "text/html", vec![b'a'; 20_000]),
    );
    routes.insert(
        "/logo.png".into(),
        ("200 OK", "image/png", b"\x89PNG\r\n\x1a\n\0\0\0".to_vec()),
    );
    let base = serve(routes);
    // SearXNG's JSON API, pointing at the pages above.
    let search = serde_json::json!({
        "query": "ferris",
        "results": [
            {"url": format!("{base}/index.html"), "title": "Ferris facts", "content": "All about the crab."},
            {"url": format!("{base}/more.html"), "title": "More", "content": "Even more."}
        ]
    });
    let mut searx = Routes::new();
    searx.insert(
        "/search".into(),
        (
            "200 OK",
            "application/json",
            search.to_string().into_bytes(),
        ),
    );
    let searx_base = serve(searx);
    format!("{searx_base}|{base}")
}

fn start() -> (ToolHostHandle, String) {
    let both = site();
    let (searx, pages) = both.split_once('|').expect("two bases");
    let settings = ToolSettings {
        browser: BrowserSettings {
            searxng_url: Some(format!("{searx}/")),
            timeout: Duration::from_secs(5),
            page_bytes: 10_000,
            ..BrowserSettings::default()
        },
        ..ToolSettings::default()
    };
    let host = host::spawn(&settings).expect("tool host starts");
    (host, pages.to_string())
}

fn call(host: &ToolHostHandle, id: u64, function: &str, arguments: &str) -> ToolResult {
    host.commands
        .send(ToolCommand::Run {
            chat_id: "chat".into(),
            call: ToolCall {
                id,
                recipient: format!("browser.{function}"),
                channel: "analysis".into(),
                content_type: Some("code".into()),
                arguments: arguments.into(),
            },
        })
        .expect("host is running");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match host
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(ToolEvent::Finished(result)) if result.call_id == id => return result,
            Ok(_) => {}
            Err(error) => panic!("no result for call {id}: {error}"),
        }
    }
}

/// Asserts `result` contains `needle` (at its start when `at_start`).
fn expect_text(result: &ToolResult, needle: &str, at_start: bool) {
    let found = if at_start {
        result.text.starts_with(needle)
    } else {
        result.text.contains(needle)
    };
    assert!(found, "expected {needle:?} in:\n{}", result.text);
}

#[test]
fn the_browser_is_off_until_a_search_backend_is_configured() {
    let host = host::spawn(&ToolSettings::default()).expect("tool host starts");
    let Ok(ToolEvent::Tools(catalog)) = host.events.recv_timeout(Duration::from_secs(10)) else {
        panic!("the first event is the catalog");
    };
    assert!(catalog.builtin.is_empty());
    assert!(catalog.entries.is_empty());
}

#[test]
fn search_then_open_a_result_by_id_then_find() {
    let (host, base) = start();
    let search = call(&host, 1, "search", r#"{"query": "ferris", "topn": 10}"#);
    assert_eq!(search.author, "browser.search");
    assert_eq!(
        search.text,
        "[0] ferris\n**viewing lines [0 - 4] of 4**\n\n\
         L0: # 【0†Ferris facts†127.0.0.1】\n\
         L1: All about the crab.\n\
         L2: \n\
         L3: # 【1†More†127.0.0.1】\n\
         L4: Even more."
    );
    let open = call(&host, 2, "open", r#"{"id": 0}"#);
    expect_text(
        &open,
        &format!("[1] Ferris facts ({base}/index.html)\n**viewing lines [0 - "),
        true,
    );
    expect_text(&open, "Ferris is the crab mascot of Rust.", false);
    expect_text(&open, "Read 【0†more facts†127.0.0.1】.", false);
    // A link on the opened page, then back to cursor 1 by number.
    let more = call(&host, 3, "open", r#"{"id": 0}"#);
    expect_text(&more, "[2] More (", true);
    let find = call(&host, 4, "find", r#"{"pattern": "SIDEWAYS", "cursor": 1}"#);
    expect_text(
        &find,
        "[3] Find results for text: `sideways` in `Ferris facts`",
        true,
    );
    expect_text(&find, "# 【0†match at L", false);
    expect_text(&find, "Crabs walk sideways.", false);
    let none = call(&host, 5, "find", r#"{"pattern": "lobster", "cursor": 1}"#);
    expect_text(&none, "No `find` results for pattern: `lobster`", false);
    let bad_link = call(&host, 6, "open", r#"{"id": 7, "cursor": 0}"#);
    assert_eq!(bad_link.text, "[ERROR] Invalid link id `7`.");
}

#[test]
fn a_page_over_the_size_limit_is_refused() {
    let (host, base) = start();
    let result = call(&host, 1, "open", &format!(r#"{{"id": "{base}/big.html"}}"#));
    assert!(result.is_error);
    assert_eq!(
        result.text,
        format!(
            "[ERROR] Error fetching URL `{base}/big.html`: the page is 20000 bytes, over the 10000-byte limit"
        )
    );
}

#[test]
fn a_binary_page_is_described_not_shown() {
    let (host, base) = start();
    let result = call(&host, 1, "open", &format!(r#"{{"id": "{base}/logo.png"}}"#));
    assert_eq!(
        result.text,
        format!(
            "[ERROR] Error fetching URL `{base}/logo.png`: not a text page (content type image/png, 11 bytes)"
        )
    );
}

#[test]
fn a_missing_page_says_404() {
    let (host, base) = start();
    let result = call(
        &host,
        1,
        "open",
        &format!(r#"{{"id": "{base}/gone.html"}}"#),
    );
    assert_eq!(
        result.text,
        format!("[ERROR] Error fetching URL `{base}/gone.html`: HTTP 404 Not Found")
    );
}

#[test]
fn bad_calls_get_the_reference_tool_errors() {
    let (host, _) = start();
    assert_eq!(
        call(&host, 1, "find", r#"{"pattern": "x"}"#).text,
        "[ERROR] No pages to access!"
    );
    assert_eq!(
        call(&host, 2, "scroll", "{}").text,
        "[ERROR] Unknown function: scroll"
    );
    assert_eq!(
        call(&host, 3, "open", r#"{"id": "file:///etc/passwd"}"#).text,
        "[ERROR] `file:///etc/passwd` is not an http(s) URL"
    );
}
