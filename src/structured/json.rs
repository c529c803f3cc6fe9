//! A JSON schema as an llguidance grammar: checked when it is given, compiled per message.

use llguidance::Matcher;
use llguidance::api::TopLevelGrammar;
use serde_json::Value;

use super::{GrammarVocab, StructuredError};

/// A JSON schema ready to constrain a message.
#[derive(Debug, Clone)]
pub struct JsonGrammar {
    grammar: TopLevelGrammar,
    source_name: String,
}

impl JsonGrammar {
    /// Prepares `schema` (from `source_name`, for errors). Output is compact JSON (no free
    /// whitespace between tokens) unless the schema sets llguidance's own `x-guidance`
    /// options: free whitespace lets a weak model pad forever instead of closing the value.
    pub fn new(schema: &Value, source_name: &str) -> Result<Self, StructuredError> {
        let mut schema = match schema {
            // `true` is any JSON; as an object it can carry the whitespace option.
            Value::Bool(true) => serde_json::json!({}),
            Value::Bool(false) | Value::Object(_) => schema.clone(),
            _ => {
                return Err(StructuredError::Unsupported {
                    source_name: source_name.to_owned(),
                    reason: "a schema must be a JSON object or boolean".to_owned(),
                });
            }
        };
        if let Value::Object(map) = &mut schema
            && !map.contains_key("x-guidance")
        {
            map.insert(
                "x-guidance".to_owned(),
                serde_json::json!({"whitespace_flexible": false}),
            );
        }
        Ok(Self {
            grammar: TopLevelGrammar::from_json_schema(schema),
            source_name: source_name.to_owned(),
        })
    }

    /// Checks that llguidance can constrain to `schema`, without a model: an unsupported
    /// keyword or an unsatisfiable schema is an error naming it.
    pub fn check(schema: &Value, source_name: &str) -> Result<(), StructuredError> {
        let grammar = Self::new(schema, source_name)?;
        let factory = GrammarVocab::bytes_only()?;
        factory
            .create_parser(grammar.grammar)
            .map(drop)
            .map_err(|e| StructuredError::Unsupported {
                source_name: source_name.to_owned(),
                reason: e.to_string(),
            })
    }

    /// A fresh matcher for one message over `vocab`.
    pub(super) fn matcher(&self, vocab: &GrammarVocab) -> Result<Matcher, StructuredError> {
        let parser = vocab
            .factory()
            .create_parser(self.grammar.clone())
            .map_err(|e| StructuredError::Unsupported {
                source_name: self.source_name.clone(),
                reason: e.to_string(),
            })?;
        Ok(Matcher::new(Ok(parser)))
    }

    /// Where the schema came from.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_features_are_named_before_generation() {
        let error = JsonGrammar::check(
            &serde_json::json!({"type": "object", "unevaluatedProperties": false, "propertyNames": {"pattern": "^a"}}),
            "schema.json",
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("cannot constrain output to the JSON schema schema.json:"),
            "{text}"
        );
        assert!(
            text.contains("unevaluatedProperties") || text.contains("propertyNames"),
            "{text}"
        );

        let error = JsonGrammar::check(&serde_json::json!([1, 2]), "request").unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot constrain output to the JSON schema request: a schema must be a JSON object or boolean"
        );
        let error = JsonGrammar::check(
            &serde_json::json!({"type": "integer", "minimum": 5, "maximum": 1}),
            "bounds.json",
        )
        .unwrap_err();
        assert!(error.to_string().contains("bounds.json"), "{error}");
    }

    #[test]
    fn supported_schemas_pass_the_check() {
        for schema in [
            serde_json::json!(true),
            serde_json::json!({"type": "object"}),
            serde_json::json!({"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}),
            serde_json::json!({"type": "object", "x-guidance": {"whitespace_flexible": true}}),
        ] {
            JsonGrammar::check(&schema, "test").expect("supported");
        }
    }
}
