//! Property test of the streaming parser on arbitrary token sequences (specials included):
//! it never panics, each message's deltas concatenate to exactly that message's content, and
//! the same ids always give the same steps and messages.
//!
//! `PROPTEST_CASES=1000000 cargo test --test harmony_parser_props` runs a million cases.

use ossterm::harmony::{Message, ParserStep, Role, StreamParser};
use proptest::prelude::*;

mod common;
use common::harmony::o200k;

/// Ids that make headers: the words and pieces the model writes between `<|start|>` and
/// `<|message|>`, so random streams often form (and break) real headers.
fn header_piece_ids() -> Vec<u32> {
    let tokenizer = o200k();
    let mut ids = Vec::new();
    for text in [
        "assistant",
        "user",
        "system",
        "tool",
        "analysis",
        "commentary",
        "final",
        " to=",
        "functions",
        ".get_weather",
        " json",
        " code",
        ":",
        " ",
        "\n",
        "robot",
        "😀",
        "é",
    ] {
        ids.extend(tokenizer.encode_ordinary(text).unwrap());
    }
    ids
}

fn token_strategy() -> impl Strategy<Value = u32> {
    let tokenizer = o200k();
    let vocab = tokenizer.vocab_size() as u32;
    let specials: Vec<u32> = (199_998..vocab).collect();
    // Single bytes of multi-byte characters (and lone continuation bytes): ids 128..=255 of
    // the byte-level alphabet are among the first 256 ranks.
    prop_oneof![
        3 => proptest::sample::select(specials),
        3 => proptest::sample::select(header_piece_ids()),
        1 => 0u32..256,
        3 => 0u32..vocab + 64, // past the vocabulary too: unknown ids must not break anything
    ]
}

fn run(ids: &[u32], role: Option<Role>) -> (Vec<ParserStep>, Option<String>, Vec<Message>) {
    let mut parser = StreamParser::new(o200k(), role);
    let steps: Vec<ParserStep> = ids.iter().map(|&t| parser.push(t)).collect();
    let tail = parser.finish();
    (steps, tail, parser.into_messages())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn parser_keeps_every_byte_and_is_deterministic(
        ids in proptest::collection::vec(token_strategy(), 0..72),
        role_known in any::<bool>(),
    ) {
        let role = role_known.then_some(Role::Assistant);
        let (steps, tail, messages) = run(&ids, role);

        let mut joined = vec![String::new()];
        for step in &steps {
            if let Some(delta) = &step.delta {
                prop_assert!(!delta.is_empty(), "an empty delta is reported as None");
                joined.last_mut().unwrap().push_str(delta);
            }
            if step.message_ended {
                joined.push(String::new());
            }
        }
        if let Some(delta) = &tail {
            joined.last_mut().unwrap().push_str(delta);
        }
        let contents: Vec<String> = messages.iter().map(Message::text).collect();
        // No message left open at the end: the last slot collected no text.
        if joined.len() == contents.len() + 1 {
            prop_assert_eq!(joined.pop(), Some(String::new()));
        }
        prop_assert_eq!(&joined, &contents);

        let again = run(&ids, role);
        prop_assert_eq!(&again.0, &steps);
        prop_assert_eq!(&again.1, &tail);
        prop_assert_eq!(&again.2, &messages);
    }
}
