//! Edit & resend and answer versions as the user sees them: the chat pane marks a branched
//! message "‹2/2›" and highlights the selected one with its keys; and the real binary in tmux
//! on the demo model edits an earlier message, resends it, keeps the old branch on disk and
//! switches back to it.
//!
//! The tmux test needs tmux (installed by .ci/run) and the demo model in assets/demo.

use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ossterm::engine::protocol::{ModelInfo, SamplingParams};
use ossterm::engine::{Event, StopReason, TurnStats};
use ossterm::harmony::{Content, Message, ReasoningEffort, Role};
use ossterm::tui::app::{App, AppOptions, Input};
use ossterm::tui::keys::KeyMap;
use ossterm::tui::theme::Theme;
use ossterm::tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

mod common;
use common::tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_ossterm");

fn key(app: &mut App, code: KeyCode, modifiers: KeyModifiers) {
    app.update(Input::Key(KeyEvent::new(code, modifiers)));
}

fn ask_and_answer(app: &mut App, question: &str, answer: &str) {
    for c in question.chars() {
        key(app, KeyCode::Char(c), KeyModifiers::NONE);
    }
    key(app, KeyCode::Enter, KeyModifiers::NONE);
    answer_pending(app, answer);
}

fn answer_pending(app: &mut App, answer: &str) {
    app.update(Input::Engine(Event::Token {
        token_id: 0,
        channel: Some("final".into()),
        recipient: None,
        delta: answer.into(),
    }));
    app.update(Input::Engine(Event::MessageDone(Message {
        role: Role::Assistant,
        name: None,
        content: vec![Content::Text {
            text: answer.into(),
        }],
        channel: Some("final".into()),
        recipient: None,
        content_type: None,
        extra: Default::default(),
    })));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: TurnStats::default(),
    }));
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect::<String>()
                + "\n"
        })
        .collect()
}

fn ready_app() -> App {
    let mut app = App::new(AppOptions {
        theme: Theme::load("dark", None).unwrap(),
        keymap: KeyMap::default(),
        effort: ReasoningEffort::Medium,
        developer_instructions: String::new(),
        chat_id: "branching".into(),
        sampling: SamplingParams::default(),
        today: "2026-11-27".into(),
    });
    app.update(Input::Engine(Event::Ready(ModelInfo {
        name: "gpt-oss-20b".into(),
        device: "cpu".into(),
        context_limit: 8192,
        max_context: 131_072,
    })));
    app
}

#[test]
fn the_chat_pane_shows_versions_and_the_selected_message() {
    let mut app = ready_app();
    ask_and_answer(&mut app, "Name a colour.", "Blue.");
    key(&mut app, KeyCode::Char('g'), KeyModifiers::CONTROL);
    answer_pending(&mut app, "Green.");
    let shown = screen(&app, 100, 30);
    assert!(shown.contains("gpt-oss ‹2/2›"), "{shown}");
    assert!(
        shown.contains("Green.") && !shown.contains("Blue."),
        "{shown}"
    );

    key(&mut app, KeyCode::Char('p'), KeyModifiers::CONTROL);
    key(&mut app, KeyCode::Left, KeyModifiers::NONE);
    let shown = screen(&app, 100, 30);
    assert!(shown.contains("gpt-oss ‹1/2›"), "{shown}");
    assert!(
        shown.contains("Blue.") && !shown.contains("Green."),
        "{shown}"
    );
    assert!(shown.contains("y copy · r copy reasoning"), "{shown}");
    assert!(
        shown.contains("version 1/2"),
        "the notice says so:\n{shown}"
    );
}

/// Screen lines holding `text`, the pane titles (the chat keeps its first title) aside.
fn chat_lines_with(screen: &str, text: &str) -> usize {
    screen
        .lines()
        .filter(|l| l.contains(text) && !l.contains("Chat:"))
        .count()
}

#[test]
fn a_selected_message_is_scrolled_into_view() {
    let mut app = ready_app();
    for i in 0..8 {
        ask_and_answer(&mut app, &format!("Question {i}?"), &format!("Answer {i}."));
    }
    let shown = screen(&app, 100, 16);
    assert!(
        chat_lines_with(&shown, "Question 0?") == 0,
        "it starts at the bottom:\n{shown}"
    );
    key(&mut app, KeyCode::Char('p'), KeyModifiers::CONTROL);
    for _ in 0..15 {
        key(&mut app, KeyCode::Up, KeyModifiers::NONE);
    }
    let shown = screen(&app, 100, 16);
    assert!(chat_lines_with(&shown, "Question 0?") > 0, "{shown}");
    assert!(shown.contains("e edit & resend"), "{shown}");
    // Back down to the newest: the pane follows the bottom again.
    for _ in 0..15 {
        key(&mut app, KeyCode::Down, KeyModifiers::NONE);
    }
    let shown = screen(&app, 100, 16);
    assert!(
        shown.contains("Answer 7.") && chat_lines_with(&shown, "Question 0?") == 0,
        "{shown}"
    );
}

fn saved_files(data: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(data.join("chats"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.ends_with(suffix) && !name.starts_with('.')
                })
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn edit_and_resend_branches_on_the_demo_model_and_switches_back() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/config.json");
    assert!(
        demo.is_file(),
        "the demo model {} is missing",
        demo.display()
    );
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("branching", data.path(), config.path());
    tmux.type_text(&format!("{BIN} --demo --device cpu"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the model to load", |s| s.contains("is ready on"));

    tmux.type_text("Say one.");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the first answer", |s| s.contains(" tok · "));

    // Select the question (the answer is selected first), edit it, resend.
    tmux.keys(&["C-p"]);
    tmux.wait_for("select mode", |s| s.contains("r copy reasoning"));
    tmux.keys(&["Up"]);
    tmux.wait_for("the question selected", |s| s.contains("e edit & resend"));
    tmux.keys(&["e"]);
    tmux.wait_for("the edit hint", |s| s.contains("sends it as a new version"));
    tmux.keys(&["C-u"]);
    tmux.type_text("Say two.");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the new branch's answer", |s| {
        s.contains("You ‹2/2›") && s.contains(" tok · ")
    });
    assert!(
        chat_lines_with(&screen, "Say one.") == 0 && chat_lines_with(&screen, "Say two.") > 0,
        "the old branch is hidden:\n{screen}"
    );

    // On disk: the shown branch is the conversation, the old one is kept beside it.
    tmux.wait_for("the save", |_| {
        saved_files(data.path(), ".meta.json")
            .iter()
            .any(|m| m.contains("\"branches\"") && m.contains("Say one."))
    });
    let chats = saved_files(data.path(), ".json");
    assert!(
        chats
            .iter()
            .any(|c| c.contains("Say two.") && !c.contains("Say one.") && !c.contains("branches")),
        "{chats:?}"
    );

    // Back to the first version.
    tmux.keys(&["C-p", "Up", "Left"]);
    let screen = tmux.wait_for("the old branch", |s| s.contains("You ‹1/2›"));
    assert!(
        chat_lines_with(&screen, "Say one.") > 0 && chat_lines_with(&screen, "Say two.") == 0,
        "{screen}"
    );
    // Escape alone: followed at once by another key, terminals read it as Alt.
    tmux.keys(&["Escape"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    tmux.keys(&["C-q"]);
    tmux.wait_for("the app to quit", |s| s.lines().any(|l| l.trim() == "$"));
}
