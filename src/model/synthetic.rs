//! Synthetic models: the real shape (or any) with seeded random weights built directly in the
//! target format (Q4_0 experts like the Intel build), no checkpoint written.

use candle_core::Device;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use rayon::prelude::*;

use super::config::Config;
use super::error::ModelError;
use super::load::{Builder, HostDense, HostExpert, HostLayer, HostLinear};
use super::quant::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_LEN};
use super::{GptOss, HostBytes, Kernels, Layout, Precision};

/// Builds the model of `config` from `seed`.
pub fn build(
    config: &Config,
    seed: u64,
    device: &Device,
    precision: Precision,
    kernels: Kernels,
) -> Result<GptOss, ModelError> {
    let c = config;
    for (name, dim) in [
        ("hidden_size", c.hidden_size),
        ("intermediate_size", c.intermediate_size),
    ] {
        if !dim.is_multiple_of(Q4_0_BLOCK_LEN) {
            return Err(ModelError::Invalid(format!(
                "synthetic models need {name} ({dim}) to be a multiple of {Q4_0_BLOCK_LEN}"
            )));
        }
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let (h, kv, d, hidden, inter) = (
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.hidden_size,
        c.intermediate_size,
    );
    let mut builder = Builder::new(config, device, precision, kernels);
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for index in 0..c.num_hidden_layers {
        let host = HostLayer {
            input_norm: vec![1.0; hidden],
            post_norm: vec![1.0; hidden],
            qkv_weight: bf16_exact(uniform(&mut rng, (h + 2 * kv) * d * hidden, hidden)),
            qkv_bias: uniform(&mut rng, (h + 2 * kv) * d, 100 * hidden),
            o_weight: bf16_exact(uniform(&mut rng, hidden * h * d, h * d)),
            o_bias: uniform(&mut rng, hidden, 100 * hidden),
            sinks: uniform(&mut rng, h, 1),
            router_weight: uniform(&mut rng, c.num_local_experts * hidden, hidden),
            router_bias: uniform(&mut rng, c.num_local_experts, 100),
            experts: (0..c.num_local_experts)
                .map(|_| HostExpert {
                    gate_up: HostLinear::Q4_0(q4_0(&mut rng, 2 * inter, hidden)),
                    gate_up_bias: uniform(&mut rng, 2 * inter, 100 * hidden),
                    down: HostLinear::Q4_0(q4_0(&mut rng, hidden, inter)),
                    down_bias: uniform(&mut rng, hidden, 100 * inter),
                })
                .collect(),
        };
        layers.push(builder.layer(index, host)?);
    }
    // Both tables are drawn straight into their 16-bit form: an f32 copy of either would be
    // 2.3 GB more at the peak on the real shape.
    let mut embedding = vec![0u8; c.vocab_size * hidden * 2];
    fill_uniform(rng.next_u64(), embedding.as_chunks_mut::<2>().0, 1.0, |v| {
        half::bf16::from_f32(v).to_le_bytes()
    });
    let mut lm_head = vec![half::bf16::ZERO; c.vocab_size * hidden];
    let a = (3.0 / hidden as f32).sqrt();
    fill_uniform(rng.next_u64(), &mut lm_head, a, half::bf16::from_f32);
    builder.finish(
        Layout::Synthetic,
        layers,
        HostBytes::Owned(embedding),
        safetensors::Dtype::BF16,
        vec![1.0; hidden],
        HostDense::Bf16(lm_head),
    )
}

/// `n` values uniform in ±sqrt(3 / fan_in) (unit variance after a matmul over fan_in).
fn uniform(rng: &mut SmallRng, n: usize, fan_in: usize) -> Vec<f32> {
    uniform_values(rng.next_u64(), n, (3.0 / fan_in as f32).sqrt())
}

/// Values drawn per chunk of this many, each chunk from its own seed, in parallel.
const CHUNK: usize = 1 << 16;

/// `n` values uniform in ±a from `seed`.
fn uniform_values(seed: u64, n: usize, a: f32) -> Vec<f32> {
    let mut values = vec![0f32; n];
    fill_uniform(seed, &mut values, a, |v| v);
    values
}

/// Fills `out` with values uniform in ±a from `seed`, each stored as `store` makes it,
/// chunk-parallel (the real shape's ~3 billion values would take most of a minute on one
/// core); the same on any thread count.
fn fill_uniform<T: Send>(seed: u64, out: &mut [T], a: f32, store: impl Fn(f32) -> T + Sync) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, dst)| {
            let mut rng = chunk_rng(seed, chunk);
            for v in dst {
                *v = store(rng.random_range(-a..a));
            }
        });
}

/// The generator of one chunk: its own seed, so chunks can be drawn in any order.
fn chunk_rng(seed: u64, chunk: usize) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Rounds to bf16 values, as a 16-bit checkpoint stores them.
fn bf16_exact(mut values: Vec<f32>) -> Vec<f32> {
    values
        .par_iter_mut()
        .for_each(|v| *v = half::bf16::from_f32(*v).to_f32());
    values
}

/// Random Q4_0 blocks for a [rows, cols] Linear with the same scale of weights as `uniform`.
fn q4_0(rng: &mut SmallRng, rows: usize, cols: usize) -> Vec<u8> {
    let blocks = rows * cols / Q4_0_BLOCK_LEN;
    let mut bytes = vec![0u8; blocks * Q4_0_BLOCK_BYTES];
    rng.fill_bytes(&mut bytes);
    let d = half::f16::from_f32((3.0 / cols as f32).sqrt() / 8.0).to_le_bytes();
    for block in bytes.chunks_exact_mut(Q4_0_BLOCK_BYTES) {
        block[..2].copy_from_slice(&d);
    }
    bytes
}
