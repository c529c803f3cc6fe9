//! Cost per token of structured outputs on gpt-oss's 201,088-token vocabulary (o200k_harmony):
//! one draw without a grammar against one draw under a JSON schema (llguidance's mask, applied
//! in place, the draw, and the grammar's advance). Both read the logits into a reused row
//! first, as the engine does from the model's output. Run: `cargo bench --bench grammar`;
//! both figures come from the same run, so compare them as a ratio on a busy machine.
//!
//! Profiled with `perf` (2026-12-03): llguidance's mask (`TokTrie::add_bias_inner`) is about
//! a fifth of a constrained step, applying it to the row a tenth; the rest was weighing all
//! 201k logits in the sampler, which `Sampler::sample_masked_slice` now skips when the mask
//! leaves few tokens (a key, a digit, a bracket). The matcher is built once per message.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ossterm::engine::SamplingParams;
use ossterm::engine::sampler::Sampler;
use ossterm::harmony::Tokenizer;
use ossterm::structured::{GrammarVocab, HarmonyConstraint, Phase, ResponseFormat, TurnConstraint};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// gpt-oss-20b's logits row.
const VOCAB: usize = 201_088;

fn logits(seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..VOCAB)
        .map(|_| 12.0 * rng.random::<f32>().powi(6) - 4.0)
        .collect()
}

/// A form-like answer: strings, bounded numbers, an enum array, a nested object.
fn constraint() -> TurnConstraint {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"enum": ["admin", "user", "guest"]}, "maxItems": 3},
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 30}, "zip": {"type": "string", "maxLength": 10}},
                "required": ["city"],
                "additionalProperties": false
            }
        },
        "required": ["name", "age"],
        "additionalProperties": false
    });
    TurnConstraint::from_response_format(ResponseFormat::JsonSchema {
        schema,
        source_name: "bench".into(),
    })
    .expect("supported schema")
}

fn bench(c: &mut Criterion) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/o200k_harmony/tokenizer.json");
    let tokenizer = Arc::new(Tokenizer::from_file(&path).expect("o200k tokenizer"));
    let started = Instant::now();
    let vocab = GrammarVocab::new(&tokenizer, VOCAB).expect("vocab");
    eprintln!(
        "grammar vocabulary ({VOCAB} tokens) built in {:.0} ms (once per model)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let constraint = constraint();
    let prompt = tokenizer
        .encode_with_specials("<|start|>assistant<|channel|>final<|message|>")
        .expect("prompt");
    let fresh_gate = || {
        let mut gate =
            HarmonyConstraint::new(Arc::clone(&vocab), Arc::clone(&tokenizer), &constraint)
                .expect("constraint");
        gate.observe_prompt(&prompt).expect("prompt");
        gate
    };
    // A few rows, so that the draws (and the grammar's path) vary.
    let rows: Vec<Vec<f32>> = (0..8).map(logits).collect();
    let mut row = vec![0.0f32; VOCAB];
    let params = SamplingParams {
        temperature: 1.0,
        ..SamplingParams::default()
    };

    let mut sampler = Sampler::new(params);
    let mut step = 0usize;
    c.bench_function("token without grammar (201k vocab)", |b| {
        b.iter(|| {
            step += 1;
            row.copy_from_slice(&rows[step % rows.len()]);
            black_box(sampler.sample_slice(black_box(&row)).expect("sample"))
        })
    });

    let mut sampler = Sampler::new(params);
    let mut gate = fresh_gate();
    let mut answers = 0usize;
    c.bench_function("token under a JSON schema (201k vocab)", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                if gate.phase() == Phase::Free {
                    // The answer ended: a new one starts (not timed).
                    gate = fresh_gate();
                    answers += 1;
                }
                step += 1;
                let started = Instant::now();
                row.copy_from_slice(&rows[step % rows.len()]);
                let token = sampler
                    .sample_masked_slice(&mut row, |r| gate.mask_logits(r))
                    .expect("sample");
                gate.accept(token).expect("accept");
                spent += started.elapsed();
            }
            spent
        })
    });
    eprintln!("{answers} complete answers written under the schema");
}

criterion_group!(benches, bench);
criterion_main!(benches);
