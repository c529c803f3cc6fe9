//! The engine thread end to end on the demo model: a turn streams reasoning then an answer,
//! stop interrupts within a step, a second turn re-uses the cached prefix, and a context beyond
//! the model is refused before loading.

use std::path::Path;
use std::time::{Duration, Instant};

use ossterm::cli::{DeviceChoice, DtypeChoice};
use ossterm::engine::{
    Command, EngineHandle, EngineOptions, Event, ModelSource, SamplingParams, StopReason,
    TurnStats, spawn,
};
use ossterm::harmony::{Conversation, Message, ReasoningEffort, SystemContent};

const TIMEOUT: Duration = Duration::from_secs(120);

fn demo_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo")
}

fn start(context_limit: Option<usize>) -> EngineHandle {
    spawn(EngineOptions {
        source: ModelSource::Local(demo_dir()),
        device: DeviceChoice::Cpu,
        dtype: DtypeChoice::Auto,
        kernels: ossterm::model::Kernels::Auto,
        context_limit,
        effort: ReasoningEffort::Medium,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
    })
}

fn next_event(engine: &mut EngineHandle, deadline: Instant) -> Event {
    loop {
        match engine.events.try_recv() {
            Ok(event) => return event,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(
                    Instant::now() < deadline,
                    "no engine event before the deadline"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("engine channel closed: {err}"),
        }
    }
}

fn wait_ready(engine: &mut EngineHandle) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match next_event(engine, deadline) {
            Event::Ready(info) => return info.context_limit,
            Event::Error { message, .. } => panic!("engine failed to load: {message}"),
            _ => {}
        }
    }
}

struct Turn {
    analysis: String,
    final_text: String,
    messages: Vec<Message>,
    stop: StopReason,
    stats: TurnStats,
    tokens: usize,
    /// The engine's count of each submitted message's rendered tokens.
    message_tokens: Vec<usize>,
}

fn run_turn(engine: &mut EngineHandle, stop_after_tokens: Option<usize>) -> Turn {
    let deadline = Instant::now() + TIMEOUT;
    let mut turn = Turn {
        analysis: String::new(),
        final_text: String::new(),
        messages: Vec::new(),
        stop: StopReason::Length,
        stats: TurnStats::default(),
        tokens: 0,
        message_tokens: Vec::new(),
    };
    loop {
        match next_event(engine, deadline) {
            Event::Token { channel, delta, .. } => {
                turn.tokens += 1;
                match channel.as_deref() {
                    Some("analysis") => turn.analysis.push_str(&delta),
                    Some("final") => turn.final_text.push_str(&delta),
                    _ => {}
                }
                if Some(turn.tokens) == stop_after_tokens {
                    engine.commands.send(Command::Stop).expect("engine alive");
                }
            }
            Event::MessageDone(message) => turn.messages.push(message),
            Event::PromptTokens { message_tokens } => turn.message_tokens = message_tokens,
            Event::TurnDone { stop, stats } => {
                turn.stop = stop;
                turn.stats = stats;
                return turn;
            }
            Event::Error { message, .. } => panic!("engine error: {message}"),
            _ => {}
        }
    }
}

fn conversation(question: &str) -> Conversation {
    Conversation::from_messages([
        Message::system(
            SystemContent::new()
                .with_reasoning_effort(ReasoningEffort::Medium)
                .with_conversation_start_date("2026-11-27"),
        ),
        Message::user(question),
    ])
}

#[test]
fn a_turn_streams_reasoning_then_an_answer_and_the_next_turn_reuses_the_cache() {
    let mut engine = start(Some(2048));
    assert_eq!(wait_ready(&mut engine), 2048);

    let mut chat = conversation("What is 17 + 25?");
    engine
        .commands
        .send(Command::Submit {
            conversation: chat.clone(),
            max_new_tokens: 400,
            constraint: None,
        })
        .expect("engine alive");
    let first = run_turn(&mut engine, None);
    assert_eq!(
        first.stop,
        StopReason::Return,
        "the demo model ends its answer"
    );
    assert!(!first.analysis.is_empty(), "reasoning streamed");
    assert!(!first.final_text.is_empty(), "answer streamed");
    let channels: Vec<_> = first.messages.iter().map(|m| m.channel.clone()).collect();
    assert_eq!(
        channels,
        [Some("analysis".to_string()), Some("final".to_string())]
    );
    assert_eq!(first.messages[1].text(), first.final_text);
    assert_eq!(first.stats.cached_tokens, 0);
    assert!(first.stats.decode_tokens > 0 && first.stats.decode_tok_s() > 0.0);
    assert!(first.stats.time_to_first_token_ms > 0.0);
    // Each message's rendered tokens, then "<|start|>assistant" (2 tokens): the prompt.
    assert_eq!(first.message_tokens.len(), 2, "{:?}", first.message_tokens);
    assert_eq!(
        first.message_tokens.iter().sum::<usize>() + 2,
        first.stats.prefill_tokens
    );

    // The next turn: the renderer drops the first turn's reasoning, so the prompts diverge
    // right after the first prompt; the engine re-uses everything before that.
    let first_prompt_tokens = first.stats.prefill_tokens;
    chat.messages.extend(first.messages);
    chat.messages.push(Message::user("Thanks! And 2 + 2?"));
    engine
        .commands
        .send(Command::Submit {
            conversation: chat,
            max_new_tokens: 400,
            constraint: None,
        })
        .expect("engine alive");
    let second = run_turn(&mut engine, None);
    assert_eq!(
        second.message_tokens[..2],
        first.message_tokens[..],
        "the same messages count the same"
    );
    assert_eq!(
        second.message_tokens[2], 0,
        "the first turn's reasoning is left out"
    );
    assert_eq!(second.message_tokens.len(), 5);
    assert_eq!(second.stats.cached_tokens, first_prompt_tokens);
    assert!(second.stats.prefill_tokens < first_prompt_tokens);
    engine.shutdown();
}

#[test]
fn stop_interrupts_generation_and_keeps_what_arrived() {
    let mut engine = start(Some(1024));
    wait_ready(&mut engine);
    let ask = || Command::Submit {
        conversation: conversation("Write a Rust function that adds two numbers."),
        max_new_tokens: 100_000,
        constraint: None,
    };
    // Mid-answer: the turn ends as stopped long before its budget, and the messages it
    // reports hold exactly the text that streamed.
    engine.commands.send(ask()).expect("engine alive");
    let turn = run_turn(&mut engine, Some(6));
    assert_eq!(turn.stop, StopReason::Stopped);
    assert!(
        turn.tokens >= 6 && turn.tokens < 1000,
        "{} tokens",
        turn.tokens
    );
    let kept: String = turn.messages.iter().map(Message::text).collect();
    assert_eq!(kept, format!("{}{}", turn.analysis, turn.final_text));

    // A stop queued right behind the submit is seen before the first token is generated.
    engine
        .commands
        .send(Command::NewChat)
        .expect("engine alive");
    engine.commands.send(ask()).expect("engine alive");
    engine.commands.send(Command::Stop).expect("engine alive");
    let turn = run_turn(&mut engine, None);
    assert_eq!(turn.stop, StopReason::Stopped);
    assert_eq!(turn.tokens, 0);
    engine.shutdown();
}

#[test]
fn a_context_beyond_the_model_is_refused_before_loading() {
    let mut engine = start(Some(10_000_000));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match next_event(&mut engine, deadline) {
            Event::Error { message, fatal } => {
                assert!(fatal);
                assert!(message.contains("tokens"), "{message}");
                assert!(message.contains("maximum"), "{message}");
                break;
            }
            Event::Ready(_) => panic!("an impossible context was accepted"),
            _ => {}
        }
    }
    engine.shutdown();
}

/// Before `Ready` the loading screen hears which shard is loading and how far it is; the demo
/// model is one file, read to the end.
#[test]
fn loading_reports_the_shard_before_ready() {
    let mut engine = start(None);
    let deadline = Instant::now() + TIMEOUT;
    let mut shard_events = Vec::new();
    loop {
        match next_event(&mut engine, deadline) {
            Event::LoadProgress {
                stage,
                done_bytes,
                total_bytes,
            } if stage.starts_with("loading shard") => {
                shard_events.push((stage, done_bytes, total_bytes))
            }
            Event::Ready(_) => break,
            Event::Error { message, .. } => panic!("engine failed to load: {message}"),
            _ => {}
        }
    }
    let (stage, done_bytes, total_bytes) = shard_events.last().expect("shard progress");
    assert_eq!(stage, "loading shard 1/1 (model.safetensors)");
    assert!(*total_bytes > 0);
    assert_eq!(done_bytes, total_bytes);
    engine.shutdown();
}
