//! Streaming cost vs answer length: one token appended plus one frame drawn (160x48), with the
//! answer already 1k, 16k and 128k characters long. Finished blocks are rendered and wrapped
//! once and cached, so the cost per frame should stay flat as the answer grows.
//!
//! Run: `cargo bench --bench tui_streaming` (or add `--profile dev` to skip a release build of
//! the dependencies; they are at opt-level 3 in dev too).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ossterm::engine::Event;
use ossterm::engine::protocol::{ModelInfo, SamplingParams};
use ossterm::harmony::ReasoningEffort;
use ossterm::tui::app::{App, AppOptions, Input};
use ossterm::tui::keys::KeyMap;
use ossterm::tui::theme::Theme;
use ossterm::tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// A paragraph, a list and a code block: about 400 characters of typical answer.
const CHUNK: &str = "Here is a paragraph with **bold**, *emphasis* and `code` that goes on for a while so it wraps.\n\n- first point\n- second point\n\n```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```\n\n";

fn token(app: &mut App, delta: &str) {
    app.update(Input::Engine(Event::Token {
        token_id: 0,
        channel: Some("final".into()),
        recipient: None,
        delta: delta.into(),
    }));
}

fn streaming_app(answer_chars: usize) -> App {
    let mut app = App::new(AppOptions {
        theme: Theme::default(),
        keymap: KeyMap::default(),
        effort: ReasoningEffort::Medium,
        developer_instructions: String::new(),
        chat_id: "bench".into(),
        sampling: SamplingParams::default(),
        today: "2026-11-27".into(),
    });
    app.update(Input::Engine(Event::Ready(ModelInfo {
        name: "bench".into(),
        device: "cpu".into(),
        context_limit: 131_072,
        max_context: 131_072,
    })));
    app.update(Input::Key(KeyEvent::new(
        KeyCode::Char('q'),
        KeyModifiers::NONE,
    )));
    app.update(Input::Key(KeyEvent::new(
        KeyCode::Enter,
        KeyModifiers::NONE,
    )));
    let mut written = 0;
    while written < answer_chars {
        token(&mut app, CHUNK);
        written += CHUNK.len();
    }
    token(&mut app, "The streaming paragraph");
    app
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_plus_frame");
    for chars in [1_000, 16_000, 128_000] {
        let mut app = streaming_app(chars);
        let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
        terminal.draw(|f| ui::draw(f, &app)).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(chars), &chars, |b, _| {
            b.iter(|| {
                token(&mut app, " word");
                terminal.draw(|f| ui::draw(f, &app)).unwrap();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
