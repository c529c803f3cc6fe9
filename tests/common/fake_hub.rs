//! A tiny Hugging Face hub on 127.0.0.1 for tests: the endpoints hf-hub 0.4.3's sync API calls
//! (`/api/models/{id}/revision/{rev}` and `/{id}/resolve/{rev}/{file}` with `Range`), serving
//! the tiny-a-int4 fixture as repo `org/tiny`. It can cut a download halfway, lie about a
//! size, refuse a gated repo, and records every request.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The repo the fake hub serves.
pub const REPO: &str = "org/tiny";
/// A repo that answers 401 unless the right token is sent.
pub const GATED: &str = "org/gated";
/// The token `GATED` accepts.
pub const TOKEN: &str = "hf_test_token";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

/// The running server.
pub struct FakeHub {
    pub endpoint: String,
    pub files: Arc<BTreeMap<String, Vec<u8>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Cut the next body of model.safetensors halfway (then clear).
    pub cut_next: Arc<AtomicBool>,
    /// Announce a larger size for tokenizer.json than is served.
    pub lie_about_size: Arc<AtomicBool>,
    /// Send half the next body of model.safetensors, then nothing for 10 s (then clear).
    pub stall_next: Arc<AtomicBool>,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-a-int4/"
    );
    std::fs::read(format!("{path}{name}")).expect("fixture readable")
}

impl FakeHub {
    /// Starts serving on a free port of 127.0.0.1 (the thread lives as long as the test).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let files: BTreeMap<String, Vec<u8>> = [
            "config.json",
            "generation_config.json",
            "tokenizer.json",
            "model.safetensors",
        ]
        .iter()
        .map(|name| (name.to_string(), fixture(name)))
        .collect();
        let hub = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            files: Arc::new(files),
            seen: Arc::default(),
            cut_next: Arc::default(),
            lie_about_size: Arc::default(),
            stall_next: Arc::default(),
        };
        let faults = Faults {
            cut: hub.cut_next.clone(),
            lie: hub.lie_about_size.clone(),
            stall: hub.stall_next.clone(),
        };
        let (files, seen) = (hub.files.clone(), hub.seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (files, seen, faults) = (files.clone(), seen.clone(), faults.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &files, &seen, &faults);
                });
            }
        });
        hub
    }

    /// Requests for `file` seen so far.
    pub fn requests_for(&self, file: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.path.ends_with(&format!("/{file}")))
            .cloned()
            .collect()
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// The faults the next requests meet, as the test armed them.
#[derive(Clone)]
struct Faults {
    cut: Arc<AtomicBool>,
    lie: Arc<AtomicBool>,
    stall: Arc<AtomicBool>,
}

fn serve(
    stream: TcpStream,
    files: &BTreeMap<String, Vec<u8>>,
    seen: &Mutex<Vec<Seen>>,
    faults: &Faults,
) -> std::io::Result<()> {
    let (cut, lie) = (&faults.cut, &faults.lie);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "range" => range = Some(value.trim().to_string()),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    seen.lock().expect("lock").push(Seen {
        path: path.clone(),
        range: range.clone(),
        authorization: authorization.clone(),
    });
    let mut out = stream;
    let gated_ok = authorization.as_deref() == Some(&format!("Bearer {TOKEN}"));
    if path.contains(GATED) && !gated_ok {
        return respond(&mut out, "401 Unauthorized", &[], b"gated");
    }
    for repo in [REPO, GATED] {
        if path == format!("/api/models/{repo}/revision/main") {
            let siblings: Vec<_> = files
                .keys()
                .map(|f| serde_json::json!({ "rfilename": f }))
                .collect();
            let body = serde_json::json!({ "sha": COMMIT, "siblings": siblings }).to_string();
            return respond(&mut out, "200 OK", &[], body.as_bytes());
        }
        let prefix = format!("/{repo}/resolve/main/");
        let Some(name) = path.strip_prefix(&prefix) else {
            continue;
        };
        let Some(data) = files.get(name) else {
            return respond(&mut out, "404 Not Found", &[], b"no such file");
        };
        let announced = if name == "tokenizer.json" && lie.load(Ordering::SeqCst) {
            data.len() + 1000
        } else {
            data.len()
        };
        let start: usize = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let end = if range.as_deref() == Some("bytes=0-0") {
            1
        } else {
            data.len()
        };
        let etag = format!("\"etag-{name}-{}\"", data.len());
        let content_range = format!("bytes {start}-{}/{announced}", end.max(1) - 1);
        let headers = [
            ("ETag", etag.as_str()),
            ("X-Repo-Commit", COMMIT),
            ("Content-Range", content_range.as_str()),
        ];
        let body = &data[start.min(end)..end];
        if name == "model.safetensors" && end > 1 && faults.stall.swap(false, Ordering::SeqCst) {
            // Promise the whole body, send half, then go quiet with the connection open.
            write_head(&mut out, "206 Partial Content", &headers, body.len())?;
            out.write_all(&body[..body.len() / 2])?;
            out.flush()?;
            std::thread::sleep(Duration::from_secs(10));
            return out.shutdown(std::net::Shutdown::Both);
        }
        if name == "model.safetensors" && end > 1 && cut.swap(false, Ordering::SeqCst) {
            // Promise the whole body, send half, hang up.
            write_head(&mut out, "206 Partial Content", &headers, body.len())?;
            out.write_all(&body[..body.len() / 2])?;
            out.flush()?;
            return out.shutdown(std::net::Shutdown::Both);
        }
        if name == "model.safetensors" && end > 1 {
            // Slow enough that progress is reported more than once.
            write_head(&mut out, "206 Partial Content", &headers, body.len())?;
            for chunk in body.chunks(64 * 1024) {
                out.write_all(chunk)?;
                std::thread::sleep(Duration::from_millis(15));
            }
            return out.flush();
        }
        return respond(&mut out, "206 Partial Content", &headers, body);
    }
    respond(&mut out, "404 Not Found", &[], b"unknown path")
}

fn write_head(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    length: usize,
) -> std::io::Result<()> {
    let mut head =
        format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    write_head(out, status, headers, body.len())?;
    out.write_all(body)?;
    out.flush()
}
