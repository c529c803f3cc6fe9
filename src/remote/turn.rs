//! One remote turn, from parsed chunks to the engine's events: reasoning on `analysis`, the
//! answer on `final`, each function call as a `commentary` message to `functions.NAME` (as the
//! local engine reports them), a `MessageDone` whenever one message gives way to the next, and
//! the turn's stats measured here (time to first token, tokens per second) with the server's
//! token counts from `usage`.

use std::time::Instant;

use super::chunk::{Chunk, Usage};
use crate::engine::{Event, StopReason, TurnStats};
use crate::harmony::Message;
use crate::server::tools::{FUNCTIONS_NAMESPACE, JSON_CONTENT_TYPE};

/// The message being received.
#[derive(Debug, Clone, PartialEq)]
enum Open {
    Reasoning(String),
    Answer(String),
    Call {
        index: usize,
        recipient: String,
        arguments: String,
    },
}

/// A turn in progress.
#[derive(Debug)]
pub struct RemoteTurn {
    started: Instant,
    first_piece: Option<Instant>,
    open: Option<Open>,
    pieces: usize,
    calls: usize,
    usage: Option<Usage>,
    finish_reason: Option<String>,
}

impl RemoteTurn {
    /// A turn whose request went out at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            first_piece: None,
            open: None,
            pieces: 0,
            calls: 0,
            usage: None,
            finish_reason: None,
        }
    }

    /// Whether any text or call arrived.
    pub fn received_anything(&self) -> bool {
        self.first_piece.is_some()
    }

    /// Whether the server said why the answer ended (so a stream cut after it lost nothing).
    pub fn has_finish_reason(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// The server's token counts, once it sent them.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The events one chunk adds.
    pub fn on_chunk(&mut self, chunk: Chunk, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.finish_reason.is_some() {
            self.finish_reason = chunk.finish_reason;
        }
        if !chunk.reasoning.is_empty() {
            self.piece(
                &mut events,
                now,
                |open| matches!(open, Open::Reasoning(_)),
                || Open::Reasoning(String::new()),
            );
            events.push(self.append("analysis", None, &chunk.reasoning));
        }
        if !chunk.content.is_empty() {
            self.piece(
                &mut events,
                now,
                |open| matches!(open, Open::Answer(_)),
                || Open::Answer(String::new()),
            );
            events.push(self.append("final", None, &chunk.content));
        }
        for call in chunk.calls {
            let name = call.name.unwrap_or_else(|| "unnamed".into());
            let recipient = format!("{FUNCTIONS_NAMESPACE}.{name}");
            let index = call.index;
            let opened = self.piece(
                &mut events,
                now,
                |open| matches!(open, Open::Call { index: i, .. } if *i == index),
                || Open::Call {
                    index,
                    recipient: recipient.clone(),
                    arguments: String::new(),
                },
            );
            if opened {
                self.calls += 1;
            }
            let to = match &self.open {
                Some(Open::Call { recipient, .. }) => recipient.clone(),
                _ => recipient,
            };
            events.push(self.append("commentary", Some(to), &call.arguments));
        }
        events
    }

    /// Ends the turn: the open message is done, then `TurnDone`. `stopped` when the user
    /// stopped it or the connection dropped (what arrived is kept either way).
    pub fn finish(&mut self, stopped: bool, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(open) = self.open.take() {
            events.push(Event::MessageDone(message(open)));
        }
        let stop = if stopped {
            StopReason::Stopped
        } else {
            match self.finish_reason.as_deref() {
                _ if self.calls > 0 => StopReason::Call,
                Some("length") => StopReason::Length,
                Some("tool_calls") => StopReason::Call,
                Some("stop") | None => StopReason::Return,
                Some(_) => StopReason::EndOfText,
            }
        };
        events.push(Event::TurnDone {
            stop,
            stats: self.stats(now),
        });
        events
    }

    /// The turn's numbers so far.
    pub fn stats(&self, now: Instant) -> TurnStats {
        let ms =
            |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
        let usage = self.usage.unwrap_or_default();
        let time_to_first_token_ms = self
            .first_piece
            .map_or(0.0, |first| ms(self.started, first));
        TurnStats {
            prefill_tokens: usage.prompt_tokens.saturating_sub(usage.cached_tokens),
            cached_tokens: usage.cached_tokens,
            prefill_ms: time_to_first_token_ms,
            // Servers count tokens; before their usage arrives each piece is about one token.
            decode_tokens: if usage.completion_tokens > 0 {
                usage.completion_tokens
            } else {
                self.pieces
            },
            decode_ms: self.first_piece.map_or(0.0, |first| ms(first, now)),
            time_to_first_token_ms,
        }
    }

    /// Makes sure the open message is the right kind (closing the one before); true when a new
    /// message was opened.
    fn piece(
        &mut self,
        events: &mut Vec<Event>,
        now: Instant,
        is_open: impl Fn(&Open) -> bool,
        open: impl FnOnce() -> Open,
    ) -> bool {
        self.pieces += 1;
        if self.first_piece.is_none() {
            self.first_piece = Some(now);
            events.push(Event::PrefillDone {
                stats: self.stats(now),
            });
        }
        if self.open.as_ref().is_some_and(is_open) {
            return false;
        }
        if let Some(done) = self.open.replace(open()) {
            events.push(Event::MessageDone(message(done)));
        }
        true
    }

    fn append(&mut self, channel: &str, recipient: Option<String>, delta: &str) -> Event {
        match &mut self.open {
            Some(Open::Reasoning(text) | Open::Answer(text)) => text.push_str(delta),
            Some(Open::Call { arguments, .. }) => arguments.push_str(delta),
            None => {}
        }
        Event::Token {
            token_id: 0,
            channel: Some(channel.into()),
            recipient,
            delta: delta.into(),
        }
    }
}

fn message(open: Open) -> Message {
    match open {
        Open::Reasoning(text) => Message::assistant("analysis", text),
        Open::Answer(text) => Message::assistant("final", text),
        Open::Call {
            recipient,
            arguments,
            ..
        } => Message::assistant("commentary", arguments)
            .with_recipient(recipient)
            .with_content_type(JSON_CONTENT_TYPE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::chunk::CallPiece;
    use std::time::Duration;

    fn shapes(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|event| match event {
                Event::Token {
                    channel,
                    recipient,
                    delta,
                    ..
                } => format!(
                    "token {}{} {delta}",
                    channel.as_deref().unwrap_or("-"),
                    recipient
                        .as_deref()
                        .map(|r| format!(" to={r}"))
                        .unwrap_or_default()
                ),
                Event::MessageDone(message) => format!(
                    "done {} {}",
                    message.channel.as_deref().unwrap_or("-"),
                    message.text()
                ),
                Event::PrefillDone { .. } => "prefill".into(),
                Event::TurnDone { stop, .. } => format!("turn {stop:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn reasoning_then_answer_become_two_messages_with_client_side_timing() {
        let start = Instant::now();
        let mut turn = RemoteTurn::new(start);
        let at = |ms| start + Duration::from_millis(ms);
        let mut events = turn.on_chunk(
            Chunk {
                reasoning: "think".into(),
                ..Chunk::default()
            },
            at(200),
        );
        events.extend(turn.on_chunk(
            Chunk {
                content: "Hi".into(),
                ..Chunk::default()
            },
            at(300),
        ));
        events.extend(turn.on_chunk(
            Chunk {
                finish_reason: Some("stop".into()),
                usage: Some(Usage {
                    prompt_tokens: 30,
                    completion_tokens: 10,
                    cached_tokens: 20,
                }),
                ..Chunk::default()
            },
            at(400),
        ));
        events.extend(turn.finish(false, at(1200)));
        assert_eq!(
            shapes(&events),
            [
                "prefill",
                "token analysis think",
                "done analysis think",
                "token final Hi",
                "done final Hi",
                "turn Return"
            ]
        );
        let Some(Event::TurnDone { stats, .. }) = events.last() else {
            panic!("no TurnDone");
        };
        assert_eq!(stats.time_to_first_token_ms, 200.0);
        assert_eq!(stats.decode_ms, 1000.0);
        assert_eq!(stats.decode_tokens, 10);
        assert_eq!((stats.prefill_tokens, stats.cached_tokens), (10, 20));
    }

    #[test]
    fn a_call_is_a_commentary_message_to_its_function() {
        let now = Instant::now();
        let mut turn = RemoteTurn::new(now);
        let call = |name: Option<&str>, arguments: &str| Chunk {
            calls: vec![CallPiece {
                index: 0,
                name: name.map(Into::into),
                arguments: arguments.into(),
            }],
            ..Chunk::default()
        };
        let mut events = turn.on_chunk(call(Some("get_weather"), ""), now);
        events.extend(turn.on_chunk(call(None, "{\"city\":\"Oslo\"}"), now));
        events.extend(turn.finish(false, now));
        assert_eq!(
            shapes(&events)[1..],
            [
                "token commentary to=functions.get_weather ",
                "token commentary to=functions.get_weather {\"city\":\"Oslo\"}",
                "done commentary {\"city\":\"Oslo\"}",
                "turn Call"
            ]
        );
        let Some(Event::MessageDone(message)) = events.get(3) else {
            panic!("{events:?}");
        };
        assert_eq!(message.recipient.as_deref(), Some("functions.get_weather"));
        assert_eq!(message.content_type.as_deref(), Some("<|constrain|>json"));
    }

    #[test]
    fn a_stopped_turn_keeps_what_arrived() {
        let now = Instant::now();
        let mut turn = RemoteTurn::new(now);
        let mut events = turn.on_chunk(
            Chunk {
                content: "half an ans".into(),
                ..Chunk::default()
            },
            now,
        );
        events.extend(turn.finish(true, now));
        assert_eq!(
            shapes(&events)[2..],
            ["done final half an ans", "turn Stopped"]
        );
    }
}
