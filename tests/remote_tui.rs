//! End to end: `ossterm --remote http://127.0.0.1:PORT/v1` in tmux against `ossterm serve
//! --demo`: the model shows as ready on the remote server, a question fills the reasoning and
//! answer panes, and the metrics pane shows the server's KV-cache use read from its /metrics.
//!
//! Needs tmux (installed by .ci/run) and the demo model in assets/demo.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

mod common;
use common::tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_ossterm");

/// `ossterm serve --demo` on 127.0.0.1, killed when dropped.
struct Serve {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

impl Serve {
    fn start() -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--demo", "--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts ossterm serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("reads the address line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self { child, base }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's KV use as the metrics pane shows it ("KV cache server 12.5%").
fn server_kv_percent(screen: &str) -> Option<f64> {
    let (_, rest) = screen.split_once("KV cache server ")?;
    rest.split('%').next()?.trim().parse().ok()
}

#[test]
fn the_app_on_ossterm_serve_fills_both_panes_and_shows_the_servers_kv_use() {
    let serve = Serve::start();
    let data = tempfile::tempdir().expect("a temp dir");
    let config = tempfile::tempdir().expect("a temp dir");
    let tmux = Tmux::start("remote", data.path(), config.path());
    tmux.type_text(&format!("{BIN} --remote {}/v1", serve.base));
    tmux.keys(&["Enter"]);
    let address = serve.base.trim_start_matches("http://");
    let screen = tmux.wait_for("the remote model", |s| s.contains("is ready on"));
    assert!(
        screen.contains(&format!("remote {address}")),
        "the model shows as remote:\n{screen}"
    );

    tmux.type_text("What is a KV cache?");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the answer and the server's KV use", |s| {
        s.contains(" tok · ") && server_kv_percent(s).is_some_and(|p| p > 0.0)
    });
    assert!(
        screen.contains("── turn 1"),
        "the reasoning pane has the turn:\n{screen}"
    );
    assert!(
        screen.contains(&format!("server   {address}")),
        "metrics name the server:\n{screen}"
    );
    assert!(
        screen.contains("memory   remote"),
        "memory shows as remote:\n{screen}"
    );
    tmux.keys(&["C-q"]);
}
