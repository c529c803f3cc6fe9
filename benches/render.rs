//! Rendering a long conversation (~30k tokens) for completion: the work the engine does on
//! every submit before prefix reuse. Run: `cargo bench --bench render`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ossterm::harmony::{
    Conversation, DeveloperContent, Message, RenderOptions, SystemContent, Tokenizer,
    ToolDescription, render_for_completion,
};

fn long_conversation() -> Conversation {
    let mut messages = vec![
        Message::system(SystemContent::new().with_conversation_start_date("2026-11-27")),
        Message::developer(
            DeveloperContent::new()
                .with_instructions("Answer briefly; show code when useful.")
                .with_function_tools(vec![ToolDescription::new(
                    "get_current_weather",
                    "Gets the current weather in the provided location.",
                    Some(serde_json::json!({
                        "type": "object",
                        "properties": {"location": {"type": "string"}},
                        "required": ["location"]
                    })),
                )]),
        ),
    ];
    let paragraph = "The quantized experts are repacked into blocks of thirty-two weights; \
        each block keeps one scale, so a group of sixty-four becomes two blocks. Attention \
        stays in sixteen-bit floats, and the cache grows with the tokens actually used. \
        Café, naïve, 東京, 😀 — and some code: fn main() { println!(\"{}\", 2 + 2); }\n";
    for turn in 0..90 {
        messages.push(Message::user(format!(
            "Question {turn}: {}",
            &paragraph[..120]
        )));
        messages.push(Message::assistant("analysis", paragraph.repeat(2)));
        messages.push(Message::assistant("final", paragraph.repeat(2)));
    }
    messages.push(Message::user("And finally?"));
    Conversation::from_messages(messages)
}

fn bench_render(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/o200k_harmony/tokenizer.json"
    );
    let tokenizer = Tokenizer::from_file(Path::new(path)).expect("the o200k fixture tokenizer");
    let conversation = long_conversation();
    let options = RenderOptions {
        auto_drop_analysis: false,
    };
    let ids = render_for_completion(&conversation, &tokenizer, &options).expect("renders");
    eprintln!("conversation renders to {} tokens", ids.len());
    c.bench_function("render_for_completion_long_conversation", |b| {
        b.iter(|| render_for_completion(black_box(&conversation), &tokenizer, &options))
    });
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
