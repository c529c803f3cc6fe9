//! `--remote` at the Event level: recorded streams in vLLM's, SGLang's, llama-server's and
//! Ollama's shapes (tests/data/remote_streams/) replayed by a small server on 127.0.0.1, plus
//! retries, a dropped connection, Stop, and one run through the app's state and screen.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ossterm::engine::{Command, EngineHandle, Event, StopReason};
use ossterm::harmony::{Conversation, Message, ReasoningEffort, SystemContent};
use ossterm::remote::RemoteOptions;
use serde_json::Value;

mod common;

const STREAMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/remote_streams");

/// How the fake server answers a chat request.
#[derive(Clone)]
enum Reply {
    /// These SSE events, `delay` apart.
    Sse { body: String, delay: Duration },
    /// An HTTP error with these extra headers.
    Status {
        status: u16,
        headers: String,
        body: String,
    },
}

/// A server on 127.0.0.1 that answers `/v1/models`, `/metrics` and chat requests (replies in
/// order, the last one repeating), and remembers what it was sent.
struct FakeServer {
    base: String,
    chat_bodies: Arc<Mutex<Vec<Value>>>,
    /// Set when a client closed a stream before its end.
    client_left: Arc<AtomicBool>,
}

impl FakeServer {
    fn start(metrics: &'static str, replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let base = format!("http://{}/v1", listener.local_addr().expect("address"));
        let chat_bodies = Arc::new(Mutex::new(Vec::new()));
        let client_left = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(Mutex::new(replies));
        let (bodies, left) = (chat_bodies.clone(), client_left.clone());
        std::thread::spawn(move || {
            for socket in listener.incoming().flatten() {
                let (bodies, left, replies) = (bodies.clone(), left.clone(), replies.clone());
                std::thread::spawn(move || serve(socket, metrics, &replies, &bodies, &left));
            }
        });
        Self {
            base,
            chat_bodies,
            client_left,
        }
    }

    fn chat_bodies(&self) -> Vec<Value> {
        self.chat_bodies.lock().expect("lock").clone()
    }
}

fn serve(
    socket: TcpStream,
    metrics: &str,
    replies: &Mutex<Vec<Reply>>,
    bodies: &Mutex<Vec<Value>>,
    left: &AtomicBool,
) {
    let mut reader = BufReader::new(socket.try_clone().expect("clone"));
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut socket = socket;
    let plain = |socket: &mut TcpStream, kind: &str, text: &str| {
        let _ = write!(
            socket,
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    };
    if head.starts_with("GET /v1/models") {
        plain(
            &mut socket,
            "application/json",
            r#"{"object":"list","data":[{"id":"openai/gpt-oss-120b","object":"model","max_model_len":131072}]}"#,
        );
    } else if head.starts_with("GET /metrics") {
        plain(&mut socket, "text/plain", metrics);
    } else if head.starts_with("POST /v1/chat/completions") {
        bodies
            .lock()
            .expect("lock")
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        let reply = {
            let mut replies = replies.lock().expect("lock");
            if replies.len() > 1 {
                replies.remove(0)
            } else {
                replies[0].clone()
            }
        };
        match reply {
            Reply::Status {
                status,
                headers,
                body,
            } => {
                let _ = write!(
                    socket,
                    "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Reply::Sse { body, delay } => {
                let _ = write!(
                    socket,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                );
                for event in body.split_inclusive("\n\n") {
                    std::thread::sleep(delay);
                    if socket
                        .write_all(event.as_bytes())
                        .and_then(|()| socket.flush())
                        .is_err()
                    {
                        left.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    } else {
        let _ = write!(
            socket,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        );
    }
}

fn recorded(name: &str) -> String {
    std::fs::read_to_string(format!("{STREAMS}/{name}")).expect("a recorded stream")
}

fn sse(name: &str) -> Reply {
    Reply::Sse {
        body: recorded(name),
        delay: Duration::from_millis(1),
    }
}

/// Events until `stop` says so (or 20 s pass, which fails).
fn events_until(handle: &mut EngineHandle, stop: impl Fn(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    while Instant::now() < deadline {
        match handle.events.try_recv() {
            Ok(event) => {
                let last = stop(&event);
                events.push(event);
                if last {
                    return events;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("timed out; got {events:#?}");
}

fn connect(server: &FakeServer) -> EngineHandle {
    let options = RemoteOptions::new(&server.base, Some("k3y".into()), None).expect("a URL");
    let mut handle = ossterm::remote::spawn(options);
    events_until(&mut handle, |e| matches!(e, Event::Ready(_)));
    handle
}

fn ask(handle: &EngineHandle) {
    let conversation = Conversation::from_messages([
        Message::system(SystemContent::new()),
        Message::user("What is the capital of France?"),
    ]);
    handle
        .commands
        .send(Command::SetEffort(ReasoningEffort::High))
        .expect("sends");
    handle
        .commands
        .send(Command::Submit {
            conversation,
            max_new_tokens: 256,
            constraint: None,
        })
        .expect("sends");
}

/// The text of each channel's tokens, and the finished messages' channels.
fn by_channel(events: &[Event]) -> (String, String, Vec<String>) {
    let (mut reasoning, mut answer, mut done) = (String::new(), String::new(), Vec::new());
    for event in events {
        match event {
            Event::Token { channel, delta, .. } => match channel.as_deref() {
                Some("analysis") => reasoning.push_str(delta),
                Some("final") => answer.push_str(delta),
                other => panic!("unexpected channel {other:?}"),
            },
            Event::MessageDone(message) => {
                done.push(message.channel.clone().unwrap_or_default());
            }
            _ => {}
        }
    }
    (reasoning, answer, done)
}

fn turn_done(events: &[Event]) -> (StopReason, ossterm::engine::TurnStats) {
    events
        .iter()
        .find_map(|e| match e {
            Event::TurnDone { stop, stats } => Some((*stop, *stats)),
            _ => None,
        })
        .expect("a TurnDone")
}

#[test]
fn each_servers_stream_puts_reasoning_and_answer_in_their_places() {
    let cases = [
        (
            "vllm.sse",
            "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"openai/gpt-oss-120b\"} 0.25\n",
            64,
        ),
        (
            "sglang.sse",
            "sglang:token_usage{model_name=\"openai/gpt-oss-120b\"} 0.25\n",
            64,
        ),
        (
            "llama_server.sse",
            "llamacpp:kv_cache_usage_ratio 0.25\nllamacpp:kv_cache_tokens 1024\n",
            0,
        ),
        ("ollama.sse", "", 0),
    ];
    for (file, metrics, cached) in cases {
        let server = FakeServer::start(metrics, vec![sse(file)]);
        let mut handle = connect(&server);
        ask(&handle);
        let events = events_until(&mut handle, |e| matches!(e, Event::TurnDone { .. }));
        let (reasoning, answer, done) = by_channel(&events);
        assert_eq!(reasoning, "The user asks for the capital.", "{file}");
        assert_eq!(answer, "Paris is the capital.", "{file}");
        assert_eq!(done, ["analysis", "final"], "{file}");
        let (stop, stats) = turn_done(&events);
        assert_eq!(stop, StopReason::Return, "{file}");
        assert_eq!(
            stats.decode_tokens, 12,
            "{file}: completion tokens from usage"
        );
        assert_eq!(stats.cached_tokens, cached, "{file}");
        assert_eq!(stats.prefill_tokens + stats.cached_tokens, 70, "{file}");
        assert!(stats.time_to_first_token_ms > 0.0, "{file}");

        let body = &server.chat_bodies()[0];
        assert_eq!(body["reasoning_effort"], "high", "{file}");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["model"], "openai/gpt-oss-120b");
        assert_eq!(
            body["messages"],
            serde_json::json!([{"role": "user", "content": "What is the capital of France?"}])
        );

        // The server's KV use, from its /metrics where it has one.
        let expected = (!metrics.is_empty()).then_some(0.25);
        let sample = events_until(
            &mut handle,
            |e| matches!(e, Event::Metrics(s) if s.remote.as_ref().is_some_and(|r| r.kv_cache_used_fraction == expected)),
        );
        let Some(Event::Metrics(sample)) = sample.last() else {
            panic!("no sample");
        };
        assert_eq!(sample.context_used, 82, "{file}");
        assert!(sample.memory.device_name.starts_with("remote 127.0.0.1:"));
        handle.shutdown();
    }
}

#[test]
fn a_streamed_function_call_becomes_a_harmony_call_message() {
    let server = FakeServer::start("", vec![sse("vllm_tool_call.sse")]);
    let mut handle = connect(&server);
    ask(&handle);
    let events = events_until(&mut handle, |e| matches!(e, Event::TurnDone { .. }));
    let call = events
        .iter()
        .find_map(|e| match e {
            Event::MessageDone(m) if m.recipient.is_some() => Some(m.clone()),
            _ => None,
        })
        .expect("a call message");
    assert_eq!(call.recipient.as_deref(), Some("functions.get_weather"));
    assert_eq!(call.channel.as_deref(), Some("commentary"));
    assert_eq!(call.content_type.as_deref(), Some("<|constrain|>json"));
    assert_eq!(call.text(), "{\"city\": \"Oslo\"}");
    assert_eq!(turn_done(&events).0, StopReason::Call);
    handle.shutdown();
}

#[test]
fn a_429_is_retried_after_retry_after_and_then_answered() {
    let busy = Reply::Status {
        status: 429,
        headers: "Retry-After: 1\r\n".into(),
        body: r#"{"error":{"message":"queue full","type":"rate_limit_error"}}"#.into(),
    };
    let server = FakeServer::start("", vec![busy, sse("vllm.sse")]);
    let mut handle = connect(&server);
    let started = Instant::now();
    ask(&handle);
    let events = events_until(&mut handle, |e| matches!(e, Event::TurnDone { .. }));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited Retry-After"
    );
    assert_eq!(by_channel(&events).1, "Paris is the capital.");
    assert_eq!(server.chat_bodies().len(), 2);
    handle.shutdown();
}

#[test]
fn a_refusal_that_is_not_retryable_shows_the_servers_message_at_once() {
    let refused = Reply::Status {
        status: 400,
        headers: String::new(),
        body: r#"{"error":{"message":"max_tokens is too large","type":"invalid_request_error"}}"#
            .into(),
    };
    let server = FakeServer::start("", vec![refused]);
    let mut handle = connect(&server);
    ask(&handle);
    let events = events_until(&mut handle, |e| matches!(e, Event::Error { .. }));
    let Some(Event::Error { message, fatal }) = events.last() else {
        panic!("no error");
    };
    assert!(!fatal);
    assert!(
        message.ends_with("/v1/chat/completions answered HTTP 400: max_tokens is too large"),
        "{message}"
    );
    assert_eq!(server.chat_bodies().len(), 1, "not retried");
    handle.shutdown();
}

#[test]
fn a_dropped_connection_keeps_what_arrived_and_says_so() {
    let whole = recorded("vllm.sse");
    // The body ends after the first answer piece: no finish_reason, no [DONE].
    let cut = whole
        .find("\" the capital.\"")
        .and_then(|at| whole[..at].rfind("data: "))
        .expect("the second answer chunk");
    let server = FakeServer::start(
        "",
        vec![Reply::Sse {
            body: whole[..cut].to_string(),
            delay: Duration::from_millis(1),
        }],
    );
    let mut handle = connect(&server);
    ask(&handle);
    let events = events_until(&mut handle, |e| matches!(e, Event::Error { .. }));
    let (reasoning, answer, done) = by_channel(&events);
    assert_eq!(reasoning, "The user asks for the capital.");
    assert_eq!(answer, "Paris is");
    assert_eq!(done, ["analysis", "final"]);
    assert_eq!(turn_done(&events).0, StopReason::Stopped);
    let Some(Event::Error { message, .. }) = events.last() else {
        panic!("no error");
    };
    assert!(
        message.ends_with("the connection closed before the answer ended (what arrived is kept)"),
        "{message}"
    );
    handle.shutdown();
}

#[test]
fn stop_ends_the_turn_at_once_and_closes_the_stream() {
    let slow = Reply::Sse {
        body: "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n".repeat(400),
        delay: Duration::from_millis(20),
    };
    let server = FakeServer::start("", vec![slow]);
    let mut handle = connect(&server);
    ask(&handle);
    events_until(&mut handle, |e| matches!(e, Event::Token { .. }));
    let stopped_at = Instant::now();
    handle.commands.send(Command::Stop).expect("sends");
    let events = events_until(&mut handle, |e| matches!(e, Event::TurnDone { .. }));
    assert!(stopped_at.elapsed() < Duration::from_secs(1));
    assert_eq!(turn_done(&events).0, StopReason::Stopped);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.client_left.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        server.client_left.load(Ordering::Relaxed),
        "the connection was closed"
    );
    handle.shutdown();
}

/// The app, driven by the remote front as by the engine: its Submit goes to the server, and
/// the reasoning, the answer and the server's KV use reach the screen.
#[test]
fn through_the_app_the_panes_fill_and_metrics_show_the_servers_kv_use() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ossterm::engine::SamplingParams;
    use ossterm::tui::app::{App, AppOptions, Effect, Input};
    use ossterm::tui::keys::KeyMap;
    use ossterm::tui::theme::Theme;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    let server = FakeServer::start(
        "sglang:token_usage{model_name=\"openai/gpt-oss-120b\"} 0.375\n",
        vec![sse("sglang.sse")],
    );
    let options = RemoteOptions::new(&server.base, None, None).expect("a URL");
    let mut handle = ossterm::remote::spawn(options);
    let mut app = App::new(AppOptions {
        theme: Theme::load("dark", None).expect("theme"),
        keymap: KeyMap::default(),
        effort: ReasoningEffort::Low,
        developer_instructions: String::new(),
        chat_id: "remote".into(),
        sampling: SamplingParams::default(),
        today: "2026-12-03".into(),
    });
    let feed = |app: &mut App, events: Vec<Event>| {
        for event in events {
            app.update(Input::Engine(event));
        }
    };
    feed(
        &mut app,
        events_until(&mut handle, |e| matches!(e, Event::Ready(_))),
    );
    let mut effects = Vec::new();
    for c in "Capital of France?".chars() {
        effects.extend(app.update(Input::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        ))));
    }
    effects.extend(app.update(Input::Key(KeyEvent::new(
        KeyCode::Enter,
        KeyModifiers::NONE,
    ))));
    for effect in effects {
        if let Effect::Engine(command) = effect {
            handle.commands.send(command.into_command()).expect("sends");
        }
    }
    feed(
        &mut app,
        events_until(&mut handle, |e| matches!(e, Event::TurnDone { .. })),
    );
    feed(
        &mut app,
        events_until(
            &mut handle,
            |e| matches!(e, Event::Metrics(s) if s.remote.as_ref().is_some_and(|r| r.kv_cache_used_fraction.is_some())),
        ),
    );
    assert_eq!(server.chat_bodies()[0]["reasoning_effort"], "low");
    let turn = app.last_turn().expect("a turn");
    assert_eq!(turn.reasoning.text(), "The user asks for the capital.");
    assert_eq!(turn.answer.text(), "Paris is the capital.");
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
    terminal
        .draw(|frame| ossterm::tui::ui::draw(frame, &app))
        .expect("draws");
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|cell| cell.symbol())
        .collect();
    for needle in [
        "Paris is the capital.",
        "The user asks for the capital.",
        "server 37.5%",
        "memory   remote",
    ] {
        assert!(screen.contains(needle), "{needle:?} not on screen");
    }
    handle.shutdown();
}

#[test]
fn bad_remote_flags_are_refused_before_the_app_starts() {
    let (ok, _, stderr) = common::cli::ossterm(&["--remote", "ftp://gpu-box/v1"]);
    assert!(!ok);
    assert!(
        stderr.contains("--remote ftp://gpu-box/v1: use an http:// or https:// URL"),
        "{stderr}"
    );
    let (ok, _, stderr) = common::cli::ossterm(&[
        "--remote",
        "http://127.0.0.1:9/v1",
        "--api-key-env",
        "OSSTERM_TEST_NO_SUCH_KEY",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "--api-key-env OSSTERM_TEST_NO_SUCH_KEY: the environment variable is not set"
        ),
        "{stderr}"
    );
    let (ok, _, stderr) = common::cli::ossterm(&["--remote-model", "m"]);
    assert!(!ok);
    assert!(stderr.contains("--remote <URL>"), "{stderr}");
}
