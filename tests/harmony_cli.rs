//! `ossterm render` and `ossterm parse` through the binary, against the library's goldens.

use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/o200k_harmony");

fn first_line(file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

fn ossterm(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ossterm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn render_prints_the_library_ids_and_text() {
    let case = first_line("harmony_render.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let conversation = dir.path().join("conversation.json");
    std::fs::write(&conversation, case["conversation"].to_string()).unwrap();
    let tokenizer = format!("{FIXTURES}/tokenizer.json");
    let conversation = conversation.to_str().unwrap();
    let base = [
        "render",
        "--tokenizer",
        &tokenizer,
        "--conversation",
        conversation,
    ];

    let ids: serde_json::Value =
        serde_json::from_str(&ossterm(&[&base[..], &["--json"]].concat())).unwrap();
    assert_eq!(ids, case["ids"]);
    assert_eq!(
        ossterm(&base).trim_end_matches('\n'),
        case["text"].as_str().unwrap()
    );
}

#[test]
fn render_names_a_bad_conversation_file() {
    let dir = tempfile::tempdir().unwrap();
    let conversation = dir.path().join("broken.json");
    std::fs::write(&conversation, "{\"messages\": [{\"role\": \"robot\"}]}").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .args([
            "render",
            "--tokenizer",
            &format!("{FIXTURES}/tokenizer.json"),
        ])
        .arg("--conversation")
        .arg(&conversation)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.json"), "{stderr}");
}

#[test]
fn parse_prints_the_library_steps_then_the_messages() {
    let case = first_line("harmony_parse.jsonl");
    let ids: Vec<String> = case["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.to_string())
        .collect();
    let stdout = ossterm(&[
        "parse",
        "--tokenizer",
        &format!("{FIXTURES}/tokenizer.json"),
        "--ids",
        &ids.join(","),
        "--json",
    ]);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let steps = case["steps"].as_array().unwrap();
    assert_eq!(lines.len(), steps.len() + 1);
    for (got, want) in lines.iter().zip(steps) {
        for field in ["token", "channel", "recipient", "content_type", "delta"] {
            assert_eq!(got[field], want[field], "{field} of {got}");
        }
    }
    assert_eq!(lines[steps.len()], case["messages"]);
}
