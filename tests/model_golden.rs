//! The engine against the reference fixtures (transformers, f32 math on the stored weights).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use ossterm::model::{GptOss, Logits, Precision};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name)
}

struct Prompt {
    name: String,
    ids: Vec<u32>,
    greedy: Vec<u32>,
    margin: Vec<f64>,
    nll_mean: f64,
    logits: Tensor,
}

fn prompts(dir: &str) -> Vec<Prompt> {
    let dir = fixture(dir);
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("golden.json")).expect("golden.json"),
    )
    .expect("golden.json parses");
    let tensors = candle_core::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu)
        .expect("golden.safetensors");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    json.as_object()
        .expect("object")
        .iter()
        .map(|(name, p)| Prompt {
            name: name.clone(),
            ids: ids(&p["ids"]),
            greedy: ids(&p["greedy"]),
            margin: p["greedy_margin"]
                .as_array()
                .expect("margins")
                .iter()
                .map(|x| x.as_f64().expect("margin"))
                .collect(),
            nll_mean: p["nll_mean"].as_f64().expect("nll"),
            logits: tensors[&format!("{name}.logits")].clone(),
        })
        .collect()
}

fn nll_mean(logits: &Tensor, ids: &[u32]) -> f64 {
    let logp = candle_nn::ops::log_softmax(logits, 1)
        .and_then(|t| t.to_vec2::<f32>())
        .expect("log softmax");
    let total: f64 = (1..ids.len())
        .map(|t| -(logp[t - 1][ids[t] as usize] as f64))
        .sum();
    total / (ids.len() - 1) as f64
}

fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .expect("non-empty row")
}

/// Greedy decoding with the KV cache, one token per step.
fn greedy(model: &GptOss, ids: &[u32], steps: usize) -> Vec<u32> {
    let mut cache = model.new_cache(ids.len() + steps + 1).expect("cache");
    let mut logits = model
        .forward(ids, &mut cache, Logits::Last)
        .expect("prefill");
    let mut out = Vec::new();
    for _ in 0..steps {
        let row = logits
            .squeeze(0)
            .and_then(|t| t.to_vec1::<f32>())
            .expect("row");
        let next = argmax(&row);
        out.push(next);
        logits = model
            .forward(&[next], &mut cache, Logits::Last)
            .expect("decode");
    }
    out
}

fn check_f32(dir: &str) {
    let model = GptOss::load(&fixture(dir), &Device::Cpu, Precision::F32).expect("loads");
    for p in prompts(dir) {
        let mut cache = model.new_cache(p.ids.len()).expect("cache");
        let logits = model
            .forward(&p.ids, &mut cache, Logits::All)
            .expect("forward");
        let diff = (&logits - &p.logits)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert!(diff <= 0.1, "{dir}/{}: max |diff| {diff}", p.name);
        let got = greedy(&model, &p.ids, p.greedy.len());
        let comparable = p
            .margin
            .iter()
            .position(|&m| m < 0.1)
            .unwrap_or(p.greedy.len());
        assert_eq!(
            got[..comparable],
            p.greedy[..comparable],
            "{dir}/{}: greedy tokens (comparable up to step {comparable})",
            p.name
        );
        let nll = nll_mean(&logits, &p.ids);
        assert!(
            (nll - p.nll_mean).abs() < 1e-2,
            "{dir}/{}: nll {nll} vs {}",
            p.name,
            p.nll_mean
        );
    }
}

fn check_default(dir: &str) {
    let model = GptOss::load(&fixture(dir), &Device::Cpu, Precision::Default).expect("loads");
    for p in prompts(dir) {
        let mut cache = model.new_cache(p.ids.len()).expect("cache");
        let logits = model
            .forward(&p.ids, &mut cache, Logits::All)
            .expect("forward");
        let mean = (&logits - &p.logits)
            .and_then(|d| d.abs())
            .and_then(|d| d.mean_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert!(mean <= 0.25, "{dir}/{}: mean |diff| {mean}", p.name);
        let ours = logits.to_vec2::<f32>().expect("rows");
        let theirs = p.logits.to_vec2::<f32>().expect("rows");
        let agree = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| argmax(a) == argmax(b))
            .count();
        assert!(
            agree as f64 >= 0.9 * ours.len() as f64,
            "{dir}/{}: argmax agrees at {agree}/{}",
            p.name,
            ours.len()
        );
        let nll = nll_mean(&logits, &p.ids);
        assert!(
            (nll - p.nll_mean).abs() <= 0.03 * p.nll_mean,
            "{dir}/{}: nll {nll} vs {}",
            p.name,
            p.nll_mean
        );
    }
}

#[test]
fn bf16_fixture_matches_the_reference_in_f32() {
    check_f32("tiny-a-bf16");
}

#[test]
fn int4_fixture_matches_the_reference_in_f32() {
    check_f32("tiny-a-int4");
}

#[test]
fn bf16_fixture_is_close_in_default_mode() {
    check_default("tiny-a-bf16");
}

#[test]
fn int4_fixture_is_close_in_default_mode() {
    check_default("tiny-a-int4");
}
