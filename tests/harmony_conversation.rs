//! Conversations in openai_harmony's JSON load and write back unchanged.

use ossterm::harmony::Conversation;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/o200k_harmony");

fn fixture_conversations() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for file in ["harmony_render.jsonl", "harmony_render_cases.jsonl"] {
        let path = format!("{FIXTURES}/{file}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for (line_no, line) in text.lines().enumerate() {
            let mut case: serde_json::Value = serde_json::from_str(line).unwrap();
            let name = case
                .get("name")
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("{file}:{}", line_no + 1), str::to_owned);
            out.push((name, case["conversation"].take()));
        }
    }
    out
}

#[test]
fn every_fixture_conversation_round_trips_through_the_library_json() {
    let conversations = fixture_conversations();
    assert_eq!(conversations.len(), 40 + 287);
    for (name, expected) in conversations {
        let conversation: Conversation = serde_json::from_value(expected.clone())
            .unwrap_or_else(|e| panic!("{name}: does not load: {e}"));
        let written: serde_json::Value = serde_json::from_str(&conversation.to_json()).unwrap();
        assert_eq!(written, expected, "{name}: writes different JSON");
    }
}
