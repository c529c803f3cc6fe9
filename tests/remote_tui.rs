//! End to end: `ossterm --remote http://127.0.0.1:PORT/v1` in tmux against `ossterm serve
//! --demo`: the model shows as ready on the remote server, a question fills the reasoning and
//! answer panes, and the metrics pane shows the server's KV-cache use read from its /metrics.
//!
//! Needs tmux (installed by .ci/run) and the demo model in assets/demo.

mod common;
use common::serve::Server;
use common::tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_ossterm");

/// The server's KV use as the metrics pane shows it ("KV cache server 12.5%").
fn server_kv_percent(screen: &str) -> Option<f64> {
    let (_, rest) = screen.split_once("KV cache server ")?;
    rest.split('%').next()?.trim().parse().ok()
}

#[test]
fn the_app_on_ossterm_serve_fills_both_panes_and_shows_the_servers_kv_use() {
    let serve = Server::start(&[]);
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
