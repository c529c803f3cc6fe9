//! A stop during a long prompt read lands between layers, not after the whole 512-token chunk:
//! with every prefill layer slowed down (the engine's test hook), the turn ends as stopped
//! within about one layer's time, and the next turn's answer equals an uninterrupted run's.
//! Its own test binary: the hook is an environment variable, read by every engine it starts.

use std::time::{Duration, Instant};

use ossterm::engine::worker::TEST_LAYER_DELAY_ENV;
use ossterm::engine::{Command, EngineHandle, Event, StopReason, TurnStats};
use ossterm::harmony::{Conversation, Message, ReasoningEffort, SystemContent};

mod common;
use common::demo_engine::greedy_demo_engine;

/// How long each prefill layer is made to take; the demo model has 4 layers, so one
/// chunk of its prompt takes at least 4 times this.
const LAYER_DELAY: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_secs(120);

/// Events until `want` says stop, failing on an error or after [`TIMEOUT`].
fn events_until(engine: &mut EngineHandle, mut want: impl FnMut(&Event) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let event = match engine.events.try_recv() {
            Ok(event) => event,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "the engine went quiet");
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(err) => panic!("the engine channel closed: {err}"),
        };
        if let Event::Error { message, .. } = &event {
            panic!("engine error: {message}");
        }
        if want(&event) {
            return;
        }
    }
}

fn submit(engine: &EngineHandle) {
    let conversation = Conversation::from_messages([
        Message::system(
            SystemContent::new()
                .with_reasoning_effort(ReasoningEffort::Low)
                .with_conversation_start_date("2026-12-03"),
        ),
        Message::user("What is 6 times 7?"),
    ]);
    engine
        .commands
        .send(Command::Submit {
            conversation,
            max_new_tokens: 40,
            constraint: None,
        })
        .expect("the engine is alive");
}

/// Runs one turn to its end: (every token's text, how it stopped, its stats).
fn whole_turn(engine: &mut EngineHandle) -> (String, StopReason, TurnStats) {
    submit(engine);
    let mut text = String::new();
    let mut end = None;
    events_until(engine, |event| match event {
        Event::Token { delta, .. } => {
            text.push_str(delta);
            false
        }
        Event::TurnDone { stop, stats } => {
            end = Some((*stop, *stats));
            true
        }
        _ => false,
    });
    let (stop, stats) = end.expect("a finished turn");
    (text, stop, stats)
}

#[test]
fn a_stop_during_prefill_lands_within_a_layer_and_the_next_turn_is_exact() {
    // SAFETY: set before any engine thread starts, in this binary's only test.
    unsafe { std::env::set_var(TEST_LAYER_DELAY_ENV, LAYER_DELAY.as_millis().to_string()) };

    let mut reference = greedy_demo_engine();
    events_until(&mut reference, |event| matches!(event, Event::Ready(_)));
    let (expected_text, expected_stop, _) = whole_turn(&mut reference);
    reference.shutdown();
    assert!(!expected_text.is_empty());

    let mut engine = greedy_demo_engine();
    events_until(&mut engine, |event| matches!(event, Event::Ready(_)));
    submit(&engine);
    // In the second of the chunk's four slowed layers.
    std::thread::sleep(LAYER_DELAY * 3 / 2);
    let stop_sent = Instant::now();
    engine.commands.send(Command::Stop).expect("engine alive");
    let mut end = None;
    let mut tokens = 0;
    events_until(&mut engine, |event| match event {
        Event::Token { .. } => {
            tokens += 1;
            false
        }
        Event::TurnDone { stop, stats } => {
            end = Some((*stop, *stats, stop_sent.elapsed()));
            true
        }
        _ => false,
    });
    let (stop, stats, latency) = end.expect("a finished turn");
    assert_eq!(stop, StopReason::Stopped);
    assert_eq!(tokens, 0, "stopped before the first token");
    assert_eq!(
        stats.prefill_tokens, 0,
        "the interrupted chunk is not counted as read"
    );
    let chunk_time = LAYER_DELAY * 4;
    assert!(
        latency < LAYER_DELAY + Duration::from_millis(200),
        "the stop took {latency:?}; a chunk takes at least {chunk_time:?}"
    );

    // The next turn reads the whole prompt again and answers as if nothing had happened.
    let (text, stop, stats) = whole_turn(&mut engine);
    assert_eq!(
        stats.cached_tokens, 0,
        "nothing of the rolled-back chunk is re-used"
    );
    assert_eq!(text, expected_text);
    assert_eq!(stop, expected_stop);
    engine.shutdown();
}
