//! Structured outputs: the final answer (or a tool's arguments) constrained to a JSON schema
//! at decode time with Microsoft's `llguidance`, so that it always parses.
//!
//! The pieces, one job each:
//! - [`GrammarVocab`] (`vocab.rs`): the o200k_harmony vocabulary as llguidance's token trie,
//!   with the harmony specials marked special (a grammar can never spell `<|end|>` out of text).
//! - [`JsonGrammar`] (`json.rs`): a schema (or "any JSON object") checked and compiled; what
//!   llguidance cannot constrain is an error here, before generation.
//! - [`HarmonyConstraint`] (`gate.rs`): per turn, leaves reasoning free and switches the
//!   grammar on at `<|channel|>final<|message|>` (or after `<|constrain|>json` for a tool whose
//!   schema is known), masks the logits in place, and ends the message with the end token.
//!
//! Front ends build a [`TurnConstraint`] (one call: [`TurnConstraint::from_schema_file`],
//! [`TurnConstraint::from_response_format`]) and pass it with `engine::Command::Submit`.

mod forced;
mod gate;
mod json;
mod openai;
mod vocab;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use gate::{HarmonyConstraint, Phase};
pub use json::JsonGrammar;
pub use openai::{BadResponseFormat, parse_response_format};
pub use vocab::GrammarVocab;

/// What went wrong building or following a constraint.
#[derive(Debug, thiserror::Error)]
pub enum StructuredError {
    /// A schema file could not be read.
    #[error("cannot read the JSON schema {path}: {reason}")]
    ReadSchema {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A schema is not JSON, or not a JSON object/boolean.
    #[error("the JSON schema {source_name} is not valid JSON: {reason}")]
    SchemaNotJson {
        /// Where the schema came from (a file, `response_format.json_schema.schema`).
        source_name: String,
        /// The parser's message.
        reason: String,
    },
    /// llguidance cannot constrain to this schema (an unsupported keyword, an unsatisfiable
    /// schema); the reason names the feature.
    #[error("cannot constrain output to the JSON schema {source_name}: {reason}")]
    Unsupported {
        /// Where the schema came from.
        source_name: String,
        /// llguidance's message, e.g. `Unimplemented keys: ["patternProperties"]`.
        reason: String,
    },
    /// The vocabulary does not fit llguidance (e.g. a token too long), named by id.
    #[error("cannot build the grammar vocabulary: {0}")]
    Vocabulary(String),
    /// The logits row and the grammar's vocabulary disagree in size.
    #[error("the model's logits have {logits} entries but the grammar vocabulary has {vocab}")]
    VocabMismatch {
        /// Entries in the logits row.
        logits: usize,
        /// Tokens in the grammar vocabulary.
        vocab: usize,
    },
    /// A tool call was required, but no tool was named.
    #[error("a tool call is required but no tool is offered to call")]
    NoToolToCall,
    /// The grammar failed during generation (it allows no token, or refused a token).
    #[error("the output constraint failed at generated token {position}: {reason}")]
    Generation {
        /// Tokens accepted before the failure.
        position: usize,
        /// What happened.
        reason: String,
    },
}

/// What the final answer must be.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// JSON valid against this schema.
    JsonSchema {
        /// The schema.
        schema: serde_json::Value,
        /// Where it came from, for errors (`answer.schema.json`, `response_format`).
        source_name: String,
    },
    /// Any JSON object (OpenAI's `{"type": "json_object"}`).
    JsonObject,
}

impl ResponseFormat {
    /// The schema this format stands for (`{"type": "object"}` for any object).
    pub fn schema(&self) -> serde_json::Value {
        match self {
            Self::JsonSchema { schema, .. } => schema.clone(),
            Self::JsonObject => serde_json::json!({"type": "object"}),
        }
    }

    /// Where the schema came from, for errors.
    pub fn source_name(&self) -> &str {
        match self {
            Self::JsonSchema { source_name, .. } => source_name,
            Self::JsonObject => "json_object",
        }
    }
}

/// The constraints of one assistant turn: the final answer's format, and tool argument
/// schemas by recipient (`functions.get_weather`) for calls written after `<|constrain|>json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnConstraint {
    /// What the final channel's message must be; `None` leaves it free.
    pub final_format: Option<ResponseFormat>,
    /// Argument schemas by full recipient name (`functions.get_weather`).
    pub tool_arguments: BTreeMap<String, serde_json::Value>,
    /// The turn must call one of these (full recipient names, each with an argument schema):
    /// analysis stays free, every other message is such a call. Empty: the model's choice.
    pub required_call: Vec<String>,
}

impl TurnConstraint {
    /// The final answer must validate against the JSON schema in `path` (`--json-schema FILE`,
    /// the app's `/json FILE`). The schema is read and checked now: an unreadable file, bad
    /// JSON or a feature llguidance cannot constrain is an error naming it.
    pub fn from_schema_file(path: &Path) -> Result<Self, StructuredError> {
        let text = std::fs::read_to_string(path).map_err(|e| StructuredError::ReadSchema {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let source_name = path.display().to_string();
        let schema = serde_json::from_str(&text).map_err(|e| StructuredError::SchemaNotJson {
            source_name: source_name.clone(),
            reason: e.to_string(),
        })?;
        Self::from_response_format(ResponseFormat::JsonSchema {
            schema,
            source_name,
        })
    }

    /// The final answer must follow `format`; checked now (see [`JsonGrammar::check`]).
    pub fn from_response_format(format: ResponseFormat) -> Result<Self, StructuredError> {
        JsonGrammar::check(&format.schema(), format.source_name())?;
        Ok(Self {
            final_format: Some(format),
            ..Self::default()
        })
    }

    /// Adds a tool's argument schema (checked now): calls to `recipient`
    /// (`functions.get_weather`) written after `<|constrain|>json` must validate against it.
    pub fn with_tool_arguments(
        mut self,
        recipient: &str,
        schema: serde_json::Value,
    ) -> Result<Self, StructuredError> {
        JsonGrammar::check(&schema, &format!("of tool {recipient}"))?;
        self.tool_arguments.insert(recipient.to_owned(), schema);
        Ok(self)
    }

    /// Adds each function tool's `parameters` as the argument schema of `functions.NAME`. A
    /// schema llguidance cannot follow leaves that tool's arguments free: it is returned with
    /// the reason, for the caller to report or refuse.
    pub fn with_function_tools(
        mut self,
        tools: &[crate::harmony::ToolDescription],
    ) -> (Self, Vec<(String, StructuredError)>) {
        let mut unenforceable = Vec::new();
        for tool in tools {
            let Some(schema) = &tool.parameters else {
                continue;
            };
            let recipient = format!("functions.{}", tool.name);
            match self.clone().with_tool_arguments(&recipient, schema.clone()) {
                Ok(with_tool) => self = with_tool,
                Err(e) => unenforceable.push((recipient, e)),
            }
        }
        (self, unenforceable)
    }

    /// The turn must call one of `recipients` (`functions.get_weather`), as OpenAI's
    /// `tool_choice: "required"` or a named function asks: its next message after any
    /// reasoning is forced to that call, with arguments valid against the tool's schema (any
    /// JSON object for a tool added without one).
    pub fn with_required_call(mut self, recipients: &[String]) -> Result<Self, StructuredError> {
        if recipients.is_empty() {
            return Err(StructuredError::NoToolToCall);
        }
        for recipient in recipients {
            if !self.tool_arguments.contains_key(recipient) {
                self =
                    self.with_tool_arguments(recipient, serde_json::json!({"type": "object"}))?;
            }
        }
        self.required_call = recipients.to_vec();
        Ok(self)
    }

    /// The same constraint with the model free to call or not (a tool loop's generations
    /// after the required call was made).
    pub fn without_required_call(mut self) -> Self {
        self.required_call.clear();
        self
    }

    /// True when nothing is constrained.
    pub fn is_empty(&self) -> bool {
        self.final_format.is_none() && self.tool_arguments.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_file_is_read_and_checked_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.json");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"type\": ").expect("write");
        for (path, prefix) in [
            (&missing, "cannot read the JSON schema"),
            (&bad, "the JSON schema"),
        ] {
            let error = TurnConstraint::from_schema_file(path).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("{prefix} {}", path.display())),
                "{error}"
            );
        }
        assert!(
            TurnConstraint::from_schema_file(&bad)
                .unwrap_err()
                .to_string()
                .contains("is not valid JSON:")
        );

        let unsupported = dir.path().join("unsupported.json");
        std::fs::write(
            &unsupported,
            r#"{"type": "object", "patternProperties": {"^a": {"type": "string"}}, "dependentSchemas": {}}"#,
        )
        .expect("write");
        let error = TurnConstraint::from_schema_file(&unsupported).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot constrain output to the JSON schema {}:",
                unsupported.display()
            )),
            "{text}"
        );
        assert!(text.contains("dependentSchemas"), "{text}");

        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"type": "object", "properties": {"a": {"type": "integer"}}}"#,
        )
        .expect("write");
        let constraint = TurnConstraint::from_schema_file(&good).expect("good schema");
        assert!(!constraint.is_empty());
        assert!(matches!(
            constraint.final_format,
            Some(ResponseFormat::JsonSchema { ref source_name, .. }) if *source_name == good.display().to_string()
        ));
    }

    #[test]
    fn a_required_call_adds_an_object_schema_for_a_tool_without_one_and_needs_a_tool() {
        let constraint = TurnConstraint::default()
            .with_required_call(&["functions.now".to_owned()])
            .expect("required");
        assert_eq!(
            constraint.tool_arguments["functions.now"],
            serde_json::json!({"type": "object"})
        );
        assert_eq!(constraint.required_call, ["functions.now"]);
        assert!(
            constraint
                .clone()
                .without_required_call()
                .required_call
                .is_empty()
        );
        assert_eq!(
            TurnConstraint::default()
                .with_required_call(&[])
                .unwrap_err()
                .to_string(),
            "a tool call is required but no tool is offered to call"
        );
    }

    #[test]
    fn function_tools_add_their_schemas_and_return_the_unenforceable_ones() {
        use crate::harmony::ToolDescription;
        let tools = [
            ToolDescription::new("a", "", Some(serde_json::json!({"type": "object"}))),
            ToolDescription::new("none", "", None),
            ToolDescription::new("odd", "", Some(serde_json::json!({"dependentSchemas": {}}))),
        ];
        let (constraint, unenforceable) = TurnConstraint::default().with_function_tools(&tools);
        assert_eq!(
            constraint.tool_arguments.keys().collect::<Vec<_>>(),
            ["functions.a"]
        );
        assert_eq!(unenforceable.len(), 1);
        assert_eq!(unenforceable[0].0, "functions.odd");
        assert!(
            unenforceable[0].1.to_string().contains("dependentSchemas"),
            "{}",
            unenforceable[0].1
        );
    }

    #[test]
    fn a_tool_schema_is_checked_naming_the_tool() {
        let error = TurnConstraint::default()
            .with_tool_arguments(
                "functions.get_weather",
                serde_json::json!({"type": "string", "format": "no-such-format"}),
            )
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(
                "cannot constrain output to the JSON schema of tool functions.get_weather:"
            ),
            "{text}"
        );
    }
}
