//! One expert's prefill GEMM at gpt-oss-20b's real shapes (gate_up [5760, 2880], down [2880,
//! 2880]) times 128 and 32 tokens: f32 activations (dequantized tiles through the `gemm`
//! crate; `--kernels exact` and `q8`), 8-bit activations on plain Q4_0 rows (`--kernels
//! q8-prefill`: integer register tiles, `src/model/q4_0_q8_gemm.rs`) and on the 16-row layout
//! (the default with AVX-512 VNNI, `src/model/q4_0_x16.rs`), in the same run. Throughput is 2 x
//! multiply-adds (FLOP) per second; the weights fit in cache and every token reuses them, so
//! this is the kernels' compute rate. Run: `cargo bench --bench q4_prefill`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ossterm::model::q4_0_x16::Q4_0x16;
use ossterm::model::quant::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_LEN, Q4Activations, q4_0_matmul_with};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Tokens one expert sees in a 512-token prefill on average is 512 x 4 / 32 = 64; 128 is a
/// popular expert's share.
const TOKENS: [usize; 2] = [128, 32];

/// Q4_0 bytes of a random [rows, cols] matrix with small f16 scales.
fn random_matrix(rng: &mut StdRng, rows: usize, cols: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; rows * cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES];
    rng.fill(&mut bytes[..]);
    for block in bytes.chunks_exact_mut(Q4_0_BLOCK_BYTES) {
        let scale = half::f16::from_f32(rng.random_range(0.001f32..0.05));
        block[..2].copy_from_slice(&scale.to_le_bytes());
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(12);
    for (name, rows, cols) in [("gate_up", 5760, 2880), ("down", 2880, 2880)] {
        let matrix = random_matrix(&mut rng, rows, cols);
        for m in TOKENS {
            let x: Vec<f32> = (0..m * cols)
                .map(|_| rng.random_range(-2f32..2.0))
                .collect();
            let mut group = c.benchmark_group(format!(
                "expert prefill {name} [{rows}, {cols}] x {m} tokens"
            ));
            group.throughput(Throughput::Elements((2 * rows * cols * m) as u64));
            group.sample_size(20);
            for (label, activations) in [
                ("f32 activations (exact)", Q4Activations::F32),
                ("8-bit activations (q8-prefill)", Q4Activations::Q8Prefill),
            ] {
                group.bench_function(label, |b| {
                    b.iter(|| {
                        q4_0_matmul_with(
                            black_box(&matrix),
                            rows,
                            cols,
                            black_box(&x),
                            m,
                            activations,
                        )
                    })
                });
            }
            if Q4_0x16::supported() {
                let packed =
                    Q4_0x16::from_q4_0(&matrix, rows, cols).expect("whole groups of 16 rows");
                group.bench_function("8-bit activations, 16-row layout (default)", |b| {
                    b.iter(|| black_box(&packed).matmul_q8(black_box(&x), m))
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
