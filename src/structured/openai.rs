//! OpenAI's `response_format` request field, read into a [`TurnConstraint`].

use serde_json::Value;

use super::{ResponseFormat, StructuredError, TurnConstraint};

/// A `response_format` the server refuses: the field path and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct BadResponseFormat {
    /// The field, as OpenAI names parameters (`response_format.json_schema.schema`).
    pub param: String,
    /// What is wrong, naming the field and value.
    pub message: String,
}

/// The schema's place in the request, which errors name.
const SCHEMA_PARAM: &str = "response_format.json_schema.schema";

/// Reads `response_format`: `{"type": "json_schema", "json_schema": {"schema": {...}}}`,
/// `{"type": "json_object"}`, or `{"type": "text"}` / absent / null (no constraint). The
/// schema is checked now, so an unsupported feature is refused before generation.
pub fn parse_response_format(
    value: Option<&Value>,
) -> Result<Option<TurnConstraint>, BadResponseFormat> {
    let bad = |param: &str, message: String| BadResponseFormat {
        param: param.to_owned(),
        message,
    };
    let fields = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(fields)) => fields,
        Some(other) => {
            return Err(bad(
                "response_format",
                format!("response_format must be an object with a type, not {other}"),
            ));
        }
    };
    let format = match fields.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(None),
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => {
            let schema = fields
                .get("json_schema")
                .and_then(|spec| spec.get("schema"))
                .ok_or_else(|| {
                    bad(
                        SCHEMA_PARAM,
                        format!("{SCHEMA_PARAM} is missing: a json_schema response format needs the schema"),
                    )
                })?;
            ResponseFormat::JsonSchema {
                schema: schema.clone(),
                source_name: SCHEMA_PARAM.to_owned(),
            }
        }
        other => {
            let shown = other.map_or_else(
                || {
                    fields
                        .get("type")
                        .map_or("missing".to_owned(), Value::to_string)
                },
                |kind| format!("'{kind}'"),
            );
            return Err(bad(
                "response_format.type",
                format!("response_format.type is {shown}: use json_schema, json_object or text"),
            ));
        }
    };
    TurnConstraint::from_response_format(format)
        .map(Some)
        .map_err(|error: StructuredError| bad(SCHEMA_PARAM, error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_openai_formats_are_read() {
        assert_eq!(parse_response_format(None), Ok(None));
        assert_eq!(parse_response_format(Some(&json!(null))), Ok(None));
        assert_eq!(
            parse_response_format(Some(&json!({"type": "text"}))),
            Ok(None)
        );
        let object = parse_response_format(Some(&json!({"type": "json_object"})))
            .expect("json_object")
            .expect("a constraint");
        assert_eq!(object.final_format, Some(ResponseFormat::JsonObject));
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let constraint = parse_response_format(Some(&json!({
            "type": "json_schema",
            "json_schema": {"name": "answer", "strict": true, "schema": schema}
        })))
        .expect("json_schema")
        .expect("a constraint");
        assert_eq!(
            constraint.final_format,
            Some(ResponseFormat::JsonSchema {
                schema,
                source_name: SCHEMA_PARAM.into()
            })
        );
    }

    #[test]
    fn bad_formats_name_the_field() {
        for (value, param, message) in [
            (
                json!("json"),
                "response_format",
                "response_format must be an object with a type, not \"json\"",
            ),
            (
                json!({"type": "yaml"}),
                "response_format.type",
                "response_format.type is 'yaml': use json_schema, json_object or text",
            ),
            (
                json!({}),
                "response_format.type",
                "response_format.type is missing: use json_schema, json_object or text",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "x"}}),
                SCHEMA_PARAM,
                "response_format.json_schema.schema is missing: a json_schema response format needs the schema",
            ),
        ] {
            let error = parse_response_format(Some(&value)).unwrap_err();
            assert_eq!(
                (error.param.as_str(), error.message.as_str()),
                (param, message)
            );
        }
        let error = parse_response_format(Some(&json!({
            "type": "json_schema",
            "json_schema": {"schema": {"type": "object", "dependentSchemas": {}}}
        })))
        .unwrap_err();
        assert_eq!(error.param, SCHEMA_PARAM);
        assert!(
            error.message.starts_with(
                "cannot constrain output to the JSON schema response_format.json_schema.schema:"
            ),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("dependentSchemas"),
            "{}",
            error.message
        );
    }
}
