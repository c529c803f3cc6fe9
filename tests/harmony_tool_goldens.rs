//! The built-in tool namespaces (`browser`, `python`) built in Rust against openai_harmony's
//! own (goldens in `tests/fixtures/o200k_harmony/harmony_render_cases.jsonl`), and the tool
//! calls gpt-oss writes parsed with recipient, channel and content type.

use ossterm::harmony::{
    Content, Conversation, Message, RenderOptions, Role, StreamParser, SystemContent,
    ToolNamespaceConfig, render_for_completion,
};
use serde_json::Value;

mod common;
use common::harmony::{FIXTURES, o200k};

/// The named case's completion record (auto_drop_analysis on).
fn render_case(name: &str) -> Value {
    let path = format!("{FIXTURES}/o200k_harmony/harmony_render_cases.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|case| {
            case["name"] == name
                && case["mode"] == "completion"
                && case["auto_drop_analysis"] == true
        })
        .unwrap_or_else(|| panic!("no completion case {name}"))
}

fn golden_system(case: &Value) -> SystemContent {
    let conversation: Conversation = serde_json::from_value(case["conversation"].clone()).unwrap();
    match &conversation.messages[0].content[0] {
        Content::SystemContent(system) => system.clone(),
        other => panic!("not system content: {other:?}"),
    }
}

#[test]
fn builtin_namespaces_are_the_librarys_byte_for_byte() {
    let golden = golden_system(&render_case("system_python_then_browser"));
    let tools = golden.tools.expect("golden has tools");
    assert_eq!(tools["browser"], ToolNamespaceConfig::browser());
    assert_eq!(tools["python"], ToolNamespaceConfig::python());
    // Same JSON, key order included (the renderer writes schema keys in order).
    assert_eq!(
        serde_json::to_string(&tools["browser"]).unwrap(),
        serde_json::to_string(&ToolNamespaceConfig::browser()).unwrap()
    );
}

/// Rebuilds the golden conversation with the system message made by our builders and checks
/// the ids are the library's.
fn renders_like_the_library(name: &str, build: impl Fn(SystemContent) -> SystemContent) {
    let case = render_case(name);
    let mut conversation: Conversation =
        serde_json::from_value(case["conversation"].clone()).unwrap();
    let mut system = golden_system(&case);
    system.tools = None;
    conversation.messages[0] = Message::system(build(system));
    let ids = render_for_completion(&conversation, &o200k(), &RenderOptions::default()).unwrap();
    let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
    assert_eq!(ids, want, "{name}");
}

#[test]
fn system_messages_with_builtin_tools_render_like_the_library() {
    renders_like_the_library("system_browser_tool", SystemContent::with_browser_tool);
    renders_like_the_library("system_python_tool", SystemContent::with_python_tool);
    renders_like_the_library("system_python_then_browser", |s| {
        s.with_python_tool().with_browser_tool()
    });
    renders_like_the_library("system_both_tools_mcp_functions", |s| {
        s.with_browser_tool().with_python_tool()
    });
}

/// The last message our parser finds in a named parse golden: (recipient, channel,
/// content type, text).
fn last_call(name: &str) -> (Option<String>, Option<String>, Option<String>, String) {
    let path = format!("{FIXTURES}/o200k_harmony/harmony_parse_cases.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let case: Value = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|case| case["name"] == name)
        .unwrap_or_else(|| panic!("no parse case {name}"));
    let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
    let mut parser = StreamParser::new(o200k(), Some(Role::Assistant));
    for id in ids {
        parser.push(id);
    }
    parser.finish();
    let m = parser.messages().last().expect("a message").clone();
    let text = m.text();
    (m.recipient, m.channel, m.content_type, text)
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

#[test]
fn calls_parse_with_recipient_channel_and_content_type_wherever_the_header_puts_them() {
    // Recipient after the channel, on analysis (how gpt-oss calls python).
    assert_eq!(
        last_call("python_call_analysis_code"),
        (
            some("python"),
            some("analysis"),
            some("code"),
            "print(6 * 7)".into()
        )
    );
    // Recipient in the role part, before the channel, on analysis.
    assert_eq!(
        last_call("python_call_recipient_first_analysis"),
        (
            some("python"),
            some("analysis"),
            some("code"),
            "print(1)".into()
        )
    );
    // A function on analysis with <|constrain|>.
    assert_eq!(
        last_call("function_call_on_analysis_constrain"),
        (
            some("functions.time__get_current_time"),
            some("analysis"),
            some("<|constrain|>json"),
            "{\"timezone\":\"UTC\"}".into()
        )
    );
    // Recipient first on commentary, plain content type.
    assert_eq!(
        last_call("browser_open_recipient_first_commentary"),
        (
            some("browser.open"),
            some("commentary"),
            some("code"),
            "{\"id\": 3}".into()
        )
    );
    // Recipient after the channel on commentary, <|constrain|>json.
    assert_eq!(
        last_call("tool_call_channel_first").0,
        some("functions.get_current_weather")
    );
}
