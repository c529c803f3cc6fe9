//! Decode attention on the CPU (`ossterm::model::attend_cpu`) at gpt-oss-20b's shape (64
//! query heads, 8 kv heads, head_dim 64) at depth 4096, over an f32 cache and over the
//! default mode's f16 cache, in the same run. One full-attention layer per iteration; the
//! cache (4 MiB of K and V in f16, 8 MiB in f32) is one of enough layers' worth that it comes
//! from memory, as in decode. For reference, what an f32 cache runs (`--dtype f32`, and the
//! default mode before the f16 cache): candle's ops (matmul, cat, softmax, matmul).
//! Throughput is cache bytes read per second. Run: `cargo bench --bench decode_attention`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ossterm::model::attend_cpu::{AttendDims, CacheElement, attend};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Layers' caches cycled through: more bytes than any L3.
const LAYERS: usize = 12;

const DIMS: AttendDims = AttendDims {
    heads: 64,
    kv_heads: 8,
    keys: 4096,
    head_dim: 64,
    k_stride: 4096 * 64,
    v_stride: 4096 * 64,
};

fn bench_cache<T: CacheElement>(
    c: &mut Criterion,
    label: &str,
    rng: &mut StdRng,
    narrow: fn(f32) -> T,
) {
    let elements = DIMS.kv_heads * DIMS.k_stride;
    let mut cache = || -> Vec<T> {
        (0..elements)
            .map(|_| narrow(rng.random_range(-2f32..2.0)))
            .collect()
    };
    let layers: Vec<(Vec<T>, Vec<T>)> = (0..LAYERS).map(|_| (cache(), cache())).collect();
    let q: Vec<f32> = (0..DIMS.heads * DIMS.head_dim)
        .map(|_| rng.random_range(-0.3f32..0.3))
        .collect();
    let sinks = vec![0.5f32; DIMS.heads];
    let mut group = c.benchmark_group("decode attention, 64 heads over 8 kv heads x 4096 keys");
    group.throughput(Throughput::Bytes(
        (2 * elements * std::mem::size_of::<T>()) as u64,
    ));
    group.sample_size(30);
    let mut next = 0;
    group.bench_function(label, |b| {
        b.iter(|| {
            next = (next + 1) % LAYERS;
            let (k, v) = &layers[next];
            attend(black_box(&q), black_box(k), black_box(v), &sinks, DIMS)
        })
    });
    group.finish();
}

/// The f32 cache through candle's ops, as `Attention::forward` ran decode before.
fn bench_candle_ops(c: &mut Criterion) -> candle_core::Result<()> {
    use candle_core::{D, Device, Tensor};

    let dev = Device::Cpu;
    let (kv, per_kv, keys, d) = (
        DIMS.kv_heads,
        DIMS.heads / DIMS.kv_heads,
        DIMS.keys,
        DIMS.head_dim,
    );
    let layers = (0..LAYERS)
        .map(|_| {
            Ok((
                Tensor::randn(0f32, 1.0, (kv, keys, d), &dev)?,
                Tensor::randn(0f32, 1.0, (kv, keys, d), &dev)?,
            ))
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let q = (Tensor::randn(0f32, 1.0, (kv, per_kv, d), &dev)? * 0.1)?;
    let sinks = Tensor::full(0.5f32, (kv, per_kv, 1), &dev)?;
    let mut group = c.benchmark_group("decode attention, 64 heads over 8 kv heads x 4096 keys");
    group.throughput(Throughput::Bytes((2 * kv * keys * d * 4) as u64));
    group.sample_size(30);
    let mut next = 0;
    group.bench_function(
        "f32 cache, candle ops (--dtype f32; the default before)",
        |b| {
            b.iter(|| -> candle_core::Result<Tensor> {
                next = (next + 1) % LAYERS;
                let (k, v) = &layers[next];
                let scores = q.matmul(&k.t()?)?;
                let joined = Tensor::cat(&[&scores, &sinks], D::Minus1)?.contiguous()?;
                let probs = candle_nn::ops::softmax_last_dim(&joined)?
                    .narrow(2, 0, keys)?
                    .contiguous()?;
                probs.matmul(v)
            })
        },
    );
    group.finish();
    Ok(())
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(12);
    bench_candle_ops(c).expect("candle ops on CPU tensors");
    bench_cache(c, "f32 cache, this kernel", &mut rng, |x| x);
    bench_cache(
        c,
        "f16 cache, this kernel (default)",
        &mut rng,
        half::f16::from_f32,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
