//! The tool loop against the real engine thread (the demo model): a python call's result goes
//! back as a tool message and the next generation re-uses the whole cached prefix, reasoning
//! included, so only the new tokens are prefilled.
//!
//! The whole loop (driver, policy, the real python runner) runs against a scripted model.
//!
//! The round-trip test keeps the demo's own reasoning but writes the call itself (the demo
//! calls python for arithmetic; `tests/ask.rs` runs that call end to end), so the prefix it
//! checks the cache against is known exactly.

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
use ossterm::tools::agent_driver::{EngineLink, TurnObserver, drive_turn};
use ossterm::tools::settings::PythonSettings;
use ossterm::tools::{
    AgentLoop, AgentStep, Approval, ApprovalPolicy, CatalogEntry, ToolCall, ToolCatalog,
    ToolCommand, ToolEvent, ToolResult, ToolSettings, ToolWhere,
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
        kernels: ossterm::model::Kernels::Auto,
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
    // The call after that reasoning, written here rather than taken from the demo: the call
    // is a new message, so the cache holds everything before it.
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

/// A stand-in engine thread that answers each submit with the next scripted turn (messages,
/// then how the turn stopped), and hands back every conversation it was sent.
fn scripted_engine(
    turns: Vec<(Vec<Message>, StopReason)>,
) -> (
    std::sync::mpsc::Sender<Command>,
    tokio::sync::mpsc::UnboundedReceiver<Event>,
    std::thread::JoinHandle<Vec<Conversation>>,
) {
    let (command_tx, command_rx) = std::sync::mpsc::channel::<Command>();
    let (event_tx, event_rx) = tokio::sync::mpsc::unbounded_channel();
    let thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut turns = turns.into_iter();
        while let Ok(Command::Submit { conversation, .. }) = command_rx.recv() {
            seen.push(conversation);
            let Some((messages, stop)) = turns.next() else {
                break;
            };
            for message in messages {
                let _ = event_tx.send(Event::Token {
                    token_id: 0,
                    channel: message.channel.clone(),
                    recipient: message.recipient.clone(),
                    delta: message.text(),
                });
                let _ = event_tx.send(Event::MessageDone(message));
            }
            let _ = event_tx.send(Event::TurnDone {
                stop,
                stats: TurnStats::default(),
            });
        }
        seen
    });
    (command_tx, event_rx, thread)
}

/// Records what the driver reports.
#[derive(Default)]
struct Recorder {
    answer: String,
    finished: Vec<ossterm::tools::ToolExchange>,
    asked: usize,
}

impl TurnObserver for Recorder {
    fn token(&mut self, channel: Option<&str>, recipient: Option<&str>, delta: &str) {
        if channel == Some("final") && recipient.is_none() {
            self.answer.push_str(delta);
        }
    }
    fn tool_started(&mut self, _call: &ToolCall) {}
    fn tool_finished(&mut self, exchange: &ossterm::tools::ToolExchange) {
        self.finished.push(exchange.clone());
    }
    fn problem(&mut self, _source: &str, _message: &str) {}
    fn approve(&mut self, _call: &ToolCall, _where_runs: &ToolWhere) -> Approval {
        self.asked += 1;
        Approval::Deny
    }
}

fn python_call(code: &str) -> Message {
    Message::assistant("analysis", code)
        .with_recipient("python")
        .with_content_type("code")
}

/// Runs one user turn with the real tool host (python enabled) and a scripted model.
fn run_scripted(
    policy: ApprovalPolicy,
    turns: Vec<(Vec<Message>, StopReason)>,
) -> (AgentLoop, Recorder, Vec<Conversation>) {
    let work = tempfile::tempdir().unwrap();
    let settings = ToolSettings {
        work_dir: Some(work.path().to_path_buf()),
        python: PythonSettings {
            enabled: true,
            ..PythonSettings::default()
        },
        ..ToolSettings::default()
    };
    let mut host = ossterm::tools::host::spawn(&settings).expect("tool host starts");
    let mut catalog = match host.events.recv_timeout(TIMEOUT).unwrap() {
        ToolEvent::Tools(catalog) => catalog,
        other => panic!("the host lists its tools first: {other:?}"),
    };
    let system = Message::system(SystemContent::new().with_tools(catalog.builtin[0].clone()));
    let mut agent = AgentLoop::new(Conversation::from_messages([system]), policy, "chat", 64);
    let (commands, mut events, engine) = scripted_engine(turns);
    let mut recorder = Recorder::default();
    let first = agent.start_turn("what is 6 x 7");
    let stop = drive_turn(
        &mut agent,
        first,
        &mut EngineLink {
            commands: &commands,
            events: &mut events,
        },
        Some(&mut host),
        &mut catalog,
        &mut recorder,
    )
    .expect("the turn finishes");
    assert_eq!(stop, StopReason::Return);
    let _ = host.commands.send(ToolCommand::Shutdown);
    drop(commands);
    (agent, recorder, engine.join().unwrap())
}

#[test]
fn an_allowed_python_call_runs_in_the_real_tool_host_and_the_model_answers_from_it() {
    let policy = ApprovalPolicy::default()
        .with_allowlist(["python"])
        .unwrap();
    let turns = vec![
        (
            vec![
                Message::assistant("analysis", "Compute with python."),
                python_call("print(6 * 7)"),
            ],
            StopReason::Call,
        ),
        (
            vec![Message::assistant("final", "6 x 7 = 42.")],
            StopReason::Return,
        ),
    ];
    let (agent, recorder, seen) = run_scripted(policy, turns);
    assert_eq!(recorder.answer, "6 x 7 = 42.");
    assert_eq!(recorder.asked, 0);
    assert_eq!(recorder.finished.len(), 1);
    assert_eq!(recorder.finished[0].result_text.trim(), "42");
    // The second submit carried the call and python's answer, reasoning kept.
    let second = &seen[1].messages;
    let texts: Vec<String> = second.iter().map(Message::text).collect();
    assert_eq!(texts[2..], ["Compute with python.", "print(6 * 7)", "42\n"]);
    let result = second.last().unwrap();
    assert_eq!(result.name.as_deref(), Some("python"));
    assert_eq!(result.channel.as_deref(), Some("analysis"));
    assert!(agent.tool_time() > Duration::ZERO);
}

#[test]
fn without_a_terminal_an_unlisted_python_call_never_runs_and_the_model_is_told() {
    let turns = vec![
        (vec![python_call("open('/tmp/x', 'w')")], StopReason::Call),
        (
            vec![Message::assistant("final", "I was not allowed to.")],
            StopReason::Return,
        ),
    ];
    let (agent, recorder, seen) = run_scripted(ApprovalPolicy::default(), turns);
    assert_eq!(recorder.asked, 0, "nobody to ask");
    assert_eq!(
        agent.exchanges()[0].denied,
        Some(ossterm::tools::DenyReason::NoTerminal)
    );
    let told = seen[1].messages.last().unwrap().text();
    assert!(
        told.starts_with("[ERROR] the call to python was denied"),
        "{told}"
    );
    assert_eq!(recorder.finished.len(), 1, "the denial is reported");
}
