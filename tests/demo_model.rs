//! The shipped demo model (`assets/demo`) through ossterm's engine, against transformers.
//!
//! `tests/data/demo_golden.json` is written by `scripts/demo/check.py --write-golden`: for a few
//! conversations, the prompt ids rendered as ossterm renders them, transformers' greedy answer
//! (f32 math on the bf16 weights) with the top-two margin at each step, and the last prompt
//! position's logits.

use std::path::PathBuf;

use candle_core::Device;
use ossterm::model::{GptOss, Logits, Precision};
use serde_json::Value;
use tokenizers::Tokenizer;

const SPECIALS: [&str; 9] = [
    "<|startoftext|>",
    "<|endoftext|>",
    "<|return|>",
    "<|constrain|>",
    "<|channel|>",
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|call|>",
];

const CASES: [&str; 4] = ["kv_cache", "rust_code", "three_turns", "unknown"];

fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo")
}

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/demo_golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("demo_golden.json"))
        .expect("demo_golden.json parses")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(demo_dir().join("tokenizer.json")).expect("demo tokenizer loads")
}

fn special(tok: &Tokenizer, name: &str) -> u32 {
    tok.token_to_id(name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .expect("non-empty row")
}

/// Greedy decoding with the KV cache until a stop id or `max_new` tokens.
fn greedy(model: &GptOss, prompt: &[u32], stop: &[u32], max_new: usize) -> Vec<u32> {
    let mut cache = model.new_cache(prompt.len() + max_new + 1).expect("cache");
    let mut logits = model
        .forward(prompt, &mut cache, Logits::Last)
        .expect("prefill");
    let mut out = Vec::new();
    for _ in 0..max_new {
        let row = logits
            .squeeze(0)
            .and_then(|t| t.to_vec1::<f32>())
            .expect("row");
        let next = argmax(&row);
        out.push(next);
        if stop.contains(&next) {
            break;
        }
        logits = model
            .forward(&[next], &mut cache, Logits::Last)
            .expect("decode");
    }
    out
}

/// (analysis, final) when `out` is exactly analysis -> final -> `<|return|>` with no stray specials.
fn parse_answer(tok: &Tokenizer, out: &[u32]) -> Option<(String, String)> {
    let sp = |name| special(tok, name);
    let specials: Vec<u32> = SPECIALS.iter().map(|s| sp(s)).collect();
    let text = |span: &[u32]| -> Option<String> {
        if span.iter().any(|id| specials.contains(id)) {
            return None;
        }
        tok.decode(span, false).ok()
    };
    let find = |id: u32, from: usize| out[from..].iter().position(|&x| x == id).map(|p| p + from);
    if out.first() != Some(&sp("<|channel|>")) || out.last() != Some(&sp("<|return|>")) {
        return None;
    }
    let m1 = find(sp("<|message|>"), 0)?;
    let e1 = find(sp("<|end|>"), m1)?;
    let c2 = find(sp("<|channel|>"), e1)?;
    let m2 = find(sp("<|message|>"), c2)?;
    let well_formed = text(&out[1..m1])? == "analysis"
        && out[e1 + 1] == sp("<|start|>")
        && text(&out[e1 + 2..c2])? == "assistant"
        && text(&out[c2 + 1..m2])? == "final";
    let analysis = text(&out[m1 + 1..e1])?;
    let answer = text(&out[m2 + 1..out.len() - 1])?;
    (well_formed && !analysis.is_empty() && !answer.is_empty()).then_some((analysis, answer))
}

#[test]
fn demo_tokenizer_carries_the_harmony_specials_and_config_stops_on_them() {
    let tok = tokenizer();
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(demo_dir().join("config.json")).expect("config.json"),
    )
    .expect("config.json parses");
    assert_eq!(
        config["vocab_size"].as_u64(),
        Some(tok.get_vocab_size(true) as u64)
    );
    let stops = ["<|return|>", "<|call|>", "<|endoftext|>"].map(|s| special(&tok, s));
    assert_eq!(ids(&config["eos_token_id"]), stops);
    for name in SPECIALS {
        let id = special(&tok, name);
        assert_eq!(tok.id_to_token(id).as_deref(), Some(name));
    }
}

#[test]
fn demo_assets_stay_small() {
    let total_bytes: u64 = std::fs::read_dir(demo_dir())
        .expect("assets/demo")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert!(
        total_bytes < 8 << 20,
        "assets/demo holds {total_bytes} bytes"
    );
}

#[test]
fn demo_model_matches_transformers_and_answers_in_harmony() {
    let golden = golden();
    let tok = tokenizer();
    let stops = ids(&golden["eos_ids"]);
    let model = GptOss::load(&demo_dir(), &Device::Cpu, Precision::Default).expect("demo loads");
    for case in CASES {
        let g = &golden[case];
        let prompt = ids(&g["ids"]);

        let mut cache = model.new_cache(prompt.len()).expect("cache");
        let last = model
            .forward(&prompt, &mut cache, Logits::Last)
            .and_then(|t| Ok(t.squeeze(0)?.to_vec1::<f32>()?))
            .expect("forward");
        let reference: Vec<f32> = g["last_logits"]
            .as_array()
            .expect("logits")
            .iter()
            .map(|x| x.as_f64().expect("logit") as f32)
            .collect();
        let diff = last
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff <= 0.02,
            "{case}: last-position logits max |diff| {diff}"
        );

        let expected = ids(&g["greedy"]);
        let got = greedy(&model, &prompt, &stops, expected.len());
        let comparable = g["greedy_margin"]
            .as_array()
            .expect("margins")
            .iter()
            .position(|m| m.as_f64().expect("margin") < 0.1)
            .unwrap_or(expected.len());
        assert_eq!(
            got[..comparable],
            expected[..comparable],
            "{case}: greedy answer (comparable up to step {comparable}): {:?}",
            tok.decode(&got, false)
        );
        let (analysis, answer) = parse_answer(&tok, &got).unwrap_or_else(|| {
            panic!(
                "{case}: not analysis -> final -> <|return|>: {:?}",
                tok.decode(&got, false)
            )
        });
        assert!(
            analysis.len() > 10 && answer.len() > 10,
            "{case}: {analysis:?} / {answer:?}"
        );
    }
}

#[test]
fn demo_answers_use_markdown_the_ui_renders() {
    let golden = golden();
    let rust = golden["rust_code"]["greedy_text"].as_str().expect("text");
    assert!(rust.contains("```rust\nfn reverse"), "{rust}");
    let table = golden["three_turns"]["greedy_text"].as_str().expect("text");
    assert!(table.contains("| Effort |"), "{table}");
}
