//! A `POST /v1/chat/completions` body, checked field by field and mapped onto a harmony
//! conversation. Each refusal names the field (`messages[2].role`) and the value.
//!
//! OpenAI's `system` and `developer` messages both become harmony's developer instructions
//! (harmony's own system message carries identity, date and effort), as in OpenAI's gpt-oss
//! chat template. Function tools and past tool calls are mapped in `tools`; fields this server
//! does not implement (`functions`, `function_call`) are refused, not ignored, so a client
//! never gets a silently different answer.

use serde_json::{Map, Value};

use super::error::ApiError;
use super::tools::{
    FunctionTools, PastCall, call_message, function_tools, past_calls, result_message,
    tool_constraint,
};
use crate::engine::SamplingParams;
use crate::engine::sampler::check_setting;
use crate::harmony::{Conversation, DeveloperContent, Message, ReasoningEffort, SystemContent};

/// What a request asks the engine for.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The harmony conversation, system message first.
    pub conversation: Conversation,
    /// Sampling for this request (the server's defaults where the request says nothing).
    pub sampling: SamplingParams,
    /// Reasoning effort for this request.
    pub effort: ReasoningEffort,
    /// Generated tokens at most, reasoning included.
    pub max_new_tokens: usize,
    /// `response_format`: the final answer's JSON schema, if any.
    pub constraint: Option<crate::structured::TurnConstraint>,
}

/// A checked chat-completions request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The work for the engine.
    pub generation: Generation,
    /// Answer as server-sent events.
    pub stream: bool,
    /// The answer ends before the first of these (none: no stop sequences).
    pub stop: Vec<String>,
    /// Whether any function tools were offered (a call then ends with `tool_calls`).
    pub has_tools: bool,
}

/// The server's settings a request may override.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestDefaults {
    /// Sampling when the request gives none (its seed is replaced per request).
    pub sampling: SamplingParams,
    /// Effort when the request gives none.
    pub effort: ReasoningEffort,
}

/// Fields a client may send that this server does not implement yet: refused with 400.
const UNSUPPORTED_FIELDS: [&str; 2] = ["functions", "function_call"];

/// Parses and checks a request body; `seed` is used when the request has no `seed`.
pub fn parse_chat_request(
    body: &[u8],
    defaults: &RequestDefaults,
    seed: u64,
) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        ApiError::invalid("", format!("the request body is not valid JSON: {err}"))
            .without_param()
            .with_code("invalid_json")
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid(
            "",
            format!(
                "the request body must be a JSON object, not {}",
                kind_of(&value)
            ),
        )
        .without_param()
        .with_code("invalid_json"));
    };
    for name in UNSUPPORTED_FIELDS {
        if fields.get(name).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid(
                name,
                format!("{name} is not supported by ossterm serve yet; leave it out"),
            )
            .with_code("unsupported_parameter"));
        }
    }
    if let Some(n) = optional_u64(&fields, "n")?
        && n != 1
    {
        return Err(ApiError::invalid(
            "n",
            format!("n is {n}: ossterm serve generates one choice per request (n = 1)"),
        ));
    }
    if optional_bool(&fields, "logprobs")? == Some(true) {
        return Err(ApiError::invalid(
            "logprobs",
            "logprobs is not supported by ossterm serve yet",
        )
        .with_code("unsupported_parameter"));
    }
    if let Some(model) = fields.get("model")
        && !model.is_string()
        && !model.is_null()
    {
        return Err(wrong_type("model", "a string", model));
    }
    let tools = function_tools(&fields)?;
    let has_tools = !tools.tools.is_empty();
    let stop = super::stop::parse_stop(&fields)?;
    let conversation = conversation(&fields, defaults, &tools)?;
    let mut sampling = defaults.sampling;
    sampling.seed = seed;
    if let Some(temperature) = optional_f64(&fields, "temperature")? {
        checked("temperature", temperature)?;
        sampling.temperature = temperature;
    }
    if let Some(top_p) = optional_f64(&fields, "top_p")? {
        checked("top_p", top_p)?;
        sampling.top_p = top_p;
    }
    if let Some(seed) = fields.get("seed").filter(|v| !v.is_null()) {
        // OpenAI documents an integer; negative ones keep their bits.
        sampling.seed = seed
            .as_u64()
            .or_else(|| seed.as_i64().map(|s| s as u64))
            .ok_or_else(|| wrong_type("seed", "an integer", seed))?;
    }
    let effort = match fields.get("reasoning_effort").filter(|v| !v.is_null()) {
        None => defaults.effort,
        Some(Value::String(text)) => crate::config::parse_effort(text).map_err(|problem| {
            ApiError::invalid("reasoning_effort", format!("reasoning_effort {problem}"))
        })?,
        Some(other) => return Err(wrong_type("reasoning_effort", "a string", other)),
    };
    // The newer name wins, as in OpenAI's API.
    let max_new_tokens = match optional_u64(&fields, "max_completion_tokens")? {
        Some(n) => positive("max_completion_tokens", n)?,
        None => match optional_u64(&fields, "max_tokens")? {
            Some(n) => positive("max_tokens", n)?,
            // Until a stop token or the context limit.
            None => usize::MAX,
        },
    };
    let stream = optional_bool(&fields, "stream")?.unwrap_or(false);
    let constraint = crate::structured::parse_response_format(fields.get("response_format"))
        .map_err(|bad| ApiError::invalid(bad.param, bad.message))?;
    let constraint = tool_constraint(&tools, constraint)?;
    Ok(ChatRequest {
        generation: Generation {
            conversation,
            sampling,
            effort,
            max_new_tokens,
            constraint,
        },
        stream,
        stop,
        has_tools,
    })
}

impl ApiError {
    fn without_param(mut self) -> Self {
        self.param = None;
        self
    }
}

fn conversation(
    fields: &Map<String, Value>,
    defaults: &RequestDefaults,
    tools: &FunctionTools,
) -> Result<Conversation, ApiError> {
    let messages = match fields.get("messages") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "messages",
                "messages is missing: send at least one message",
            ));
        }
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err(ApiError::invalid(
                "messages",
                "messages is empty: send at least one message",
            ));
        }
        Some(Value::Array(messages)) => messages,
        Some(other) => return Err(wrong_type("messages", "an array of messages", other)),
    };
    let system = SystemContent::new()
        .with_reasoning_effort(defaults.effort)
        .with_conversation_start_date(chrono::Local::now().format("%Y-%m-%d").to_string());
    let mut instructions = Vec::new();
    let mut turns = Vec::new();
    // Calls made so far, so a `role: tool` message can name the function it answers.
    let mut calls: Vec<PastCall> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let at = format!("messages[{index}]");
        let Value::Object(message) = message else {
            return Err(wrong_type(&at, "an object with role and content", message));
        };
        let role = match message.get("role") {
            Some(Value::String(role)) => role.as_str(),
            None => {
                return Err(ApiError::invalid(
                    format!("{at}.role"),
                    format!("{at}.role is missing"),
                ));
            }
            Some(other) => return Err(wrong_type(&format!("{at}.role"), "a string", other)),
        };
        let text = content_text(message, &at)?;
        match role {
            "system" | "developer" => instructions.push(text),
            "user" => turns.push(Message::user(text)),
            "assistant" => {
                let made = past_calls(message, &at)?;
                // Past reasoning goes back as the analysis channel (OpenAI's gpt-oss guidance).
                for name in ["reasoning_content", "reasoning"] {
                    match message.get(name) {
                        Some(Value::String(reasoning)) if !reasoning.is_empty() => {
                            turns.push(Message::assistant("analysis", reasoning.clone()));
                            break;
                        }
                        None | Some(Value::Null) | Some(Value::String(_)) => {}
                        Some(other) => {
                            return Err(wrong_type(&format!("{at}.{name}"), "a string", other));
                        }
                    }
                }
                if made.is_empty() {
                    turns.push(Message::assistant("final", text));
                } else {
                    // Text beside calls is a preamble: commentary addressed to nobody.
                    if !text.is_empty() {
                        turns.push(Message::assistant("commentary", text));
                    }
                    turns.extend(made.iter().map(call_message));
                    calls.extend(made);
                }
            }
            "tool" => {
                let id_at = format!("{at}.tool_call_id");
                let id = match message.get("tool_call_id") {
                    Some(Value::String(id)) => id,
                    Some(other) => return Err(wrong_type(&id_at, "a string", other)),
                    None => {
                        return Err(ApiError::invalid(
                            &id_at,
                            format!("{id_at} is missing: say which tool call this answers"),
                        ));
                    }
                };
                let call = calls.iter().find(|call| &call.id == id).ok_or_else(|| {
                    ApiError::invalid(
                        &id_at,
                        format!(
                            "{id_at} is '{id}', which no earlier assistant message's tool_calls has"
                        ),
                    )
                })?;
                turns.push(result_message(call, text));
            }
            "function" => {
                return Err(ApiError::invalid(
                    format!("{at}.role"),
                    format!("{at}.role is 'function' (the old function-call API): use tool_calls and role 'tool'"),
                )
                .with_code("unsupported_parameter"));
            }
            other => {
                return Err(ApiError::invalid(
                    format!("{at}.role"),
                    format!(
                        "{at}.role is '{other}': use system, developer, user, assistant or tool"
                    ),
                ));
            }
        }
    }
    let mut all = vec![Message::system(system)];
    instructions.extend(tools.instruction.clone());
    let mut developer = DeveloperContent::new();
    if !instructions.is_empty() {
        developer = developer.with_instructions(instructions.join("\n\n"));
    }
    if !tools.tools.is_empty() {
        developer = developer.with_function_tools(tools.tools.clone());
    }
    if developer != DeveloperContent::new() {
        all.push(Message::developer(developer));
    }
    all.extend(turns);
    Ok(Conversation::from_messages(all))
}

/// A message's text: a string, null (empty), or an array of `{"type":"text","text":...}`.
fn content_text(message: &Map<String, Value>, at: &str) -> Result<String, ApiError> {
    let param = format!("{at}.content");
    match message.get("content") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (index, part) in parts.iter().enumerate() {
                let part_at = format!("{param}[{index}]");
                match (part.get("type"), part.get("text")) {
                    (Some(Value::String(kind)), Some(Value::String(piece))) if kind == "text" => {
                        text.push_str(piece);
                    }
                    (Some(Value::String(kind)), _) if kind != "text" => {
                        return Err(ApiError::invalid(
                            &part_at,
                            format!("{part_at}.type is '{kind}': only text parts are supported"),
                        ));
                    }
                    _ => {
                        return Err(wrong_type(
                            &part_at,
                            "{\"type\":\"text\",\"text\":\"...\"}",
                            part,
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(other) => Err(wrong_type(
            &param,
            "a string or an array of text parts",
            other,
        )),
    }
}

fn checked(name: &str, value: f64) -> Result<(), ApiError> {
    check_setting(name, value).map_err(|bad| ApiError::invalid(name, bad.to_string()))
}

fn positive(name: &str, value: u64) -> Result<usize, ApiError> {
    if value == 0 {
        return Err(ApiError::invalid(
            name,
            format!("{name} is 0: it must be at least 1"),
        ));
    }
    Ok(usize::try_from(value).unwrap_or(usize::MAX))
}

fn optional_f64(fields: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    optional(fields, name, "a number", Value::as_f64)
}

fn optional_u64(fields: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    optional(fields, name, "a whole number >= 0", Value::as_u64)
}

/// A field read by `read`; absent and null are `None`, anything `read` refuses is an error.
fn optional<T>(
    fields: &Map<String, Value>,
    name: &str,
    expected: &str,
    read: fn(&Value) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value)
            .map(Some)
            .ok_or_else(|| wrong_type(name, expected, value)),
    }
}

fn optional_bool(fields: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(value) => Err(wrong_type(name, "true or false", value)),
    }
}

/// A 400 saying `param` should be `expected` and showing (the start of) what came.
pub(super) fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    let mut shown = got.to_string();
    if shown.len() > 60 {
        let cut = (0..=60)
            .rev()
            .find(|&i| shown.is_char_boundary(i))
            .unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    ApiError::invalid(
        param,
        format!("{param} must be {expected}, not {} ({shown})", kind_of(got)),
    )
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harmony::{Content, Role};

    const DEFAULTS: RequestDefaults = RequestDefaults {
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: 0,
        },
        effort: ReasoningEffort::Medium,
    };

    fn parse(body: &str) -> Result<ChatRequest, ApiError> {
        parse_chat_request(body.as_bytes(), &DEFAULTS, 7)
    }

    fn refusal(body: &str) -> (Option<String>, String) {
        let error = parse(body).expect_err("refused");
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
        (error.param, error.message)
    }

    #[test]
    fn roles_map_onto_harmony_with_system_as_developer_instructions() {
        let request = parse(
            r#"{"messages":[{"role":"system","content":"Be brief."},
                {"role":"user","content":[{"type":"text","text":"Hi"}]},
                {"role":"assistant","content":"Hello","reasoning_content":"greet"},
                {"role":"user","content":"Bye"}],
               "reasoning_effort":"high","max_tokens":5,"temperature":0,"top_p":0.5,"seed":3,"stream":true}"#,
        )
        .expect("valid");
        let messages = &request.generation.conversation.messages;
        let roles: Vec<_> = messages
            .iter()
            .map(|m| (m.role, m.channel.clone()))
            .collect();
        assert_eq!(
            roles,
            vec![
                (Role::System, None),
                (Role::Developer, None),
                (Role::User, None),
                (Role::Assistant, Some("analysis".into())),
                (Role::Assistant, Some("final".into())),
                (Role::User, None),
            ]
        );
        assert_eq!(messages[2].text(), "Hi");
        assert_eq!(request.generation.effort, ReasoningEffort::High);
        assert_eq!(request.generation.max_new_tokens, 5);
        assert_eq!(request.generation.sampling.temperature, 0.0);
        assert_eq!(request.generation.sampling.top_p, 0.5);
        assert_eq!(request.generation.sampling.seed, 3);
        assert!(request.stream);
    }

    #[test]
    fn defaults_apply_when_fields_are_absent() {
        let request = parse(r#"{"messages":[{"role":"user","content":"Hi"}]}"#).expect("valid");
        assert_eq!(request.generation.sampling.seed, 7);
        assert_eq!(request.generation.max_new_tokens, usize::MAX);
        assert!(!request.stream);
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let request = parse(
            r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":9,"max_completion_tokens":4}"#,
        )
        .expect("valid");
        assert_eq!(request.generation.max_new_tokens, 4);
    }

    #[test]
    fn bad_requests_name_the_field_and_the_value() {
        let (param, message) = refusal("{not json");
        assert_eq!(param, None);
        assert!(
            message.starts_with("the request body is not valid JSON"),
            "{message}"
        );
        assert_eq!(
            refusal("[1]").1,
            "the request body must be a JSON object, not an array"
        );
        assert_eq!(
            refusal(r#"{"messages":[]}"#).1,
            "messages is empty: send at least one message"
        );
        let (param, message) = refusal(r#"{"messages":[{"role":"wizard","content":"x"}]}"#);
        assert_eq!(param.as_deref(), Some("messages[0].role"));
        assert_eq!(
            message,
            "messages[0].role is 'wizard': use system, developer, user, assistant or tool"
        );
        let (param, message) =
            refusal(r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#);
        assert_eq!(param.as_deref(), Some("temperature"));
        assert_eq!(
            message,
            "temperature must be a number, not a string (\"hot\")"
        );
        let (param, message) =
            refusal(r#"{"messages":[{"role":"user","content":"x"}],"top_p":1.5}"#);
        assert_eq!(param.as_deref(), Some("top_p"));
        assert_eq!(message, "top_p is 1.5: must be a number in (0, 1]");
        let (_, message) =
            refusal(r#"{"messages":[{"role":"user","content":"x"}],"reasoning_effort":"max"}"#);
        assert_eq!(
            message,
            "reasoning_effort is 'max': use low, medium or high"
        );
        let (param, _) = refusal(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#);
        assert_eq!(param.as_deref(), Some("max_tokens"));
        let (param, message) = refusal(
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}"#,
        );
        assert_eq!(param.as_deref(), Some("response_format.type"));
        assert_eq!(
            message,
            "response_format.type is 'yaml': use json_schema, json_object or text"
        );
        let (param, _) = refusal(r#"{"messages":[{"role":"user","content":5}]}"#);
        assert_eq!(param.as_deref(), Some("messages[0].content"));
    }

    #[test]
    fn a_tool_round_trip_renders_as_harmony_calls_and_results() {
        let request = parse(
            r#"{"messages":[{"role":"user","content":"Weather in Oslo?"},
                {"role":"assistant","content":null,"reasoning":"need weather","tool_calls":[
                    {"id":"call_9","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
                {"role":"tool","tool_call_id":"call_9","content":"sunny"}],
               "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
               "stop":"END"}"#,
        )
        .expect("valid");
        assert!(request.has_tools);
        assert_eq!(request.stop, ["END"]);
        let messages = &request.generation.conversation.messages;
        let Content::DeveloperContent(developer) = &messages[1].content[0] else {
            panic!("no developer message: {messages:?}");
        };
        let functions = &developer.tools.as_ref().expect("tools")["functions"];
        assert_eq!(functions.tools[0].name, "get_weather");
        let shapes: Vec<_> = messages[2..]
            .iter()
            .map(|m| (m.role, m.channel.clone(), m.recipient.clone()))
            .collect();
        assert_eq!(
            shapes,
            vec![
                (Role::User, None, None),
                (Role::Assistant, Some("analysis".into()), None),
                (
                    Role::Assistant,
                    Some("commentary".into()),
                    Some("functions.get_weather".into())
                ),
                (
                    Role::Tool,
                    Some("commentary".into()),
                    Some("assistant".into())
                ),
            ]
        );
        assert_eq!(messages[5].name.as_deref(), Some("functions.get_weather"));
        assert_eq!(messages[5].text(), "sunny");
    }

    #[test]
    fn a_tool_message_must_answer_an_earlier_call() {
        let (param, message) = refusal(
            r#"{"messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"call_x","content":"1"}]}"#,
        );
        assert_eq!(param.as_deref(), Some("messages[1].tool_call_id"));
        assert_eq!(
            message,
            "messages[1].tool_call_id is 'call_x', which no earlier assistant message's tool_calls has"
        );
    }
}
