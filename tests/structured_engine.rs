//! Structured outputs through the engine thread on the demo model: the reasoning streams
//! free, the final answer is held to the schema and ends the turn; a schema the grammar cannot
//! follow fails the turn before any token; a turn cut mid-answer leaves no grammar state behind
//! (each turn's grammar is built from its prompt, so a regenerate or a "continue" starts clean).

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

fn question() -> Conversation {
    Conversation::from_messages([
        Message::system(SystemContent::new().with_conversation_start_date("2026-11-27")),
        Message::user("What is 17 + 25?"),
    ])
}

fn submit(engine: &mut EngineHandle, constraint: Option<TurnConstraint>) -> Outcome {
    submit_turn(engine, question(), 400, constraint)
}

fn submit_turn(
    engine: &mut EngineHandle,
    conversation: Conversation,
    max_new_tokens: usize,
    constraint: Option<TurnConstraint>,
) -> Outcome {
    engine
        .commands
        .send(Command::Submit {
            conversation,
            max_new_tokens,
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

fn sum_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "answer": {"type": "integer", "minimum": 0, "maximum": 1000},
            "unit": {"enum": ["apples", "none"]}
        },
        "required": ["answer", "unit"],
        "additionalProperties": false
    })
}

fn sum_constraint() -> TurnConstraint {
    TurnConstraint::from_response_format(ResponseFormat::JsonSchema {
        schema: sum_schema(),
        source_name: "test".into(),
    })
    .expect("supported schema")
}

/// The final answer of `outcome`, parsed and checked against [`sum_schema`].
fn valid_sum(outcome: &Outcome) -> serde_json::Value {
    let last = outcome.messages.last().expect("an answer");
    assert_eq!(last.channel.as_deref(), Some("final"));
    let answer: serde_json::Value = serde_json::from_str(&last.text()).expect("the answer parses");
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
    answer
}

#[test]
fn the_final_answer_follows_the_schema_and_reasoning_stays_free() {
    let constraint = sum_constraint();
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
    valid_sum(&held);
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
fn the_remote_front_refuses_tool_constraints_rather_than_answering_unconstrained() {
    // Nothing listens there: the refusal comes before any connection matters.
    let options =
        ossterm::remote::RemoteOptions::new("http://127.0.0.1:9/v1", None, None).expect("a URL");
    let mut engine = ossterm::remote::spawn(options);
    let constraint = TurnConstraint::default()
        .with_required_call(&["functions.book".to_owned()])
        .expect("required");
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
    let refusal = ossterm::remote::front::REMOTE_TOOL_CONSTRAINT_REFUSAL;
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

#[test]
fn a_turn_cut_mid_answer_leaves_no_grammar_state_for_a_regenerate_or_a_continue() {
    let mut engine = greedy_demo_engine();
    let whole = submit(&mut engine, Some(sum_constraint()));
    assert_eq!(whole.stop, Some(StopReason::Return));
    valid_sum(&whole);

    // Cut three tokens before the end: inside the JSON, the grammar half way.
    let cut = submit_turn(
        &mut engine,
        question(),
        whole.tokens - 3,
        Some(sum_constraint()),
    );
    assert_eq!(cut.stop, Some(StopReason::Length));
    let partial = cut.messages.last().expect("the partial answer").text();
    let complete = whole.messages.last().expect("the answer").text();
    assert!(
        complete.starts_with(&partial) && partial.len() < complete.len(),
        "{partial}"
    );

    // Regenerate: the same prompt (the cached prefix is re-used) gives the whole answer again,
    // token for token: nothing of the cut turn's grammar carried over.
    let again = submit(&mut engine, Some(sum_constraint()));
    assert_eq!(again.error, None);
    assert_eq!(again.messages, whole.messages);

    // Continue: the cut answer stays in the chat; the next answer is whole JSON on its own.
    let mut conversation = question();
    conversation.messages.extend(cut.messages.clone());
    conversation.messages.push(Message::user("continue"));
    let continued = submit_turn(&mut engine, conversation, 400, Some(sum_constraint()));
    assert_eq!(continued.error, None);
    assert_eq!(continued.stop, Some(StopReason::Return));
    valid_sum(&continued);
    engine.shutdown();
}
