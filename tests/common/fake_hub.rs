//! A tiny Hugging Face hub on 127.0.0.1 for tests: the repo-info endpoint
//! (`/api/models/{id}/revision/{rev}`) and `/{id}/resolve/{rev}/{file}` with `Range`, serving
//! the tiny-a-int4 fixture as repo `org/tiny` at revision `main` and at its commit. Like the
//! real hub it sends `X-Linked-Etag` (the sha256) for model.safetensors. It can cut a download
//! halfway, stall, lie about a size, corrupt a resumed body, redirect in a loop, send hostile
//! ETag and commit values, refuse a gated repo, and records every request.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ossterm::hub::{self, DownloadProgress, HubError, HubOptions};

/// The repo the fake hub serves.
pub const REPO: &str = "org/tiny";
/// A repo that answers 401 unless the right token is sent.
pub const GATED: &str = "org/gated";
/// The token `GATED` accepts.
pub const TOKEN: &str = "hf_test_token";
/// The commit every revision points at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// How long the server stays quiet when told to stall.
pub const STALL: Duration = Duration::from_secs(10);
/// Redirects the loop fault sends before it gives up (a client without a cap makes them all).
pub const LOOP_LIMIT: usize = 1000;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

/// What the next requests meet, as the test arms it.
#[derive(Default)]
pub struct Faults {
    /// Cut the next body of model.safetensors halfway (then clear).
    pub cut_next: AtomicBool,
    /// Announce a larger size for tokenizer.json than is served.
    pub lie_about_size: AtomicBool,
    /// Send half the next body of model.safetensors, then nothing for [`STALL`] (then clear).
    pub stall_next: AtomicBool,
    /// Send the repo info's headers, then nothing for [`STALL`].
    pub stall_info: AtomicBool,
    /// Answer every file request with a redirect to itself.
    pub redirect_loop: AtomicBool,
    /// Send wrong bytes when model.safetensors is resumed (a `Range` not from 0).
    pub corrupt_resume: AtomicBool,
    /// Send this as every file's `X-Repo-Commit` instead of the commit.
    pub commit_header: Mutex<Option<String>>,
    /// Send this as the repo info's `sha` instead of the commit.
    pub info_sha: Mutex<Option<String>>,
    /// Send this as every file's `ETag` (and `X-Linked-Etag`) instead of the real one.
    pub etag: Mutex<Option<String>>,
    /// Answer file requests with the file's headers and a redirect to `{this}/{file}`, as
    /// the hub sends large files to its CDN.
    pub redirect_files_to: Mutex<Option<String>>,
}

/// The running server.
pub struct FakeHub {
    pub endpoint: String,
    pub files: Arc<BTreeMap<String, Vec<u8>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub faults: Arc<Faults>,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-a-int4/");
    std::fs::read(format!("{path}{name}")).expect("fixture readable")
}

/// The sha256 of `data` in lowercase hex, as the hub sends it in `X-Linked-Etag`.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
            faults: Arc::default(),
        };
        let (files, seen, faults) = (hub.files.clone(), hub.seen.clone(), hub.faults.clone());
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

    /// Arms a fault that is a flag.
    pub fn arm(&self, fault: impl Fn(&Faults) -> &AtomicBool, on: bool) {
        fault(&self.faults).store(on, Ordering::SeqCst);
    }

    /// Sets (or clears) a fault that is a value.
    pub fn set(&self, fault: impl Fn(&Faults) -> &Mutex<Option<String>>, value: Option<&str>) {
        *fault(&self.faults).lock().expect("lock") = value.map(str::to_string);
    }
}

/// Hub options for `endpoint` with a cache in `cache` and the default timeout.
pub fn options(endpoint: &str, cache: &tempfile::TempDir) -> HubOptions {
    HubOptions {
        endpoint: endpoint.to_string(),
        cache_dir: cache.path().join("hub"),
        offline: false,
        token: None,
        stall_timeout: hub::STALL_TIMEOUT,
        cancel: hub::Cancel::new(),
    }
}

/// Resolves `model` (revision main), with every progress report.
pub fn resolve(
    options: &HubOptions,
    model: &str,
) -> (Result<PathBuf, HubError>, Vec<DownloadProgress>) {
    let mut reports = Vec::new();
    let result = hub::resolve_with(options, model, None, &mut |p| reports.push(p));
    (result, reports)
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn value(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().expect("lock").clone()
}

fn serve(
    stream: TcpStream,
    files: &BTreeMap<String, Vec<u8>>,
    seen: &Mutex<Vec<Seen>>,
    faults: &Faults,
) -> std::io::Result<()> {
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
    let earlier_requests = {
        let mut seen = seen.lock().expect("lock");
        seen.push(Seen {
            path: path.clone(),
            range: range.clone(),
            authorization: authorization.clone(),
        });
        seen.len() - 1
    };
    let mut out = stream;
    let gated_ok = authorization.as_deref() == Some(&format!("Bearer {TOKEN}"));
    if path.contains(GATED) && !gated_ok {
        return respond(&mut out, "401 Unauthorized", &[], b"gated");
    }
    for repo in [REPO, GATED] {
        for revision in ["main", COMMIT] {
            if path == format!("/api/models/{repo}/revision/{revision}") {
                let siblings: Vec<_> = files
                    .keys()
                    .map(|f| serde_json::json!({ "rfilename": f }))
                    .collect();
                let sha = value(&faults.info_sha).unwrap_or_else(|| COMMIT.to_string());
                let body = serde_json::json!({ "sha": sha, "siblings": siblings }).to_string();
                if faults.stall_info.load(Ordering::SeqCst) {
                    // Headers, then silence with the connection open.
                    write_head(&mut out, "200 OK", &[], body.len())?;
                    out.flush()?;
                    std::thread::sleep(STALL);
                    return out.shutdown(std::net::Shutdown::Both);
                }
                return respond(&mut out, "200 OK", &[], body.as_bytes());
            }
            let prefix = format!("/{repo}/resolve/{revision}/");
            let Some(name) = path.strip_prefix(&prefix) else {
                continue;
            };
            if faults.redirect_loop.load(Ordering::SeqCst) && earlier_requests < LOOP_LIMIT {
                return respond(&mut out, "302 Found", &[("Location", &path)], b"");
            }
            let Some(data) = files.get(name) else {
                return respond(&mut out, "404 Not Found", &[], b"no such file");
            };
            return serve_file(&mut out, name, data, range.as_deref(), faults);
        }
    }
    respond(&mut out, "404 Not Found", &[], b"unknown path")
}

fn serve_file(
    out: &mut TcpStream,
    name: &str,
    data: &[u8],
    range: Option<&str>,
    faults: &Faults,
) -> std::io::Result<()> {
    let announced = if name == "tokenizer.json" && faults.lie_about_size.load(Ordering::SeqCst) {
        data.len() + 1000
    } else {
        data.len()
    };
    let start: usize = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = if range == Some("bytes=0-0") {
        1
    } else {
        data.len()
    };
    let weights = name == "model.safetensors";
    let real_etag = if weights {
        sha256_hex(data)
    } else {
        format!("etag-{name}-{}", data.len())
    };
    let etag = format!(
        "\"{}\"",
        value(&faults.etag).unwrap_or_else(|| real_etag.clone())
    );
    let commit = value(&faults.commit_header).unwrap_or_else(|| COMMIT.to_string());
    let content_range = format!("bytes {start}-{}/{announced}", end.max(1) - 1);
    let mut headers = vec![
        ("ETag", etag.as_str()),
        ("X-Repo-Commit", commit.as_str()),
        ("Content-Range", content_range.as_str()),
    ];
    if weights {
        // Large files are LFS on the hub: the linked ETag is the sha256.
        headers.push(("X-Linked-Etag", etag.as_str()));
    }
    let location;
    if let Some(base) = value(&faults.redirect_files_to) {
        location = format!("{base}/{name}");
        headers.push(("Location", location.as_str()));
        return respond(out, "302 Found", &headers, b"");
    }
    let body = &data[start.min(end)..end];
    if !weights || end <= 1 {
        return respond(out, "206 Partial Content", &headers, body);
    }
    if faults.stall_next.swap(false, Ordering::SeqCst) {
        // Promise the whole body, send half, then go quiet with the connection open.
        write_head(out, "206 Partial Content", &headers, body.len())?;
        out.write_all(&body[..body.len() / 2])?;
        out.flush()?;
        std::thread::sleep(STALL);
        return out.shutdown(std::net::Shutdown::Both);
    }
    if faults.cut_next.swap(false, Ordering::SeqCst) {
        // Promise the whole body, send half, hang up.
        write_head(out, "206 Partial Content", &headers, body.len())?;
        out.write_all(&body[..body.len() / 2])?;
        out.flush()?;
        return out.shutdown(std::net::Shutdown::Both);
    }
    let corrupted: Vec<u8>;
    let body = if start > 0 && faults.corrupt_resume.load(Ordering::SeqCst) {
        corrupted = body.iter().map(|b| b ^ 0x5a).collect();
        &corrupted[..]
    } else {
        body
    };
    // Slow enough that progress is reported more than once.
    write_head(out, "206 Partial Content", &headers, body.len())?;
    for chunk in body.chunks(64 * 1024) {
        out.write_all(chunk)?;
        std::thread::sleep(Duration::from_millis(15));
    }
    out.flush()
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
