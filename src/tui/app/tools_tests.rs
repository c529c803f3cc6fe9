//! Tool calls through `App::update`: the approval prompt's answers (allow once, allow for the
//! chat, deny, edit, Esc), stray keys, results coming back, tool time, blocks, and reopening.

use std::time::Duration;

use crossterm::event::KeyCode;

use super::tests::{app, ctrl, key, stats, submitted, type_text};
use super::tools::{CallState, MAX_CALLS_PER_MESSAGE, STOPPED_TEXT};
use super::*;
use crate::tools::{
    ApprovalPolicy, CatalogEntry, DenyReason, ToolCall, ToolCatalog, ToolResult, ToolWhere,
};

const ARGS: &str = "{\"timezone\":\"UTC\"}";

fn time_server() -> ToolWhere {
    ToolWhere::McpServer {
        server: "time".into(),
        command: "uvx mcp-server-time".into(),
    }
}

/// The app with a tool host offering `functions.get_time`.
fn tool_app() -> App {
    let mut app = app();
    let mut catalog = ToolCatalog::default();
    catalog.entries.insert(
        "functions.get_time".into(),
        CatalogEntry {
            where_runs: time_server(),
            read_only: true,
        },
    );
    app.update(Input::Tool(ToolEvent::Tools(catalog)));
    app
}

/// The user asks; the model calls `functions.get_time` and the turn ends in `<|call|>`.
fn call_turn(app: &mut App, question: &str) -> Vec<Effect> {
    type_text(app, question);
    app.update(key(KeyCode::Enter));
    model_calls(app)
}

/// The model's next turn: a call of `functions.get_time`.
fn model_calls(app: &mut App) -> Vec<Effect> {
    app.update(Input::Engine(Event::Token {
        token_id: 0,
        channel: Some("commentary".into()),
        recipient: Some("functions.get_time".into()),
        delta: ARGS.into(),
    }));
    let call = Message::assistant("commentary", ARGS)
        .with_recipient("functions.get_time")
        .with_content_type("<|constrain|>json");
    app.update(Input::Engine(Event::MessageDone(call)));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Call,
        stats: stats(5, 100.0),
    }))
}

/// Presses an answer key once the prompt has been up long enough to count.
fn answer(app: &mut App, c: char) -> Vec<Effect> {
    if let Some(prompt) = &mut app.tools.prompt {
        prompt.shown_at -= super::tools::ANSWER_DELAY;
    }
    app.update(key(KeyCode::Char(c)))
}

fn runs(effects: &[Effect]) -> Vec<ToolCall> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Tool(ToolCommand::Run { call, .. }) => Some(call.clone()),
            _ => None,
        })
        .collect()
}

fn finished(call: &ToolCall, text: &str, ms: u64) -> Input {
    Input::Tool(ToolEvent::Finished(ToolResult {
        call_id: call.id,
        author: call.recipient.clone(),
        channel: call.channel.clone(),
        text: text.into(),
        is_error: false,
        duration: Duration::from_millis(ms),
    }))
}

fn last_message_text(app: &App) -> String {
    app.messages.last().map(Message::text).unwrap_or_default()
}

#[test]
fn a_call_waits_in_the_prompt_and_allow_once_runs_it_and_continues() {
    let mut app = tool_app();
    let effects = call_turn(&mut app, "what time is it");
    assert!(
        runs(&effects).is_empty(),
        "nothing runs before the user answers"
    );
    let prompt = app.tools.prompt.clone().expect("the approval prompt is up");
    let block = &app.tools.blocks[prompt.block];
    assert_eq!(block.call.recipient, "functions.get_time");
    assert_eq!(block.where_runs, time_server());
    // The streamed call line became the block.
    assert!(app.last_turn().is_some_and(|t| t.commentary.is_empty()));

    let effects = answer(&mut app, 'y');
    let ran = runs(&effects);
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].arguments, ARGS);
    assert!(app.tools.prompt.is_none());
    assert_eq!(app.tools.blocks[0].state, CallState::Running);

    let effects = app.update(finished(&ran[0], "12:00 UTC", 300));
    let conversation = submitted(&effects).expect("the model continues with the result");
    let result = conversation.messages.last().expect("a message");
    assert_eq!(result.role, Role::Tool);
    assert_eq!(result.name.as_deref(), Some("functions.get_time"));
    assert_eq!(result.text(), "12:00 UTC");
    assert!(matches!(app.tools.blocks[0].state, CallState::Done(_)));
    assert_eq!(app.tools.turn_time, Duration::from_millis(300));
    assert_eq!(app.tools.turn_calls, 1);

    // Allowed once only: the next call asks again.
    let effects = model_calls(&mut app);
    assert!(runs(&effects).is_empty());
    assert!(app.tools.prompt.is_some());
}

#[test]
fn allow_for_this_chat_runs_later_calls_without_asking_until_a_new_chat() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    let effects = answer(&mut app, 'a');
    let ran = runs(&effects);
    assert_eq!(ran.len(), 1);
    app.update(finished(&ran[0], "12:00", 5));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(3, 10.0),
    }));

    let effects = call_turn(&mut app, "and now?");
    assert_eq!(
        runs(&effects).len(),
        1,
        "allowed for the chat: runs at once"
    );
    assert!(app.tools.prompt.is_none());
    let ran = runs(&effects);
    app.update(finished(&ran[0], "12:01", 5));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(3, 10.0),
    }));

    let effects = app.update(ctrl('n'));
    assert!(effects.contains(&Effect::Tool(ToolCommand::ResetChat {
        chat_id: "test-chat".into()
    })));
    let effects = call_turn(&mut app, "time in the new chat?");
    assert!(runs(&effects).is_empty(), "a new chat asks again");
    assert!(app.tools.prompt.is_some());
}

#[test]
fn deny_tells_the_model_and_runs_nothing() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    let effects = answer(&mut app, 'n');
    assert!(runs(&effects).is_empty());
    let conversation = submitted(&effects).expect("the model is told and continues");
    let told = conversation.messages.last().expect("a message");
    assert_eq!(told.role, Role::Tool);
    assert_eq!(told.text(), DenyReason::User.explain("functions.get_time"));
    match &app.tools.blocks[0].state {
        CallState::Done(result) => assert!(result.is_error),
        other => panic!("not done: {other:?}"),
    }
}

#[test]
fn edit_runs_the_edited_arguments_and_the_model_reads_them() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    type_text(&mut app, "xx");
    assert_eq!(app.input.text(), "", "typing at the prompt goes nowhere");
    answer(&mut app, 'e');
    assert_eq!(app.input.text(), ARGS, "the arguments are in the input box");
    app.update(ctrl('u'));
    type_text(&mut app, "{\"timezone\":\"CET\"}");
    let effects = app.update(key(KeyCode::Enter));
    let ran = runs(&effects);
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].arguments, "{\"timezone\":\"CET\"}");
    assert_eq!(last_message_text(&app), "{\"timezone\":\"CET\"}");
    assert_eq!(
        app.messages.last().and_then(|m| m.recipient.as_deref()),
        Some("functions.get_time")
    );
    assert!(app.tools.prompt.is_none());
}

#[test]
fn esc_while_editing_goes_back_to_the_prompt_and_puts_the_draft_back() {
    let mut app = tool_app();
    type_text(&mut app, "time?");
    app.update(key(KeyCode::Enter));
    type_text(&mut app, "next question");
    model_calls(&mut app);
    answer(&mut app, 'e');
    let effects = app.update(key(KeyCode::Esc));
    assert!(runs(&effects).is_empty());
    let prompt = app.tools.prompt.as_ref().expect("still asking");
    assert!(!prompt.editing);
    assert_eq!(app.input.text(), "next question");
}

#[test]
fn stray_keys_never_approve_a_call() {
    let mut app = tool_app();
    // Keys typed while the model is still answering: no prompt is up, so they are text.
    type_text(&mut app, "time?");
    app.update(key(KeyCode::Enter));
    type_text(&mut app, "ya");
    let effects = app.update(key(KeyCode::Enter));
    assert!(runs(&effects).is_empty());
    let effects = model_calls(&mut app);
    assert!(runs(&effects).is_empty());
    assert!(app.tools.prompt.is_some(), "the call still asks");
    // At the prompt: Enter, other letters, Tab, paste and the mouse approve nothing.
    for input in [
        key(KeyCode::Enter),
        key(KeyCode::Char('x')),
        key(KeyCode::Char('Y')),
        key(KeyCode::Tab),
        ctrl('g'),
        Input::Paste("y".into()),
    ] {
        let effects = app.update(input);
        assert!(runs(&effects).is_empty());
        assert!(submitted(&effects).is_none());
    }
    assert!(app.tools.prompt.is_some());
    assert_eq!(app.tools.blocks[0].state, CallState::Asking);
}

#[test]
fn esc_stops_a_running_tool_and_the_model_is_told_with_the_next_message() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    let ran = runs(&answer(&mut app, 'y'));
    let effects = app.update(key(KeyCode::Esc));
    assert!(effects.contains(&Effect::Tool(ToolCommand::Cancel { call_id: ran[0].id })));
    assert!(
        submitted(&effects).is_none(),
        "a stop generates nothing more"
    );
    assert_eq!(last_message_text(&app), STOPPED_TEXT);
    assert!(!app.tools.busy());
    // The host's late answer is dropped.
    let effects = app.update(finished(&ran[0], "12:00", 5000));
    assert!(effects.is_empty());
    assert_eq!(last_message_text(&app), STOPPED_TEXT);
    // The next message carries the stop to the model.
    type_text(&mut app, "never mind");
    let effects = app.update(key(KeyCode::Enter));
    let conversation = submitted(&effects).expect("sent");
    let texts: Vec<String> = conversation.messages.iter().map(Message::text).collect();
    assert!(texts.iter().any(|t| t == STOPPED_TEXT));
}

#[test]
fn answer_keys_right_after_the_prompt_appears_do_not_count() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    // Typed on from the question: 'a' would allow the tool for the whole chat.
    for c in ['a', 'n', 'y', 'e'] {
        let effects = app.update(key(KeyCode::Char(c)));
        assert!(
            effects.is_empty(),
            "{c} answered a prompt that had just appeared"
        );
    }
    assert!(app.tools.allowed_for_chat.is_empty());
    assert_eq!(app.tools.blocks[0].state, CallState::Asking);
    assert_eq!(answer(&mut app, 'y').len(), 1, "later the same key counts");
}

#[test]
fn esc_at_the_prompt_stops_without_running() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    let effects = app.update(key(KeyCode::Esc));
    assert!(runs(&effects).is_empty());
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Tool(ToolCommand::Cancel { .. })))
    );
    assert!(submitted(&effects).is_none());
    assert_eq!(last_message_text(&app), STOPPED_TEXT);
    assert!(app.tools.prompt.is_none());
}

#[test]
fn a_new_message_waits_while_a_call_is_pending() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    answer(&mut app, 'y');
    type_text(&mut app, "hello");
    let effects = app.update(key(KeyCode::Enter));
    assert!(submitted(&effects).is_none());
    assert_eq!(app.input.text(), "hello", "the message stays in the box");
}

#[test]
fn blocks_expand_and_selection_moves_between_calls() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    let ran = runs(&answer(&mut app, 'a'));
    app.update(finished(
        &ran[0],
        "line 1\nline 2\nline 3\nline 4\nline 5",
        5,
    ));
    let ran = runs(&model_calls(&mut app));
    app.update(finished(&ran[0], "again", 5));
    assert_eq!(app.tools.selected, Some(1), "the newest call is selected");
    app.update(ctrl('b'));
    assert_eq!(app.tools.selected, Some(0));
    app.update(ctrl('o'));
    assert!(app.tools.blocks[0].expanded);
    assert!(!app.tools.blocks[1].expanded);
    app.update(ctrl('o'));
    assert!(!app.tools.blocks[0].expanded);
    app.update(ctrl('b'));
    assert_eq!(app.tools.selected, Some(1), "wraps to the newest");
    assert_eq!(app.tools.turn_calls, 2);
}

#[test]
fn the_config_policy_decides_before_the_prompt() {
    // Read-only tools auto-approved by the config: no prompt.
    let mut app = tool_app();
    app.tools.policy.auto_approve_read_only = true;
    let effects = call_turn(&mut app, "time?");
    assert_eq!(runs(&effects).len(), 1);
    assert!(app.tools.prompt.is_none());
    // An allowlist entry, and it survives a new chat.
    let mut app = tool_app();
    app.tools.policy = ApprovalPolicy::default()
        .with_allowlist(["get_time"])
        .expect("a good entry");
    app.update(ctrl('n'));
    let effects = call_turn(&mut app, "time?");
    assert_eq!(runs(&effects).len(), 1);
}

#[test]
fn an_unknown_tool_is_denied_without_asking_and_the_model_is_told() {
    let mut app = app();
    let effects = call_turn(&mut app, "time?");
    assert!(runs(&effects).is_empty());
    assert!(app.tools.prompt.is_none());
    let conversation = submitted(&effects).expect("the model is told and continues");
    let told = conversation.messages.last().map(Message::text);
    assert_eq!(
        told,
        Some(DenyReason::UnknownTool.explain("functions.get_time"))
    );
}

#[test]
fn a_model_that_keeps_calling_is_stopped_at_the_call_limit() {
    let mut app = app();
    let mut effects = call_turn(&mut app, "time?");
    for _ in 1..MAX_CALLS_PER_MESSAGE {
        assert!(submitted(&effects).is_some());
        effects = model_calls(&mut app);
    }
    assert!(submitted(&effects).is_some());
    let effects = model_calls(&mut app);
    assert!(submitted(&effects).is_none(), "the loop ends");
    assert_eq!(
        app.messages.last().map(Message::text),
        Some(DenyReason::CallLimit.explain("functions.get_time"))
    );
    assert!(!app.tools.busy());
}

#[test]
fn a_new_chat_offers_the_catalogs_tools_to_the_model() {
    use crate::harmony::{DeveloperContent, ToolDescription, ToolNamespaceConfig};
    let mut app = app();
    let without = app.conversation();
    assert_eq!(
        without.messages.len(),
        1,
        "no tools, no instructions: no developer message"
    );
    let python = ToolNamespaceConfig::new("python", Some("Runs python.".into()), Vec::new());
    let get_time = ToolDescription::new("get_time", "The time now.", None);
    app.update(Input::Tool(ToolEvent::Tools(crate::tools::ToolCatalog {
        builtin: vec![python.clone()],
        functions: vec![get_time.clone()],
        ..Default::default()
    })));
    let with = app.conversation();
    match &with.messages[0].content[..] {
        [Content::SystemContent(system)] => {
            assert_eq!(
                system.tools.as_ref().and_then(|t| t.get("python")),
                Some(&python)
            );
        }
        other => panic!("not a system message: {other:?}"),
    }
    assert_eq!(
        with.messages[1],
        Message::developer(DeveloperContent::new().with_function_tools(vec![get_time]))
    );
}

#[test]
fn a_reopened_chat_shows_its_calls_and_results_as_blocks() {
    let mut app = tool_app();
    call_turn(&mut app, "time?");
    let ran = runs(&answer(&mut app, 'y'));
    app.update(finished(&ran[0], "12:00 UTC", 5));
    app.update(Input::Engine(Event::MessageDone(Message::assistant(
        "final",
        "It is noon.",
    ))));
    app.update(Input::Engine(Event::TurnDone {
        stop: StopReason::Return,
        stats: stats(3, 10.0),
    }));
    let snapshot = app.snapshot();

    let mut reopened = super::tests::app();
    reopened.open_chat(snapshot.clone());
    assert_eq!(reopened.conversation(), snapshot.conversation);
    assert_eq!(reopened.tools.blocks.len(), 1);
    let block = &reopened.tools.blocks[0];
    assert_eq!(block.call.recipient, "functions.get_time");
    assert_eq!(block.call.arguments, ARGS);
    match &block.state {
        CallState::Done(result) => assert_eq!(result.text, "12:00 UTC"),
        other => panic!("the result is missing: {other:?}"),
    }
    assert!(
        reopened
            .entries
            .iter()
            .all(|e| !matches!(e, Entry::Assistant(t) if !t.commentary.is_empty())),
        "no raw call lines next to the blocks"
    );

    // And through the store on disk.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::store::ChatStore::new(dir.path());
    store.save(&snapshot).expect("saved");
    let loaded = store.load(&snapshot.id).expect("loaded");
    assert_eq!(loaded.conversation, snapshot.conversation);
}
