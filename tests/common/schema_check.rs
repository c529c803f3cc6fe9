//! A JSON schema validator for the subset the structured-output tests generate (objects with
//! required and optional fields, arrays, enums, bounded integers and numbers, strings).

use serde_json::Value;

/// Why `value` does not validate against `schema` (the generator's subset), or `None`.
pub fn violation(schema: &Value, value: &Value) -> Option<String> {
    let fail = |what: &str| Some(format!("{what}: {value} against {schema}"));
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        return (!allowed.contains(value)).then(|| format!("{value} not in {schema}"));
    }
    let bound = |key| schema.get(key).and_then(Value::as_f64);
    let count = |key| schema.get(key).and_then(Value::as_u64).map(|n| n as usize);
    match schema["type"].as_str() {
        Some("integer") | Some("number") => {
            let Some(number) = value.as_f64() else {
                return fail("not a number");
            };
            if schema["type"] == "integer" && !(value.is_i64() || value.is_u64()) {
                return fail("not an integer");
            }
            if bound("minimum").is_some_and(|m| number < m)
                || bound("maximum").is_some_and(|m| number > m)
            {
                return fail("out of bounds");
            }
            let off_multiple = bound("multipleOf")
                .is_some_and(|m| ((number / m).round() * m - number).abs() > 1e-9);
            off_multiple.then(|| format!("{value} is not a multiple in {schema}"))
        }
        Some("string") => {
            let Some(text) = value.as_str() else {
                return fail("not a string");
            };
            let chars = text.chars().count();
            if count("minLength").is_some_and(|m| chars < m)
                || count("maxLength").is_some_and(|m| chars > m)
            {
                return fail("length out of bounds");
            }
            None
        }
        Some("boolean") => (!value.is_boolean()).then(|| format!("{value} is not a boolean")),
        Some("array") => {
            let Some(items) = value.as_array() else {
                return fail("not an array");
            };
            if count("minItems").is_some_and(|m| items.len() < m)
                || count("maxItems").is_some_and(|m| items.len() > m)
            {
                return fail("item count out of bounds");
            }
            items
                .iter()
                .find_map(|item| violation(&schema["items"], item))
        }
        Some("object") => {
            let Some(object) = value.as_object() else {
                return fail("not an object");
            };
            let properties = schema["properties"].as_object()?;
            if let Some(missing) = schema["required"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|name| !object.contains_key(*name))
            {
                return fail(&format!("missing required {missing}"));
            }
            // JSON Schema allows other properties unless `additionalProperties` is false.
            let closed = schema["additionalProperties"] == Value::Bool(false);
            object
                .iter()
                .find_map(|(key, field)| match properties.get(key) {
                    Some(field_schema) => violation(field_schema, field),
                    None if closed => Some(format!("unexpected property {key} in {value}")),
                    None => None,
                })
        }
        other => Some(format!("the validator knows no schema of type {other:?}")),
    }
}
