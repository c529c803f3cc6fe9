//! OpenAI's response shapes: `chat.completion`, `chat.completion.chunk` and the SSE framing.
//!
//! Reasoning goes out under both names clients read: `reasoning_content` (llama-server,
//! SGLang) and `reasoning` (vLLM, Ollama).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::engine::{StopReason, TurnStats};

/// The SSE event that ends every stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// One generated piece of text, by where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The analysis channel.
    Reasoning(String),
    /// The answer (final channel, or a preamble addressed to nobody).
    Content(String),
}

/// Where a token's text goes; `None` for empty deltas and messages to a tool.
pub fn piece(channel: Option<&str>, recipient: Option<&str>, delta: &str) -> Option<Piece> {
    if delta.is_empty() || recipient.is_some() {
        return None;
    }
    Some(match channel {
        Some("analysis") => Piece::Reasoning(delta.to_string()),
        _ => Piece::Content(delta.to_string()),
    })
}

/// OpenAI's `finish_reason` for why a turn ended.
pub fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Length | StopReason::ContextFull => "length",
        StopReason::Return | StopReason::EndOfText | StopReason::Call | StopReason::Stopped => {
            "stop"
        }
    }
}

/// `usage` from a turn's stats.
pub fn usage(stats: &TurnStats) -> Value {
    let prompt_tokens = stats.prefill_tokens + stats.cached_tokens;
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": stats.decode_tokens,
        "total_tokens": prompt_tokens + stats.decode_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
    })
}

/// The fields every response of one request shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// `chatcmpl-N`.
    pub id: String,
    /// Unix seconds when the request arrived.
    pub created: u64,
    /// The served model's name.
    pub model: String,
}

impl Reply {
    /// A `chat.completion.chunk` with this delta.
    pub fn chunk(&self, delta: Value, finish_reason: Option<&str>, usage: Option<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        chunk
    }

    /// The chunk carrying one piece of text.
    pub fn piece_chunk(&self, piece: &Piece) -> Value {
        let delta = match piece {
            Piece::Reasoning(text) => json!({"reasoning_content": text, "reasoning": text}),
            Piece::Content(text) => json!({"content": text}),
        };
        self.chunk(delta, None, None)
    }

    /// A whole `chat.completion`.
    pub fn completion(
        &self,
        content: &str,
        reasoning: &str,
        stop: StopReason,
        stats: &TurnStats,
    ) -> Value {
        let mut message = json!({"role": "assistant", "content": content});
        if !reasoning.is_empty() {
            message["reasoning_content"] = json!(reasoning);
            message["reasoning"] = json!(reasoning);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": null,
                         "finish_reason": finish_reason(stop)}],
            "usage": usage(stats),
        })
    }
}

/// A JSON response. (axum's `Json` needs serde_json's `raw_value` feature, which would
/// rebuild every crate that uses serde_json.)
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// One SSE event carrying `value`.
pub fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> Reply {
        Reply {
            id: "chatcmpl-1".into(),
            created: 5,
            model: "demo".into(),
        }
    }

    #[test]
    fn reasoning_goes_out_under_both_names_and_answers_as_content() {
        let reasoning = piece(Some("analysis"), None, "think").expect("text");
        let chunk = reply().piece_chunk(&reasoning);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(
            chunk["choices"][0]["delta"],
            json!({"reasoning_content": "think", "reasoning": "think"})
        );
        let answer = piece(Some("final"), None, "Hi").expect("text");
        assert_eq!(
            reply().piece_chunk(&answer)["choices"][0]["delta"],
            json!({"content": "Hi"})
        );
        assert_eq!(piece(Some("final"), None, ""), None);
        assert_eq!(piece(Some("commentary"), Some("functions.f"), "{}"), None);
        assert_eq!(sse_data(&json!({"a": 1})), "data: {\"a\":1}\n\n");
    }

    #[test]
    fn completion_carries_finish_reason_and_usage_with_cached_tokens() {
        let stats = TurnStats {
            prefill_tokens: 4,
            cached_tokens: 6,
            decode_tokens: 3,
            ..TurnStats::default()
        };
        let body = reply().completion("Hi", "think", StopReason::Length, &stats);
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["choices"][0]["message"]["reasoning"], "think");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                   "prompt_tokens_details": {"cached_tokens": 6}})
        );
        assert_eq!(finish_reason(StopReason::Return), "stop");
    }
}
