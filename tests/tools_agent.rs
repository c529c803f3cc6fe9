//! The tool loop against the real engine thread (the demo model): a python call's result goes
//! back as a tool message and the next generation re-uses the whole cached prefix, reasoning
//! included, so only the new tokens are prefilled.
//!
//! The demo model does not call tools yet, so the first turn's call is replayed into the
//! engine (submitted as the conversation the model would have written), which puts the same
//! tokens in the KV cache that generating it would have.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ossterm::cli::{DeviceChoice, DtypeChoice};
use ossterm::engine::{
    Command, EngineHandle, EngineOptions, Event, ModelSource, SamplingParams, StopReason,
    TurnStats, spawn,
};
use ossterm::harmony::{
    Conversation, Message, ReasoningEffort, RenderOptions, SystemContent, Tokenizer,
    render_conversation, render_for_completion,
};
use ossterm::tools::{
    AgentLoop, AgentStep, ApprovalPolicy, CatalogEntry, ToolCatalog, ToolCommand, ToolResult,
    ToolWhere,
};

const TIMEOUT: Duration = Duration::from_secs(120);

fn demo_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo")
}

fn start_engine() -> EngineHandle {
    spawn(EngineOptions {
        source: ModelSource::Local(demo_dir()),
        device: DeviceChoice::Cpu,
        dtype: DtypeChoice::Auto,
        context_limit: Some(1024),
        effort: ReasoningEffort::Medium,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
    })
}

/// Waits for the next event matching `pick`.
fn wait_for<T>(engine: &mut EngineHandle, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match engine.events.try_recv() {
            Ok(Event::Error { message, .. }) => panic!("engine error: {message}"),
            Ok(event) => {
                if let Some(found) = pick(event) {
                    return found;
                }
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no engine event in time");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("engine channel closed: {err}"),
        }
    }
}

/// Sends a submit and returns the turn's prefill stats once the turn is over.
fn run_turn(engine: &mut EngineHandle, command: Command) -> TurnStats {
    engine.commands.send(command).unwrap();
    let prefill = wait_for(engine, |event| match event {
        Event::PrefillDone { stats } => Some(stats),
        _ => None,
    });
    wait_for(engine, |event| match event {
        Event::TurnDone { .. } => Some(()),
        _ => None,
    });
    prefill
}

fn python_catalog() -> ToolCatalog {
    let mut catalog = ToolCatalog::default();
    catalog.entries.insert(
        "python".into(),
        CatalogEntry {
            where_runs: ToolWhere::Python {
                runner: "test".into(),
            },
            read_only: false,
        },
    );
    catalog
}

#[test]
fn a_tool_round_trip_reuses_the_cached_reasoning_and_prefills_only_the_new_messages() {
    let tokenizer = Arc::new(Tokenizer::from_file(&demo_dir().join("tokenizer.json")).unwrap());
    let mut engine = start_engine();
    wait_for(&mut engine, |event| match event {
        Event::Ready(_) => Some(()),
        _ => None,
    });
    let system = Message::system(
        SystemContent::new()
            .with_reasoning_effort(ReasoningEffort::Medium)
            .with_python_tool(),
    );
    let policy = ApprovalPolicy::default()
        .with_allowlist(["python"])
        .unwrap();
    let mut agent = AgentLoop::new(Conversation::from_messages([system]), policy, "chat", 64);
    let AgentStep::Engine(first) = agent.start_turn("what is 2 + 2?") else {
        panic!("a turn starts with a submit");
    };
    engine.commands.send(first).unwrap();
    let prompt_tokens = wait_for(&mut engine, |event| match event {
        Event::PrefillDone { stats } => Some(stats.prefill_tokens + stats.cached_tokens),
        _ => None,
    });
    // The demo reasons on `analysis`, then answers on `final`.
    let mut generated = Vec::new();
    wait_for(&mut engine, |event| match event {
        Event::MessageDone(message) => {
            generated.push(message);
            None
        }
        Event::TurnDone { .. } => Some(()),
        _ => None,
    });
    let analysis = generated
        .iter()
        .find(|m| m.channel.as_deref() == Some("analysis"))
        .cloned()
        .expect("the demo reasons first");
    // As if the model had called python after that reasoning (the demo does not call tools):
    // the call is a new message, so the cache holds everything before it.
    agent.on_message_done(analysis);
    let before_call =
        render_conversation(agent.conversation(), &tokenizer, &RenderOptions::default())
            .unwrap()
            .len();
    agent.on_message_done(
        Message::assistant("analysis", "print(2 + 2)")
            .with_recipient("python")
            .with_content_type("code"),
    );
    let step = agent
        .on_turn_done(StopReason::Call, TurnStats::default(), &python_catalog())
        .unwrap();
    let AgentStep::Tool(ToolCommand::Run { call, .. }) = step else {
        panic!("the allowlisted call runs: {step:?}");
    };
    let step = agent
        .on_tool_result(ToolResult {
            call_id: call.id,
            author: call.recipient.clone(),
            channel: call.channel.clone(),
            text: "4\n".into(),
            is_error: false,
            duration: Duration::from_millis(12),
        })
        .unwrap();
    let AgentStep::Engine(second) = step else {
        panic!("the result is submitted: {step:?}");
    };
    let Command::Submit { conversation, .. } = &second else {
        panic!("a submit");
    };
    let prompt = render_for_completion(conversation, &tokenizer, &RenderOptions::default())
        .unwrap()
        .len();
    let stats = run_turn(&mut engine, second);
    // The reasoning the model generated is re-used from the cache (it was not dropped from
    // the prompt, and the engine snapshots each message start it generates); only the call
    // message, the tool message and the new `<|start|>assistant` are prefilled.
    assert!(before_call > prompt_tokens, "the analysis adds tokens");
    assert_eq!(stats.cached_tokens, before_call, "{stats:?}");
    assert_eq!(stats.prefill_tokens, prompt - before_call, "{stats:?}");
    engine.shutdown();
}
