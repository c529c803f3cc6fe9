//! Resumable chats in the real app (tmux, demo model): a chat's KV cache is saved beside it
//! after a turn, and when the app starts again on that chat it says how many tokens it
//! restored from disk instead of re-reading the chat.
//!
//! Needs tmux (installed by .ci/run) and the demo model in assets/demo.

use std::path::Path;

mod common;
use common::tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_ossterm");

/// Starts the app on the demo model and waits until it can be typed into.
fn run_app(tmux: &Tmux, ready: &str) -> String {
    tmux.type_text(&format!("{BIN} --demo --device cpu; echo \"APP-EXIT=$?\""));
    tmux.keys(&["Enter"]);
    tmux.wait_for(ready, |s| s.contains(ready))
}

fn quit(tmux: &Tmux) {
    tmux.keys(&["C-q"]);
    let screen = tmux.wait_for("the app to exit", |s| {
        s.lines().any(|l| l.trim().starts_with("APP-EXIT="))
    });
    assert!(screen.lines().any(|l| l.trim() == "APP-EXIT=0"), "{screen}");
    tmux.keys(&["C-l"]);
}

fn file_stems(dir: &Path, extension: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stems: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(extension).map(str::to_string))
        .filter(|stem| !stem.ends_with(".meta") && !stem.starts_with('.'))
        .collect();
    stems.sort();
    stems
}

#[test]
fn reopening_a_chat_restores_its_kv_cache_from_disk() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::start("resume", data.path(), config.path());
    run_app(&tmux, "is ready on");
    tmux.type_text("What is the capital of France?");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the answer's stats", |s| s.contains(" tok · "));
    quit(&tmux);

    // The KV snapshot sits in the cache folder (inside the data dir when only that is set),
    // under the chat's id.
    let chats = file_stems(&data.path().join("chats"), ".json");
    let snapshots = file_stems(&data.path().join("cache/kv"), ".kv");
    assert_eq!(chats.len(), 1, "{chats:?}");
    assert_eq!(snapshots, chats);

    let screen = run_app(&tmux, "tokens from disk");
    let line = screen
        .lines()
        .find(|l| l.contains("tokens from disk"))
        .unwrap_or_default();
    let restored: usize = line
        .split("restored ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}:\n{screen}"));
    assert!(restored > 0, "{screen}");
    assert!(
        line.contains("opened 'What is the capital of France?'"),
        "{screen}"
    );
    // The chat goes on from the restored cache: the new turn's prompt is mostly cached
    // (a fresh engine would have cached nothing).
    tmux.type_text("And of Italy?");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the second answer's stats", |s| {
        s.split_once("And of Italy?")
            .is_some_and(|(_, after)| after.contains(" tok · "))
    });
    let cached = screen
        .lines()
        .find_map(|l| l.split_once(" cached")?.0.rsplit("+ ").next())
        .map(str::trim)
        .unwrap_or_else(|| panic!("no cached figure in the metrics:\n{screen}"));
    assert_ne!(cached, "0", "nothing cached after the restore:\n{screen}");
    quit(&tmux);
}
