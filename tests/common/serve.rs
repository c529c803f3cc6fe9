//! `ossterm serve --demo` on 127.0.0.1 as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `ossterm serve --demo`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts it on a free port with `extra` arguments and reads its address line.
    pub fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ossterm"))
            .args(["serve", "--demo", "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts ossterm serve");
        let stdout = child.stdout.take().expect("stdout piped");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = line_tx.send(line);
        });
        let line = line_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the server prints its address within 2 minutes");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Self { child, base }
    }

    /// POSTs a JSON body; the status and the body, errors included.
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let result = ureq::post(&format!("{}{path}", self.base))
            .set("Content-Type", "application/json")
            .timeout(Duration::from_secs(120))
            .send_string(body);
        read(result)
    }

    /// GETs; the status and the body, errors included.
    pub fn get(&self, path: &str) -> (u16, String) {
        read(
            ureq::get(&format!("{}{path}", self.base))
                .timeout(Duration::from_secs(30))
                .call(),
        )
    }
}

/// The status and body of a response or an HTTP error; a transport error panics.
pub fn read(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match result {
        Ok(response) => (response.status(), response.into_string().expect("body")),
        Err(ureq::Error::Status(code, response)) => (code, response.into_string().expect("body")),
        Err(other) => panic!("transport error: {other}"),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
