//! `ossterm generate --json-schema FILE` through the binary: the tiny random model's answer
//! parses and validates; a schema that cannot be followed, or cannot be read, is refused
//! before the model loads, naming the file and the feature.

use std::path::{Path, PathBuf};

mod common;
use common::cli::ossterm;
use ossterm::harmony::Tokenizer;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-bf16")
}

fn prompt_ids(header: &str) -> String {
    let tokenizer = Tokenizer::from_file(&tiny().join("tokenizer.json")).expect("tokenizer");
    let text = format!("<|start|>user<|message|>Pick a colour.<|end|><|start|>assistant{header}");
    let ids = tokenizer.encode_with_specials(&text).expect("encode");
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Writes `text` as `name` in `dir`.
fn schema_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// `ossterm generate --json-schema SCHEMA --json` on `model` with these ids.
fn generate(model: &Path, ids: &str, schema: &Path) -> (bool, String, String) {
    ossterm(&[
        "generate",
        "--model",
        model.to_str().expect("utf-8 path"),
        "--ids",
        ids,
        "--max-new-tokens",
        "64",
        "--json-schema",
        schema.to_str().expect("utf-8 path"),
        "--json",
    ])
}

#[test]
fn generate_holds_the_answer_to_the_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = schema_file(
        &dir,
        "colour.json",
        r#"{"type": "object", "properties": {"colour": {"enum": ["red", "green"]}, "shade": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["colour", "shade"], "additionalProperties": false}"#,
    );
    let tiny = tiny();
    let (ok, stdout, stderr) = generate(&tiny, &prompt_ids("<|channel|>final<|message|>"), &schema);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON report");
    let answer: serde_json::Value =
        serde_json::from_str(report["answer"].as_str().expect("an answer")).expect("parses");
    assert!(
        ["red", "green"].contains(&answer["colour"].as_str().unwrap_or("")),
        "{answer}"
    );
    assert!(
        (1..=9).contains(&answer["shade"].as_i64().unwrap_or(0)),
        "{answer}"
    );
    assert_eq!(answer.as_object().map(|o| o.len()), Some(2), "{answer}");
    // The answer ended the generation with `<|return|>`, well before the budget.
    let tokenizer = Tokenizer::from_file(&tiny.join("tokenizer.json")).expect("tokenizer");
    let generated = report["ids"].as_array().expect("ids");
    assert!(generated.len() < 64);
    assert_eq!(
        generated.last().and_then(|id| id.as_u64()),
        Some(u64::from(tokenizer.specials().return_))
    );
}

#[test]
fn generate_refuses_a_schema_it_cannot_follow_before_loading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = schema_file(
        &dir,
        "answer.json",
        r#"{"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}"#,
    );
    let missing = dir.path().join("missing.json");
    let unsupported = format!(
        "cannot constrain output to the JSON schema {}",
        schema.display()
    );
    // No model at all: the schema is refused first.
    for (file, expected) in [
        (&schema, [unsupported.as_str(), "dependentSchemas"]),
        (
            &missing,
            [
                &format!("cannot read the JSON schema {}", missing.display()),
                "No such file",
            ],
        ),
    ] {
        let (ok, _, stderr) = generate(Path::new("/no/such/model"), "1,2", file);
        assert!(!ok);
        for part in expected {
            assert!(stderr.contains(part), "{stderr}");
        }
        assert!(!stderr.contains("/no/such/model"), "{stderr}");
    }
}
