//! Structured outputs through the engine thread on the demo model: the reasoning streams
//! free, the final answer is held to the schema and ends the turn; a schema the grammar cannot
//! follow fails the turn before any token.

use std::time::{Duration, Instant};

use ossterm::engine::StopReason;
use ossterm::engine::{Command, EngineHandle, Event};
use ossterm::harmony::{Conversation, Message, SystemContent};
use ossterm::structured::{ResponseFormat, TurnConstraint};

mod common;
use common::demo_engine::greedy_demo_engine;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Everything the engine sent for one submit, up to its end (or its error).
struct Outcome {
    messages: Vec<Message>,
    stop: Option<StopReason>,
    tokens: usize,
    error: Option<String>,
}

fn submit(engine: &mut EngineHandle, constraint: Option<TurnConstraint>) -> Outcome {
    let conversation = Conversation::from_messages([
        Message::system(SystemContent::new().with_conversation_start_date("2026-11-27")),
        Message::user("What is 17 + 25?"),
    ]);
    engine
        .commands
        .send(Command::Submit {
            conversation,
            max_new_tokens: 400,
            constraint,
        })
        .expect("engine alive");
    let deadline = Instant::now() + TIMEOUT;
    let mut outcome = Outcome {
        messages: Vec::new(),
        stop: None,
        tokens: 0,
        error: None,
    };
    while Instant::now() < deadline {
        match engine.events.try_recv() {
            Ok(Event::Token { .. }) => outcome.tokens += 1,
            Ok(Event::MessageDone(message)) => outcome.messages.push(message),
            Ok(Event::TurnDone { stop, .. }) => {
                outcome.stop = Some(stop);
                return outcome;
            }
            Ok(Event::Error { message, fatal }) => {
                assert!(!fatal, "the engine died: {message}");
                outcome.error = Some(message);
                return outcome;
            }
            Ok(_) => {}
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(err) => panic!("engine channel closed: {err}"),
        }
    }
    panic!("the turn did not end within {TIMEOUT:?}");
}

#[test]
fn the_final_answer_follows_the_schema_and_reasoning_stays_free() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "answer": {"type": "integer", "minimum": 0, "maximum": 1000},
            "unit": {"enum": ["apples", "none"]}
        },
        "required": ["answer", "unit"],
        "additionalProperties": false
    });
    let constraint = TurnConstraint::from_response_format(ResponseFormat::JsonSchema {
        schema,
        source_name: "test".into(),
    })
    .expect("supported schema");
    let mut engine = greedy_demo_engine();

    // Unconstrained, the demo model answers in prose: the constraint is what makes it JSON.
    let free = submit(&mut engine, None);
    let free_final = free.messages.last().expect("an answer").text();
    assert!(serde_json::from_str::<serde_json::Value>(&free_final).is_err());

    let held = submit(&mut engine, Some(constraint));
    assert_eq!(held.error, None);
    assert_eq!(held.stop, Some(StopReason::Return));
    let channels: Vec<_> = held.messages.iter().map(|m| m.channel.clone()).collect();
    assert_eq!(
        channels,
        [Some("analysis".to_string()), Some("final".to_string())]
    );
    // The reasoning is the model's own prose, untouched.
    assert_eq!(held.messages[0].text(), free.messages[0].text());
    let answer: serde_json::Value =
        serde_json::from_str(&held.messages[1].text()).expect("the answer parses");
    let object = answer.as_object().expect("an object");
    assert_eq!(object.len(), 2, "{answer}");
    assert!(
        object["answer"].as_u64().is_some_and(|n| n <= 1000),
        "{answer}"
    );
    assert!(
        ["apples", "none"].contains(&object["unit"].as_str().unwrap_or("")),
        "{answer}"
    );
    engine.shutdown();
}

#[test]
fn a_schema_the_grammar_cannot_follow_fails_before_any_token() {
    let mut engine = greedy_demo_engine();
    // Built by hand, skipping the check `from_response_format` does: the engine checks too.
    let constraint = TurnConstraint {
        final_format: Some(ResponseFormat::JsonSchema {
            schema: serde_json::json!({"type": "object", "dependentSchemas": {"a": {}}}),
            source_name: "answer.json".into(),
        }),
        ..TurnConstraint::default()
    };
    let outcome = submit(&mut engine, Some(constraint));
    assert_eq!(outcome.tokens, 0);
    let error = outcome.error.expect("an error");
    assert!(
        error.starts_with("cannot constrain output to the JSON schema answer.json:"),
        "{error}"
    );
    assert!(error.contains("dependentSchemas"), "{error}");
    engine.shutdown();
}

#[test]
fn the_remote_front_refuses_a_constraint_rather_than_answering_unconstrained() {
    // Nothing listens there: the refusal comes before any connection matters.
    let options =
        ossterm::remote::RemoteOptions::new("http://127.0.0.1:9/v1", None, None).expect("a URL");
    let mut engine = ossterm::remote::spawn(options);
    let constraint =
        TurnConstraint::from_response_format(ResponseFormat::JsonObject).expect("json_object");
    let conversation = Conversation::from_messages([Message::user("hi")]);
    engine
        .commands
        .send(Command::Submit {
            conversation,
            max_new_tokens: 8,
            constraint: Some(constraint),
        })
        .expect("front alive");
    // Connection errors may come first (nothing listens); the refusal must come, no token.
    let deadline = Instant::now() + TIMEOUT;
    let refusal = "structured outputs (a JSON schema) are not supported with --remote yet";
    loop {
        assert!(Instant::now() < deadline, "no refusal");
        match engine.events.try_recv() {
            Ok(Event::Error { message, .. }) if message == refusal => break,
            Ok(Event::Token { .. }) => panic!("a token was generated"),
            Ok(_) => {}
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(err) => panic!("front channel closed: {err}"),
        }
    }
    engine.shutdown();
}
