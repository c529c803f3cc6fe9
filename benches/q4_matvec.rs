//! One expert's Q4_0 matvec at gpt-oss-20b's real shapes (gate_up [5760, 2880], down [2880,
//! 2880]) with f32 activations (`--kernels exact`), with 8-bit activations (integer dot
//! products) on plain Q4_0 rows (the default without AVX-512 VNNI), and on the 16-row layout
//! (the default with it), in the same run. "from memory": each iteration reads another of
//! enough distinct matrices that the weights come from memory, as they do in decode; "cached":
//! the same matrix again (the kernel's compute rate). Throughput is weight bytes read per
//! second. Run: `cargo bench --bench q4_matvec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ossterm::model::q4_0_x16::Q4_0x16;
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
                ("f32 activations (exact)", Q4Activations::F32),
                ("8-bit activations, Q4_0 rows", Q4Activations::Q8),
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
            if Q4_0x16::supported() {
                let packed: Vec<Q4_0x16> = matrices
                    .iter()
                    .map(|m| Q4_0x16::from_q4_0(m, rows, cols).expect("whole groups of 16 rows"))
                    .collect();
                let mut next = 0;
                group.bench_function("8-bit activations, 16-row layout", |b| {
                    b.iter(|| {
                        next = (next + 1) % packed.len();
                        black_box(&packed[next]).matmul_q8(black_box(&x), 1)
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
