//! Forced tool calls on the demo model, which never calls a function tool on its own: with a
//! required call the message after its (free) reasoning is the call, and the arguments parse
//! and validate against the tool's schema, every time, over several prompts. Without one
//! (`auto`), calling stays the model's choice. `ask --tool-choice` runs the same through an
//! MCP server's tool, end to end.

use std::io::Write;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use ossterm::engine::{Command, EngineHandle, Event, StopReason};
use ossterm::harmony::{Conversation, DeveloperContent, Message, SystemContent, ToolDescription};
use ossterm::structured::TurnConstraint;
use serde_json::{Value, json};

mod common;
use common::demo_engine::greedy_demo_engine;
use common::schema_check::violation;

const TIMEOUT: Duration = Duration::from_secs(120);

const PROMPTS: [&str; 5] = [
    "Book a table in Oslo for four people.",
    "What is 17 + 25?",
    "hello",
    "What is a KV cache?",
    "Dinner in Rome for twelve, please, name Ada.",
];

fn booking_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"enum": ["Oslo", "Paris", "Rome"]},
            "guests": {"type": "integer", "minimum": 1, "maximum": 12},
            "name": {"type": "string", "maxLength": 12},
            "vegan": {"type": "boolean"}
        },
        "required": ["city", "guests", "name"],
        "additionalProperties": false
    })
}

fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"unit": {"enum": ["C", "F"]}, "days": {"type": "integer", "minimum": 0, "maximum": 7}},
        "required": ["unit", "days"],
        "additionalProperties": false
    })
}

fn conversation(prompt: &str) -> Conversation {
    let tools = vec![
        ToolDescription::new("book", "Books a table", Some(booking_schema())),
        ToolDescription::new("weather", "The forecast", Some(weather_schema())),
    ];
    Conversation::from_messages([
        Message::system(SystemContent::new().with_conversation_start_date("2026-12-03")),
        Message::developer(DeveloperContent::new().with_function_tools(tools)),
        Message::user(prompt),
    ])
}

fn schemas() -> TurnConstraint {
    TurnConstraint::default()
        .with_tool_arguments("functions.book", booking_schema())
        .and_then(|c| c.with_tool_arguments("functions.weather", weather_schema()))
        .expect("supported schemas")
}

/// The turn's messages and how it ended.
fn turn(
    engine: &mut EngineHandle,
    prompt: &str,
    constraint: TurnConstraint,
) -> (Vec<Message>, StopReason) {
    engine
        .commands
        .send(Command::Submit {
            conversation: conversation(prompt),
            max_new_tokens: 400,
            constraint: Some(constraint),
        })
        .expect("engine alive");
    let deadline = Instant::now() + TIMEOUT;
    let mut messages = Vec::new();
    while Instant::now() < deadline {
        match engine.events.try_recv() {
            Ok(Event::MessageDone(message)) => messages.push(message),
            Ok(Event::TurnDone { stop, .. }) => return (messages, stop),
            Ok(Event::Error { message, .. }) => panic!("{prompt:?}: engine error: {message}"),
            Ok(_) => {}
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(err) => panic!("engine channel closed: {err}"),
        }
    }
    panic!("{prompt:?}: the turn did not end within {TIMEOUT:?}");
}

/// Checks the turn ended with a valid call to one of `allowed`; returns the function called.
fn assert_valid_call(
    prompt: &str,
    messages: &[Message],
    stop: StopReason,
    allowed: &[&str],
) -> String {
    assert_eq!(stop, StopReason::Call, "{prompt:?}: {messages:?}");
    let (call, reasoning) = messages.split_last().expect("a call");
    assert!(
        reasoning
            .iter()
            .all(|m| m.channel.as_deref() == Some("analysis")),
        "{prompt:?}: only reasoning before the call: {messages:?}"
    );
    assert_eq!(call.channel.as_deref(), Some("commentary"), "{prompt:?}");
    assert_eq!(
        call.content_type.as_deref(),
        Some("<|constrain|>json"),
        "{prompt:?}"
    );
    let recipient = call.recipient.clone().expect("a recipient");
    let name = recipient.strip_prefix("functions.").expect("a function");
    assert!(allowed.contains(&name), "{prompt:?}: called {recipient}");
    let schema = match name {
        "book" => booking_schema(),
        _ => weather_schema(),
    };
    let arguments: Value = serde_json::from_str(&call.text())
        .unwrap_or_else(|e| panic!("{prompt:?}: arguments {:?} do not parse: {e}", call.text()));
    if let Some(why) = violation(&schema, &arguments) {
        panic!("{prompt:?}: {why}");
    }
    name.to_owned()
}

#[test]
fn a_named_or_required_call_is_made_with_valid_arguments_for_every_prompt() {
    let mut engine = greedy_demo_engine();
    for prompt in PROMPTS {
        // Auto: the demo model answers (or calls python); it never calls a function itself.
        let (free, stop) = turn(&mut engine, prompt, schemas());
        assert!(
            !free.iter().any(|m| m
                .recipient
                .as_deref()
                .is_some_and(|r| r.starts_with("functions."))),
            "{prompt:?}: {free:?} {stop:?}"
        );

        let named = schemas()
            .with_required_call(&["functions.book".to_owned()])
            .expect("required");
        let (messages, stop) = turn(&mut engine, prompt, named);
        assert_valid_call(prompt, &messages, stop, &["book"]);
        // The reasoning is the model's own, as without the constraint.
        assert_eq!(messages[0].text(), free[0].text(), "{prompt:?}");

        let any = schemas()
            .with_required_call(&["functions.book".to_owned(), "functions.weather".to_owned()])
            .expect("required");
        let (messages, stop) = turn(&mut engine, prompt, any);
        assert_valid_call(prompt, &messages, stop, &["book", "weather"]);
    }
    engine.shutdown();
}

/// `ask --tool-choice` with an MCP server's tool (pydantic's schema: enum, bounded integer,
/// bounded string, optional boolean); skipped without the python `mcp` package, except in CI.
#[test]
fn ask_tool_choice_calls_the_mcp_tool_with_valid_arguments_and_answers_from_its_result() {
    let has_mcp = Process::new("python3")
        .args(["-c", "import mcp"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_mcp {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install mcp (.ci/run does)"
        );
        eprintln!("skipped: python3 with the mcp package is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mcp/booking_server.py"
    );
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[mcp.booking]\ncommand = \"python3\"\nargs = [\"{script}\"]\n"),
    )
    .expect("config");
    let ask = |extra: &[&str], prompt: &str| {
        let mut child = Process::new(env!("CARGO_BIN_EXE_ossterm"))
            .args([
                "ask",
                "--demo",
                "--tools",
                "--json",
                "--max-new-tokens",
                "400",
            ])
            .args(extra)
            .arg(prompt)
            .env("OSSTERM_CONFIG_DIR", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        drop(child.stdin.take().map(|mut stdin| stdin.write_all(b"")));
        let out = child.wait_with_output().expect("finishes");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let choice = [
        "--tool-choice",
        "booking__book",
        "--allow",
        "functions.booking__book",
    ];
    for prompt in [
        "Book a table in Oslo for four people.",
        "hello",
        "What is 6 x 7?",
    ] {
        let (ok, stdout, stderr) = ask(&choice, prompt);
        assert!(ok, "{prompt:?}: {stderr}");
        let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
        let calls = report["tool_calls"].as_array().expect("tool_calls");
        let call = &calls[0]["call"];
        assert_eq!(call["recipient"], "functions.booking__book", "{report}");
        let arguments: Value =
            serde_json::from_str(call["arguments"].as_str().expect("arguments")).expect("parse");
        // pydantic's schema is the engine test's, with other properties allowed.
        let mut schema = booking_schema();
        if let Some(fields) = schema.as_object_mut() {
            fields.remove("additionalProperties");
        }
        assert_eq!(violation(&schema, &arguments), None, "{prompt:?}");
        // It ran, and the turn went on past the call (a required call holds only the first
        // generation).
        assert_eq!(calls[0]["is_error"], false, "{report}");
        assert!(
            calls[0]["result_text"]
                .as_str()
                .is_some_and(|t| t.contains("booked")),
            "{report}"
        );
        assert!(
            report["stats"]["generations"]
                .as_array()
                .is_some_and(|g| g.len() >= 2),
            "{report}"
        );
    }

    let (ok, _, stderr) = ask(&["--tool-choice", "nope"], "hi");
    assert!(!ok);
    assert!(
        stderr.contains(
            "--tool-choice nope: no such function tool (offered: functions.booking__book)"
        ),
        "{stderr}"
    );
    // A remote server samples; the call cannot be forced there, and ask says so.
    let remote = Process::new(env!("CARGO_BIN_EXE_ossterm"))
        .args(["ask", "--tools", "--remote", "http://127.0.0.1:9/v1"])
        .args(["--tool-choice", "required", "hi"])
        .env("OSSTERM_CONFIG_DIR", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(!remote.status.success());
    let stderr = String::from_utf8_lossy(&remote.stderr);
    assert!(
        stderr.contains("--tool-choice needs the local engine: it is enforced with token masks"),
        "{stderr}"
    );
}
