//! Select mode, copy, edit & resend, versions, and saving them: scripted keys and engine
//! events against the app state.

use crossterm::event::KeyCode;

use super::tests::{app, ctrl, key, stats, submitted, type_text};
use super::*;
use crate::store::{ChatStore, to_markdown};

/// Sends `question` and answers it with `answer` (reasoning "why: QUESTION").
fn turn(app: &mut App, question: &str, answer: &str) -> Vec<Effect> {
    type_text(app, question);
    let effects = app.update(key(KeyCode::Enter));
    answer_with(app, answer);
    effects
}

/// Streams an answer (with reasoning) to the pending turn and ends it.
fn answer_with(app: &mut App, answer: &str) {
    let reasoning = format!("why: {answer}");
    for (channel, text) in [("analysis", reasoning.as_str()), ("final", answer)] {
        app.update(Input::Engine(Event::Token {
            token_id: 0,
            channel: Some(channel.into()),
            recipient: None,
            delta: text.into(),
        }));
        app.update(Input::Engine(Event::MessageDone(text_message(
            Role::Assistant,
            Some(channel),
            text,
        ))));
    }
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(3, 100.0),
    }));
}

fn texts(app: &App) -> Vec<String> {
    app.messages
        .iter()
        .filter(|m| m.channel.as_deref() != Some("analysis"))
        .map(|m| m.text())
        .collect()
}

fn two_turns() -> App {
    let mut app = app();
    turn(&mut app, "first?", "one");
    turn(&mut app, "second?", "two");
    app
}

#[test]
fn select_mode_starts_at_the_newest_message_and_moves_within_the_chat() {
    let mut app = two_turns();
    assert!(app.update(ctrl('p')).is_empty());
    assert_eq!(app.branching.selected, Some(3));
    assert_eq!(app.focus, Pane::Chat);
    for _ in 0..5 {
        app.update(key(KeyCode::Up));
    }
    assert_eq!(app.branching.selected, Some(0), "stops at the first");
    app.update(key(KeyCode::Char('j')));
    assert_eq!(app.branching.selected, Some(1));
    app.update(key(KeyCode::Esc));
    assert_eq!(app.branching.selected, None);
    // Typing leaves select mode and types.
    app.update(ctrl('p'));
    app.update(key(KeyCode::Char('x')));
    assert_eq!((app.branching.selected, app.input.text()), (None, "x"));
}

#[test]
fn selecting_with_no_messages_says_so() {
    let mut app = app();
    app.update(ctrl('p'));
    assert_eq!(app.branching.selected, None);
    assert_eq!(app.notice.as_deref(), Some("no messages to select yet"));
}

#[test]
fn copy_puts_the_selected_message_or_its_reasoning_on_the_clipboard() {
    let mut app = two_turns();
    app.update(ctrl('p'));
    assert_eq!(
        app.update(key(KeyCode::Char('y'))),
        vec![Effect::Copy("two".into())]
    );
    assert_eq!(
        app.update(key(KeyCode::Char('r'))),
        vec![Effect::Copy("why: two".into())]
    );
    app.update(key(KeyCode::Up));
    let effects = app.update(key(KeyCode::Char('y')));
    assert_eq!(effects, vec![Effect::Copy("second?".into())]);
    // The driver writes it as OSC 52 with the text in base64.
    let Effect::Copy(text) = &effects[0] else {
        unreachable!()
    };
    assert_eq!(
        crate::tui::terminal::osc52_sequence(text),
        "\x1b]52;c;c2Vjb25kPw==\x07"
    );
    assert!(app.update(key(KeyCode::Char('r'))).is_empty());
    assert_eq!(
        app.notice.as_deref(),
        Some("select an answer to copy its reasoning")
    );
}

#[test]
fn editing_an_earlier_message_branches_and_keeps_the_old_branch() {
    let mut app = two_turns();
    app.update(ctrl('p'));
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Char('e')));
    assert_eq!(app.input.text(), "first?");
    assert_eq!(app.focus, Pane::Input);
    app.input.take();
    type_text(&mut app, "first, edited?");
    let effects = app.update(key(KeyCode::Enter));
    // The new branch starts at the edited message: the engine gets only it, so its cache
    // is re-used up to there.
    let conversation = submitted(&effects).expect("a submit");
    assert_eq!(
        conversation.messages.last().unwrap().text(),
        "first, edited?"
    );
    assert_eq!(texts(&app), ["first, edited?"]);
    assert_eq!(app.entries.len(), 2, "the edited message and its answer");
    answer_with(&mut app, "uno");
    assert_eq!(texts(&app), ["first, edited?", "uno"]);
    let label = app.version_label(0).expect("versions");
    assert_eq!((label.shown, label.count), (2, 2));
    // The old branch, both turns, comes back with ←.
    app.update(ctrl('p'));
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Left));
    assert_eq!(texts(&app), ["first?", "one", "second?", "two"]);
    assert_eq!(app.entries.len(), 4);
    assert_eq!(app.meta.turns.len(), 2, "its stats came back too");
    assert_eq!(app.notice.as_deref(), Some("version 1/2"));
    app.update(key(KeyCode::Right));
    assert_eq!(texts(&app), ["first, edited?", "uno"]);
}

#[test]
fn esc_cancels_an_edit_and_a_plain_send_follows() {
    let mut app = two_turns();
    app.update(ctrl('p'));
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Enter));
    assert_eq!(app.input.text(), "second?");
    app.update(key(KeyCode::Esc));
    assert_eq!(app.input.text(), "");
    assert_eq!(app.notice.as_deref(), Some("edit cancelled"));
    turn(&mut app, "third?", "three");
    assert_eq!(texts(&app).len(), 6, "nothing branched");
    assert!(app.meta.branches.is_empty());
}

#[test]
fn regenerating_keeps_the_old_answer_as_a_version() {
    let mut app = two_turns();
    let effects = app.update(ctrl('g'));
    let conversation = submitted(&effects).expect("a submit");
    assert_eq!(conversation.messages.last().unwrap().text(), "second?");
    answer_with(&mut app, "two, again");
    let label = app.version_label(3).expect("versions");
    assert_eq!((label.shown, label.count), (2, 2));
    app.update(ctrl('p'));
    assert!(app.selection_hint(3).contains("←→ version"));
    app.update(key(KeyCode::Left));
    assert_eq!(texts(&app), ["first?", "one", "second?", "two"]);
    assert_eq!(app.last_turn().unwrap().answer.text(), "two");
    // g on a selected earlier answer makes a new version of it (and of what followed).
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Up));
    let effects = app.update(key(KeyCode::Char('g')));
    assert_eq!(
        submitted(&effects).unwrap().messages.last().unwrap().text(),
        "first?"
    );
    answer_with(&mut app, "one, again");
    assert_eq!(texts(&app), ["first?", "one, again"]);
    let label = app.version_label(1).expect("versions");
    assert_eq!((label.shown, label.count), (2, 2));
}

#[test]
fn switching_waits_while_an_answer_streams() {
    let mut app = two_turns();
    app.update(ctrl('g'));
    app.update(ctrl('p'));
    app.update(key(KeyCode::Left));
    assert!(app.generating);
    assert!(
        app.notice
            .as_deref()
            .unwrap()
            .starts_with("still answering")
    );
}

#[test]
fn versions_survive_saving_and_reopening_and_export_writes_the_shown_branch() {
    let mut app = two_turns();
    app.update(ctrl('g'));
    answer_with(&mut app, "two, again");
    let dir = tempfile::tempdir().unwrap();
    let store = ChatStore::new(dir.path());
    store.save(&app.snapshot()).unwrap();
    let markdown = to_markdown(&app.snapshot(), None);
    assert!(markdown.contains("two, again") && !markdown.contains("## gpt-oss\n\ntwo\n"));

    let mut reopened = super::tests::app();
    reopened.open_chat(store.load("test-chat").unwrap());
    assert_eq!(texts(&reopened), ["first?", "one", "second?", "two, again"]);
    let label = reopened.version_label(3).expect("versions kept");
    assert_eq!((label.shown, label.count), (2, 2));
    reopened.update(ctrl('p'));
    reopened.update(key(KeyCode::Left));
    assert_eq!(texts(&reopened), ["first?", "one", "second?", "two"]);
}

#[test]
fn a_chat_saved_before_versions_existed_still_opens() {
    // The meta file as earlier versions wrote it: no "branches" key.
    let dir = tempfile::tempdir().unwrap();
    let store = ChatStore::new(dir.path());
    let app_before = two_turns();
    store.save(&app_before.snapshot()).unwrap();
    let meta_path = store.dir().join("test-chat.meta.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    assert!(!meta.contains("branches"), "nothing new is written: {meta}");
    let old_meta = r#"{"title":"old","created":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z","turns":[]}"#;
    std::fs::write(&meta_path, old_meta).unwrap();
    let mut app = app();
    app.open_chat(store.load("test-chat").unwrap());
    assert_eq!(texts(&app), ["first?", "one", "second?", "two"]);
    assert_eq!(app.notice.as_deref(), Some("opened 'old'"));
    // Regenerating there starts its first fork.
    app.update(ctrl('g'));
    answer_with(&mut app, "two, again");
    assert_eq!(app.version_label(3).map(|l| l.count), Some(2));
}

#[test]
fn broken_saved_versions_are_dropped_and_named() {
    let mut app = two_turns();
    app.update(ctrl('g'));
    answer_with(&mut app, "two, again");
    let mut chat = app.snapshot();
    chat.meta.branches.forks[0].at = 40;
    let mut reopened = super::tests::app();
    reopened.open_chat(chat);
    assert_eq!(texts(&reopened).len(), 4);
    assert!(reopened.meta.branches.is_empty());
    assert_eq!(
        reopened.notice.as_deref(),
        Some(
            "opened 'first?' without its other versions: a fork at message 40 is outside the 6 messages it branches"
        )
    );
}
