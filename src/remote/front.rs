//! The thread that stands in for the engine: it takes the app's commands, streams each turn
//! from the server on a helper thread, and sends back the engine's events. Side threads find
//! the model (`/v1/models`, retried until the server is up) and sample the server's KV use
//! from `/metrics` about once a second.
//!
//! Stop ends the turn at once with what arrived (its stream's thread closes the connection at
//! the next chunk); a dropped connection does the same and says so, so a chat is never lost.

use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::chunk::{Chunk, parse_chunk};
use super::http::Client;
use super::prometheus::kv_use;
use super::request::{RequestSettings, request_body};
use super::sse::SseReader;
use super::turn::RemoteTurn;
use super::{RemoteError, RemoteOptions};
use crate::engine::{
    Command, EngineHandle, Event, MetricsSample, SamplingParams, TurnStats,
    protocol::{MemorySample, ModelInfo, RemoteSample},
};
use crate::harmony::{Content, Conversation, ReasoningEffort};

/// How often the server's `/metrics` is read.
pub const METRICS_POLL: Duration = Duration::from_secs(1);
/// How long to wait before reading `/metrics` again when the server has none we know.
const METRICS_ABSENT_POLL: Duration = Duration::from_secs(10);
/// The longest wait between tries to reach a server that is down at start.
const MAX_CONNECT_DELAY: Duration = Duration::from_secs(30);
/// Metrics samples during a turn at most this often.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);
/// The error for a constraint only the local engine can apply.
pub const REMOTE_TOOL_CONSTRAINT_REFUSAL: &str = "tool argument schemas and required tool calls \
    are enforced only on the local engine; with --remote only an answer format (--json-schema, \
    /json) is sent, as response_format";

/// What the front's thread waits on.
enum Inbox {
    Command(Command),
    CommandsClosed,
    Connected { model: String, context_limit: usize },
    ConnectFailed(RemoteError),
    Stream { turn: u64, item: StreamItem },
    ServerKv(Option<f64>),
}

/// What a turn's stream thread reports.
enum StreamItem {
    Chunk(Chunk),
    /// `data: [DONE]`.
    Done,
    /// The body ended without `[DONE]`.
    Ended,
    Failed(RemoteError),
}

/// Starts the front for `options`' server; the handle works like the engine's.
pub fn spawn(options: RemoteOptions) -> EngineHandle {
    let (command_tx, command_rx) = mpsc::channel();
    let (event_tx, event_rx) = unbounded_channel();
    let (inbox_tx, inbox_rx) = mpsc::channel();
    let shutdown = Arc::new(AtomicBool::new(false));
    let client = Client::new(options);
    let forward = inbox_tx.clone();
    spawn_named("ossterm-remote-commands", move || {
        while let Ok(command) = command_rx.recv() {
            if forward.send(Inbox::Command(command)).is_err() {
                return;
            }
        }
        let _ = forward.send(Inbox::CommandsClosed);
    });
    let (connect_client, connect_tx, connect_stop) =
        (client.clone(), inbox_tx.clone(), shutdown.clone());
    spawn_named("ossterm-remote-connect", move || {
        connect(&connect_client, &connect_tx, &connect_stop);
    });
    let (metrics_client, metrics_tx, metrics_stop) =
        (client.clone(), inbox_tx.clone(), shutdown.clone());
    spawn_named("ossterm-remote-metrics", move || {
        poll_metrics(&metrics_client, &metrics_tx, &metrics_stop);
    });
    let _ = event_tx.send(Event::LoadProgress {
        stage: format!("connecting to {}", client.options().base_url),
        done_bytes: 0,
        total_bytes: 0,
    });
    let thread = std::thread::Builder::new()
        .name("ossterm-remote".into())
        .spawn(move || {
            let mut front = Front::new(client, event_tx, inbox_tx);
            front.run(&inbox_rx);
            shutdown.store(true, Ordering::Relaxed);
        })
        .ok();
    EngineHandle::from_thread(command_tx, event_rx, thread)
}

fn spawn_named(name: &str, body: impl FnOnce() + Send + 'static) {
    // Without the thread the front still answers commands; only that side job is missing.
    let _ = std::thread::Builder::new().name(name.into()).spawn(body);
}

/// Asks `/v1/models` until the server answers, then reports the model to use.
fn connect(client: &Client, inbox: &mpsc::Sender<Inbox>, shutdown: &AtomicBool) {
    let mut delay = Duration::from_secs(1);
    while !shutdown.load(Ordering::Relaxed) {
        let url = client.options().models_url();
        let found = client
            .get_text(&url, shutdown)
            .and_then(|text| choose_model(&text, client.options().model.as_deref(), &url));
        let message = match found {
            Ok((model, context_limit)) => Inbox::Connected {
                model,
                context_limit,
            },
            Err(error) => Inbox::ConnectFailed(error),
        };
        let connected = matches!(message, Inbox::Connected { .. });
        if inbox.send(message).is_err() || connected {
            return;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_CONNECT_DELAY);
    }
}

/// The model to use and its context length (vLLM's `max_model_len`; 0 when not said), from a
/// `/v1/models` body.
fn choose_model(
    text: &str,
    wanted: Option<&str>,
    url: &str,
) -> Result<(String, usize), RemoteError> {
    let list: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let models = list["data"].as_array().cloned().unwrap_or_default();
    let context = |entry: &Value| {
        entry["max_model_len"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    };
    if let Some(wanted) = wanted {
        let entry = models.iter().find(|m| m["id"].as_str() == Some(wanted));
        return Ok((wanted.to_string(), entry.map_or(0, context)));
    }
    models
        .iter()
        .find_map(|entry| Some((entry["id"].as_str()?.to_string(), context(entry))))
        .ok_or_else(|| RemoteError::NoModel {
            url: url.to_string(),
        })
}

fn poll_metrics(client: &Client, inbox: &mpsc::Sender<Inbox>, shutdown: &AtomicBool) {
    let url = client.options().metrics_url();
    while !shutdown.load(Ordering::Relaxed) {
        let fraction = client
            .get_text(&url, shutdown)
            .ok()
            .and_then(|text| kv_use(&text))
            .map(|kv| kv.used_fraction);
        if inbox.send(Inbox::ServerKv(fraction)).is_err() {
            return;
        }
        std::thread::sleep(if fraction.is_some() {
            METRICS_POLL
        } else {
            METRICS_ABSENT_POLL
        });
    }
}

/// A turn being streamed.
struct Running {
    id: u64,
    turn: RemoteTurn,
    cancel: Arc<AtomicBool>,
}

struct Front {
    client: Client,
    events: UnboundedSender<Event>,
    inbox: mpsc::Sender<Inbox>,
    effort: Option<ReasoningEffort>,
    sampling: SamplingParams,
    model: Option<String>,
    context_limit: usize,
    running: Option<Running>,
    next_turn: u64,
    server_kv: Option<f64>,
    context_used: usize,
    last_stats: TurnStats,
    last_sample: Option<Instant>,
    last_connect_error: Option<RemoteError>,
}

impl Front {
    fn new(client: Client, events: UnboundedSender<Event>, inbox: mpsc::Sender<Inbox>) -> Self {
        Self {
            effort: client.options().effort,
            sampling: client.options().sampling,
            client,
            events,
            inbox,
            model: None,
            context_limit: 0,
            running: None,
            next_turn: 0,
            server_kv: None,
            context_used: 0,
            last_stats: TurnStats::default(),
            last_sample: None,
            last_connect_error: None,
        }
    }

    fn run(&mut self, inbox: &mpsc::Receiver<Inbox>) {
        while let Ok(message) = inbox.recv() {
            match message {
                Inbox::Command(Command::Shutdown) | Inbox::CommandsClosed => break,
                Inbox::Command(command) => self.command(command),
                Inbox::Connected {
                    model,
                    context_limit,
                } => {
                    self.context_limit = context_limit;
                    self.send(Event::Ready(ModelInfo {
                        name: model.clone(),
                        device: format!("remote {}", self.client.options().server_name()),
                        context_limit,
                        max_context: context_limit,
                    }));
                    self.model = Some(model);
                    self.sample(false);
                }
                Inbox::ConnectFailed(error) => {
                    // Once per distinct problem: the connect thread keeps trying.
                    if self.last_connect_error.as_ref() != Some(&error) {
                        self.send(Event::Error {
                            message: format!("{error}; retrying"),
                            fatal: false,
                        });
                        self.last_connect_error = Some(error);
                    }
                }
                Inbox::Stream { turn, item } => self.stream_item(turn, item),
                Inbox::ServerKv(fraction) => {
                    self.server_kv = fraction;
                    self.sample(self.running.is_some());
                }
            }
        }
        if let Some(running) = self.running.take() {
            running.cancel.store(true, Ordering::Relaxed);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Submit {
                conversation,
                max_new_tokens,
                constraint,
            } => {
                self.cancel_running();
                // The answer's format goes to the server as `response_format`; tool argument
                // schemas and required calls are token masks only the local engine applies:
                // refused, never a silently unconstrained answer.
                let constraint = constraint.unwrap_or_default();
                if !constraint.tool_arguments.is_empty() || !constraint.required_call.is_empty() {
                    self.send(Event::Error {
                        message: REMOTE_TOOL_CONSTRAINT_REFUSAL.to_owned(),
                        fatal: false,
                    });
                    return;
                }
                let answer_format = constraint.final_format;
                let Some(model) = self.model.clone() else {
                    self.send(Event::Error {
                        message: format!(
                            "not connected to {} yet; try again when the model shows as ready",
                            self.client.options().base_url
                        ),
                        fatal: false,
                    });
                    return;
                };
                // As the local engine: the effort set last, else the system message's.
                let effort = self
                    .effort
                    .or_else(|| system_effort(&conversation))
                    .unwrap_or_default();
                let settings = RequestSettings {
                    model,
                    effort,
                    sampling: self.sampling,
                    max_new_tokens,
                    context_limit: self.context_limit,
                    answer_format,
                };
                let body = request_body(&conversation, &settings);
                self.next_turn += 1;
                let id = self.next_turn;
                let cancel = Arc::new(AtomicBool::new(false));
                let (client, inbox, flag) =
                    (self.client.clone(), self.inbox.clone(), cancel.clone());
                spawn_named("ossterm-remote-stream", move || {
                    stream(&client, &body, &flag, &inbox, id);
                });
                self.running = Some(Running {
                    id,
                    turn: RemoteTurn::new(Instant::now()),
                    cancel,
                });
                self.sample(true);
            }
            Command::Stop => {
                if let Some(mut running) = self.running.take() {
                    running.cancel.store(true, Ordering::Relaxed);
                    self.end_turn(&mut running.turn, true);
                }
            }
            Command::SetEffort(effort) => self.effort = Some(effort),
            Command::SetSampling(sampling) => self.sampling = sampling,
            // The server keeps its own cache and context; nothing to do here.
            Command::NewChat
            | Command::Rewind { .. }
            | Command::SetContextLimit(_)
            | Command::EnableKvSnapshots { .. }
            | Command::OpenChat { .. }
            | Command::Shutdown => {}
        }
    }

    fn cancel_running(&mut self) {
        if let Some(running) = self.running.take() {
            running.cancel.store(true, Ordering::Relaxed);
        }
    }

    fn stream_item(&mut self, id: u64, item: StreamItem) {
        // Items of a stopped or replaced turn are dropped.
        let Some(mut running) = self.running.take_if(|running| running.id == id) else {
            return;
        };
        let now = Instant::now();
        match item {
            StreamItem::Chunk(chunk) => {
                for event in running.turn.on_chunk(chunk, now) {
                    self.send(event);
                }
                self.last_stats = running.turn.stats(now);
                self.running = Some(running);
                if self
                    .last_sample
                    .is_none_or(|at| now.duration_since(at) >= SAMPLE_INTERVAL)
                {
                    self.sample(true);
                }
            }
            StreamItem::Done => self.end_turn(&mut running.turn, false),
            StreamItem::Ended if running.turn.has_finish_reason() => {
                self.end_turn(&mut running.turn, false);
            }
            StreamItem::Ended => self.broken_turn(
                &mut running.turn,
                RemoteError::Network {
                    url: self.client.options().chat_url(),
                    reason: "the connection closed before the answer ended".into(),
                },
            ),
            StreamItem::Failed(error) => self.broken_turn(&mut running.turn, error),
        }
    }

    /// Ends a turn that failed: what arrived is kept as a stopped turn, then the error shows.
    fn broken_turn(&mut self, turn: &mut RemoteTurn, error: RemoteError) {
        let message = if turn.received_anything() {
            self.end_turn(turn, true);
            format!("{error} (what arrived is kept)")
        } else {
            error.to_string()
        };
        self.send(Event::Error {
            message,
            fatal: false,
        });
    }

    fn end_turn(&mut self, turn: &mut RemoteTurn, stopped: bool) {
        let now = Instant::now();
        if let Some(usage) = turn.usage() {
            self.context_used = usage.prompt_tokens + usage.completion_tokens;
        }
        self.last_stats = turn.stats(now);
        for event in turn.finish(stopped, now) {
            self.send(event);
        }
        self.sample(false);
    }

    fn sample(&mut self, generating: bool) {
        self.last_sample = Some(Instant::now());
        let server = self.client.options().server_name();
        self.send(Event::Metrics(MetricsSample {
            memory: MemorySample {
                device_name: format!("remote {server}"),
                ..MemorySample::default()
            },
            context_used: self.context_used,
            context_limit: self.context_limit,
            turn: self.last_stats,
            decode_tok_s_now: self.last_stats.decode_tok_s(),
            generating,
            remote: Some(RemoteSample {
                server,
                kv_cache_used_fraction: self.server_kv,
            }),
        }));
    }

    fn send(&self, event: Event) {
        // The app has gone when this fails; the inbox closing ends the loop.
        let _ = self.events.send(event);
    }
}

/// The effort the conversation's system message asks for.
fn system_effort(conversation: &Conversation) -> Option<ReasoningEffort> {
    conversation
        .messages
        .iter()
        .flat_map(|message| &message.content)
        .find_map(|content| match content {
            Content::SystemContent(system) => system.reasoning_effort,
            _ => None,
        })
}

/// Streams one turn into the inbox until `[DONE]`, the end of the body, an error or `cancel`.
fn stream(
    client: &Client,
    body: &Value,
    cancel: &AtomicBool,
    inbox: &mpsc::Sender<Inbox>,
    turn: u64,
) {
    let report = |item| inbox.send(Inbox::Stream { turn, item }).is_ok();
    let response = match client.post_stream(body, cancel) {
        Ok(response) => response,
        Err(error) => {
            report(StreamItem::Failed(error));
            return;
        }
    };
    let url = client.options().chat_url();
    let mut reader = SseReader::new(BufReader::new(response.into_reader()));
    // Returning drops the response, which closes the connection: the server sees the client
    // leave and stops generating.
    while !cancel.load(Ordering::Relaxed) {
        let item = match reader.next_data() {
            Ok(None) => StreamItem::Ended,
            Ok(Some(data)) if data.trim() == "[DONE]" => StreamItem::Done,
            Ok(Some(data)) => match parse_chunk(&data) {
                Ok(chunk) => StreamItem::Chunk(chunk),
                Err(error) => StreamItem::Failed(error),
            },
            Err(error) => StreamItem::Failed(RemoteError::Network {
                url: url.clone(),
                reason: error.to_string(),
            }),
        };
        let last = !matches!(item, StreamItem::Chunk(_));
        if !report(item) || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_model_or_the_first_listed_is_used() {
        let list = r#"{"object":"list","data":[{"id":"openai/gpt-oss-120b","max_model_len":131072},{"id":"b"}]}"#;
        assert_eq!(
            choose_model(list, None, "u").expect("found"),
            ("openai/gpt-oss-120b".to_string(), 131072)
        );
        assert_eq!(
            choose_model(list, Some("b"), "u").expect("found"),
            ("b".to_string(), 0)
        );
        let error = choose_model(r#"{"data":[]}"#, None, "http://x/v1/models").expect_err("none");
        assert_eq!(
            error.to_string(),
            "http://x/v1/models lists no models: name one with --remote-model NAME"
        );
    }
}
