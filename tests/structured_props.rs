//! The acceptance property of structured outputs: for 100 seeded random JSON schemas
//! (objects with optional fields, arrays, enums, bounded numbers, nesting), the tiny fixture
//! model, whose random weights would never write JSON on its own, writes a final answer that
//! parses and validates, every time, and ends it with `<|return|>`.
//!
//! The schema generator and the validator here are independent of llguidance: they only know
//! the JSON Schema subset they produce.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use ossterm::engine::SamplingParams;
use ossterm::engine::sampler::Sampler;
use ossterm::harmony::Tokenizer;
use ossterm::model::{GptOss, Logits, Precision};
use ossterm::structured::{GrammarVocab, HarmonyConstraint, ResponseFormat, TurnConstraint};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

mod common;
use common::schema_check::violation;

const SCHEMAS: u64 = 100;
/// Generous for the schemas below (they bound every string, array and object): the longest
/// answer in this seed's run is far shorter.
const MAX_ANSWER_TOKENS: usize = 400;

/// A random schema no deeper than `depth` more levels.
fn schema(rng: &mut StdRng, depth: u32) -> Value {
    let kinds = if depth == 0 { 5 } else { 7 };
    match rng.random_range(0..kinds) {
        0 => {
            let minimum = rng.random_range(-1000i64..1000);
            let maximum = minimum + rng.random_range(0i64..2000);
            json!({"type": "integer", "minimum": minimum, "maximum": maximum})
        }
        1 => {
            // JSON Schema cannot bound a fraction's digits; `multipleOf` leaves only zeros to
            // run on with once a multiple is written.
            let minimum = f64::from(rng.random_range(-400i32..400)) / 4.0;
            let maximum = minimum + f64::from(rng.random_range(1i32..400)) / 8.0;
            let multiple_of = [0.5, 0.25, 0.1][rng.random_range(0..3)];
            json!({"type": "number", "minimum": minimum, "maximum": maximum, "multipleOf": multiple_of})
        }
        2 => {
            let max_length = rng.random_range(0u64..8);
            let min_length = rng.random_range(0..=max_length.min(2));
            json!({"type": "string", "minLength": min_length, "maxLength": max_length})
        }
        3 => json!({"type": "boolean"}),
        4 => {
            let pool = [
                json!("red"),
                json!("green"),
                json!(7),
                json!(null),
                json!("a b"),
                json!(true),
            ];
            let count = rng.random_range(1..=4);
            let values: Vec<Value> = (0..count)
                .map(|_| pool[rng.random_range(0..pool.len())].clone())
                .fold(Vec::new(), |mut kept, value| {
                    if !kept.contains(&value) {
                        kept.push(value);
                    }
                    kept
                });
            json!({"enum": values})
        }
        5 => {
            let max_items = rng.random_range(1u64..4);
            let min_items = rng.random_range(0..=max_items.min(1));
            json!({
                "type": "array",
                "items": schema(rng, depth - 1),
                "minItems": min_items,
                "maxItems": max_items
            })
        }
        _ => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for index in 0..rng.random_range(1..4) {
                let name = format!(
                    "{}{index}",
                    ["id", "name", "tags", "x"][rng.random_range(0..4)]
                );
                properties.insert(name.clone(), schema(rng, depth - 1));
                if rng.random_bool(0.6) {
                    required.push(Value::String(name));
                }
            }
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false
            })
        }
    }
}

#[test]
fn the_validator_catches_what_it_should() {
    let object = json!({
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 3}, "b": {"enum": ["x"]}},
        "required": ["a"],
        "additionalProperties": false
    });
    assert_eq!(violation(&object, &json!({"a": 2})), None);
    assert_eq!(violation(&object, &json!({"a": 2, "b": "x"})), None);
    for bad in [
        json!({"b": "x"}),
        json!({"a": 4}),
        json!({"a": 1.5}),
        json!({"a": 1, "c": 0}),
        json!({"a": 1, "b": "y"}),
        json!([]),
    ] {
        assert!(violation(&object, &bad).is_some(), "{bad}");
    }
    let number = json!({"type": "number", "minimum": -1, "maximum": 1, "multipleOf": 0.25});
    assert_eq!(violation(&number, &json!(-0.75)), None);
    for bad in [json!(0.3), json!(1.25), json!("0")] {
        assert!(violation(&number, &bad).is_some(), "{bad}");
    }
    let array = json!({"type": "array", "items": {"type": "string", "maxLength": 2}, "minItems": 1, "maxItems": 2});
    assert_eq!(violation(&array, &json!(["ab"])), None);
    for bad in [
        json!([]),
        json!(["a", "b", "c"]),
        json!(["abc"]),
        json!([1]),
    ] {
        assert!(violation(&array, &bad).is_some(), "{bad}");
    }
}

#[test]
fn the_tiny_random_model_writes_valid_json_for_100_random_schemas() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-bf16");
    let model = GptOss::load(&dir, &Device::Cpu, Precision::F32).expect("tiny model");
    let tokenizer = Arc::new(Tokenizer::from_file(&dir.join("tokenizer.json")).expect("tokenizer"));
    let vocab = GrammarVocab::new(&tokenizer, model.config().vocab_size).expect("vocab");
    let return_ = tokenizer.specials().return_;
    let prompt = tokenizer
        .encode_with_specials(
            "<|start|>user<|message|>Answer in JSON.<|end|><|start|>assistant<|channel|>final<|message|>",
        )
        .expect("prompt");
    // Left to itself the model writes no JSON: what follows is the mask's doing.
    let mut free = Sampler::new(SamplingParams::default());
    let mut cache = model.new_cache(prompt.len() + 41).expect("cache");
    let mut logits = model
        .forward(&prompt, &mut cache, Logits::Last)
        .expect("prefill");
    let mut unconstrained = Vec::new();
    for _ in 0..40 {
        let token = free.sample(&logits).expect("sample");
        unconstrained.push(token);
        logits = model
            .forward(&[token], &mut cache, Logits::Last)
            .expect("decode");
    }
    let text = tokenizer.decode(&unconstrained);
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    let mut rng = StdRng::seed_from_u64(16);
    let mut longest = 0;
    for case in 0..SCHEMAS {
        let schema = schema(&mut rng, 2);
        let constraint = TurnConstraint::from_response_format(ResponseFormat::JsonSchema {
            schema: schema.clone(),
            source_name: format!("case {case}"),
        })
        .unwrap_or_else(|e| panic!("case {case}: {e}"));
        let mut gate =
            HarmonyConstraint::new(Arc::clone(&vocab), Arc::clone(&tokenizer), &constraint)
                .expect("constraint");
        gate.observe_prompt(&prompt).expect("prompt");
        // Temperature 1 over the model's own (random) preferences: nothing helps it but the mask.
        let mut sampler = Sampler::new(SamplingParams {
            seed: case,
            ..SamplingParams::default()
        });
        let mut cache = model
            .new_cache(prompt.len() + MAX_ANSWER_TOKENS + 1)
            .expect("cache");
        let mut logits = model
            .forward(&prompt, &mut cache, Logits::Last)
            .expect("prefill");
        let mut answer = Vec::new();
        let ended = loop {
            let token = sampler
                .sample_masked(&logits, |row| gate.mask_logits(row))
                .unwrap_or_else(|e| panic!("case {case}: {e}"));
            gate.accept(token)
                .unwrap_or_else(|e| panic!("case {case}: {e}"));
            if token == return_ {
                break true;
            }
            answer.push(token);
            if answer.len() == MAX_ANSWER_TOKENS {
                break false;
            }
            logits = model
                .forward(&[token], &mut cache, Logits::Last)
                .expect("decode");
        };
        let text = tokenizer.decode(&answer);
        assert!(
            ended,
            "case {case}: no end within {MAX_ANSWER_TOKENS} tokens: {text}"
        );
        longest = longest.max(answer.len());
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("case {case}: {text:?} does not parse ({e}) for {schema}"));
        if let Some(why) = violation(&schema, &value) {
            panic!("case {case}: {why}");
        }
    }
    assert!(
        longest < MAX_ANSWER_TOKENS / 2,
        "longest answer {longest} tokens"
    );
}
