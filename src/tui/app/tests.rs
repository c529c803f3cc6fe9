//! Scripted engine events -> app state. The engine is not involved: events are built by hand
//! exactly as the engine sends them.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::engine::protocol::{MemorySample, MetricsSample, ModelInfo, SamplingParams};

pub(super) fn app() -> App {
    let mut app = App::new(AppOptions {
        theme: Theme::default(),
        keymap: KeyMap::default(),
        effort: ReasoningEffort::Medium,
        developer_instructions: String::new(),
        chat_id: "test-chat".into(),
        sampling: SamplingParams::default(),
        today: "2026-11-27".into(),
    });
    app.update(Input::Engine(Event::Ready(ModelInfo {
        name: "demo".into(),
        device: "cpu".into(),
        context_limit: 4096,
        max_context: 131_072,
    })));
    app
}

pub(super) fn key(code: KeyCode) -> Input {
    Input::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub(super) fn ctrl(c: char) -> Input {
    Input::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub(super) fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(key(KeyCode::Char(c)));
    }
}

fn token(channel: &str, delta: &str) -> Input {
    Input::Engine(Event::Token {
        token_id: 0,
        channel: Some(channel.into()),
        recipient: None,
        delta: delta.into(),
    })
}

fn message(channel: &str, text: &str) -> Message {
    text_message(Role::Assistant, Some(channel), text)
}

pub(super) fn stats(decode_tokens: usize, decode_ms: f64) -> TurnStats {
    TurnStats {
        prefill_tokens: 100,
        cached_tokens: 20,
        prefill_ms: 50.0,
        decode_tokens,
        decode_ms,
        time_to_first_token_ms: 75.0,
    }
}

fn system_content(conversation: &Conversation) -> &SystemContent {
    match &conversation.messages[0].content[..] {
        [Content::SystemContent(c)] => c,
        other => panic!("not a system message: {other:?}"),
    }
}

pub(super) fn submitted(effects: &[Effect]) -> Option<&Conversation> {
    effects.iter().find_map(|e| match e {
        Effect::Engine(CommandKind::Submit(c, _)) => Some(c),
        _ => None,
    })
}

fn saves(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Save(_)))
        .count()
}

/// Sends "hi" and streams a full turn: reasoning, then a final answer.
fn full_turn(app: &mut App) {
    type_text(app, "hi");
    app.update(key(KeyCode::Enter));
    app.update(token("analysis", "User says hi."));
    app.update(token("analysis", " Reply."));
    app.update(Input::Engine(Event::MessageDone(message(
        "analysis",
        "User says hi. Reply.",
    ))));
    app.update(token("final", "Hello"));
    app.update(token("final", "!"));
    app.update(Input::Engine(Event::MessageDone(message(
        "final", "Hello!",
    ))));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(12, 600.0),
    }));
}

#[test]
fn submit_sends_the_whole_conversation_and_saves() {
    let mut app = app();
    type_text(&mut app, "What is Rust?");
    let effects = app.update(key(KeyCode::Enter));
    let conversation = submitted(&effects).expect("a submit");
    assert_eq!(conversation.messages.len(), 2);
    assert_eq!(conversation.messages[0].role, Role::System);
    let system = system_content(conversation);
    assert_eq!(system.reasoning_effort, Some(ReasoningEffort::Medium));
    assert_eq!(
        system.conversation_start_date.as_deref(),
        Some("2026-11-27")
    );
    assert_eq!(message_text(&conversation.messages[1]), "What is Rust?");
    assert_eq!(
        saves(&effects),
        1,
        "the user's message is saved before the answer comes"
    );
    assert!(app.generating);
    assert!(app.input.is_empty());
    assert_eq!(app.meta.title, "What is Rust?");
}

#[test]
fn tokens_go_to_reasoning_and_chat_by_channel() {
    let mut app = app();
    full_turn(&mut app);
    let turn = app.last_turn().unwrap();
    assert_eq!(turn.reasoning.text(), "User says hi. Reply.");
    assert_eq!(turn.answer.text(), "Hello!");
    assert_eq!(turn.stop, Some(StopReason::Return));
    assert!(!app.generating);
    // user, analysis, final: exactly what the engine reported, no duplicates.
    let roles: Vec<_> = app
        .messages
        .iter()
        .map(|m| (m.role, m.channel.clone()))
        .collect();
    assert_eq!(
        roles,
        vec![
            (Role::User, None),
            (Role::Assistant, Some("analysis".into())),
            (Role::Assistant, Some("final".into()))
        ]
    );
    assert_eq!(app.meta.turns.len(), 1);
    assert_eq!(app.meta.turns[0].messages_after, 3);
}

#[test]
fn commentary_becomes_a_tool_call_line() {
    let mut app = app();
    type_text(&mut app, "weather?");
    app.update(key(KeyCode::Enter));
    app.update(Input::Engine(Event::Token {
        token_id: 0,
        channel: Some("commentary".into()),
        recipient: Some("functions.get_weather".into()),
        delta: "{\"city\":\"Oslo\"}".into(),
    }));
    assert_eq!(
        app.last_turn().unwrap().commentary,
        vec!["→ functions.get_weather: {\"city\":\"Oslo\"}"]
    );
}

#[test]
fn stop_mid_stream_keeps_what_arrived() {
    let mut app = app();
    type_text(&mut app, "count");
    app.update(key(KeyCode::Enter));
    app.update(token("final", "one two"));
    let effects = app.update(key(KeyCode::Esc));
    assert_eq!(effects, vec![Effect::Engine(CommandKind::Stop)]);
    assert!(app.generating, "still generating until the engine confirms");
    // A token already in flight still lands.
    app.update(token("final", " three"));
    let effects = app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Stopped,
        stats: stats(3, 100.0),
    }));
    assert_eq!(saves(&effects), 1);
    assert_eq!(app.last_turn().unwrap().answer.text(), "one two three");
    assert_eq!(app.last_turn().unwrap().stop, Some(StopReason::Stopped));
    let last = app.messages.last().unwrap();
    assert_eq!(
        (last.role, last.channel.as_deref()),
        (Role::Assistant, Some("final"))
    );
    assert_eq!(message_text(last), "one two three");
    // Tokens after the turn ended are ignored.
    app.update(token("final", " late"));
    assert_eq!(app.last_turn().unwrap().answer.text(), "one two three");
}

#[test]
fn a_second_message_waits_for_the_first_answer() {
    let mut app = app();
    type_text(&mut app, "a");
    app.update(key(KeyCode::Enter));
    type_text(&mut app, "b");
    let effects = app.update(key(KeyCode::Enter));
    assert!(submitted(&effects).is_none());
    assert_eq!(app.input.text(), "b", "the text stays in the box");
    assert!(app.notice.as_deref().unwrap().contains("stop"));
}

#[test]
fn nothing_is_sent_before_the_model_is_ready() {
    let mut app = App::new(AppOptions {
        theme: Theme::default(),
        keymap: KeyMap::default(),
        effort: ReasoningEffort::Medium,
        developer_instructions: String::new(),
        chat_id: "x".into(),
        sampling: SamplingParams::default(),
        today: "2026-11-27".into(),
    });
    type_text(&mut app, "hi");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(app.input.text(), "hi");
}

#[test]
fn regenerate_resubmits_from_the_last_question() {
    let mut app = app();
    full_turn(&mut app);
    let effects = app.update(ctrl('g'));
    let conversation = submitted(&effects).expect("a submit");
    assert_eq!(conversation.messages.last().unwrap().role, Role::User);
    assert_eq!(app.messages.len(), 1);
    assert!(app.meta.turns.is_empty());
    assert_eq!(app.entries.len(), 2, "user entry + a fresh turn");
    assert!(app.last_turn().unwrap().answer.is_empty());
}

#[test]
fn new_chat_saves_the_old_one_and_resets() {
    let mut app = app();
    full_turn(&mut app);
    let old_id = app.chat_id.clone();
    let effects = app.update(ctrl('n'));
    let saved = effects.iter().find_map(|e| match e {
        Effect::Save(chat) => Some(chat),
        _ => None,
    });
    assert_eq!(saved.unwrap().id, old_id);
    assert!(effects.contains(&Effect::Engine(CommandKind::NewChat)));
    assert!(app.messages.is_empty() && app.entries.is_empty());
    assert_ne!(app.chat_id, old_id);
}

#[test]
fn effort_cycles_and_goes_into_the_system_message() {
    let mut app = app();
    let effects = app.update(ctrl('e'));
    assert_eq!(
        effects,
        vec![Effect::Engine(CommandKind::SetEffort(
            ReasoningEffort::High
        ))]
    );
    app.update(ctrl('e'));
    assert_eq!(app.effort, ReasoningEffort::Low);
    assert_eq!(
        system_content(&app.conversation()).reasoning_effort,
        Some(ReasoningEffort::Low)
    );
}

#[test]
fn slash_commands() {
    let mut app = app();
    type_text(&mut app, "/ctx 8192");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::Engine(CommandKind::SetContextLimit(8192))]
    );
    type_text(&mut app, "/effort high");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.effort, ReasoningEffort::High);
    type_text(&mut app, "/system Answer in French.");
    app.update(key(KeyCode::Enter));
    let conversation = app.conversation();
    assert_eq!(conversation.messages[1].role, Role::Developer);
    assert!(matches!(
        &conversation.messages[1].content[..],
        [Content::DeveloperContent(d)] if d.instructions.as_deref() == Some("Answer in French.")
    ));
    type_text(&mut app, "/system");
    app.update(key(KeyCode::Enter));
    assert_eq!(
        app.input.text(),
        "/system Answer in French.",
        "instructions come back to edit"
    );
    app.input.take();
    type_text(&mut app, "/rename My chat");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.meta.title, "My chat");
    type_text(&mut app, "/bogus");
    app.update(key(KeyCode::Enter));
    assert!(
        app.notice
            .as_deref()
            .unwrap()
            .contains("unknown command /bogus")
    );
}

#[test]
fn copy_answer_and_last_code_block() {
    let mut app = app();
    type_text(&mut app, "code");
    app.update(key(KeyCode::Enter));
    app.update(token(
        "final",
        "Here:\n\n```rust\nfn a() {}\n```\n\n```py\nprint(1)\n```\n",
    ));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(5, 100.0),
    }));
    assert_eq!(
        app.update(ctrl('k')),
        vec![Effect::Copy("print(1)\n".into())]
    );
    let copied = app.update(ctrl('y'));
    assert!(matches!(&copied[..], [Effect::Copy(t)] if t.starts_with("Here:")));
}

#[test]
fn fatal_error_shows_and_quit_still_works() {
    let mut app = app();
    app.update(Input::Engine(Event::Error {
        message: "model file is broken".into(),
        fatal: true,
    }));
    assert!(matches!(&app.overlay, Overlay::Error { fatal: true, .. }));
    assert!(
        app.update(key(KeyCode::Esc)).is_empty(),
        "a fatal error stays up"
    );
    assert!(matches!(&app.overlay, Overlay::Error { .. }));
    assert_eq!(app.update(ctrl('q')), vec![Effect::Quit]);
}

#[test]
fn metrics_math() {
    let s = stats(50, 2000.0);
    assert_eq!(s.decode_tok_s(), 25.0);
    assert_eq!(s.prefill_tok_s(), 2000.0);
    assert_eq!(context_percent(1024, 4096), 25.0);
    assert_eq!(context_percent(5, 0), 0.0);
    let mut app = app();
    for i in 0..(SPEED_HISTORY_LEN + 5) {
        app.update(Input::Engine(Event::Metrics(MetricsSample {
            memory: MemorySample::default(),
            context_used: i,
            context_limit: 4096,
            turn: s,
            decode_tok_s_now: i as f64,
            generating: true,
            remote: None,
        })));
    }
    assert_eq!(app.metrics.decode_history.len(), SPEED_HISTORY_LEN);
    assert_eq!(
        app.metrics.decode_history.back(),
        Some(&((SPEED_HISTORY_LEN + 4) as f64))
    );
    assert_eq!(app.metrics.decode_history.front(), Some(&5.0));
}

#[test]
fn reopening_a_chat_restores_turns_stats_and_instructions() {
    let mut app = app();
    app.developer_instructions = "Be brief.".into();
    full_turn(&mut app);
    let snapshot = app.snapshot();
    let mut reopened = self::app();
    reopened.open_chat(snapshot.clone());
    assert_eq!(reopened.developer_instructions, "Be brief.");
    assert_eq!(reopened.messages, app.messages);
    assert_eq!(reopened.conversation(), snapshot.conversation);
    let turn = reopened.last_turn().unwrap();
    assert_eq!(turn.answer.text(), "Hello!");
    assert_eq!(turn.reasoning.text(), "User says hi. Reply.");
    assert_eq!(turn.stats, Some(stats(12, 600.0)));
}

#[test]
fn focus_cycles_and_skips_a_hidden_reasoning_pane() {
    let mut app = app();
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus, Pane::Chat);
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus, Pane::Reasoning);
    app.update(ctrl('r'));
    assert!(!app.show_reasoning);
    assert_eq!(app.focus, Pane::Chat);
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus, Pane::Metrics);
    // A chat taller than its pane, as the last draw saw it.
    app.views.set(ScrollViews {
        chat: PaneView {
            total_lines: 100,
            height: 10,
        },
        ..ScrollViews::default()
    });
    app.update(key(KeyCode::PageUp));
    assert!(!app.chat_scroll.follows());
}

#[test]
fn help_opens_with_question_mark_only_on_an_empty_input() {
    let mut app = app();
    app.update(key(KeyCode::Char('?')));
    assert_eq!(app.overlay, Overlay::Help);
    app.update(key(KeyCode::Char('x')));
    assert_eq!(app.overlay, Overlay::None);
    type_text(&mut app, "why?");
    assert_eq!(app.input.text(), "why?");
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn sampling_commands_change_one_setting_and_tell_the_engine() {
    let mut app = app();
    type_text(&mut app, "/temp 0.7");
    let effects = app.update(key(KeyCode::Enter));
    let expected = SamplingParams {
        temperature: 0.7,
        ..SamplingParams::default()
    };
    assert_eq!(
        effects,
        vec![Effect::Engine(CommandKind::SetSampling(expected))]
    );
    type_text(&mut app, "/top-k 40");
    let effects = app.update(key(KeyCode::Enter));
    let expected = SamplingParams {
        top_k: 40,
        ..expected
    };
    assert_eq!(
        effects,
        vec![Effect::Engine(CommandKind::SetSampling(expected))]
    );
    assert_eq!(app.sampling, expected);
    let notice = app.notice.clone().unwrap_or_default();
    assert!(
        notice.contains("temperature 0.7") && notice.contains("top-k 40"),
        "{notice}"
    );
}

#[test]
fn bad_sampling_values_show_the_usage_and_change_nothing() {
    let mut app = app();
    for line in ["/top-p 1.5", "/temp -1", "/top-k many", "/min-p"] {
        type_text(&mut app, line);
        assert!(app.update(key(KeyCode::Enter)).is_empty(), "{line}");
        let notice = app.notice.clone().unwrap_or_default();
        assert!(notice.contains("give a"), "{line}: {notice}");
    }
    assert_eq!(app.sampling, SamplingParams::default());
    type_text(&mut app, "/sampling");
    app.update(key(KeyCode::Enter));
    let notice = app.notice.clone().unwrap_or_default();
    assert!(
        notice.starts_with("temperature 1 · top-p 1 · top-k off"),
        "{notice}"
    );
}

#[test]
fn an_engine_error_ends_the_turn_and_the_input_works_again() {
    let mut app = app();
    type_text(&mut app, "hi");
    app.update(key(KeyCode::Enter));
    app.update(token("final", "Partial"));
    let effects = app.update(Input::Engine(Event::Error {
        message: "the conversation is 5000 tokens but the context limit is 4096".into(),
        fatal: false,
    }));
    assert!(!app.generating, "the turn ended");
    assert_eq!(saves(&effects), 1);
    assert!(
        matches!(&app.overlay, Overlay::Error { message, fatal: false } if message.contains("context limit is 4096")),
        "{:?}",
        app.overlay
    );
    // What arrived before the error is kept.
    assert_eq!(message_text(app.messages.last().unwrap()), "Partial");
    // Esc closes the popup; a second Esc has nothing to stop (it said "stopping…" forever).
    app.update(key(KeyCode::Esc));
    assert_eq!(app.overlay, Overlay::None);
    let effects = app.update(key(KeyCode::Esc));
    assert!(effects.is_empty());
    assert_eq!(
        app.notice.as_deref(),
        Some("nothing to stop · Ctrl+Q quits")
    );
    type_text(&mut app, "/ctx 8192");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::Engine(CommandKind::SetContextLimit(8192))]
    );
    type_text(&mut app, "again");
    let effects = app.update(key(KeyCode::Enter));
    let conversation = submitted(&effects).expect("a new message is sent");
    assert_eq!(message_text(conversation.messages.last().unwrap()), "again");
}

#[test]
fn a_signal_saves_and_quits_like_ctrl_q() {
    let mut app = app();
    type_text(&mut app, "hi");
    app.update(key(KeyCode::Enter));
    let effects = app.update(Input::Terminate);
    assert!(app.quit);
    assert_eq!(saves(&effects), 1);
    assert_eq!(effects.first(), Some(&Effect::Engine(CommandKind::Stop)));
    assert_eq!(effects.last(), Some(&Effect::Quit));
}

/// A chat written by another harmony tool: a custom system message, a developer message with
/// function tools, and fields this version does not know at every level.
const IMPORTED_CHAT: &str = r#"{
  "messages": [
    {"role": "system", "name": null, "trace": "s1", "content": [{"type": "system_content",
      "model_identity": "You are Pirate, a parrot.", "reasoning_effort": "High",
      "conversation_start_date": "2025-01-02", "knowledge_cutoff": "2024-06",
      "future_flag": true}]},
    {"role": "developer", "name": null, "content": [{"type": "developer_content",
      "instructions": "Talk like a pirate.",
      "tools": {"functions": {"name": "functions", "tools": [{"name": "get_weather",
        "description": "Weather at a place", "parameters": {"type": "object"}}]}},
      "x_extra": 1}]},
    {"role": "user", "name": null, "content": [{"type": "text", "text": "hi"}],
      "metadata": {"source": "import"}},
    {"role": "assistant", "name": null, "content": [{"type": "text", "text": "Arr"}],
      "channel": "final"}
  ],
  "exported_by": "harmony-tool"
}"#;

#[test]
fn a_reopened_chat_keeps_what_it_had_when_saved_again() {
    let mut app = app();
    let meta: ChatMeta = serde_json::from_str(
        r#"{"title": "parrot", "created": "2025-01-02T00:00:00Z", "updated": "2025-01-02T00:00:00Z", "pinned": true}"#,
    )
    .unwrap();
    app.open_chat(ChatSnapshot {
        id: "imported".into(),
        meta,
        conversation: serde_json::from_str(IMPORTED_CHAT).unwrap(),
    });
    type_text(&mut app, "more");
    let effects = app.update(key(KeyCode::Enter));
    let saved = effects
        .iter()
        .find_map(|e| match e {
            Effect::Save(chat) => Some(chat),
            _ => None,
        })
        .expect("a save");
    let json = serde_json::to_value(&saved.conversation).unwrap();
    assert_eq!(json["exported_by"], "harmony-tool");
    let system = &json["messages"][0];
    assert_eq!(system["trace"], "s1");
    assert_eq!(
        system["content"][0]["model_identity"],
        "You are Pirate, a parrot."
    );
    assert_eq!(
        system["content"][0]["conversation_start_date"],
        "2025-01-02"
    );
    assert_eq!(system["content"][0]["future_flag"], true);
    // The effort follows the app's setting, as the status line shows it.
    assert_eq!(system["content"][0]["reasoning_effort"], "Medium");
    let developer = &json["messages"][1]["content"][0];
    assert_eq!(developer["instructions"], "Talk like a pirate.");
    assert_eq!(
        developer["tools"]["functions"]["tools"][0]["name"],
        "get_weather"
    );
    assert_eq!(developer["x_extra"], 1);
    assert_eq!(json["messages"][2]["metadata"]["source"], "import");
    assert_eq!(json["messages"][4]["content"][0]["text"], "more");
    let meta = serde_json::to_value(&saved.meta).unwrap();
    assert_eq!(meta["pinned"], true);
    assert_eq!(meta["created"], "2025-01-02T00:00:00Z");
    // The engine gets the same system and developer messages.
    let submitted = submitted(&effects).unwrap();
    assert_eq!(submitted, &saved.conversation);
    // Changed instructions replace only the instructions.
    type_text(&mut app, "/system Be brief.");
    app.update(key(KeyCode::Enter));
    let developer = app.conversation().messages[1].clone();
    match &developer.content[..] {
        [Content::DeveloperContent(d)] => {
            assert_eq!(d.instructions.as_deref(), Some("Be brief."));
            assert!(d.tools.is_some());
        }
        other => panic!("{other:?}"),
    }
}

// ─── Scrolling ───

/// The screen as drawn at `width` x `height`, one string per row.
pub(super) fn drawn(app: &App, width: u16, height: u16) -> Vec<String> {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut terminal = ratatui::Terminal::new(backend).expect("a test backend never fails");
    terminal
        .draw(|frame| crate::tui::ui::draw(frame, app))
        .expect("a test backend never fails");
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

/// The chat pane's text rows (inside its border) of an 80x24 screen.
fn chat_rows(screen: &[String]) -> Vec<String> {
    screen[2..19]
        .iter()
        .map(|row| row.chars().skip(1).take(46).collect())
        .collect()
}

fn stream_lines(app: &mut App, lines: std::ops::Range<usize>) {
    for i in lines {
        app.update(token("final", &format!("line {i}\n\n")));
    }
}

/// An app answering with `lines` paragraphs so far, drawn once at 80x24.
fn answering(lines: std::ops::Range<usize>) -> App {
    let mut app = app();
    type_text(&mut app, "count");
    app.update(key(KeyCode::Enter));
    stream_lines(&mut app, lines);
    drawn(&app, 80, 24);
    app
}

#[test]
fn scrolled_up_the_chat_stays_put_while_the_answer_streams() {
    let mut app = answering(0..40);
    app.update(key(KeyCode::PageUp));
    let before = drawn(&app, 80, 24);
    assert!(!before[19].contains("new text"), "{}", before[19]);
    stream_lines(&mut app, 40..60);
    let after = drawn(&app, 80, 24);
    assert_eq!(chat_rows(&after), chat_rows(&before), "the view moved");
    assert!(after[19].contains("↓ new text"), "{}", after[19]);
    // Back at the bottom it follows again.
    for _ in 0..20 {
        app.update(key(KeyCode::PageDown));
    }
    stream_lines(&mut app, 60..61);
    let bottom = drawn(&app, 80, 24);
    assert!(app.chat_scroll.follows());
    assert!(
        chat_rows(&bottom).iter().any(|row| row.contains("line 60")),
        "{bottom:#?}"
    );
    assert!(!bottom[19].contains("new text"));
}

#[test]
fn one_page_down_after_paging_past_the_top_moves_down() {
    let mut app = answering(0..60);
    for _ in 0..10 {
        app.update(key(KeyCode::PageUp));
    }
    let top = drawn(&app, 80, 24);
    assert!(chat_rows(&top)[0].contains("You"), "{top:#?}");
    app.update(key(KeyCode::PageDown));
    let next = drawn(&app, 80, 24);
    assert_ne!(chat_rows(&next), chat_rows(&top));
}

#[test]
fn one_resize_key_moves_the_border_after_many_past_the_limit() {
    let mut app = app();
    let ctrl_key = |code| Input::Key(KeyEvent::new(code, KeyModifiers::CONTROL));
    drawn(&app, 100, 30);
    for _ in 0..30 {
        app.update(ctrl_key(KeyCode::Down));
    }
    drawn(&app, 100, 30);
    let smallest = app.rects.get().metrics.height;
    app.update(ctrl_key(KeyCode::Up));
    drawn(&app, 100, 30);
    assert_eq!(app.rects.get().metrics.height, smallest + 2);
}

#[test]
fn the_key_that_closes_an_error_popup_is_not_lost() {
    let mut app = app();
    let error = || {
        Input::Engine(Event::Error {
            message: "the prompt is over the context limit".into(),
            fatal: false,
        })
    };
    app.update(error());
    type_text(&mut app, "/new");
    assert_eq!(app.overlay, Overlay::None);
    assert_eq!(app.input.text(), "/new");
    let effects = app.update(key(KeyCode::Enter));
    assert!(
        effects.contains(&Effect::Engine(CommandKind::NewChat)),
        "{effects:?}"
    );
    // Esc and Enter only close it.
    app.update(error());
    app.update(key(KeyCode::Enter));
    assert_eq!(app.overlay, Overlay::None);
    assert!(app.messages.is_empty(), "nothing was sent");
    app.update(error());
    assert!(app.update(key(KeyCode::Esc)).is_empty());
    assert_eq!(app.overlay, Overlay::None);
}

/// The engine's report of `used` tokens in a 4096-token context.
fn context_report(used: usize) -> Input {
    Input::Engine(Event::Metrics(MetricsSample {
        context_used: used,
        context_limit: 4096,
        ..MetricsSample::default()
    }))
}

#[test]
fn the_status_line_shows_the_context_of_a_reopened_chat() {
    let mut saved = app();
    full_turn(&mut saved);
    let snapshot = saved.snapshot();
    let mut app = app();
    // The engine last reported on another, longer chat.
    app.update(context_report(3000));
    assert!(drawn(&app, 120, 24)[0].contains("ctx 3.0k/4.1k"));
    app.open_chat(snapshot);
    // 20 cached + 100 prefilled + 12 generated tokens when the reopened chat was saved.
    let status = &drawn(&app, 120, 24)[0];
    assert!(status.contains("ctx 132/4.1k"), "{status}");
    // The next report on this chat's turn takes over.
    type_text(&mut app, "more");
    app.update(key(KeyCode::Enter));
    app.update(context_report(200));
    assert!(drawn(&app, 120, 24)[0].contains("ctx 200/4.1k"));
}

#[test]
fn the_light_theme_paints_its_own_background() {
    let mut app = app();
    app.theme = Theme::load("light", None).expect("built in");
    full_turn(&mut app);
    app.overlay = Overlay::Help;
    let backend = ratatui::backend::TestBackend::new(80, 24);
    let mut terminal = ratatui::Terminal::new(backend).expect("a test backend never fails");
    terminal
        .draw(|frame| crate::tui::ui::draw(frame, &app))
        .expect("a test backend never fails");
    let buffer = terminal.backend().buffer();
    let unpainted = buffer
        .content
        .iter()
        .filter(|cell| {
            cell.bg == ratatui::style::Color::Reset || cell.fg == ratatui::style::Color::Reset
        })
        .count();
    assert_eq!(unpainted, 0, "cells left in the terminal's own colours");
}

#[test]
fn narrow_screens_hide_reasoning_then_metrics_before_the_chat_shrinks() {
    let mut app = app();
    full_turn(&mut app);
    let screen = drawn(&app, 62, 24);
    let rects = app.rects.get();
    assert_eq!(rects.reasoning, None);
    assert!(rects.metrics.width >= 20, "{rects:?}");
    assert!(rects.chat.width >= 40, "{rects:?}");
    assert!(
        screen
            .iter()
            .any(|row| row.contains("reasoned 4 words (screen too narrow)")),
        "{screen:#?}"
    );
    drawn(&app, 50, 24);
    let rects = app.rects.get();
    assert_eq!(rects.metrics.width, 0);
    assert_eq!(rects.chat.width, 50);
    // Focus skips the hidden panes.
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus, Pane::Input);
}

#[test]
fn at_80x24_every_metrics_row_fits() {
    let mut app = app();
    app.model = ModelState::Ready(ModelInfo {
        name: "demo".into(),
        device: "cpu (16 threads)".into(),
        context_limit: 4096,
        max_context: 131_072,
    });
    app.update(Input::Engine(Event::Metrics(MetricsSample {
        memory: MemorySample {
            device_name: "CPU (16 threads)".into(),
            device_used_bytes: 20_000_000_000,
            device_free_bytes: 12_000_000_000,
            process_rss_bytes: 13_000_000_000,
            kv_cache_bytes: 1_100_000_000,
            model_bytes: 13_700_000_000,
            kv_in_use_bytes: 100_000_000,
            kv_reserved_bytes: 1_100_000_000,
            scratch_bytes: 400_000_000,
        },
        context_used: 412,
        context_limit: 4096,
        turn: TurnStats {
            prefill_tokens: 8400,
            cached_tokens: 1200,
            ..stats(41, 2000.0)
        },
        decode_tok_s_now: 20.5,
        generating: false,
        remote: None,
    })));
    let screen = drawn(&app, 80, 24).join("\n");
    for row in [
        "CPU (16 threads) · 29.8 GiB",
        "█wts 13G ▓▒KV 95M/1.0G",
        "░scr 381M ▪oth 4.5G ·free 11G",
        "RSS      12.1 GiB",
        "prefill  168000 tok/s",
        "prompt   8.4k + 1.2k cached",
        "decode   20.5 tok/s",
        "TTFT     75 ms · 41 tok",
        "ctx 412/4.1k 10% ",
        "┃············· ┃4.1k of 131.1k",
    ] {
        assert!(screen.contains(row), "{row:?} missing:\n{screen}");
    }
}

#[test]
fn the_new_line_hint_names_a_key_the_terminal_delivers() {
    let mut app = app();
    let hints = |app: &App| drawn(app, 120, 24)[23].clone();
    // Without keyboard enhancement Shift+Enter arrives as Enter (it would send).
    assert!(hints(&app).contains("Ctrl+J newline"), "{}", hints(&app));
    app.shift_enter_works = true;
    assert!(
        hints(&app).contains("Shift+Enter newline"),
        "{}",
        hints(&app)
    );
}

#[test]
fn json_sets_the_answer_format_that_every_submit_carries_until_off() {
    let mut app = app();
    type_text(&mut app, "/json ~/verdict.json");
    let effects = app.update(key(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![Effect::LoadAnswerFormat(PathBuf::from("~/verdict.json"))],
        "the driver reads the file, not update"
    );
    // The driver's answer: a bad file leaves the format unset and says why.
    app.set_answer_format(PathBuf::from("/x/bad.json"), Err("not JSON".into()));
    assert!(app.answer_format.is_none());
    assert!(app.notice.as_deref().unwrap_or("").contains("not JSON"));

    let constraint = crate::structured::TurnConstraint::from_response_format(
        crate::structured::ResponseFormat::JsonObject,
    )
    .expect("json_object is supported");
    app.set_answer_format(PathBuf::from("/x/verdict.json"), Ok(constraint.clone()));
    type_text(&mut app, "hello");
    let effects = app.update(key(KeyCode::Enter));
    let carried = effects.iter().find_map(|e| match e {
        Effect::Engine(CommandKind::Submit(_, c)) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(carried, Some(Some(constraint)), "{effects:?}");

    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(1, 10.0),
    }));
    type_text(&mut app, "/json off");
    app.update(key(KeyCode::Enter));
    type_text(&mut app, "again");
    let effects = app.update(key(KeyCode::Enter));
    let carried = effects.iter().find_map(|e| match e {
        Effect::Engine(CommandKind::Submit(_, c)) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(carried, Some(None), "{effects:?}");
}

#[test]
fn up_and_down_on_a_one_line_box_recall_sent_messages_and_keep_the_draft() {
    let mut app = app();
    type_text(&mut app, "first question");
    app.update(key(KeyCode::Enter));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(1, 10.0),
    }));
    type_text(&mut app, "/effort high");
    app.update(key(KeyCode::Enter));
    type_text(&mut app, "half typed");

    app.update(key(KeyCode::Up));
    assert_eq!(app.input.text(), "/effort high");
    app.update(key(KeyCode::Up));
    assert_eq!(app.input.text(), "first question");
    app.update(key(KeyCode::Up));
    assert_eq!(app.input.text(), "first question", "stays at the oldest");
    app.update(key(KeyCode::Down));
    assert_eq!(app.input.text(), "/effort high");
    app.update(key(KeyCode::Down));
    assert_eq!(app.input.text(), "half typed", "the draft comes back");

    // A multi-line draft: ↑ moves between its lines first, and only then recalls.
    app.input.set("line one\nline two");
    app.update(key(KeyCode::Up));
    assert_eq!(
        app.input.text(),
        "line one\nline two",
        "moved up a line, no recall"
    );
    app.update(key(KeyCode::Up));
    assert_eq!(
        app.input.text(),
        "line one\nline two",
        "a multi-line draft is never replaced by history"
    );
}

#[test]
fn word_keys_reach_the_input_box() {
    let mut app = app();
    type_text(&mut app, "hello big world");
    app.update(ctrl('w'));
    assert_eq!(app.input.text(), "hello big ");
    app.update(Input::Key(KeyEvent::new(KeyCode::Left, KeyModifiers::ALT)));
    app.update(Input::Key(KeyEvent::new(
        KeyCode::Backspace,
        KeyModifiers::ALT,
    )));
    assert_eq!(app.input.text(), "big ", "Alt+← then Alt+Backspace");
    app.update(ctrl('a'));
    type_text(&mut app, ">");
    assert_eq!(app.input.text(), ">big ", "Ctrl+A goes to the line start");
}
