//! One request's turn, from engine events to what the client gets: reasoning, answer text
//! (cut at a stop sequence), and function calls with their ids.

use serde_json::{Value, json};

use super::response::{Piece, piece};
use super::stop::StopMatcher;
use super::tools::called_function;
use crate::engine::{Event, StopReason};

/// One thing to send, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Reasoning text.
    Reasoning(String),
    /// Answer text.
    Content(String),
    /// The model started calling a function.
    CallStart {
        /// The call's place in `tool_calls`.
        index: usize,
        /// `call_…`, which the client's `role: tool` answer names.
        id: String,
        /// The function's name.
        name: String,
    },
    /// More of a call's JSON arguments.
    CallArguments {
        /// The call's place in `tool_calls`.
        index: usize,
        /// The text.
        text: String,
    },
}

/// A finished function call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallOut {
    /// `call_…`.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The JSON arguments as written.
    pub arguments: String,
}

impl ToolCallOut {
    /// OpenAI's `tool_calls[i]` object.
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "type": "function",
               "function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// Turns one request's engine events into outputs.
#[derive(Debug, Default)]
pub struct TurnAssembler {
    stop: StopMatcher,
    calls: Vec<ToolCallOut>,
    /// The recipient of the call being written, and its index.
    open_call: Option<(String, usize)>,
}

impl TurnAssembler {
    /// An assembler cutting the answer at these stop sequences.
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stop: StopMatcher::new(stops),
            ..Self::default()
        }
    }

    /// Whether a stop sequence ended the answer (the engine should be stopped).
    pub fn stop_matched(&self) -> bool {
        self.stop.matched()
    }

    /// The calls seen so far.
    pub fn calls(&self) -> &[ToolCallOut] {
        &self.calls
    }

    /// What a token or message end adds.
    pub fn on_event(&mut self, event: &Event) -> Vec<Output> {
        if self.stop.matched() {
            return Vec::new();
        }
        match event {
            Event::Token {
                channel,
                recipient,
                delta,
                ..
            } => match recipient
                .as_deref()
                .and_then(|r| Some((r, called_function(r)?)))
            {
                Some((recipient, name)) => self.call_text(recipient, name, delta),
                None => match piece(channel.as_deref(), recipient.as_deref(), delta) {
                    Some(Piece::Reasoning(text)) => vec![Output::Reasoning(text)],
                    Some(Piece::Content(text)) => {
                        let released = self.stop.push(&text);
                        if released.is_empty() {
                            Vec::new()
                        } else {
                            vec![Output::Content(released)]
                        }
                    }
                    None => Vec::new(),
                },
            },
            Event::MessageDone(_) => {
                self.open_call = None;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Answer text held back for a stop sequence that never came.
    pub fn finish(&mut self) -> Vec<Output> {
        let rest = self.stop.finish();
        if rest.is_empty() || self.stop.matched() {
            Vec::new()
        } else {
            vec![Output::Content(rest)]
        }
    }

    /// OpenAI's `finish_reason` for a turn that ended with `stop`.
    pub fn finish_reason(&self, stop: StopReason) -> &'static str {
        if self.stop.matched() {
            "stop"
        } else if stop == StopReason::Call && !self.calls.is_empty() {
            "tool_calls"
        } else {
            super::response::finish_reason(stop)
        }
    }

    fn call_text(&mut self, recipient: &str, name: &str, delta: &str) -> Vec<Output> {
        let mut out = Vec::new();
        let index = match &self.open_call {
            Some((open, index)) if open == recipient => *index,
            _ => {
                let index = self.calls.len();
                let id = format!("call_{:016x}", rand::random::<u64>());
                self.calls.push(ToolCallOut {
                    id: id.clone(),
                    name: name.to_string(),
                    arguments: String::new(),
                });
                self.open_call = Some((recipient.to_string(), index));
                out.push(Output::CallStart {
                    index,
                    id,
                    name: name.to_string(),
                });
                index
            }
        };
        if !delta.is_empty() {
            self.calls[index].arguments.push_str(delta);
            out.push(Output::CallArguments {
                index,
                text: delta.to_string(),
            });
        }
        out
    }
}

/// The `delta` of a streamed chunk carrying `output`.
pub fn delta_json(output: &Output) -> Value {
    match output {
        Output::Reasoning(text) => json!({"reasoning_content": text, "reasoning": text}),
        Output::Content(text) => json!({"content": text}),
        Output::CallStart { index, id, name } => json!({"tool_calls": [{"index": index,
            "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
        Output::CallArguments { index, text } => {
            json!({"tool_calls": [{"index": index, "function": {"arguments": text}}]})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(channel: &str, recipient: Option<&str>, delta: &str) -> Event {
        Event::Token {
            token_id: 0,
            channel: Some(channel.into()),
            recipient: recipient.map(Into::into),
            delta: delta.into(),
        }
    }

    #[test]
    fn a_function_call_streams_as_a_start_then_arguments_with_one_id() {
        let mut turn = TurnAssembler::new(Vec::new());
        let call = Some("functions.get_weather");
        assert_eq!(
            turn.on_event(&token("analysis", None, "think")),
            [Output::Reasoning("think".into())]
        );
        let first = turn.on_event(&token("commentary", call, ""));
        let [Output::CallStart { index: 0, id, name }] = first.as_slice() else {
            panic!("{first:?}");
        };
        assert!(id.starts_with("call_"), "{id}");
        assert_eq!(name, "get_weather");
        assert_eq!(
            turn.on_event(&token("commentary", call, "{\"city\":")),
            [Output::CallArguments {
                index: 0,
                text: "{\"city\":".into()
            }]
        );
        turn.on_event(&token("commentary", call, "\"Oslo\"}"));
        assert_eq!(turn.calls()[0].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(turn.finish_reason(StopReason::Call), "tool_calls");
        assert_eq!(
            delta_json(&Output::CallArguments {
                index: 0,
                text: "x".into()
            }),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]})
        );
    }

    #[test]
    fn a_stop_sequence_cuts_the_answer_and_ends_with_stop() {
        let mut turn = TurnAssembler::new(vec!["STOP".into()]);
        assert_eq!(
            turn.on_event(&token("final", None, "one ST")),
            [Output::Content("one ".into())]
        );
        assert!(turn.on_event(&token("final", None, "OP two")).is_empty());
        assert!(turn.stop_matched());
        assert!(turn.finish().is_empty());
        assert_eq!(turn.finish_reason(StopReason::Stopped), "stop");
    }

    #[test]
    fn a_call_to_a_built_in_is_not_a_function_call() {
        let mut turn = TurnAssembler::new(Vec::new());
        assert!(
            turn.on_event(&token("analysis", Some("python"), "print(1)"))
                .is_empty()
        );
        assert_eq!(turn.finish_reason(StopReason::Call), "stop");
    }
}
