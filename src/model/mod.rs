//! gpt-oss itself: config, weights (checkpoint layouts -> tensors), quantization repacks,
//! RoPE, attention, MoE, KV cache and the forward pass.
//!
//! Three checkpoint layouts load into one in-memory form: attention/router/norms/lm_head
//! dense in the activation dtype, experts as [`moe::ExpertLinear`] (Q4_0 for int4 builds in
//! the default mode, dense otherwise), the embedding table kept as stored on the host.

pub mod attend_cpu;
pub mod attention;
pub mod cache;
pub mod config;
mod decode_attention;
pub mod device;
pub mod error;
pub mod fidelity;
mod kernels;
pub mod linear;
mod load;
pub mod model_file;
pub mod moe;
mod moe_host;
mod moe_ops;
pub mod q4_0_q8;
pub mod q4_0_q8_gemm;
pub mod q4_0_x16;
pub mod q4_stack;
pub mod q8_0_x16;
pub mod quant;
pub mod replica;
pub mod rope;
mod sink_softmax;
pub mod synthetic;
mod tiled_gemm;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

pub use cache::KvCache;
pub use config::{Config, ConfigError, LayerKind};
pub use error::ModelError;
pub use weights::ShardProgress;

use attention::Attention;
use moe::Moe;
use rope::Rope;

/// How weights and activations are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Q4_0 experts for int4 builds, f32 activations, 16-bit weights and the KV cache kept in
    /// bf16 (see [`Precision::kv_cache_dtype`]): the weights stream at their stored size while every sum and the residual
    /// stream stay f32 (bf16 activations put the tiny fixtures on a knife edge, see `Bf16`).
    #[default]
    Default,
    /// f32 activations and every weight as f32, except int4 experts where the fused kernels
    /// run: those stay Q4_0 (lossless; dense f32 experts of the real model need 84 GB). Slow
    /// and exact.
    F32,
    /// As `Default`, with bf16 activations (and KV cache) on every device: the fastest math
    /// on a GPU, and a knife edge for the tiny fixtures (which prompt breaks the default
    /// mode's rules depends only on rounding order).
    Bf16,
    /// As `Default`, with the CPU's dense weights (attention projections, lm_head) quantized
    /// to 8 bits at load ([`q8_0_x16`]) and multiplied by 8-bit activations: ~45% fewer bytes
    /// read a token, less exact. Where the CPU lacks AVX-512 VNNI, or a matrix's shape or
    /// values do not allow it, a weight stays bf16.
    Q8Dense,
}

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DtypeChoice {
    /// Q4_0 experts and f32 activations, 16-bit KV cache; on a GPU, bf16 projection weights.
    #[default]
    Auto,
    /// f32 activations, every weight f32 (int4 experts stay Q4_0, losslessly, where the fused
    /// kernels run): slow, exact (the mode the golden checks use).
    F32,
    /// As `auto`, with bf16 activations and KV cache on every device: the fastest math on a
    /// GPU (less exact: see README "GPU"), slower math on the CPU.
    Bf16,
    /// As `auto`, with the CPU's attention and output weights in 8 bits (quantized at load, as
    /// llama.cpp's Q8_0): faster decode, less exact (README "Speed"). CPU only.
    Q8Dense,
}

impl From<DtypeChoice> for Precision {
    fn from(choice: DtypeChoice) -> Self {
        match choice {
            DtypeChoice::Auto => Self::Default,
            DtypeChoice::F32 => Self::F32,
            DtypeChoice::Bf16 => Self::Bf16,
            DtypeChoice::Q8Dense => Self::Q8Dense,
        }
    }
}

impl Precision {
    /// Whether int4 experts stay quantized and 16-bit weights 16-bit (every mode but f32).
    pub fn keeps_quantized(self) -> bool {
        self != Self::F32
    }

    /// The activation dtype: the residual stream, norms and every sum's result.
    pub fn activation_dtype(self) -> DType {
        match self {
            Self::Bf16 => DType::BF16,
            Self::Default | Self::F32 | Self::Q8Dense => DType::F32,
        }
    }

    /// The dtype of 16-bit dense weights (attention projections, lm_head) where they are
    /// tensors, and of the KV cache: in the default mode bf16 where the fused kernels run (on
    /// a GPU with bf16 kernels, and on the CPU with `--kernels fused`, which runs CUDA's path
    /// through its CPU twins), so weights stream at their stored size and the cache takes half
    /// the memory while every sum stays f32. Otherwise the activation dtype (the CPU's default
    /// mode keeps 16-bit weights as bf16 host values instead, see `Linear`).
    pub fn storage_dtype(self, device: &Device, kernels: Kernels) -> DType {
        let gpu_path = match device {
            Device::Cuda(gpu) => cuda_has_bf16(gpu),
            Device::Cpu => true,
            Device::Metal(_) => false,
        };
        if self == Self::Default && kernels.fused_on(device) && gpu_path {
            DType::BF16
        } else {
            self.activation_dtype()
        }
    }
}

/// The default mode's KV cache dtype on the CPU (see [`Precision::kv_cache_dtype`]).
const CPU_KV_CACHE_DTYPE: DType = DType::F16;

impl Precision {
    /// The KV cache's dtype: 16-bit in the default mode (24,576 B a token on gpt-oss-20b
    /// instead of 49,152; decode attention reads it where it sits and sums in f32), f32 in
    /// `F32` mode (exact), bf16 in `Bf16` mode. The CPU's default is f16, as llama.cpp's: its
    /// 3 more mantissa bits keep the int4 fixture's greedy tokens with `--kernels q8`, which
    /// bf16 did not; values beyond f16's range are refused (`KvCache::append`). GPUs with bf16
    /// kernels keep bf16 (the CUDA kernels read bf16 only).
    pub fn kv_cache_dtype(self, device: &Device, kernels: Kernels) -> DType {
        match (self, device) {
            // `--kernels fused` on the CPU runs CUDA's layout, bf16 cache included.
            (Self::Default | Self::Q8Dense, Device::Cpu) if !kernels.fused_on(device) => {
                CPU_KV_CACHE_DTYPE
            }
            _ => self.storage_dtype(device, kernels),
        }
    }
}

/// Whether candle's bf16 kernels run on `gpu`: they are compiled for compute capability 8.0
/// (Ampere) and newer only (`#if __CUDA_ARCH__ >= 800` in candle-kernels).
#[cfg(feature = "cuda")]
fn cuda_has_bf16(gpu: &candle_core::CudaDevice) -> bool {
    gpu.cuda_stream()
        .context()
        .compute_capability()
        .is_ok_and(|(major, _)| major >= 8)
}

#[cfg(not(feature = "cuda"))]
fn cuda_has_bf16(_: &candle_core::CudaDevice) -> bool {
    false
}

/// Whose kernels run the MoE and decode attention. `Fused`: Q4_0 experts stacked for the
/// indexed kernels that keep the routing on the device (see [`moe`]) and one-launch decode
/// attention; `Candle`: per-expert weights and candle's ops. `Auto` fuses on CUDA only (on
/// other devices the fused ops run their reference implementations, which tests use); on the
/// CPU its Q4_0 expert kernels quantize activations to 8 bits for integer dot products, as
/// llama.cpp does: decode's row kernel ([`q4_0_q8`]) and prefill's tile GEMM ([`q4_0_q8_gemm`]),
/// held to the fidelity's q8 tier ([`fidelity::Tier::Q8`]); where the CPU has AVX-512 VNNI
/// the experts are repacked 16 rows at a time for kernels that read them at the memory's
/// speed ([`q4_0_x16`]). `Exact`: as `Auto` with f32 activations everywhere (the default
/// mode's own tier). `Q8Prefill`: the same 8-bit math on plain Q4_0 rows (the kernels a CPU
/// without VNNI runs); `Q8`: 8-bit activations in decode only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    #[default]
    Auto,
    Exact,
    Candle,
    Fused,
    Q8,
    Q8Prefill,
}

impl Kernels {
    /// Whether ossterm's fused kernels run on `device`.
    pub fn fused_on(self, device: &Device) -> bool {
        match self {
            Self::Auto | Self::Exact | Self::Q8 | Self::Q8Prefill => {
                matches!(device, Device::Cuda(_))
            }
            Self::Candle => false,
            Self::Fused => true,
        }
    }

    /// What the CPU's per-expert Q4_0 kernel multiplies by (the fused kernels' CPU
    /// implementations and candle's ops keep f32 activations).
    pub fn q4_activations(self) -> quant::Q4Activations {
        match self {
            Self::Q8 => quant::Q4Activations::Q8,
            Self::Auto | Self::Q8Prefill => quant::Q4Activations::Q8Prefill,
            Self::Exact | Self::Candle | Self::Fused => quant::Q4Activations::F32,
        }
    }

    /// Whether the CPU's Q4_0 experts may be repacked into the 16-row layout
    /// ([`q4_0_x16::Q4_0x16`], used where the CPU has the instructions for it).
    pub fn repacks_q4_0(self) -> bool {
        self == Self::Auto
    }
}

/// Which positions of a forward pass get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (scoring).
    All,
}

/// The checkpoint layout the weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// transformers bf16, fused interleaved experts (spec 4a).
    Bf16,
    /// AutoRound int4 `auto_round:auto_gptq` per-expert linears (spec 4b).
    Int4,
    /// MXFP4 `*_blocks`/`*_scales` experts (spec 4c).
    Mxfp4,
    /// Seeded random weights, int4-like experts.
    Synthetic,
}

/// Where the embedding rows live: the checkpoint's mapping or an owned buffer.
enum HostBytes {
    Mapped {
        mmap: Arc<memmap2::Mmap>,
        offset: usize,
        len: usize,
    },
    Owned(Vec<u8>),
}

impl HostBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped { mmap, offset, len } => &mmap[*offset..*offset + *len],
            Self::Owned(v) => v,
        }
    }
}

/// The embedding table as stored (bf16, f16 or f32) on the host; rows are gathered per step.
struct Embedding {
    bytes: HostBytes,
    dtype: safetensors::Dtype,
    hidden: usize,
}

impl Embedding {
    fn rows(&self, ids: &[u32]) -> Vec<f32> {
        let bytes = self.bytes.bytes();
        let mut out = Vec::with_capacity(ids.len() * self.hidden);
        for &id in ids {
            match self.dtype {
                safetensors::Dtype::F32 => {
                    let row = &bytes[id as usize * self.hidden * 4..][..self.hidden * 4];
                    out.extend(
                        row.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
                safetensors::Dtype::F16 => {
                    let row = &bytes[id as usize * self.hidden * 2..][..self.hidden * 2];
                    out.extend(
                        row.chunks_exact(2)
                            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
                    );
                }
                _ => {
                    let row = &bytes[id as usize * self.hidden * 2..][..self.hidden * 2];
                    out.extend(
                        row.chunks_exact(2)
                            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
                    );
                }
            }
        }
        out
    }
}

/// One decoder layer.
struct Layer {
    input_norm: Tensor,
    attention: Attention,
    post_norm: Tensor,
    moe: Moe,
}

/// Prefill runs at most this many tokens per chunk.
const PREFILL_CHUNK: usize = 512;
/// Attention scores of one chunk stay under this many bytes (f32).
const SCORE_BUDGET_BYTES: usize = 512 << 20;

/// A loaded gpt-oss model.
pub struct GptOss {
    config: Config,
    device: Device,
    dtype: DType,
    kv_dtype: DType,
    layout: Layout,
    embedding: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: linear::Linear,
    rope: Rope,
    weight_bytes: u64,
    /// Whether dense weights were quantized to 8 bits (`--dtype q8-dense`).
    dense_q8: bool,
}

impl GptOss {
    /// Whether dense weights (attention projections, lm_head) run in 8 bits: `--dtype
    /// q8-dense` on a CPU that has the kernel. Saved KV caches record it: they depend on it.
    pub fn dense_q8(&self) -> bool {
        self.dense_q8
    }

    /// Loads the checkpoint in `dir` (config.json + safetensors, any of the three layouts).
    pub fn load(dir: &Path, device: &Device, precision: Precision) -> Result<Self, ModelError> {
        load::load(dir, device, precision, Kernels::Auto, &mut |_| {})
    }

    /// [`GptOss::load`] with a choice of kernels.
    pub fn load_with(
        dir: &Path,
        device: &Device,
        precision: Precision,
        kernels: Kernels,
    ) -> Result<Self, ModelError> {
        load::load(dir, device, precision, kernels, &mut |_| {})
    }

    /// [`GptOss::load_with`], telling `progress` after each layer which shard loading has
    /// reached and how much of it is read (for the app's loading screen).
    pub fn load_with_progress(
        dir: &Path,
        device: &Device,
        precision: Precision,
        kernels: Kernels,
        progress: &mut dyn FnMut(&ShardProgress),
    ) -> Result<Self, ModelError> {
        load::load(dir, device, precision, kernels, progress)
    }

    /// A model of `config`'s shape with seeded random weights, int4 (Q4_0) experts like the
    /// Intel build; no checkpoint is written.
    pub fn synthetic(
        config: &Config,
        seed: u64,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, ModelError> {
        synthetic::build(config, seed, device, precision, Kernels::Auto)
    }

    /// [`GptOss::synthetic`] with a choice of kernels.
    pub fn synthetic_with(
        config: &Config,
        seed: u64,
        device: &Device,
        precision: Precision,
        kernels: Kernels,
    ) -> Result<Self, ModelError> {
        synthetic::build(config, seed, device, precision, kernels)
    }

    /// Whether decode's experts run on 8-bit activations (the CPU's default kernels), which
    /// holds the model to the fidelity's q8 tier rather than the exact default one.
    pub fn quantizes_activations(&self) -> bool {
        self.layers
            .iter()
            .any(|layer| layer.moe.experts.quantizes_activations())
    }

    /// The model's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The activation dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The layout the weights came from.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Bytes the weights occupy as stored (device tensors + host embedding table).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Bytes read from memory to decode one token at `context` tokens: attention, router and
    /// norm weights, the top-k experts of every layer (average expert size), the KV cache
    /// and lm_head. The bound on decode speed is memory bandwidth divided by this.
    pub fn decode_bytes_per_token(&self, context: usize) -> u64 {
        let size = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        let c = &self.config;
        let kv_per_position =
            (2 * c.num_key_value_heads * c.head_dim * self.kv_dtype.size_in_bytes()) as u64;
        let mut total = self.lm_head.bytes() + size(&self.norm);
        for layer in &self.layers {
            let a = &layer.attention;
            total +=
                a.qkv_weight.bytes() + size(&a.qkv_bias) + a.o_weight.bytes() + size(&a.o_bias);
            total += size(&layer.input_norm) + size(&layer.post_norm);
            total += size(&layer.moe.router_weight) + size(&layer.moe.router_bias);
            let experts = &layer.moe.experts;
            let expert_bytes = experts.bytes() / experts.len().max(1) as u64;
            total += expert_bytes * layer.moe.top_k as u64;
            let positions = match a.window {
                Some(w) => context.min(w),
                None => context,
            };
            total += kv_per_position * positions as u64;
        }
        total
    }

    /// An empty KV cache for up to `context_limit` tokens.
    pub fn new_cache(&self, context_limit: usize) -> Result<KvCache, ModelError> {
        KvCache::new(&self.config, context_limit, self.kv_dtype, &self.device)
    }

    /// Runs `ids` at positions `cache.len()..`, appends them to the cache and returns logits
    /// [n, vocab] f32 for the requested positions (n = 1 for [`Logits::Last`]).
    pub fn forward(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        logits: Logits,
    ) -> Result<Tensor, ModelError> {
        self.forward_unless(ids, cache, logits, &mut || false)?
            .ok_or_else(|| ModelError::Invalid("a forward pass that cannot stop stopped".into()))
    }

    /// [`GptOss::forward`], asking `stop` before every layer: when it says true the pass
    /// ends with `None`. Tokens of finished inner chunks stay cached (`cache.len()` says how
    /// many); the interrupted chunk is rolled back, so the cache stays consistent.
    pub fn forward_unless(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        logits: Logits,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Tensor>, ModelError> {
        if ids.is_empty() {
            return Err(ModelError::Invalid("no token ids to run".into()));
        }
        if let Some(bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(ModelError::Invalid(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.config.vocab_size
            )));
        }
        cache.check_room(ids.len())?;
        // A prefill's large temporaries reuse resident heap pages layer after layer.
        let _scratch = (ids.len() > 1 && self.device.is_cpu())
            .then(crate::memory::allocator::HeapScratch::new);
        let mut finals = Vec::new();
        let mut offset = 0;
        while offset < ids.len() {
            let n = self.chunk_len(cache.len(), ids.len() - offset);
            let Some(x) = self.run_chunk(&ids[offset..offset + n], cache, stop)? else {
                return Ok(None);
            };
            offset += n;
            match logits {
                Logits::All => finals.push(x),
                Logits::Last if offset == ids.len() => finals.push(x.narrow(0, n - 1, 1)?),
                Logits::Last => {}
            }
        }
        let x = if finals.len() == 1 {
            finals.remove(0)
        } else {
            Tensor::cat(&finals, 0)?
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.config.rms_norm_eps as f32)?;
        Ok(Some(self.lm_head.forward(&x)?.to_dtype(DType::F32)?))
    }

    /// Tokens of the next prefill chunk: at most [`PREFILL_CHUNK`], fewer deep in a long
    /// context so the attention scores stay within [`SCORE_BUDGET_BYTES`].
    fn chunk_len(&self, start: usize, remaining: usize) -> usize {
        let per_token = self.config.num_attention_heads * 4 * (start + PREFILL_CHUNK);
        (SCORE_BUDGET_BYTES / per_token)
            .clamp(1, PREFILL_CHUNK)
            .min(remaining)
    }

    /// Runs one chunk through every layer; returns the final residual stream [n, hidden], or
    /// `None` (the cache as before the chunk) when `stop` said so before a layer.
    fn run_chunk(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Tensor>, ModelError> {
        let n = ids.len();
        let start = cache.len();
        let query_scale = 1.0 / (self.config.head_dim as f32).sqrt();
        let tables = self
            .rope
            .tables(start, n, query_scale, self.dtype, &self.device)?;
        let rows = self.embedding.rows(ids);
        let mut x = Tensor::from_vec(rows, (n, self.config.hidden_size), &Device::Cpu)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)?;
        let eps = self.config.rms_norm_eps as f32;
        // Full layers write past `len` only, which the next chunk overwrites; the sliding
        // windows are replaced, so they are kept (shared tensors, no copy) to roll back.
        let windows_before = cache.sliding_windows();
        for (index, layer) in self.layers.iter().enumerate() {
            if stop() {
                cache.restore_sliding_windows(windows_before);
                return Ok(None);
            }
            let h = candle_nn::ops::rms_norm(&x, &layer.input_norm, eps)?;
            x = (x + layer.attention.forward(&h, &tables, cache, index)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.post_norm, eps)?;
            x = layer.moe.forward(&h, &x)?;
        }
        cache.advance(n);
        Ok(Some(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_and_cache_can_move_to_the_engine_thread() {
        fn send<T: Send + 'static>() {}
        send::<GptOss>();
        send::<KvCache>();
    }

    #[test]
    fn decode_bytes_count_top_k_experts_and_the_kv_cache() -> Result<(), ModelError> {
        let mut config = Config::gpt_oss_20b().with_layers(2);
        config.vocab_size = 64;
        config.hidden_size = 64;
        config.intermediate_size = 64;
        config.num_attention_heads = 4;
        config.num_key_value_heads = 2;
        config.head_dim = 16;
        config.num_local_experts = 4;
        config.num_experts_per_tok = 2;
        config.sliding_window = 4;
        let model = GptOss::synthetic(&config, 1, &Device::Cpu, Precision::Default)?;
        // K and V, 2 kv heads x 16, 16-bit.
        let kv_position = (2 * 2 * 16 * 2) as u64;
        let at_10 = model.decode_bytes_per_token(10);
        let at_20 = model.decode_bytes_per_token(20);
        // Only the full layer grows: 10 more positions of one layer.
        assert_eq!(at_20 - at_10, 10 * kv_position);
        // Q4_0 experts: 2 of 4 per layer, 18 bytes per 32 weights, f32 biases.
        let expert = (3 * 64 * 64 / 32 * 18 + (2 * 64 + 64) * 4) as u64;
        assert!(at_10 > 2 * 2 * expert);
        assert!(model.weight_bytes() > at_10);
        Ok(())
    }
}
