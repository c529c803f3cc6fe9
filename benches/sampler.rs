//! Drawing one token from gpt-oss's 201,088 logits: host work on every decode step, which on a
//! GPU must stay well under the step itself. Run: `cargo bench --bench sampler`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ossterm::engine::SamplingParams;
use ossterm::engine::sampler::Sampler;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn logits() -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(5);
    (0..201_088)
        .map(|_| 12.0 * rng.random::<f32>().powi(6) - 4.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let logits = logits();
    for (name, top_k, top_p) in [
        ("defaults (top_p 1)", 0, 1.0),
        ("top_p 0.9", 0, 0.9),
        ("top_k 40 top_p 0.95", 40, 0.95),
    ] {
        let mut sampler = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k,
            top_p,
            ..SamplingParams::default()
        });
        c.bench_function(&format!("sample 201k logits, {name}"), |b| {
            b.iter(|| sampler.sample_slice(black_box(&logits)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
