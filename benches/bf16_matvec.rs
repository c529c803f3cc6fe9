//! Decode's dense matvec (attention projections, lm_head) at gpt-oss-20b's shapes: q [4096,
//! 2880] and o [2880, 4096], through `Linear::forward` on one token, each iteration another of
//! enough distinct matrices that the weights come from memory, as they do in decode: bf16
//! (the default) and 8-bit (`--dtype q8-dense`, where the CPU has AVX-512 VNNI). Throughput
//! is weight bytes read per second; the 8-bit matrices are 0.5625 of bf16's bytes. Run:
//! `cargo bench --bench bf16_matvec`.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ossterm::model::linear::Linear;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Distinct matrices cycled through: at least this many bytes, far more than any L3.
const WORKING_SET_BYTES: usize = 512 << 20;

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(14);
    for (name, rows, cols) in [("q_proj", 4096, 2880), ("o_proj", 2880, 4096)] {
        let count = WORKING_SET_BYTES.div_ceil(rows * cols * 2);
        let linears: Vec<Linear> = (0..count)
            .map(|_| {
                // Values that bf16 holds exactly, so the weight stays bf16 on the CPU.
                let values = (0..rows * cols)
                    .map(|_| half::bf16::from_f32(rng.random_range(-0.05f32..0.05)).to_f32())
                    .collect();
                Linear::new(values, rows, cols, DType::F32, &Device::Cpu, true)
                    .expect("a bf16 weight")
            })
            .collect();
        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-2f32..2.0)).collect();
        let x = Tensor::from_vec(x, (1, cols), &Device::Cpu).expect("x");
        let title = format!("{name} [{rows}, {cols}], from memory");
        bench_linears(c, &format!("bf16 matvec {title}"), &linears, &x);
        if ossterm::model::q8_0_x16::Q8_0x16::supported() {
            let linears: Vec<Linear> = linears.into_iter().map(Linear::into_q8).collect();
            bench_linears(c, &format!("8-bit matvec {title}"), &linears, &x);
        }
    }
}

/// One token through each of `linears` in turn; throughput in the first one's bytes.
fn bench_linears(c: &mut Criterion, title: &str, linears: &[Linear], x: &Tensor) {
    let mut group = c.benchmark_group(title);
    group.throughput(Throughput::Bytes(linears[0].bytes()));
    group.sample_size(30);
    let mut next = 0;
    group.bench_function("Linear::forward, 1 token", |b| {
        b.iter(|| {
            next = (next + 1) % linears.len();
            black_box(&linears[next])
                .forward(black_box(x))
                .expect("forward")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
