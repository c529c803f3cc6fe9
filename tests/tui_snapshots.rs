//! Snapshot tests of the screen (ratatui TestBackend + insta): the main screen at 80x24 and
//! 160x48 with the reasoning pane shown and hidden, the help overlay, an error screen, and a
//! streamed answer with a highlighted code block. Text is snapshotted; colours that matter
//! (syntax highlighting) are asserted on the buffer. A property test draws hostile text and
//! finds no control character in any cell.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ossterm::engine::protocol::{MemorySample, MetricsSample, ModelInfo, SamplingParams};
use ossterm::engine::{Event, StopReason, TurnStats};
use ossterm::harmony::{Content, Message, ReasoningEffort, Role};
use ossterm::store::{ChatSummary, SearchText};
use ossterm::tools::{CatalogEntry, ToolCatalog, ToolCommand, ToolEvent, ToolResult, ToolWhere};
use ossterm::tui::app::{App, AppOptions, Effect, Input, Overlay};
use ossterm::tui::keys::KeyMap;
use ossterm::tui::theme::Theme;
use ossterm::tui::ui;
use proptest::prelude::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use std::time::Duration;

/// The app before the engine has reported anything.
fn unloaded_app(effort: ReasoningEffort) -> App {
    App::new(AppOptions {
        theme: Theme::load("dark", None).unwrap(),
        keymap: KeyMap::default(),
        effort,
        developer_instructions: String::new(),
        chat_id: "snapshot".into(),
        sampling: SamplingParams::default(),
        today: "2026-11-27".into(),
    })
}

fn app() -> App {
    let mut app = unloaded_app(ReasoningEffort::Medium);
    app.update(Input::Engine(Event::Ready(ModelInfo {
        name: "gpt-oss-20b".into(),
        device: "cpu".into(),
        context_limit: 8192,
        max_context: 131_072,
    })));
    app
}

fn send(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(Input::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        )));
    }
    app.update(Input::Key(KeyEvent::new(
        KeyCode::Enter,
        KeyModifiers::NONE,
    )));
}

fn token(app: &mut App, channel: &str, delta: &str) {
    app.update(Input::Engine(Event::Token {
        token_id: 0,
        channel: Some(channel.into()),
        recipient: None,
        delta: delta.into(),
    }));
}

fn done(app: &mut App, channel: &str, text: &str) {
    app.update(Input::Engine(Event::MessageDone(Message {
        role: Role::Assistant,
        name: None,
        content: vec![Content::Text { text: text.into() }],
        channel: Some(channel.into()),
        recipient: None,
        content_type: None,
        extra: Default::default(),
    })));
}

fn stats() -> TurnStats {
    TurnStats {
        prefill_tokens: 84,
        cached_tokens: 0,
        prefill_ms: 420.0,
        decode_tokens: 96,
        decode_ms: 4800.0,
        time_to_first_token_ms: 455.0,
    }
}

fn metrics(app: &mut App, used: usize, generating: bool) {
    for speed in [18.0, 19.5, 21.0, 20.0, 20.5] {
        app.update(Input::Engine(Event::Metrics(MetricsSample {
            memory: MemorySample {
                device_name: "CPU (16 threads)".into(),
                model_bytes: 13_700_000_000,
                kv_cache_bytes: 50_331_648,
                device_used_bytes: 20_000_000_000,
                device_free_bytes: 12_000_000_000,
                process_rss_bytes: 14_200_000_000,
                kv_in_use_bytes: 2_500_000,
                kv_reserved_bytes: 50_331_648,
                scratch_bytes: 420_000_000,
            },
            context_used: used,
            context_limit: 8192,
            turn: stats(),
            decode_tok_s_now: speed,
            generating,
            remote: None,
        })));
    }
}

/// One finished turn, then a second one streaming: reasoning done, answer half written.
fn mid_answer() -> App {
    let mut app = app();
    send(&mut app, "What is a monad, briefly?");
    token(
        &mut app,
        "analysis",
        "The user wants a short definition. Keep it simple.",
    );
    done(
        &mut app,
        "analysis",
        "The user wants a short definition. Keep it simple.",
    );
    token(
        &mut app,
        "final",
        "A **monad** wraps values and chains computations on them.",
    );
    done(
        &mut app,
        "final",
        "A **monad** wraps values and chains computations on them.",
    );
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(),
    }));
    send(&mut app, "Show one in Rust.");
    // system; the first question, its (dropped) reasoning and answer; the second question.
    app.update(Input::Engine(Event::PromptTokens {
        message_tokens: vec![90, 12, 0, 20, 9],
    }));
    let reasoning =
        "Option is the classic example.\nUse and_then to chain.\nKeep the example under ten lines.";
    token(&mut app, "analysis", reasoning);
    done(&mut app, "analysis", reasoning);
    token(
        &mut app,
        "final",
        "`Option` is a monad:\n\n```rust\nfn half(x: i32) -> Option<i32> {\n    if x % 2 == 0 { Some(x / 2) } else { None }\n}\n",
    );
    metrics(&mut app, 412, true);
    app
}

fn render(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    terminal
}

/// [`mid_answer`] after Ctrl+R hid the reasoning pane.
fn mid_answer_reasoning_hidden() -> App {
    let mut app = mid_answer();
    app.update(Input::Key(KeyEvent::new(
        KeyCode::Char('r'),
        KeyModifiers::CONTROL,
    )));
    app
}

#[test]
fn main_screen_80x24_with_reasoning() {
    insta::assert_snapshot!(render(&mid_answer(), 80, 24).backend());
}

#[test]
fn main_screen_160x48_with_reasoning() {
    insta::assert_snapshot!(render(&mid_answer(), 160, 48).backend());
}

/// The metrics pane at the sizes it must read at: the memory bar and legend, both speed rows
/// with the previous turn beside this one, the context gauge and its scale.
#[test]
fn main_screen_200x50_with_reasoning() {
    insta::assert_snapshot!(render(&mid_answer(), 200, 50).backend());
}

#[test]
fn main_screen_80x24_reasoning_hidden() {
    insta::assert_snapshot!(render(&mid_answer_reasoning_hidden(), 80, 24).backend());
}

#[test]
fn main_screen_160x48_reasoning_hidden() {
    insta::assert_snapshot!(render(&mid_answer_reasoning_hidden(), 160, 48).backend());
}

#[test]
fn help_overlay() {
    let mut app = app();
    app.update(Input::Key(KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE)));
    insta::assert_snapshot!("help_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!("help_160x48", render(&app, 160, 48).backend());
}

#[test]
fn error_screen() {
    let mut app = App::new(AppOptions {
        theme: Theme::load("dark", None).unwrap(),
        keymap: KeyMap::default(),
        effort: ReasoningEffort::Medium,
        developer_instructions: String::new(),
        chat_id: "snapshot".into(),
        sampling: SamplingParams::default(),
        today: "2026-11-27".into(),
    });
    app.update(Input::Engine(Event::Error {
        message: "cannot load the model: /models/gpt-oss-20b/model-00001-of-00003.safetensors is missing.\nRun `ossterm download` or pass --model with a folder that has the safetensors files.".into(),
        fatal: true,
    }));
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

#[test]
fn loading_screen() {
    let mut app = unloaded_app(ReasoningEffort::High);
    app.update(Input::Engine(Event::LoadProgress {
        stage: "downloading model-00001-of-00002.safetensors".into(),
        done_bytes: 3 << 30,
        total_bytes: 12 << 30,
    }));
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

/// Loading a sharded checkpoint: the shard and its file on the stage line, its progress in
/// the bar.
#[test]
fn loading_screen_per_shard() {
    let mut app = unloaded_app(ReasoningEffort::High);
    app.update(Input::Engine(Event::LoadProgress {
        stage: "loading shard 2/5 (model-00002-of-00005.safetensors)".into(),
        done_bytes: 1_100_000_000,
        total_bytes: 2_990_000_000,
    }));
    let terminal = render(&app, 100, 24);
    let screen = terminal.backend().to_string();
    assert!(screen.contains("loading shard 2/5 (model-00002-of-00005.safetensors)"));
    assert!(screen.contains("1.0 GiB / 2.8 GiB (36%)"), "{screen}");
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn streamed_code_block_is_highlighted() {
    let app = mid_answer();
    let terminal = render(&app, 160, 48);
    let buffer = terminal.backend().buffer();
    // Find "fn half" inside the code frame and check syntect coloured it.
    let area = buffer.area;
    let mut found = None;
    for y in 0..area.height {
        let row: String = (0..area.width)
            .map(|x| buffer[(x, y)].symbol().to_string())
            .collect();
        if let Some(col) = row.find("│ fn half") {
            let col = row[..col].chars().count() as u16 + 2;
            found = Some((col, y));
            break;
        }
    }
    let (x, y) = found.expect("the code line is on screen");
    let keyword = buffer[(x, y)].fg;
    let name = buffer[(x + 3, y)].fg;
    assert!(
        matches!(keyword, Color::Rgb(..)),
        "keyword colour {keyword:?}"
    );
    assert_ne!(keyword, name, "keyword and function name differ in colour");
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn the_metrics_pane_resizes_from_the_keyboard_within_bounds() {
    let mut app = app();
    let ctrl = |code| Input::Key(KeyEvent::new(code, KeyModifiers::CONTROL));
    let heights = |app: &App| {
        render(app, 100, 30);
        let rects = app.rects.get();
        (
            rects.metrics.height,
            rects.reasoning.expect("reasoning shown").height,
        )
    };
    let (metrics, reasoning) = heights(&app);
    app.update(ctrl(KeyCode::Up));
    assert_eq!(heights(&app), (metrics + 2, reasoning - 2));
    for _ in 0..30 {
        app.update(ctrl(KeyCode::Down));
    }
    let (smallest, _) = heights(&app);
    assert_eq!(smallest, 3, "the metrics pane keeps 3 rows");
    for _ in 0..40 {
        app.update(ctrl(KeyCode::Up));
    }
    let (_, reasoning) = heights(&app);
    assert_eq!(reasoning, 3, "the reasoning pane keeps 3 rows");
}

// ─── Tool calls ───

const PYTHON_CODE: &str =
    "import math\nn = 2 ** 100\nprint(n)\nprint(math.log10(n))\nprint(len(str(n)))";

/// The model calls the python tool (on the analysis channel, as gpt-oss does) and the turn
/// ends in `<|call|>`: the approval prompt is up.
fn python_call() -> App {
    let mut app = app();
    let mut catalog = ToolCatalog::default();
    catalog.entries.insert(
        "python".into(),
        CatalogEntry {
            where_runs: ToolWhere::Python {
                runner: "local process, 10 s, 512 MiB, no network".into(),
            },
            read_only: false,
        },
    );
    app.update(Input::Tool(ToolEvent::Tools(catalog)));
    send(&mut app, "How many digits has 2**100?");
    let reasoning = "Compute it with python.";
    token(&mut app, "analysis", reasoning);
    done(&mut app, "analysis", reasoning);
    token_to(&mut app, "analysis", Some("python"), PYTHON_CODE);
    app.update(Input::Engine(Event::MessageDone(
        Message::assistant("analysis", PYTHON_CODE).with_recipient("python"),
    )));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Call,
        stats: stats(),
    }));
    metrics(&mut app, 300, false);
    app
}

/// [`python_call`] allowed: the result came back and the model answered from it.
fn python_answered() -> App {
    let mut app = python_call();
    // As if the user had read the prompt first (answer keys count only after a moment).
    if let Some(prompt) = &mut app.tools.prompt {
        prompt.shown_at -= ossterm::tui::app::tools::ANSWER_DELAY;
    }
    let effects = app.update(Input::Key(KeyEvent::new(
        KeyCode::Char('y'),
        KeyModifiers::NONE,
    )));
    let call = effects
        .iter()
        .find_map(|e| match e {
            Effect::Tool(ToolCommand::Run { call, .. }) => Some(call.clone()),
            _ => None,
        })
        .expect("the call runs");
    app.update(Input::Tool(ToolEvent::Finished(ToolResult {
        call_id: call.id,
        author: "python".into(),
        channel: "analysis".into(),
        text: "1267650600228229401496703205376\n30.10299956639812\n31\n(done)\n(exit 0)".into(),
        is_error: false,
        duration: Duration::from_millis(240),
    })));
    let answer = "2**100 has **31** digits.";
    token(&mut app, "final", answer);
    done(&mut app, "final", answer);
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(),
    }));
    app
}

#[test]
fn tool_approval_prompt() {
    let app = python_call();
    insta::assert_snapshot!("tool_approval_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!("tool_approval_120x40", render(&app, 120, 40).backend());
}

#[test]
fn tool_block_collapsed_and_expanded() {
    let mut app = python_answered();
    insta::assert_snapshot!("tool_block_collapsed_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!(
        "tool_block_collapsed_120x40",
        render(&app, 120, 40).backend()
    );
    app.update(Input::Key(KeyEvent::new(
        KeyCode::Char('o'),
        KeyModifiers::CONTROL,
    )));
    insta::assert_snapshot!("tool_block_expanded_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!(
        "tool_block_expanded_120x40",
        render(&app, 120, 40).backend()
    );
}

// ─── Untrusted text ───
// Arbitrary bytes (escape sequences, C0/C1 controls, DEL, invalid UTF-8 read lossily) as
// model output, reasoning, tool calls, chat titles, the chat list, an error message and
// pasted input go through the real draw code, and no cell holds a control character.

fn token_to(app: &mut App, channel: &str, recipient: Option<&str>, delta: &str) {
    app.update(Input::Engine(Event::Token {
        token_id: 0,
        channel: Some(channel.into()),
        recipient: recipient.map(str::to_string),
        delta: delta.into(),
    }));
}

/// Every cell's symbol that holds a control character, with its position.
fn control_cells(app: &App, width: u16, height: u16) -> Vec<(u16, u16, String)> {
    let terminal = render(app, width, height);
    let buffer = terminal.backend().buffer();
    let mut found = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let symbol = buffer[(x, y)].symbol();
            if symbol.chars().any(char::is_control) {
                found.push((x, y, symbol.to_string()));
            }
        }
    }
    found
}

/// Bytes with many controls and escape sequences, read as UTF-8 lossily like the engine's
/// detokenizer output or a pasted clipboard could be.
fn hostile_text() -> impl Strategy<Value = String> {
    let byte = prop_oneof![
        4 => 0u8..=0x1f,
        1 => Just(0x7fu8),
        2 => 0x80u8..=0xff,
        4 => 0x20u8..=0x7e,
    ];
    let piece = prop_oneof![
        3 => proptest::collection::vec(byte, 0..24),
        1 => Just(b"\x1b]0;pwned\x07".to_vec()),
        1 => Just(b"\x1b[7m".to_vec()),
        1 => Just("\u{9b}2J\u{85}".as_bytes().to_vec()),
        1 => Just(b"\tcol\t\r\n".to_vec()),
    ];
    proptest::collection::vec(piece, 1..6)
        .prop_map(|pieces| String::from_utf8_lossy(&pieces.concat()).into_owned())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_control_character_reaches_a_cell(
        answer in hostile_text(),
        reasoning in hostile_text(),
        tool in hostile_text(),
        title in hostile_text(),
        pasted in hostile_text(),
        error in hostile_text(),
    ) {
        let mut app = app();
        app.update(Input::Paste(pasted.clone()));
        app.update(Input::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)));
        app.meta.title = title.clone();
        token_to(&mut app, "analysis", None, &reasoning);
        token_to(&mut app, "commentary", Some(&tool), &tool);
        token_to(&mut app, "final", None, &answer);
        app.update(Input::Paste(pasted));
        for (width, height) in [(80, 24), (41, 13)] {
            prop_assert_eq!(control_cells(&app, width, height), vec![]);
        }
        app.update(Input::Engine(Event::TurnDone {
            stop: StopReason::Return,
            stats: TurnStats::default(),
        }));
        app.show_chat_list(vec![ChatSummary {
            id: "other".into(),
            title: title.clone(),
            updated: title,
            ..ChatSummary::default()
        }]);
        prop_assert_eq!(control_cells(&app, 80, 24), vec![]);
        app.update(Input::Engine(Event::Error { message: error, fatal: false }));
        prop_assert_eq!(control_cells(&app, 80, 24), vec![]);
    }
}

/// Saved chats as the store lists them, seen on 2026-12-03 at 12:00 UTC.
fn chat_list_app() -> App {
    let mut app = app();
    let chat = |id: &str, title: &str, updated: &str, messages: usize, text: &str| ChatSummary {
        id: id.into(),
        title: title.into(),
        created: "2026-11-20T08:30:00Z".into(),
        updated: updated.into(),
        messages,
        text: SearchText::new(text),
    };
    app.show_chat_list(vec![
        chat(
            "c1",
            "Reverse a string in Rust",
            "2026-12-03T11:40:00Z",
            4,
            "Write a Rust function to reverse a string.\nUse chars().rev()",
        ),
        chat(
            "c2",
            "Weekend risotto",
            "2026-12-02T19:00:00Z",
            6,
            "How long do I cook a risotto?\nAbout 18 minutes; a rust-free pan helps",
        ),
        chat(
            "c3",
            "Ownership and borrowing, explained with far too many words to fit",
            "2026-11-28T10:00:00Z",
            12,
            "What is a lifetime?",
        ),
        chat(
            "c4",
            "Tax letter",
            "2026-10-01T09:00:00Z",
            1,
            "Draft a letter",
        ),
    ]);
    if let Overlay::Chats(list) = &mut app.overlay {
        list.listed_at = chrono::DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
    }
    app
}

#[test]
fn chat_list_with_counts_dates_and_search() {
    let mut app = chat_list_app();
    insta::assert_snapshot!("chat_list_80x24", render(&app, 80, 24).backend());
    for c in "RUST".chars() {
        app.update(Input::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        )));
    }
    let screen = render(&app, 80, 24).backend().to_string();
    // A title match, then a content match with its snippet.
    assert!(screen.contains("Chats (2 of 4)"), "{screen}");
    assert!(screen.contains("a rust-free pan helps"), "{screen}");
    insta::assert_snapshot!("chat_list_search_80x24", render(&app, 80, 24).backend());
    app.update(Input::Key(KeyEvent::new(
        KeyCode::Delete,
        KeyModifiers::NONE,
    )));
    insta::assert_snapshot!(
        "chat_list_confirm_delete_80x24",
        render(&app, 80, 24).backend()
    );
}
