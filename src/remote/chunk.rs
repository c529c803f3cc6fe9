//! One streamed `chat.completion.chunk`, whichever server wrote it: reasoning under
//! `reasoning_content` (llama-server, SGLang, DeepSeek), `reasoning` (vLLM, Ollama) or
//! `thinking` (Ollama's own API), answer text, tool-call pieces, `finish_reason` and `usage`.

use serde_json::Value;

use super::RemoteError;

/// The names servers give a delta's reasoning, in the order they are looked for.
pub const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "reasoning", "thinking"];

/// A piece of a function call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallPiece {
    /// Which call of the turn (OpenAI's `index`; 0 when the server leaves it out).
    pub index: usize,
    /// The function's name, on the call's first piece.
    pub name: Option<String>,
    /// More of the JSON arguments.
    pub arguments: String,
}

/// Token counts from a `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: usize,
    /// Generated tokens, reasoning included.
    pub completion_tokens: usize,
    /// Prompt tokens the server had cached (0 when it does not say).
    pub cached_tokens: usize,
}

/// What one chunk carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk {
    /// Reasoning text.
    pub reasoning: String,
    /// Answer text.
    pub content: String,
    /// Function-call pieces.
    pub calls: Vec<CallPiece>,
    /// Why the answer ended, on the last content chunk.
    pub finish_reason: Option<String>,
    /// Token counts (usually a last chunk with no choices).
    pub usage: Option<Usage>,
}

/// Reads one chunk's JSON; an error body (`{"error":…}`) mid-stream is an error.
pub fn parse_chunk(data: &str) -> Result<Chunk, RemoteError> {
    let value: Value = serde_json::from_str(data).map_err(|err| RemoteError::BadChunk {
        reason: format!("not JSON ({err})"),
        data: shorten(data),
    })?;
    if let Some(error) = value.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string);
        return Err(RemoteError::ServerSaid { message });
    }
    let mut chunk = Chunk {
        usage: value.get("usage").and_then(usage),
        ..Chunk::default()
    };
    let choice = match value.get("choices") {
        Some(Value::Array(choices)) => choices.first(),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(RemoteError::BadChunk {
                reason: "choices is not an array".into(),
                data: shorten(data),
            });
        }
    };
    let Some(choice) = choice else {
        return Ok(chunk);
    };
    // Streams carry `delta`; a server answering whole carries `message`.
    let delta = choice
        .get("delta")
        .or_else(|| choice.get("message"))
        .unwrap_or(&Value::Null);
    chunk.reasoning = REASONING_FIELDS
        .iter()
        .find_map(|name| delta.get(*name).and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    chunk.content = delta
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(Value::Array(calls)) = delta.get("tool_calls") {
        chunk.calls = calls
            .iter()
            .enumerate()
            .map(|(position, call)| {
                let function = call.get("function").unwrap_or(&Value::Null);
                let arguments = match function.get("arguments") {
                    Some(Value::String(text)) => text.clone(),
                    // Ollama's own API sends the arguments as an object.
                    Some(object @ Value::Object(_)) => object.to_string(),
                    _ => String::new(),
                };
                CallPiece {
                    index: call
                        .get("index")
                        .and_then(Value::as_u64)
                        .and_then(|i| usize::try_from(i).ok())
                        .unwrap_or(position),
                    name: function
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|name| !name.is_empty())
                        .map(str::to_string),
                    arguments,
                }
            })
            .collect();
    }
    chunk.finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(chunk)
}

fn usage(value: &Value) -> Option<Usage> {
    let count = |field: &Value, name: &str| {
        field
            .get(name)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    Some(Usage {
        prompt_tokens: count(value, "prompt_tokens")?,
        completion_tokens: count(value, "completion_tokens").unwrap_or(0),
        cached_tokens: value
            .get("prompt_tokens_details")
            .and_then(|details| count(details, "cached_tokens"))
            .unwrap_or(0),
    })
}

/// At most 200 bytes of a chunk, for an error message.
pub fn shorten(text: &str) -> String {
    const MAX_BYTES: usize = 200;
    if text.len() <= MAX_BYTES {
        return text.to_string();
    }
    let cut = (0..=MAX_BYTES)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_is_read_under_each_servers_name() {
        for name in REASONING_FIELDS {
            let data = format!(r#"{{"choices":[{{"index":0,"delta":{{"{name}":"hmm"}}}}]}}"#);
            assert_eq!(
                parse_chunk(&data).expect("valid").reasoning,
                "hmm",
                "{name}"
            );
        }
    }

    #[test]
    fn tool_calls_usage_and_finish_reason_are_read() {
        let chunk = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c","type":"function",
                "function":{"name":"get_weather","arguments":"{\"ci"}}]},"finish_reason":null}]}"#,
        )
        .expect("valid");
        assert_eq!(
            chunk.calls,
            [CallPiece {
                index: 1,
                name: Some("get_weather".into()),
                arguments: "{\"ci".into()
            }]
        );
        let last = parse_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25,
                "prompt_tokens_details":{"cached_tokens":16}}}"#,
        )
        .expect("valid");
        assert_eq!(
            last.usage,
            Some(Usage {
                prompt_tokens: 20,
                completion_tokens: 5,
                cached_tokens: 16
            })
        );
        let done =
            parse_chunk(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#).expect("valid");
        assert_eq!(done.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn garbage_and_error_bodies_say_what_came() {
        let error = parse_chunk("{nope").expect_err("not JSON");
        assert!(
            error
                .to_string()
                .starts_with("the server sent a bad chunk (not JSON"),
            "{error}"
        );
        assert!(error.to_string().contains("{nope"), "{error}");
        let error = parse_chunk(r#"{"error":{"message":"out of memory"}}"#).expect_err("error");
        assert_eq!(
            error.to_string(),
            "the server reported an error: out of memory"
        );
    }
}
