//! The chats overlay in the real binary (tmux, demo model): type to search a saved chat's
//! content and open it, delete one (asked first) and undo, rename one with F2, and `/import` a harmony JSON file
//! and `/export` it back as harmony JSON.
//!
//! Needs tmux (installed by .ci/run) and the demo model in assets/demo.

use std::path::Path;

use ossterm::harmony::{Conversation, Message};
use ossterm::store::{ChatMeta, ChatSnapshot, ChatStore};

mod common;
use common::tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_ossterm");

fn saved(store: &ChatStore, id: &str, title: &str, updated: &str, question: &str, answer: &str) {
    store
        .save(&ChatSnapshot {
            id: id.into(),
            meta: ChatMeta {
                title: title.into(),
                created: updated.into(),
                updated: updated.into(),
                ..ChatMeta::default()
            },
            conversation: Conversation::from_messages([
                Message::user(question),
                Message::assistant("final", answer),
            ]),
        })
        .expect("saved");
}

#[test]
fn search_open_delete_undo_import_and_export_in_the_app() {
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/demo/config.json")
            .is_file(),
        "the demo model is missing"
    );
    let data = tempfile::tempdir().expect("temp dir");
    let config = tempfile::tempdir().expect("temp dir");
    let store = ChatStore::new(data.path());
    saved(
        &store,
        "c1",
        "Weekend risotto",
        "2026-01-02T00:00:00Z",
        "How long to cook a risotto?",
        "About 18 minutes, stirring often.",
    );
    saved(
        &store,
        "c2",
        "Tax letter",
        "2026-01-01T00:00:00Z",
        "Draft a letter",
        "Dear Sir or Madam",
    );
    let tmux = Tmux::start("chatlist", data.path(), config.path());
    tmux.type_text(&format!("{BIN} --demo --device cpu"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the newest chat to reopen", |s| {
        s.contains("opened 'Weekend risotto'")
    });
    tmux.wait_for("the model", |s| {
        s.contains("effort medium") && !s.contains("loading")
    });

    // Search finds a chat by its content and shows where.
    tmux.keys(&["C-l"]);
    tmux.wait_for("the list", |s| {
        s.contains("Chats (2)") && s.contains("2 msgs")
    });
    tmux.type_text("sir or");
    let screen = tmux.wait_for("the search", |s| s.contains("Chats (1 of 2)"));
    assert!(screen.contains("Dear Sir or Madam"), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the chat to open", |s| s.contains("opened 'Tax letter'"));

    // Delete asks, moves to the trash, Ctrl+Z brings it back.
    tmux.keys(&["C-l"]);
    tmux.wait_for("the list", |s| s.contains("Chats (2)"));
    tmux.keys(&["Home"]);
    tmux.keys(&["DC"]);
    tmux.wait_for("the question", |s| s.contains("y: to the trash (30 days)"));
    tmux.keys(&["y"]);
    tmux.wait_for("the delete", |s| {
        s.contains("Chats (1)") && s.contains("moved to the trash")
    });
    assert!(!store.chat_path("c1").exists());
    tmux.keys(&["C-z"]);
    tmux.wait_for("the undo", |s| {
        s.contains("Chats (2)") && s.contains("restored 'Weekend risotto'")
    });
    assert!(store.chat_path("c1").exists());

    // F2 renames in place; the title is saved.
    tmux.keys(&["F2"]);
    tmux.wait_for("the rename field", |s| {
        s.contains("New title: Weekend risotto")
    });
    tmux.type_text(" 2");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the rename", |s| {
        s.contains("renamed to 'Weekend risotto 2'")
    });
    assert_eq!(
        store.load("c1").expect("still there").meta.title,
        "Weekend risotto 2"
    );
    tmux.keys(&["Escape"]);

    // Import a harmony conversation, then export it as harmony JSON again.
    let file = data.path().join("in.json");
    let conversation = Conversation::from_messages([
        Message::user("Imported question about otters"),
        Message::assistant("final", "Otters hold hands while sleeping."),
    ]);
    std::fs::write(&file, serde_json::to_string(&conversation).expect("json")).expect("written");
    tmux.type_text(&format!("/import {}", file.display()));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the import", |s| {
        s.contains("as 'Imported question about otters'") && s.contains("Otters hold hands")
    });
    let out = data.path().join("out.json");
    tmux.type_text(&format!("/export {}", out.display()));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the export", |s| s.contains("exported to"));
    let back: Conversation =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("exported"))
            .expect("harmony JSON");
    assert_eq!(
        back.messages[back.messages.len() - 2..],
        conversation.messages[..]
    );

    // A broken file is named, and the app goes on.
    std::fs::write(&file, "{\"messages\": [{\"role\": \"robot\"}]}").expect("written");
    tmux.type_text(&format!("/import {}", file.display()));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the error", |s| {
        s.contains("messages[0]") && s.contains("in.json")
    });
    tmux.keys(&["Escape", "C-q"]);
}
