//! OpenAI function tools on harmony: `tools`/`tool_choice` become the developer message's
//! `functions` namespace, and past `tool_calls` and `role: tool` messages become the harmony
//! messages the model was trained on (the call on `commentary` to `functions.NAME` with
//! `<|constrain|>json`, the result from `functions.NAME` to the assistant).
//!
//! Harmony has no token that asks for a call, so `tool_choice: "required"` and a named
//! function are forced with the grammar, as vLLM and llama.cpp do: the model may reason on
//! `analysis`, then its next message is the call (`structured::TurnConstraint::
//! with_required_call`), with arguments valid against the function's `parameters`. A named
//! choice offers only that function, and the developer message says a call is wanted. With
//! `auto` (the default) calling stays the model's choice; a call it writes after
//! `<|constrain|>json` is still held to the function's schema when llguidance can follow it.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::harmony::{Message, ToolDescription};
use crate::structured::TurnConstraint;

/// The namespace OpenAI function tools live in.
pub const FUNCTIONS_NAMESPACE: &str = "functions";
/// The content type harmony gives a function call's JSON arguments.
pub const JSON_CONTENT_TYPE: &str = "<|constrain|>json";
/// OpenAI's limit on a function name's length.
const MAX_NAME_CHARS: usize = 64;

/// What `tools` and `tool_choice` ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionTools {
    /// The functions offered to the model (empty: none).
    pub tools: Vec<ToolDescription>,
    /// A line for the developer instructions (`required` or a named function).
    pub instruction: Option<String>,
    /// The functions one of which must be called (`required`, or the named one); empty: the
    /// model's choice.
    pub required_call: Vec<String>,
}

/// Reads `tools` and `tool_choice`.
pub fn function_tools(fields: &Map<String, Value>) -> Result<FunctionTools, ApiError> {
    let tools = match fields.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools
            .iter()
            .enumerate()
            .map(|(index, tool)| tool_description(tool, &format!("tools[{index}]")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(super::request::wrong_type("tools", "an array", other)),
    };
    let choice = fields.get("tool_choice").filter(|v| !v.is_null());
    let named = |name: &str| -> Result<FunctionTools, ApiError> {
        let tool = tools.iter().find(|tool| tool.name == name).ok_or_else(|| {
            ApiError::invalid(
                "tool_choice",
                format!("tool_choice names the function '{name}', which is not in tools"),
            )
        })?;
        Ok(FunctionTools {
            tools: vec![tool.clone()],
            instruction: Some(format!(
                "Call the function {FUNCTIONS_NAMESPACE}.{name} before you answer."
            )),
            required_call: vec![name.to_owned()],
        })
    };
    match choice {
        None => Ok(FunctionTools {
            tools,
            ..FunctionTools::default()
        }),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Ok(FunctionTools {
                tools,
                ..FunctionTools::default()
            }),
            "none" => Ok(FunctionTools::default()),
            "required" if tools.is_empty() => Err(ApiError::invalid(
                "tool_choice",
                "tool_choice is 'required' but tools is empty: send at least one tool",
            )),
            "required" => Ok(FunctionTools {
                required_call: tools.iter().map(|tool| tool.name.clone()).collect(),
                tools,
                instruction: Some(
                    "Call one of the functions in the functions namespace before you answer."
                        .into(),
                ),
            }),
            other => Err(ApiError::invalid(
                "tool_choice",
                format!(
                    "tool_choice is '{other}': use none, auto, required or {{\"type\":\"function\",\"function\":{{\"name\":...}}}}"
                ),
            )),
        },
        Some(Value::Object(choice)) => {
            match choice
                .get("function")
                .and_then(|function| function.get("name"))
            {
                Some(Value::String(name)) => named(name),
                _ => Err(ApiError::invalid(
                    "tool_choice",
                    "tool_choice must be {\"type\":\"function\",\"function\":{\"name\":...}} when it is an object",
                )),
            }
        }
        Some(other) => Err(super::request::wrong_type(
            "tool_choice",
            "a string or an object",
            other,
        )),
    }
}

/// The turn's constraint: `response_format`'s (`base`), each function's `parameters` for a
/// call written after `<|constrain|>json`, and the required call. With `auto` a schema
/// llguidance cannot follow leaves that function's arguments free, as before; when the call
/// is forced it is a 400 naming the function and the feature.
pub fn tool_constraint(
    tools: &FunctionTools,
    base: Option<TurnConstraint>,
) -> Result<Option<TurnConstraint>, ApiError> {
    let forced = !tools.required_call.is_empty();
    let (mut constraint, unenforceable) =
        base.unwrap_or_default().with_function_tools(&tools.tools);
    if forced && let Some((recipient, e)) = unenforceable.first() {
        let name = called_function(recipient).unwrap_or(recipient);
        return Err(ApiError::invalid(
            "tool_choice",
            format!("tool_choice forces a call, but {name}'s parameters cannot be enforced: {e}"),
        ));
    }
    if forced {
        let recipients: Vec<String> = tools
            .required_call
            .iter()
            .map(|name| format!("{FUNCTIONS_NAMESPACE}.{name}"))
            .collect();
        constraint = constraint
            .with_required_call(&recipients)
            .map_err(|e| ApiError::invalid("tool_choice", e.to_string()))?;
    }
    Ok((!constraint.is_empty()).then_some(constraint))
}

fn tool_description(tool: &Value, at: &str) -> Result<ToolDescription, ApiError> {
    let Value::Object(tool) = tool else {
        return Err(super::request::wrong_type(
            at,
            "{\"type\":\"function\",\"function\":{...}}",
            tool,
        ));
    };
    match tool.get("type") {
        Some(Value::String(kind)) if kind == "function" => {}
        Some(Value::String(kind)) => {
            return Err(ApiError::invalid(
                format!("{at}.type"),
                format!("{at}.type is '{kind}': only function tools are supported"),
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                format!("{at}.type"),
                format!("{at}.type is missing: use \"function\""),
            ));
        }
    }
    let function_at = format!("{at}.function");
    let Some(Value::Object(function)) = tool.get("function") else {
        return Err(ApiError::invalid(
            &function_at,
            format!("{function_at} is missing or not an object"),
        ));
    };
    let name = function_name(function.get("name"), &format!("{function_at}.name"))?;
    let description = match function.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => {
            return Err(super::request::wrong_type(
                &format!("{function_at}.description"),
                "a string",
                other,
            ));
        }
    };
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => None,
        Some(schema @ Value::Object(_)) => Some(schema.clone()),
        Some(other) => {
            return Err(super::request::wrong_type(
                &format!("{function_at}.parameters"),
                "a JSON schema object",
                other,
            ));
        }
    };
    Ok(ToolDescription::new(name, description, parameters))
}

/// A function name as OpenAI allows it: 1 to 64 of `a-z A-Z 0-9 _ -`.
fn function_name(name: Option<&Value>, at: &str) -> Result<String, ApiError> {
    let name = match name {
        Some(Value::String(name)) => name,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(at, format!("{at} is missing")));
        }
        Some(other) => return Err(super::request::wrong_type(at, "a string", other)),
    };
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(ApiError::invalid(
            at,
            format!("{at} is '{name}': use 1 to {MAX_NAME_CHARS} of a-z, A-Z, 0-9, _ and -"),
        ));
    }
    Ok(name.clone())
}

/// One past call from an assistant message's `tool_calls`.
#[derive(Debug, Clone, PartialEq)]
pub struct PastCall {
    /// The call's id, which a later `role: tool` message answers.
    pub id: String,
    /// The function's name (without the namespace).
    pub name: String,
    /// The JSON arguments as the model wrote them.
    pub arguments: String,
}

/// Reads an assistant message's `tool_calls` (`at` is `messages[N]`).
pub fn past_calls(message: &Map<String, Value>, at: &str) -> Result<Vec<PastCall>, ApiError> {
    let calls_at = format!("{at}.tool_calls");
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(calls)) => calls,
        Some(other) => {
            return Err(super::request::wrong_type(&calls_at, "an array", other));
        }
    };
    calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let call_at = format!("{calls_at}[{index}]");
            let id = match call.get("id") {
                Some(Value::String(id)) => id.clone(),
                _ => {
                    return Err(ApiError::invalid(
                        format!("{call_at}.id"),
                        format!("{call_at}.id is missing or not a string"),
                    ));
                }
            };
            let function = call.get("function").unwrap_or(&Value::Null);
            let name = function_name(function.get("name"), &format!("{call_at}.function.name"))?;
            let arguments = match function.get("arguments") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(Value::String(arguments)) => arguments.clone(),
                Some(other) => {
                    return Err(super::request::wrong_type(
                        &format!("{call_at}.function.arguments"),
                        "a JSON string",
                        other,
                    ));
                }
            };
            Ok(PastCall {
                id,
                name,
                arguments,
            })
        })
        .collect()
}

/// The harmony message for a past call: commentary, to `functions.NAME`, JSON content.
pub fn call_message(call: &PastCall) -> Message {
    Message::assistant("commentary", call.arguments.clone())
        .with_recipient(format!("{FUNCTIONS_NAMESPACE}.{}", call.name))
        .with_content_type(JSON_CONTENT_TYPE)
}

/// The harmony message for a `role: tool` answer to `call`.
pub fn result_message(call: &PastCall, text: String) -> Message {
    Message::tool(format!("{FUNCTIONS_NAMESPACE}.{}", call.name), text)
        .with_recipient("assistant")
        .with_channel("commentary")
}

/// The function a recipient (`functions.NAME`) calls, if it is a function tool.
pub fn called_function(recipient: &str) -> Option<&str> {
    recipient
        .strip_prefix(FUNCTIONS_NAMESPACE)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A JSON object's fields (empty for anything else).
    pub(in crate::server) fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(fields) => fields,
            _ => Map::new(),
        }
    }

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather",
            "description": "Weather now", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    }

    #[test]
    fn tools_become_function_descriptions_and_none_drops_them() {
        let read = function_tools(&fields(json!({"tools": [weather()]}))).expect("valid");
        assert_eq!(read.tools.len(), 1);
        assert_eq!(read.tools[0].name, "get_weather");
        assert_eq!(read.tools[0].description, "Weather now");
        assert_eq!(read.instruction, None);
        let none = function_tools(&fields(
            json!({"tools": [weather()], "tool_choice": "none"}),
        ))
        .expect("valid");
        assert!(none.tools.is_empty());
    }

    #[test]
    fn required_and_named_choices_are_instructions_and_forced_calls() {
        let required = function_tools(&fields(
            json!({"tools": [weather()], "tool_choice": "required"}),
        ))
        .expect("valid");
        assert!(
            required
                .instruction
                .expect("an instruction")
                .contains("Call one of the functions")
        );
        let named = function_tools(&fields(json!({"tools": [weather(),
            {"type": "function", "function": {"name": "other"}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})))
        .expect("valid");
        assert_eq!(named.tools.len(), 1);
        assert_eq!(
            named.instruction.as_deref(),
            Some("Call the function functions.get_weather before you answer.")
        );
        assert_eq!(named.required_call, ["get_weather"]);
        let constraint = tool_constraint(&named, None)
            .expect("enforceable")
            .expect("a constraint");
        assert_eq!(constraint.required_call, ["functions.get_weather"]);
        assert_eq!(
            constraint.tool_arguments["functions.get_weather"]["required"],
            json!(["city"])
        );
    }

    #[test]
    fn auto_leaves_calls_free_and_a_forced_call_needs_an_enforceable_schema() {
        let unenforceable = json!({"type": "function", "function": {"name": "odd",
            "parameters": {"type": "object", "dependentSchemas": {}}}});
        let auto =
            function_tools(&fields(json!({"tools": [weather(), unenforceable]}))).expect("valid");
        assert!(auto.required_call.is_empty());
        let constraint = tool_constraint(&auto, None)
            .expect("auto never refuses a schema")
            .expect("get_weather's schema");
        assert!(constraint.required_call.is_empty());
        assert_eq!(
            constraint.tool_arguments.keys().collect::<Vec<_>>(),
            ["functions.get_weather"]
        );
        let required = function_tools(&fields(
            json!({"tools": [weather(), unenforceable], "tool_choice": "required"}),
        ))
        .expect("valid");
        let error = tool_constraint(&required, None).expect_err("refused");
        assert_eq!(error.param.as_deref(), Some("tool_choice"));
        assert!(
            error
                .message
                .starts_with("tool_choice forces a call, but odd's parameters cannot be enforced:"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("dependentSchemas"),
            "{}",
            error.message
        );
        assert_eq!(
            tool_constraint(&FunctionTools::default(), None).expect("none"),
            None
        );
    }

    #[test]
    fn bad_tools_name_the_field_and_value() {
        let error = |body: Value| function_tools(&fields(body)).expect_err("refused");
        let bad = error(json!({"tools": [{"type": "retrieval"}]}));
        assert_eq!(bad.param.as_deref(), Some("tools[0].type"));
        assert_eq!(
            bad.message,
            "tools[0].type is 'retrieval': only function tools are supported"
        );
        let bad = error(json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}));
        assert_eq!(bad.param.as_deref(), Some("tools[0].function.name"));
        assert_eq!(
            bad.message,
            "tools[0].function.name is 'a b': use 1 to 64 of a-z, A-Z, 0-9, _ and -"
        );
        let bad = error(
            json!({"tools": [weather()], "tool_choice": {"type": "function",
            "function": {"name": "missing"}}}),
        );
        assert_eq!(
            bad.message,
            "tool_choice names the function 'missing', which is not in tools"
        );
        let bad = error(json!({"tool_choice": "required"}));
        assert_eq!(bad.param.as_deref(), Some("tool_choice"));
        let bad = error(json!({"tool_choice": "always"}));
        assert!(bad.message.starts_with("tool_choice is 'always'"));
    }

    #[test]
    fn past_calls_render_as_harmony_calls_and_results() {
        let message = fields(json!({"role": "assistant", "tool_calls": [{"id": "call_1",
            "type": "function", "function": {"name": "get_weather",
            "arguments": "{\"city\":\"Oslo\"}"}}]}));
        let calls = past_calls(&message, "messages[1]").expect("valid");
        let call = call_message(&calls[0]);
        assert_eq!(call.channel.as_deref(), Some("commentary"));
        assert_eq!(call.recipient.as_deref(), Some("functions.get_weather"));
        assert_eq!(call.content_type.as_deref(), Some("<|constrain|>json"));
        assert_eq!(call.text(), "{\"city\":\"Oslo\"}");
        let result = result_message(&calls[0], "sunny".into());
        assert_eq!(result.name.as_deref(), Some("functions.get_weather"));
        assert_eq!(result.recipient.as_deref(), Some("assistant"));
        let bad = past_calls(
            &fields(json!({"tool_calls": [{"function": {"name": "f"}}]})),
            "messages[1]",
        )
        .expect_err("no id");
        assert_eq!(
            bad.message,
            "messages[1].tool_calls[0].id is missing or not a string"
        );
    }

    #[test]
    fn only_functions_recipients_are_function_calls() {
        assert_eq!(
            called_function("functions.get_weather"),
            Some("get_weather")
        );
        assert_eq!(called_function("functions."), None);
        assert_eq!(called_function("browser.search"), None);
    }
}
