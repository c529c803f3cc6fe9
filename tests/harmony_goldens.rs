//! The harmony goldens made with OpenAI's `openai_harmony` and tiktoken
//! (`tests/fixtures/o200k_harmony/`): tokenizer, renderer and streaming parser.

use std::path::Path;
use std::sync::Arc;

use ossterm::harmony::{
    Conversation, RenderOptions, Role, StreamParser, Tokenizer, render_conversation,
    render_conversation_for_training, render_for_completion_with_role,
};
use serde_json::Value;

mod common;
use common::harmony::{FIXTURES, o200k};

fn jsonl(file: &str) -> Vec<Value> {
    let path = format!("{FIXTURES}/o200k_harmony/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn ids_of(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap() as u32)
        .collect()
}

fn role_of(value: &Value) -> Option<Role> {
    value.as_str().map(|r| Role::from_header_word(r).unwrap())
}

#[test]
fn tokenizer_encodes_and_decodes_every_golden_line() {
    let tokenizer = o200k();
    let cases = jsonl("tokenizer_golden.jsonl");
    assert_eq!(cases.len(), 1500);
    for (line, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let ids = ids_of(&case["ids"]);
        assert_eq!(
            tokenizer.encode_with_specials(text).unwrap(),
            ids,
            "line {}",
            line + 1
        );
        assert_eq!(tokenizer.decode(&ids), text, "line {}", line + 1);
    }
}

#[test]
fn tokenizer_encodes_special_text_as_plain_text_like_encode_ordinary() {
    let tokenizer = o200k();
    let cases = jsonl("tokenizer_golden_ordinary.jsonl");
    assert_eq!(cases.len(), 394);
    let mut holding_specials = 0;
    for (line, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let ids = ids_of(&case["ids"]);
        holding_specials += usize::from(text.contains("<|"));
        assert_eq!(
            tokenizer.encode_ordinary(text).unwrap(),
            ids,
            "line {}",
            line + 1
        );
        assert_eq!(tokenizer.decode(&ids), text, "line {}", line + 1);
    }
    assert!(
        holding_specials > 100,
        "the ordinary goldens should hold special-token text"
    );
}

#[test]
fn specials_are_found_by_text() {
    let tokenizer = o200k();
    assert_eq!(tokenizer.special_id("<|start|>"), Some(200006));
    assert_eq!(tokenizer.special_id("<|endofprompt|>"), Some(200018));
    assert_eq!(tokenizer.stop_ids(), vec![200002, 200012, 199999]);
    assert_eq!(tokenizer.vocab_size(), 200019);

    let tiny =
        Tokenizer::from_file(Path::new(&format!("{FIXTURES}/tiny-a-bf16/tokenizer.json"))).unwrap();
    assert_eq!(tiny.special_id("<|start|>"), Some(529));
    assert_eq!(tiny.special_id("<|endofprompt|>"), None);
    assert_eq!(tiny.stop_ids(), vec![526, 532, 525]);
}

#[test]
fn tokenizer_without_harmony_specials_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = std::fs::read_to_string(format!("{FIXTURES}/tiny-a-bf16/tokenizer.json")).unwrap();
    let mut json: Value = serde_json::from_str(&tiny).unwrap();
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["content"] != "<|message|>");
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let error = Tokenizer::from_file(&path).unwrap_err().to_string();
    assert!(error.contains("<|message|>"), "{error}");
    assert!(error.contains(&path.display().to_string()), "{error}");
}

#[test]
fn every_random_conversation_renders_to_the_library_ids() {
    let tokenizer = o200k();
    let cases = jsonl("harmony_render.jsonl");
    assert_eq!(cases.len(), 40);
    for (line, case) in cases.iter().enumerate() {
        let conversation: Conversation =
            serde_json::from_value(case["conversation"].clone()).unwrap();
        let role = role_of(&case["for_completion"]).unwrap();
        let ids = render_for_completion_with_role(
            &conversation,
            role,
            &tokenizer,
            &RenderOptions::default(),
        )
        .unwrap();
        assert_eq!(
            tokenizer.decode(&ids),
            case["text"].as_str().unwrap(),
            "line {}",
            line + 1
        );
        assert_eq!(ids, ids_of(&case["ids"]), "line {}", line + 1);
    }
}

#[test]
fn every_named_render_case_matches_the_library() {
    let tokenizer = o200k();
    let cases = jsonl("harmony_render_cases.jsonl");
    assert_eq!(cases.len(), 287);
    let mut completions = 0;
    for case in &cases {
        let name = format!("{} ({})", case["name"], case["mode"]);
        let conversation: Conversation =
            serde_json::from_value(case["conversation"].clone()).unwrap();
        let options = RenderOptions {
            auto_drop_analysis: case["auto_drop_analysis"].as_bool().unwrap(),
        };
        let ids = match case["mode"].as_str().unwrap() {
            "completion" => {
                completions += 1;
                let role = role_of(&case["next_turn_role"]).unwrap();
                render_for_completion_with_role(&conversation, role, &tokenizer, &options)
            }
            "conversation" => render_conversation(&conversation, &tokenizer, &options),
            "training" => render_conversation_for_training(&conversation, &tokenizer, &options),
            other => panic!("{name}: unknown mode {other}"),
        }
        .unwrap();
        assert_eq!(
            tokenizer.decode(&ids),
            case["text"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(ids, ids_of(&case["ids"]), "{name}");
    }
    assert_eq!(completions, 127);
}

/// Streams the ids and checks each step and the messages against the golden.
fn check_parse_case(name: &str, case: &Value, role: Option<Role>) {
    let mut parser = StreamParser::new(o200k(), role);
    let ids = ids_of(&case["ids"]);
    let steps = case["steps"].as_array().unwrap();
    assert_eq!(steps.len(), ids.len(), "{name}");
    for (index, (&token, expected)) in ids.iter().zip(steps).enumerate() {
        let step = parser.push(token);
        let got = serde_json::json!({
            "token": step.token,
            "channel": step.channel,
            "recipient": step.recipient,
            "content_type": step.content_type,
            "delta": step.delta,
        });
        let want = serde_json::json!({
            "token": expected["token"],
            "channel": expected["channel"],
            "recipient": expected["recipient"],
            "content_type": expected["content_type"],
            "delta": expected["delta"],
        });
        assert_eq!(got, want, "{name}: step {index}");
    }
    assert_eq!(
        parser.finish(),
        None,
        "{name}: nothing held back at the end"
    );
    let messages = serde_json::to_value(parser.messages()).unwrap();
    assert_eq!(messages, case["messages"], "{name}: messages");
}

#[test]
fn every_random_output_parses_like_the_library() {
    let cases = jsonl("harmony_parse.jsonl");
    assert_eq!(cases.len(), 40);
    for (line, case) in cases.iter().enumerate() {
        check_parse_case(&format!("line {}", line + 1), case, Some(Role::Assistant));
    }
}

/// Streams where the library drops text or gives up; ossterm keeps every byte and recovers
/// (checked separately below).
const LIBRARY_LENIENT_CASES: [&str; 5] = [
    "invalid_utf8_bytes",
    "partial_utf8_then_stop",
    "missing_message_token_lenient",
    "missing_message_token_channel_lenient",
    "missing_message_token_tool_call_lenient",
];

#[test]
fn every_well_formed_named_stream_parses_like_the_library() {
    let mut checked = 0;
    for case in jsonl("harmony_parse_cases.jsonl") {
        let name = case["name"].as_str().unwrap();
        let library_failed = !case["error"].is_null() || !case["eos_error"].is_null();
        if library_failed || LIBRARY_LENIENT_CASES.contains(&name) {
            continue;
        }
        check_parse_case(name, &case, role_of(&case["role"]));
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} well-formed streams");
}

/// Parses a stream; returns the messages and, per message, its deltas joined.
fn parse_collecting_deltas(
    ids: &[u32],
    role: Option<Role>,
) -> (Vec<ossterm::harmony::Message>, Vec<String>) {
    let mut parser = StreamParser::new(o200k(), role);
    let mut joined = vec![String::new()];
    for &token in ids {
        let step = parser.push(token);
        if let Some(delta) = &step.delta {
            joined.last_mut().unwrap().push_str(delta);
        }
        if step.message_ended {
            joined.push(String::new());
        }
    }
    if let Some(delta) = parser.finish() {
        joined.last_mut().unwrap().push_str(&delta);
    }
    let messages = parser.into_messages();
    joined.truncate(messages.len());
    (messages, joined)
}

fn summary(messages: &[ossterm::harmony::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            format!(
                "{}{}|{}|{}|{}|{}",
                m.role.as_str(),
                m.name
                    .as_deref()
                    .map(|n| format!(":{n}"))
                    .unwrap_or_default(),
                m.channel.as_deref().unwrap_or("-"),
                m.recipient.as_deref().unwrap_or("-"),
                m.content_type.as_deref().unwrap_or("-"),
                m.text()
            )
        })
        .collect()
}

#[test]
fn malformed_streams_keep_every_byte_and_recover() {
    let mut recovered = std::collections::BTreeMap::new();
    for case in jsonl("harmony_parse_cases.jsonl") {
        let name = case["name"].as_str().unwrap().to_owned();
        let (messages, joined) =
            parse_collecting_deltas(&ids_of(&case["ids"]), role_of(&case["role"]));
        let texts: Vec<String> = messages.iter().map(|m| m.text()).collect();
        assert_eq!(joined, texts, "{name}: deltas differ from contents");
        recovered.insert(name, summary(&messages));
    }
    let expect = |name: &str, want: &[&str]| assert_eq!(recovered[name], want, "{name}");
    expect(
        "missing_message_token_lenient",
        &[
            "assistant|-|-|-|I must refuse",
            "assistant|analysis|-|-|We must refuse",
            "assistant|final|-|-|I'm sorry, but I can't help with that.",
        ],
    );
    expect(
        "missing_message_token_channel_strict",
        &[
            "assistant|analysis|-|-|I must refuse",
            "assistant|final|-|-|No.",
        ],
    );
    expect(
        "text_without_start_strict",
        &[
            "assistant|final|-|-|a",
            "assistant|-|-|-|stray text",
            "assistant|final|-|-|b",
        ],
    );
    expect("unknown_role_strict", &["tool:robot|-|-|-|beep"]);
    expect("empty_channel_strict", &["assistant|-|-|-|x"]);
    expect("user_with_name_role_none", &["user:alice|-|-|-|hi"]);
    expect("truncated_in_header", &["assistant|analysis|-|-|ok"]);
    expect(
        "partial_utf8_then_stop",
        &["assistant|final|-|-|ok  \u{fffd}"],
    );
}

#[test]
fn tokenizer_and_parser_can_be_shared_with_the_engine_thread() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Tokenizer>();
    shareable::<StreamParser>();
}

#[test]
fn rendered_messages_parse_back_with_both_tokenizers() {
    use ossterm::harmony::Message;
    let conversation = Conversation::from_messages([
        Message::user("Type <|end|> literally, then 😀 and 東京."),
        Message::assistant("analysis", "The user wants <|start|> text kept."),
        Message::assistant("commentary", "{\"x\": 1}")
            .with_recipient("functions.lookup")
            .with_content_type("<|constrain|>json"),
        Message::tool("functions.lookup", "{\"y\": 2}")
            .with_channel("commentary")
            .with_recipient("assistant"),
        Message::assistant("final", "Done: é̂ \n\t end"),
    ]);
    let tiny_path = format!("{FIXTURES}/tiny-a-bf16/tokenizer.json");
    let tiny = Arc::new(Tokenizer::from_file(Path::new(&tiny_path)).unwrap());
    for tokenizer in [o200k(), tiny] {
        let options = RenderOptions {
            auto_drop_analysis: false,
        };
        let ids = render_conversation(&conversation, &tokenizer, &options).unwrap();
        let mut parser = StreamParser::new(Arc::clone(&tokenizer), None);
        for &id in &ids {
            parser.push(id);
        }
        assert_eq!(parser.finish(), None);
        assert_eq!(
            parser.messages(),
            conversation.messages.as_slice(),
            "{:?}",
            tokenizer.path()
        );
    }
}

#[test]
fn text_without_a_header_streams_after_a_bounded_wait() {
    let tokenizer = o200k();
    let text = "Plain answer with no header at all, 東京 😀. ".repeat(12);
    let mut ids = tokenizer.encode_ordinary(&text).unwrap();
    ids.push(tokenizer.specials().return_);
    let (messages, joined) = parse_collecting_deltas(&ids, Some(Role::Assistant));
    assert_eq!(summary(&messages), [format!("assistant|-|-|-|{text}")]);
    assert_eq!(joined, [text]);

    let mut parser = StreamParser::new(tokenizer, Some(Role::Assistant));
    let first_delta_at = ids
        .iter()
        .position(|&id| parser.push(id).delta.is_some())
        .unwrap();
    assert!(
        first_delta_at <= 48,
        "first text after {first_delta_at} tokens"
    );
}

/// The engine reports each message's rendered tokens (the app shows them per message): they
/// add up to the rendered conversation, "<|start|>user<|message|>hi<|end|>" is 5 tokens, and
/// an earlier turn's reasoning that the renderer leaves out counts 0.
#[test]
fn each_messages_rendered_tokens_add_up_to_the_prompt() {
    use ossterm::harmony::{Message, render_for_completion, render_for_completion_counted};
    let tokenizer = o200k();
    let conversation = Conversation::from_messages([
        Message::user("hi"),
        Message::assistant("analysis", "They greet me."),
        Message::assistant("final", "Hello!"),
        Message::user("what is 6 times 7?"),
    ]);
    let options = RenderOptions::default();
    let (ids, counts) = render_for_completion_counted(&conversation, &tokenizer, &options).unwrap();
    assert_eq!(
        ids,
        render_for_completion(&conversation, &tokenizer, &options).unwrap()
    );
    let messages = render_conversation(&conversation, &tokenizer, &options).unwrap();
    assert_eq!(counts.iter().sum::<usize>(), messages.len());
    assert_eq!(counts[0], 5, "<|start|> user <|message|> hi <|end|>");
    assert_eq!(
        counts[1], 0,
        "reasoning before the first final answer is left out"
    );
    assert!(counts[2] > 0 && counts[3] > counts[0], "{counts:?}");
}
