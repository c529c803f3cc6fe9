//! One expert's Q4_0 matvec at gpt-oss-20b's real shapes (gate_up [5760, 2880], down [2880,
//! 2880]) with f32 activations (the default, exact) and with 8-bit activations (`--kernels
//! q8`, integer dot products), in the same run. "from memory": each iteration reads another of
//! enough distinct matrices that the weights come from memory, as they do in decode; "cached":
//! the same matrix again (the kernel's compute rate). Throughput is weight bytes read per
//! second. Then one layer's whole MoE for one decode token (32 experts of the real shape, top
//! 4, routed by random activations so the experts come from memory): `Moe::forward` (the
//! fused decode path: two parallel regions) against the per-expert matvecs the grouped path
//! ran (eight regions, `x` quantized per call; its small candle ops not counted), each with f32
//! and 8-bit activations. Run: `cargo bench --bench q4_matvec`.

use std::hint::black_box;

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ossterm::model::moe::{Expert, ExpertLinear, Experts, Moe, route};
use ossterm::model::quant::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_LEN, Q4Activations, q4_0_matmul_with};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Distinct matrices cycled through: at least this many bytes, far more than any L3.
const WORKING_SET_BYTES: usize = 512 << 20;

/// Q4_0 bytes of `count` random [rows, cols] matrices with small f16 scales.
fn random_matrices(rng: &mut StdRng, count: usize, rows: usize, cols: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let mut bytes = vec![0u8; rows * cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES];
            rng.fill(&mut bytes[..]);
            for block in bytes.chunks_exact_mut(Q4_0_BLOCK_BYTES) {
                let scale = half::f16::from_f32(rng.random_range(0.001f32..0.05));
                block[..2].copy_from_slice(&scale.to_le_bytes());
            }
            bytes
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(9);
    for (name, rows, cols) in [("gate_up", 5760, 2880), ("down", 2880, 2880)] {
        let matrix_bytes = rows * cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES;
        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-2f32..2.0)).collect();
        for (place, count) in [
            ("from memory", WORKING_SET_BYTES.div_ceil(matrix_bytes)),
            ("cached", 1),
        ] {
            let matrices = random_matrices(&mut rng, count, rows, cols);
            let mut group = c.benchmark_group(format!(
                "expert matvec {name} [{rows}, {cols}] Q4_0, {place}"
            ));
            group.throughput(Throughput::Bytes(matrix_bytes as u64));
            group.sample_size(30);
            for (label, activations) in [
                ("f32 activations (default)", Q4Activations::F32),
                ("8-bit activations (q8)", Q4Activations::Q8),
            ] {
                let mut next = 0;
                group.bench_function(label, |b| {
                    b.iter(|| {
                        next = (next + 1) % matrices.len();
                        q4_0_matmul_with(
                            black_box(&matrices[next]),
                            rows,
                            cols,
                            black_box(&x),
                            1,
                            activations,
                        )
                    })
                });
            }
            group.finish();
        }
    }
}

/// gpt-oss-20b's MoE shape: experts, top-k, hidden, intermediate.
const EXPERTS: usize = 32;
const TOP_K: usize = 4;
const HIDDEN: usize = 2880;
const INTER: usize = 2880;

fn random_tensor(rng: &mut StdRng, shape: &[usize], amplitude: f32) -> Tensor {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-amplitude..amplitude))
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor")
}

/// One layer of Q4_0 CPU experts on `activations`, random weights.
fn real_shape_moe(rng: &mut StdRng, activations: Q4Activations) -> Moe {
    let mut linear = |rows, cols| ExpertLinear::Q4Cpu {
        bytes: random_matrices(rng, 1, rows, cols).remove(0),
        rows,
        cols,
        activations,
    };
    let experts = (0..EXPERTS)
        .map(|_| (linear(2 * INTER, HIDDEN), linear(HIDDEN, INTER)))
        .collect::<Vec<_>>();
    Moe {
        router_weight: random_tensor(rng, &[EXPERTS, HIDDEN], 0.05),
        router_bias: random_tensor(rng, &[EXPERTS], 0.1),
        experts: Experts::PerExpert(
            experts
                .into_iter()
                .map(|(gate_up, down)| Expert {
                    gate_up,
                    gate_up_bias: random_tensor(rng, &[2 * INTER], 0.1),
                    down,
                    down_bias: random_tensor(rng, &[HIDDEN], 0.1),
                })
                .collect(),
        ),
        top_k: TOP_K,
        intermediate: INTER,
        alpha: 1.702,
        limit: 7.0,
    }
}

/// The matvecs the grouped path ran for one token: per chosen expert gate_up, then down on
/// its (here unactivated) half, each its own parallel region.
fn per_expert_matvecs(moe: &Moe, x: &[f32], activations: Q4Activations) -> f32 {
    let Experts::PerExpert(experts) = &moe.experts else {
        unreachable!("built per expert")
    };
    let logits: Vec<f32> = (0..EXPERTS).map(|e| x[e]).collect();
    let mut total = 0f32;
    for (e, _) in route(&logits, TOP_K) {
        let (ExpertLinear::Q4Cpu { bytes: gu, .. }, ExpertLinear::Q4Cpu { bytes: d, .. }) =
            (&experts[e].gate_up, &experts[e].down)
        else {
            unreachable!("Q4_0 experts")
        };
        let gate_up = q4_0_matmul_with(gu, 2 * INTER, HIDDEN, x, 1, activations);
        let down = q4_0_matmul_with(d, HIDDEN, INTER, &gate_up[..INTER], 1, activations);
        total += down[0];
    }
    total
}

fn bench_moe(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(10);
    let chosen_bytes = TOP_K * 3 * HIDDEN * INTER / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES;
    let mut group = c.benchmark_group(format!(
        "MoE decode, one layer [{EXPERTS} experts, top {TOP_K}], Q4_0 from memory"
    ));
    group.throughput(Throughput::Bytes(chosen_bytes as u64));
    group.sample_size(20);
    for (label, activations) in [
        ("f32 activations (exact)", Q4Activations::F32),
        ("8-bit activations (default)", Q4Activations::Q8),
    ] {
        let moe = real_shape_moe(&mut rng, activations);
        let tokens: Vec<Tensor> = (0..64)
            .map(|_| random_tensor(&mut rng, &[1, HIDDEN], 2.0))
            .collect();
        let mut next = 0;
        group.bench_function(format!("fused (two regions), {label}"), |b| {
            b.iter(|| {
                next = (next + 1) % tokens.len();
                moe.forward(black_box(&tokens[next]), &tokens[next])
                    .expect("forward")
            })
        });
        let hosts: Vec<Vec<f32>> = tokens
            .iter()
            .map(|t| t.flatten_all().and_then(|t| t.to_vec1()).expect("host"))
            .collect();
        group.bench_function(
            format!("per-expert matvecs (eight regions), {label}"),
            |b| {
                b.iter(|| {
                    next = (next + 1) % hosts.len();
                    per_expert_matvecs(&moe, black_box(&hosts[next]), activations)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench, bench_moe);
criterion_main!(benches);
