//! MCP input schemas cut down to what harmony's TypeScript-like form can say (as the
//! gpt-oss reference's `build-system-prompt.py` `trim_schema` does).

use serde_json::{Map, Value};

/// The schema the model sees: no `title` (harmony would print it as a comment), no
/// `"default": null`, no `$schema`/`additionalProperties` noise; `anyOf` of plain types
/// becomes a type list (with `nullable` for null), other `anyOf`s a `oneOf` union.
pub fn clean_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "title" | "$schema" | "additionalProperties" => {}
            "default" if value.is_null() => {}
            "properties" => {
                let properties = value
                    .as_object()
                    .map(|properties| {
                        properties
                            .iter()
                            .map(|(name, property)| (name.clone(), clean_schema(property)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(properties));
            }
            "items" => {
                out.insert(key.clone(), clean_schema(value));
            }
            "anyOf" | "oneOf" => merge_union(&mut out, value),
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// `anyOf: [{type: a}, {type: null}]` → `type: a, nullable: true`; richer unions → `oneOf`.
fn merge_union(out: &mut Map<String, Value>, variants: &Value) {
    let Some(variants) = variants.as_array() else {
        return;
    };
    let plain_type = |variant: &Value| -> Option<String> {
        let object = variant.as_object()?;
        let only_type = object.keys().all(|k| k == "type" || k == "title");
        only_type
            .then(|| object.get("type")?.as_str().map(str::to_string))
            .flatten()
    };
    let types: Option<Vec<String>> = variants.iter().map(plain_type).collect();
    match types {
        Some(types) => {
            let nullable = types.iter().any(|t| t == "null");
            let mut named: Vec<Value> = types
                .into_iter()
                .filter(|t| t != "null")
                .map(Value::String)
                .collect();
            match named.len() {
                0 => {}
                1 => {
                    out.insert("type".into(), named.remove(0));
                }
                _ => {
                    out.insert("type".into(), Value::Array(named));
                }
            }
            if nullable {
                out.insert("nullable".into(), Value::Bool(true));
            }
        }
        None => {
            let cleaned = variants.iter().map(clean_schema).collect();
            out.insert("oneOf".into(), Value::Array(cleaned));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn titles_null_defaults_and_simple_unions_are_cleaned() {
        let schema = json!({
            "title": "getArguments",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "title": {"title": "Title", "type": "string"},
                "tz": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
                "n": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "tags": {"type": "array", "items": {"title": "Tag", "type": "string"}},
            },
            "required": ["title"],
        });
        assert_eq!(
            clean_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "tz": {"type": "string", "nullable": true},
                    "n": {"type": ["integer", "string"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["title"],
            })
        );
    }

    #[test]
    fn rich_unions_become_one_of() {
        let schema = json!({"anyOf": [{"type": "object", "title": "A", "properties": {}}, {"type": "string"}]});
        assert_eq!(
            clean_schema(&schema),
            json!({"oneOf": [{"type": "object", "properties": {}}, {"type": "string"}]})
        );
    }
}
