//! A harmony conversation as an OpenAI chat-completions request: developer instructions as a
//! system message, function tools as `tools`, past calls as `tool_calls` with ids made from
//! their position (so each `role: tool` answer names its call), the last turn's reasoning as
//! `reasoning_content` beside its answer. An answer format goes as `response_format`, for the
//! server to enforce (vLLM, llama-server and `ossterm serve` do).

use serde_json::{Map, Value, json};

use crate::engine::SamplingParams;
use crate::harmony::{Content, Conversation, ReasoningEffort, Role};
use crate::server::tools::called_function;
use crate::structured::ResponseFormat;

/// What one request asks for besides the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSettings {
    /// The served model's name.
    pub model: String,
    /// Sent as `reasoning_effort`.
    pub effort: ReasoningEffort,
    /// Temperature, top-p and seed (top-k and min-p are not OpenAI fields and are left out).
    pub sampling: SamplingParams,
    /// Sent as `max_tokens` unless unbounded.
    pub max_new_tokens: usize,
    /// The server's context length (`max_model_len`), 0 when unknown.
    pub context_limit: usize,
    /// The final answer's format, sent as `response_format`; `None` leaves it free.
    pub answer_format: Option<ResponseFormat>,
}

/// OpenAI's `response_format` for `format`: `json_schema` (named `answer`, strict) or
/// `json_object`.
pub fn response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::JsonSchema { schema, .. } => json!({
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": true}
        }),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
    }
}

/// The `max_tokens` to send: none when unbounded or when it is not below the server's context
/// length (vLLM refuses a request whose prompt plus `max_tokens` exceeds it; without the field
/// each server stops at its own limit).
pub fn max_tokens_to_send(max_new_tokens: usize, context_limit: usize) -> Option<usize> {
    let too_large = context_limit > 0 && max_new_tokens >= context_limit;
    (max_new_tokens != usize::MAX && !too_large).then_some(max_new_tokens)
}

/// The JSON body for a streamed completion of `conversation`.
pub fn request_body(conversation: &Conversation, settings: &RequestSettings) -> Value {
    let mut messages = Vec::new();
    let mut tools = Vec::new();
    // Reasoning waits for the assistant message it belongs to.
    let mut reasoning = String::new();
    // Ids of calls not answered yet, with the function each called.
    let mut open_calls: Vec<(String, String)> = Vec::new();
    for (index, message) in conversation.messages.iter().enumerate() {
        let text = message.text();
        match message.role {
            Role::System => {}
            Role::Developer => {
                for content in &message.content {
                    let Content::DeveloperContent(developer) = content else {
                        continue;
                    };
                    if let Some(instructions) = &developer.instructions {
                        messages.push(json!({"role": "system", "content": instructions}));
                    }
                    let functions = developer.tools.as_ref().and_then(|t| t.get("functions"));
                    for tool in functions.map(|f| f.tools.as_slice()).unwrap_or_default() {
                        let mut function =
                            json!({"name": tool.name, "description": tool.description});
                        if let Some(parameters) = &tool.parameters {
                            function["parameters"] = parameters.clone();
                        }
                        tools.push(json!({"type": "function", "function": function}));
                    }
                }
            }
            Role::User => messages.push(json!({"role": "user", "content": text})),
            Role::Assistant => {
                let call = message.recipient.as_deref().and_then(called_function);
                if message.channel.as_deref() == Some("analysis") && call.is_none() {
                    reasoning.push_str(&text);
                    continue;
                }
                let mut out = Map::new();
                out.insert("role".into(), json!("assistant"));
                if let Some(name) = call {
                    let id = format!("call_{index}");
                    open_calls.push((id.clone(), name.to_string()));
                    out.insert("content".into(), Value::Null);
                    out.insert(
                        "tool_calls".into(),
                        json!([{"id": id, "type": "function",
                                "function": {"name": name, "arguments": text}}]),
                    );
                } else {
                    out.insert("content".into(), json!(text));
                }
                if !reasoning.is_empty() {
                    out.insert(
                        "reasoning_content".into(),
                        json!(std::mem::take(&mut reasoning)),
                    );
                }
                messages.push(Value::Object(out));
            }
            Role::Tool => {
                // The answer goes to the latest open call of that function (harmony names the
                // tool, not the call).
                let name = message.name.as_deref().and_then(called_function);
                let position = open_calls
                    .iter()
                    .rposition(|(_, called)| Some(called.as_str()) == name)
                    .or_else(|| open_calls.len().checked_sub(1));
                if let Some(position) = position {
                    let (id, _) = open_calls.remove(position);
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                } else {
                    // A built-in tool's answer with no function call to attach it to.
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    let mut body = json!({
        "model": settings.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
        "reasoning_effort": settings.effort.as_str(),
        "temperature": settings.sampling.temperature,
        "top_p": settings.sampling.top_p,
        "seed": settings.sampling.seed,
    });
    if let Some(max_tokens) = max_tokens_to_send(settings.max_new_tokens, settings.context_limit) {
        body["max_tokens"] = json!(max_tokens);
    }
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    if let Some(format) = &settings.answer_format {
        body["response_format"] = response_format(format);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harmony::{DeveloperContent, Message, SystemContent, ToolDescription};

    fn settings() -> RequestSettings {
        RequestSettings {
            model: "gpt-oss-120b".into(),
            effort: ReasoningEffort::High,
            sampling: SamplingParams::default(),
            max_new_tokens: 64,
            context_limit: 0,
            answer_format: None,
        }
    }

    #[test]
    fn an_answer_format_is_sent_as_response_format() {
        let conversation = Conversation::from_messages([Message::user("hi")]);
        assert!(
            request_body(&conversation, &settings())
                .get("response_format")
                .is_none()
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let with_schema = RequestSettings {
            answer_format: Some(ResponseFormat::JsonSchema {
                schema: schema.clone(),
                source_name: "a.json".into(),
            }),
            ..settings()
        };
        assert_eq!(
            request_body(&conversation, &with_schema)["response_format"],
            json!({"type": "json_schema",
                   "json_schema": {"name": "answer", "schema": schema, "strict": true}})
        );
        let object = RequestSettings {
            answer_format: Some(ResponseFormat::JsonObject),
            ..settings()
        };
        assert_eq!(
            request_body(&conversation, &object)["response_format"],
            json!({"type": "json_object"})
        );
    }

    #[test]
    fn max_tokens_is_left_out_when_it_would_not_fit_the_servers_context() {
        assert_eq!(max_tokens_to_send(64, 0), Some(64));
        assert_eq!(max_tokens_to_send(32_768, 131_072), Some(32_768));
        assert_eq!(max_tokens_to_send(32_768, 16_384), None);
        assert_eq!(max_tokens_to_send(usize::MAX, 0), None);
    }

    #[test]
    fn a_tool_loop_becomes_tool_calls_and_tool_messages() {
        let conversation = Conversation::from_messages([
            Message::system(SystemContent::new()),
            Message::developer(
                DeveloperContent::new()
                    .with_instructions("Be brief.")
                    .with_function_tools(vec![ToolDescription::new(
                        "get_weather",
                        "Weather now",
                        Some(json!({"type": "object"})),
                    )]),
            ),
            Message::user("Oslo?"),
            Message::assistant("analysis", "need weather"),
            Message::assistant("commentary", "{\"city\":\"Oslo\"}")
                .with_recipient("functions.get_weather")
                .with_content_type("<|constrain|>json"),
            Message::tool("functions.get_weather", "sunny")
                .with_recipient("assistant")
                .with_channel("commentary"),
        ]);
        let body = request_body(&conversation, &settings());
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Oslo?"},
                {"role": "assistant", "content": null, "reasoning_content": "need weather",
                 "tool_calls": [{"id": "call_4", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "call_4", "content": "sunny"},
            ])
        );
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(body["reasoning_effort"], "high");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}
