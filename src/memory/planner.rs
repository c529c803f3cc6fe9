//! How many bytes a model needs at a given context, from config.json and the tensor inventory
//! alone, and the largest context that fits in the memory there is.
//!
//! What the model code allocates (COMMON.md, "Decisions already made"):
//! - **Weights** as they sit after loading. Default mode: an int4 linear `[out, in]` becomes
//!   Q4_0 = `out*in/32*18` bytes (its qzeros/scales are folded in); MXFP4 `*_blocks` become dense
//!   in the storage dtype; every other tensor is `elements * storage bytes` (f32 = 4 on
//!   CPU/Metal, bf16 = 2 on CUDA), except the embedding table, which stays bf16 on the host.
//!   `--dtype f32`: everything is f32 (int4 experts stay Q4_0 on CUDA); `--dtype bf16`: 2.
//!   Activations are f32 but in `--dtype bf16`.
//! - **Loading** needs no term of its own: the loader holds each tensor once (it drops the file
//!   pages of a layer once it is repacked, see `model::weights::Checkpoint::release_pages`), and
//!   its transient (one layer's file pages and f32 attention matrices, about 0.5 GB for
//!   gpt-oss-20b) is smaller than the embedding's share, planned resident but only mapped while
//!   loading. Measured on the full-size replica on the CPU: peak RSS 12.38 GiB, planned 13.39.
//! - **KV cache**, in the storage dtype. Full-attention layers grow by
//!   `full_layers * 2 * kv_heads * head_dim * elt` bytes per token. Sliding layers cost a
//!   constant ring of `sliding_window` positions plus [`SNAPSHOTS_BUDGETED`] snapshots of it.
//! - **Prefill scratch** for one chunk of `c` tokens at context `n` (freed between chunks),
//!   where `c` is the chosen chunk size, smaller deep in long contexts so that the attention
//!   scores fit [`SCORES_BUDGET_BYTES`] (the model's policy, see [`Plan::chunk_tokens_for`]):
//!   attention scores `SCORE_COPIES * heads * c * n * 4` (the model's attention holds about
//!   [`SCORE_COPIES`] f32 tensors of that shape at its peak), a contiguous K/V copy
//!   `2 * kv_heads * n * head_dim * act`, activations
//!   `c * (4*hidden + 2*heads*head_dim + 2*kv_heads*head_dim + experts + k*(3*intermediate + hidden)) * act`,
//!   bf16 weights widened to f32 where the activations are f32 (the larger of the qkv matrix and
//!   one expert's two),
//!   the Q8_0 copy of activations Q4_0 matmuls make `c * max(hidden, intermediate) * 34/32`, and
//!   one row of f32 logits.
//! - **Overhead**: the runtime, tokenizer and allocator slack (CPU), or the CUDA context and
//!   cuBLAS workspace (GPU): fixed estimates, see [`overhead_bytes`].
//!
//! A context fits when `total_bytes(context) + margin <= available`, where the margin is 5% of
//! the available memory but at least 256 MiB.

use serde::Serialize;

use super::inventory::TensorInfo;
use crate::model::q8_0_x16::Q8_0x16;
use crate::model::{Config, DtypeChoice, LayerKind};

/// Snapshots of the sliding rings the planner budgets for: as many as the cache keeps.
pub const SNAPSHOTS_BUDGETED: u64 = crate::model::cache::MAX_SNAPSHOTS as u64;
/// Prefill chunk size the planner assumes unless told otherwise.
pub const DEFAULT_CHUNK_TOKENS: usize = 512;
/// The contexts `ossterm fit` tabulates (capped at the model's maximum).
pub const TABLE_CONTEXTS: [usize; 6] = [4096, 8192, 16384, 32768, 65536, 131072];

/// f32 tensors of shape [heads, chunk, keys] alive at once at the attention's peak: each
/// step of `model/attention.rs`'s `probabilities` replaces the one before, so two (the
/// softmax and its contiguous narrow; scores and masked scores; ...).
pub const SCORE_COPIES: u64 = 2;
/// The most bytes one chunk's f32 attention scores may take (the model's own budget): long
/// contexts prefill in smaller chunks rather than needing gigabytes of scores.
pub const SCORES_BUDGET_BYTES: u64 = 512 * MIB;

const MIB: u64 = 1024 * 1024;
const MIN_MARGIN_BYTES: u64 = 256 * MIB;

/// The kind of device the model will run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Cuda,
    Metal,
}

impl DeviceKind {
    /// Bytes per 16-bit weight element in `precision` (the model's storage dtype;
    /// activations are f32 but in `bf16` mode).
    pub fn storage_bytes(self, precision: DtypeChoice) -> u64 {
        match (self, precision) {
            (Self::Cuda, DtypeChoice::Auto) | (_, DtypeChoice::Bf16) => 2,
            _ => 4,
        }
    }

    /// Bytes per KV cache element in `precision`: bf16 but in `f32` mode, except Metal's
    /// default mode (f32; see `Precision::kv_cache_dtype`).
    pub fn kv_cache_bytes(self, precision: DtypeChoice) -> u64 {
        match (self, precision) {
            (Self::Cpu, DtypeChoice::Auto | DtypeChoice::Q8Dense) => 2,
            _ => self.storage_bytes(precision),
        }
    }

    /// Whether host RAM and the device's memory are one pool (weights on the host count).
    pub fn shares_host_memory(self) -> bool {
        self == Self::Cpu
    }
}

/// Runtime memory that is neither weights, KV nor scratch (an estimate).
pub fn overhead_bytes(device: DeviceKind) -> u64 {
    match device {
        // Binary, tokenizer (o200k: ~200k merges), thread stacks, allocator slack.
        DeviceKind::Cpu => 256 * MIB,
        // The CUDA context, loaded kernels and cuBLAS workspace on the device.
        DeviceKind::Cuda => 640 * MIB,
        DeviceKind::Metal => 256 * MIB,
    }
}

/// Errors building a plan or choosing a context.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A quantized tensor whose shape the planner cannot interpret.
    #[error("tensor {name}: {problem}")]
    BadTensor { name: String, problem: String },
    /// config.json could not be read.
    #[error(transparent)]
    Config(#[from] crate::model::ConfigError),
    /// The safetensors headers could not be read.
    #[error(transparent)]
    Inventory(#[from] super::inventory::InventoryError),
    /// The requested context (or any context) does not fit; the text has the numbers and
    /// the options.
    #[error("{0}")]
    DoesNotFit(String),
    /// A precision mode the device does not run.
    #[error("{0}")]
    Unsupported(String),
    /// The requested context exceeds the model's maximum.
    #[error("a context of {requested} tokens exceeds the model's maximum of {max} tokens")]
    BeyondModel { requested: usize, max: usize },
}

/// Memory needs of one model on one device, as a function of the context length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub device: DeviceKind,
    /// `auto` (the device's default mode), `f32` or `bf16`.
    pub precision: &'static str,
    /// Prefill chunk size in tokens.
    pub chunk_tokens: usize,
    /// Bytes per KV cache element.
    pub kv_bytes_per_element: u64,
    /// Bytes per 16-bit weight element where weights are device tensors.
    pub weight_bytes_per_element: u64,
    /// Bytes per activation element (4 but in `bf16` mode).
    pub activation_bytes_per_element: u64,
    /// Weights in device memory (all weights except the host-side embedding).
    pub device_weight_bytes: u64,
    /// The embedding table kept on the host.
    pub host_weight_bytes: u64,
    /// KV bytes each token of context adds (full-attention layers).
    pub kv_bytes_per_token: u64,
    /// The sliding layers' rings (constant).
    pub sliding_ring_bytes: u64,
    /// One snapshot of all sliding rings.
    pub snapshot_bytes: u64,
    /// Snapshots budgeted.
    pub snapshots_budgeted: u64,
    /// Fixed runtime overhead.
    pub overhead_bytes: u64,
    /// The model's own maximum context.
    pub model_max_context: usize,
    #[serde(skip)]
    shape: ScratchShape,
}

#[derive(Debug, Clone, PartialEq)]
struct ScratchShape {
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    hidden: u64,
    intermediate: u64,
    experts: u64,
    experts_per_token: u64,
    vocab: u64,
    quantized_matmuls: bool,
}

/// One row of the fit table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitRow {
    pub context: usize,
    /// The prefill chunk used at this context.
    pub chunk_tokens: usize,
    pub kv_bytes: u64,
    pub scratch_bytes: u64,
    pub total_bytes: u64,
    pub fits: bool,
}

impl Plan {
    /// Plans `config` with the tensors in `tensors` on `device` in `precision`.
    pub fn new(
        config: &Config,
        tensors: &[TensorInfo],
        device: DeviceKind,
        precision: DtypeChoice,
        chunk_tokens: usize,
    ) -> Result<Self, PlanError> {
        if precision == DtypeChoice::Q8Dense && device != DeviceKind::Cpu {
            return Err(PlanError::Unsupported(
                "--dtype q8-dense keeps dense weights in 8 bits on the CPU only; on a GPU use auto"
                    .into(),
            ));
        }
        let elt = device.storage_bytes(precision);
        let f32_mode = precision == DtypeChoice::F32;
        // Int4 experts stay Q4_0 in every mode but f32, and in f32 too on CUDA, where the
        // fused kernels stack them.
        let q4_experts = !f32_mode || device == DeviceKind::Cuda;
        // The CPU's default mode keeps bf16 projection matrices (attention, lm_head) as stored
        // and multiplies them with an f32-accumulating kernel.
        let projections = if device != DeviceKind::Cpu || f32_mode {
            Projections::AsElements
        } else if precision == DtypeChoice::Q8Dense && Q8_0x16::supported() {
            // `--dtype q8-dense` quantizes them at load where the CPU has the kernel.
            Projections::Q8
        } else {
            Projections::Bf16
        };
        let mut device_weight_bytes = 0u64;
        let mut host_weight_bytes = 0u64;
        let mut quantized_matmuls = false;
        for tensor in tensors {
            match weight_bytes(tensor, elt, f32_mode, q4_experts, projections)? {
                Placement::Device(bytes) => device_weight_bytes += bytes,
                Placement::Host(bytes) => host_weight_bytes += bytes,
                Placement::Folded => {}
                Placement::Q4(bytes) => {
                    quantized_matmuls = true;
                    device_weight_bytes += bytes;
                }
            }
        }
        let (full, sliding) = layer_counts(config);
        let kv_elt = device.kv_cache_bytes(precision);
        let kv_per_layer_token =
            2 * config.num_key_value_heads as u64 * config.head_dim as u64 * kv_elt;
        let window = config.sliding_window.min(config.max_position_embeddings) as u64;
        let ring = sliding * kv_per_layer_token * window;
        Ok(Self {
            device,
            precision: match precision {
                DtypeChoice::Auto => "auto",
                DtypeChoice::F32 => "f32",
                DtypeChoice::Bf16 => "bf16",
                DtypeChoice::Q8Dense => "q8-dense",
            },
            chunk_tokens: chunk_tokens.max(1),
            kv_bytes_per_element: kv_elt,
            weight_bytes_per_element: elt,
            activation_bytes_per_element: if precision == DtypeChoice::Bf16 { 2 } else { 4 },
            device_weight_bytes,
            host_weight_bytes,
            kv_bytes_per_token: full * kv_per_layer_token,
            sliding_ring_bytes: ring,
            snapshot_bytes: ring,
            snapshots_budgeted: if sliding > 0 { SNAPSHOTS_BUDGETED } else { 0 },
            overhead_bytes: overhead_bytes(device),
            model_max_context: config.max_position_embeddings,
            shape: ScratchShape {
                heads: config.num_attention_heads as u64,
                kv_heads: config.num_key_value_heads as u64,
                head_dim: config.head_dim as u64,
                hidden: config.hidden_size as u64,
                intermediate: config.intermediate_size as u64,
                experts: config.num_local_experts as u64,
                experts_per_token: config.num_experts_per_tok as u64,
                vocab: config.vocab_size as u64,
                quantized_matmuls,
            },
        })
    }

    /// Weight bytes that count against the planned pool (host embedding included on CPU).
    pub fn weight_bytes(&self) -> u64 {
        if self.device.shares_host_memory() {
            self.device_weight_bytes + self.host_weight_bytes
        } else {
            self.device_weight_bytes
        }
    }

    /// Sliding-layer bytes: ring plus budgeted snapshots; independent of the context.
    pub fn sliding_bytes(&self) -> u64 {
        self.sliding_ring_bytes + self.snapshot_bytes * self.snapshots_budgeted
    }

    /// Full-attention KV bytes at `context` tokens.
    pub fn kv_bytes(&self, context: usize) -> u64 {
        self.kv_bytes_per_token * context as u64
    }

    /// The prefill chunk used deep in a context of `context` tokens, as the model picks it:
    /// at most the chosen chunk size, fewer so that one chunk's f32 attention scores
    /// (`heads * chunk * (context + chunk) * 4` bytes) stay within [`SCORES_BUDGET_BYTES`].
    pub fn chunk_tokens_for(&self, context: usize) -> usize {
        let per_token = self.shape.heads * 4 * (context as u64 + self.chunk_tokens as u64);
        let chunk = (SCORES_BUDGET_BYTES / per_token.max(1)).clamp(1, self.chunk_tokens as u64);
        (chunk as usize).min(context.max(1))
    }

    /// Peak transient bytes of one prefill chunk at `context` (see the module doc).
    pub fn scratch_bytes(&self, context: usize) -> u64 {
        let s = &self.shape;
        let n = context as u64;
        let c = self.chunk_tokens_for(context) as u64;
        let elt = self.activation_bytes_per_element;
        let scores = SCORE_COPIES * s.heads * c * n * 4;
        // The cache read for prefill attention, in the activations' dtype.
        let kv_copy = 2 * s.kv_heads * n * s.head_dim * elt;
        let per_token = 4 * s.hidden
            + 2 * s.heads * s.head_dim
            + 2 * s.kv_heads * s.head_dim
            + s.experts
            + s.experts_per_token * (3 * s.intermediate + s.hidden);
        let activations = c * per_token * elt;
        // Weights narrower than the activations (bf16 under f32 on CUDA) are widened for a
        // prefill chunk's matmul: the qkv projection, or a dequantized expert's two matrices.
        let widened = if self.weight_bytes_per_element < elt {
            let qkv = (s.heads + 2 * s.kv_heads) * s.head_dim * s.hidden;
            4 * qkv.max(3 * s.intermediate * s.hidden)
        } else {
            0
        };
        let q8 = if s.quantized_matmuls {
            c * s.hidden.max(s.intermediate) * 34 / 32
        } else {
            0
        };
        scores + kv_copy + activations + widened + q8 + s.vocab * 4
    }

    /// Everything the model needs at `context` tokens (excluding the safety margin).
    pub fn total_bytes(&self, context: usize) -> u64 {
        self.weight_bytes()
            + self.kv_bytes(context)
            + self.sliding_bytes()
            + self.scratch_bytes(context)
            + self.overhead_bytes
    }

    /// Headroom kept free: 5% of `available_bytes`, at least 256 MiB.
    pub fn margin_bytes(available_bytes: u64) -> u64 {
        (available_bytes / 20).max(MIN_MARGIN_BYTES)
    }

    /// Whether `context` fits in `available_bytes` with the margin.
    pub fn fits(&self, context: usize, available_bytes: u64) -> bool {
        self.total_bytes(context)
            .saturating_add(Self::margin_bytes(available_bytes))
            <= available_bytes
    }

    /// The largest context (capped at the model's maximum; rounded down to a multiple of 256
    /// above 256 tokens) that fits in `available_bytes`; 0 when not even one token does.
    pub fn max_context(&self, available_bytes: u64) -> usize {
        let cap = self.model_max_context.max(1);
        if !self.fits(1, available_bytes) {
            return 0;
        }
        // total_bytes grows with the context, so the fitting contexts are a prefix.
        let (mut lo, mut hi) = (1usize, cap);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.fits(mid, available_bytes) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if lo > 256 && lo < cap {
            lo / 256 * 256
        } else {
            lo
        }
    }

    /// The fit table: [`TABLE_CONTEXTS`] up to the model's maximum (or just the maximum when it
    /// is below the first entry).
    pub fn rows(&self, available_bytes: u64) -> Vec<FitRow> {
        let mut contexts: Vec<usize> = TABLE_CONTEXTS
            .iter()
            .copied()
            .filter(|&c| c <= self.model_max_context)
            .collect();
        if contexts.last() != Some(&self.model_max_context)
            && self.model_max_context < TABLE_CONTEXTS[TABLE_CONTEXTS.len() - 1]
        {
            contexts.push(self.model_max_context);
        }
        contexts
            .into_iter()
            .map(|context| FitRow {
                context,
                chunk_tokens: self.chunk_tokens_for(context),
                kv_bytes: self.kv_bytes(context),
                scratch_bytes: self.scratch_bytes(context),
                total_bytes: self.total_bytes(context),
                fits: self.fits(context, available_bytes),
            })
            .collect()
    }

    /// Reads config.json and the safetensors headers in `dir` and plans them.
    pub fn for_dir(
        dir: &std::path::Path,
        device: DeviceKind,
        precision: DtypeChoice,
    ) -> Result<Self, PlanError> {
        let config = Config::from_file(&dir.join("config.json"))?;
        let tensors = super::inventory::read_dir(dir)?;
        Self::new(&config, &tensors, device, precision, DEFAULT_CHUNK_TOKENS)
    }

    /// The context to allocate: `requested` if it fits (refused with the numbers and the
    /// options if not), else the largest that fits, capped at the model's maximum.
    pub fn choose_context(
        &self,
        requested: Option<usize>,
        available_bytes: u64,
    ) -> Result<usize, PlanError> {
        match requested {
            Some(n) if n > self.model_max_context => Err(PlanError::BeyondModel {
                requested: n,
                max: self.model_max_context,
            }),
            Some(n) => match self.refusal(n, available_bytes) {
                Some(why) => Err(PlanError::DoesNotFit(why)),
                None => Ok(n),
            },
            None => match self.max_context(available_bytes) {
                0 => Err(PlanError::DoesNotFit(
                    self.refusal(1, available_bytes)
                        .unwrap_or_else(|| "no context fits".to_string()),
                )),
                n => Ok(n),
            },
        }
    }

    /// Why `context` does not fit, with the numbers and the options; `None` when it fits.
    pub fn refusal(&self, context: usize, available_bytes: u64) -> Option<String> {
        if self.fits(context, available_bytes) {
            return None;
        }
        let need = self.total_bytes(context) + Self::margin_bytes(available_bytes);
        let best = self.max_context(available_bytes);
        let options = if best > 0 {
            format!("use a context of at most {best} tokens (--context {best} or /ctx {best})")
        } else {
            "not even a short context fits: free memory, or use a machine with more".to_string()
        };
        Some(format!(
            "a context of {context} tokens needs {} (weights {}, KV {}, sliding layers {}, scratch {}, overhead {}, margin {}) but {} is available: {options}",
            format_bytes(need),
            format_bytes(self.weight_bytes()),
            format_bytes(self.kv_bytes(context)),
            format_bytes(self.sliding_bytes()),
            format_bytes(self.scratch_bytes(context)),
            format_bytes(self.overhead_bytes),
            format_bytes(Self::margin_bytes(available_bytes)),
            format_bytes(available_bytes),
        ))
    }
}

enum Placement {
    Device(u64),
    Host(u64),
    Q4(u64),
    /// Consumed into another tensor (int4 qzeros/scales, MXFP4 scales).
    Folded,
}

/// How the CPU keeps the projection matrices (attention, lm_head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Projections {
    /// As every other 16-bit weight: the mode's element size.
    AsElements,
    /// bf16 as stored, for the CPU's bf16 kernel.
    Bf16,
    /// Quantized to 8 bits at load ([`Q8_0x16`]), where the shape allows.
    Q8,
}

fn weight_bytes(
    tensor: &TensorInfo,
    elt: u64,
    f32_mode: bool,
    q4_experts: bool,
    projections: Projections,
) -> Result<Placement, PlanError> {
    let name = tensor.name.as_str();
    let bad = |problem: String| PlanError::BadTensor {
        name: name.to_string(),
        problem,
    };
    if name.ends_with(".qweight") {
        let [packed_in, out] = tensor.shape[..] else {
            return Err(bad(format!(
                "int4 qweight must be 2-D [in/8, out], is {:?}",
                tensor.shape
            )));
        };
        let weights = (packed_in * 8 * out) as u64;
        if !q4_experts {
            return Ok(Placement::Device(weights * 4));
        }
        if !weights.is_multiple_of(32) {
            return Err(bad(format!(
                "{weights} weights are not whole Q4_0 blocks of 32"
            )));
        }
        return Ok(Placement::Q4(weights / 32 * 18));
    }
    if name.ends_with(".qzeros")
        || name.ends_with(".scales")
        || (name.ends_with("_scales") && tensor.dtype == "U8")
    {
        return Ok(Placement::Folded);
    }
    if name.ends_with("_blocks") && tensor.dtype == "U8" {
        // Each byte holds two FP4 values; dequantized to dense.
        return Ok(Placement::Device(tensor.elements() * 2 * elt));
    }
    if name.ends_with("embed_tokens.weight") {
        let bytes = if f32_mode {
            4
        } else {
            tensor.stored_element_bytes()
        };
        return Ok(Placement::Host(tensor.elements() * bytes));
    }
    if projections != Projections::AsElements
        && tensor.dtype == "BF16"
        && is_projection_matrix(name)
    {
        if projections == Projections::Q8
            && let [rows, cols] = tensor.shape[..]
            && let Some(bytes) = Q8_0x16::bytes_for(rows, cols)
        {
            return Ok(Placement::Device(bytes));
        }
        return Ok(Placement::Device(tensor.elements() * 2));
    }
    Ok(Placement::Device(tensor.elements() * elt))
}

/// Attention projections and the output head: the matrices the CPU keeps in bf16.
fn is_projection_matrix(name: &str) -> bool {
    name == "lm_head.weight"
        || ["q_proj", "k_proj", "v_proj", "o_proj"]
            .iter()
            .any(|p| name.ends_with(&format!("self_attn.{p}.weight")))
}

fn layer_counts(config: &Config) -> (u64, u64) {
    let full = config
        .layer_types
        .iter()
        .filter(|k| **k == LayerKind::FullAttention)
        .count() as u64;
    (full, config.layer_types.len() as u64 - full)
}

/// `1.23 GiB`-style text.
pub fn format_bytes(bytes: u64) -> String {
    format_bytes_with_decimals(bytes, 2)
}

/// Bytes in binary units with `decimals` digits after the point (plain bytes below 1 KiB).
pub fn format_bytes_with_decimals(bytes: u64, decimals: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.decimals$} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::inventory::{synthetic_int4, synthetic_preset};

    fn plan_20b(device: DeviceKind, precision: DtypeChoice) -> Plan {
        let config = Config::gpt_oss_20b();
        Plan::new(
            &config,
            &synthetic_int4(&config),
            device,
            precision,
            DEFAULT_CHUNK_TOKENS,
        )
        .expect("plan")
    }

    #[test]
    fn kv_per_token_counts_only_full_layers() {
        assert_eq!(
            plan_20b(DeviceKind::Cuda, DtypeChoice::Auto).kv_bytes_per_token,
            12 * 2 * 8 * 64 * 2
        );
        assert_eq!(
            plan_20b(DeviceKind::Cpu, DtypeChoice::Auto).kv_bytes_per_token,
            12 * 2 * 8 * 64 * 2
        );
    }

    #[test]
    fn q8_dense_plans_the_projections_at_1_125_bytes_a_weight_on_the_cpu_only() {
        let (l, h, v) = (24u64, 2880u64, 201_088u64);
        let projections = l * (4096 * h + 2 * 512 * h + h * 4096) + v * h;
        let auto = plan_20b(DeviceKind::Cpu, DtypeChoice::Auto);
        let q8 = plan_20b(DeviceKind::Cpu, DtypeChoice::Q8Dense);
        assert_eq!(q8.precision, "q8-dense");
        assert_eq!(q8.kv_bytes_per_token, auto.kv_bytes_per_token);
        if Q8_0x16::supported() {
            // Every shape is whole groups of 16 rows and blocks of 32 columns.
            assert_eq!(
                auto.device_weight_bytes - q8.device_weight_bytes,
                projections * 2 - projections * 36 / 32
            );
        } else {
            assert_eq!(q8.device_weight_bytes, auto.device_weight_bytes);
        }
        let config = Config::gpt_oss_20b();
        let err = Plan::new(
            &config,
            &synthetic_int4(&config),
            DeviceKind::Cuda,
            DtypeChoice::Q8Dense,
            DEFAULT_CHUNK_TOKENS,
        )
        .expect_err("refused on CUDA");
        assert!(err.to_string().contains("CPU only"), "{err}");
    }

    #[test]
    fn sliding_cost_is_constant() {
        let plan = plan_20b(DeviceKind::Cuda, DtypeChoice::Auto);
        let ring = 12 * 2 * 8 * 64 * 2 * 128;
        assert_eq!(plan.sliding_ring_bytes, ring);
        assert_eq!(plan.sliding_bytes(), ring * (1 + SNAPSHOTS_BUDGETED));
        let rest =
            |ctx: usize| plan.total_bytes(ctx) - plan.kv_bytes(ctx) - plan.scratch_bytes(ctx);
        assert_eq!(rest(4096), rest(131072));
    }

    #[test]
    fn weights_match_the_repacked_tensor_sum() {
        // Independent sum for the Intel build on CUDA: experts Q4_0, the rest bf16, embedding
        // bf16 on the host.
        let (l, e, h, i, v) = (24u64, 32u64, 2880u64, 2880u64, 201_088u64);
        let experts = l * e * (3 * h * i / 32 * 18 + 2 * i * 2 + h * 2);
        let attention = l * ((4096 * h + 4096) + 2 * (512 * h + 512) + (h * 4096 + h) + 64) * 2;
        let other = l * (2 * h + e * h + e) * 2 + h * 2 + v * h * 2;
        let plan = plan_20b(DeviceKind::Cuda, DtypeChoice::Auto);
        assert_eq!(plan.device_weight_bytes, experts + attention + other);
        assert_eq!(plan.host_weight_bytes, v * h * 2);
        // The spec's estimate: experts ~10.7 GB (4.5 bits per weight).
        let expert_q4 = l * e * 3 * h * i * 18 / 32;
        assert!((10.6e9..10.8e9).contains(&(expert_q4 as f64)));
    }

    #[test]
    fn f32_mode_makes_everything_f32_but_cuda_keeps_int4_experts_q4_0() {
        let config = synthetic_preset("gpt-oss-20b", Some(2)).expect("preset");
        let tensors = synthetic_int4(&config);
        let int4_weights = |t: &TensorInfo| t.name.ends_with(".qweight");
        let folded = |t: &TensorInfo| t.name.ends_with(".qzeros") || t.name.ends_with(".scales");
        let dense_elements: u64 = tensors
            .iter()
            .filter(|t| !folded(t))
            .map(|t| t.elements() * if int4_weights(t) { 8 } else { 1 })
            .sum();
        let cpu =
            Plan::new(&config, &tensors, DeviceKind::Cpu, DtypeChoice::F32, 512).expect("plan");
        assert_eq!(cpu.weight_bytes(), dense_elements * 4);
        assert_eq!(cpu.kv_bytes_per_element, 4);
        // On CUDA the fused kernels stack the experts as Q4_0 (18 bytes a block of 32).
        let cuda =
            Plan::new(&config, &tensors, DeviceKind::Cuda, DtypeChoice::F32, 512).expect("plan");
        let int4_elements: u64 = tensors
            .iter()
            .filter(|t| int4_weights(t))
            .map(|t| t.elements() * 8)
            .sum();
        assert_eq!(
            cuda.weight_bytes() + cuda.host_weight_bytes,
            (dense_elements - int4_elements) * 4 + int4_elements / 32 * 18
        );
        assert_eq!(cuda.kv_bytes_per_element, 4);
    }

    #[test]
    fn the_cpu_default_mode_keeps_a_16_bit_kv_cache_and_no_widened_weights() {
        let cpu = plan_20b(DeviceKind::Cpu, DtypeChoice::Auto);
        assert_eq!(cpu.kv_bytes_per_element, 2);
        assert_eq!(cpu.kv_bytes_per_token, 12 * 2 * 8 * 64 * 2);
        assert_eq!(cpu.kv_bytes_per_token, 24_576);
        assert_eq!(cpu.sliding_ring_bytes, 12 * 2 * 8 * 64 * 2 * 128);
        // The CPU's f32 mode stays the exact one: an f32 cache.
        let exact = plan_20b(DeviceKind::Cpu, DtypeChoice::F32);
        assert_eq!(exact.kv_bytes_per_token, 49_152);
        // No weights are widened for prefill on the CPU (bf16 projections have their own
        // kernel), so the narrower cache adds no scratch besides the chunk's f32 K/V copy.
        assert_eq!(cpu.weight_bytes_per_element, 4);
        let mut f32_cache = cpu.clone();
        f32_cache.kv_bytes_per_element = 4;
        assert_eq!(cpu.scratch_bytes(4096), f32_cache.scratch_bytes(4096));
    }

    #[test]
    fn max_context_is_the_largest_that_fits() {
        let plan = plan_20b(DeviceKind::Cuda, DtypeChoice::Auto);
        let available = 18 * 1024 * MIB;
        let best = plan.max_context(available);
        assert!(best > 4096 && best < 131072, "{best}");
        assert!(plan.fits(best, available));
        assert!(!plan.fits(best + 256, available));
        assert_eq!(best % 256, 0);
        // Lots of memory: capped at the model's maximum.
        assert_eq!(plan.max_context(200 * 1024 * MIB), 131072);
        // Too little for the weights.
        assert_eq!(plan.max_context(4 * 1024 * MIB), 0);
        let refusal = plan.refusal(131072, available).expect("does not fit");
        assert!(
            refusal.contains(&format!("at most {best} tokens")),
            "{refusal}"
        );
        assert!(plan.refusal(4096, available).is_none());
    }

    #[test]
    fn choose_context_defaults_to_the_largest_and_refuses_what_does_not_fit() {
        let plan = plan_20b(DeviceKind::Cuda, DtypeChoice::Auto);
        let available = 18 * 1024 * MIB;
        let best = plan.max_context(available);
        assert_eq!(plan.choose_context(None, available).expect("fits"), best);
        assert_eq!(
            plan.choose_context(Some(2048), available).expect("fits"),
            2048
        );
        let err = plan
            .choose_context(Some(131072), available)
            .expect_err("too big")
            .to_string();
        assert!(err.contains("131072 tokens needs"), "{err}");
        assert!(err.contains(&format!("--context {best}")), "{err}");
        let err = plan
            .choose_context(Some(200_000), available)
            .expect_err("beyond");
        assert!(
            matches!(err, PlanError::BeyondModel { max: 131072, .. }),
            "{err}"
        );
        let err = plan
            .choose_context(None, 1024 * MIB)
            .expect_err("nothing fits")
            .to_string();
        assert!(err.contains("not even a short context fits"), "{err}");
    }

    #[test]
    fn plans_a_checkpoint_folder() {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-int4");
        let plan = Plan::for_dir(&dir, DeviceKind::Cpu, DtypeChoice::Auto).expect("plan");
        // tiny-a: 2 full layers x 2 x 2 kv heads x 32 x 2 B.
        assert_eq!(plan.kv_bytes_per_token, 2 * 2 * 2 * 32 * 2);
        assert!(plan.weight_bytes() > 0);
        let err = Plan::for_dir(&dir.join("missing"), DeviceKind::Cpu, DtypeChoice::Auto)
            .expect_err("no folder");
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn rows_cover_4k_to_the_model_maximum() {
        let plan = plan_20b(DeviceKind::Cpu, DtypeChoice::Auto);
        let rows = plan.rows(u64::MAX / 4);
        let contexts: Vec<usize> = rows.iter().map(|r| r.context).collect();
        assert_eq!(contexts, TABLE_CONTEXTS.to_vec());
        assert!(rows.iter().all(|r| r.fits));
        assert!(rows.windows(2).all(|w| w[0].total_bytes < w[1].total_bytes));
    }

    #[test]
    fn mxfp4_experts_plan_as_dense() {
        let config = synthetic_preset("gpt-oss-20b", Some(1)).expect("preset");
        let tensors = vec![
            TensorInfo {
                name: "model.layers.0.mlp.experts.gate_up_proj_blocks".into(),
                dtype: "U8".into(),
                shape: vec![32, 5760, 90, 16],
            },
            TensorInfo {
                name: "model.layers.0.mlp.experts.gate_up_proj_scales".into(),
                dtype: "U8".into(),
                shape: vec![32, 5760, 90],
            },
        ];
        let plan =
            Plan::new(&config, &tensors, DeviceKind::Cuda, DtypeChoice::Auto, 512).expect("plan");
        assert_eq!(plan.device_weight_bytes, 32 * 5760 * 2880 * 2);
    }

    #[test]
    fn long_contexts_prefill_in_smaller_chunks() {
        let plan = plan_20b(DeviceKind::Cuda, DtypeChoice::Auto);
        assert_eq!(plan.chunk_tokens_for(100), 100);
        assert_eq!(plan.chunk_tokens_for(1024), 512);
        // 64 heads x (131072 + 512) keys x 4 B = 32.1 MiB per query token: 15 fit 512 MiB.
        assert_eq!(plan.chunk_tokens_for(131072), 15);
        for context in [4096, 32768, 131072] {
            let c = plan.chunk_tokens_for(context) as u64;
            assert!(64 * c * (context as u64 + 512) * 4 <= SCORES_BUDGET_BYTES);
            assert!(64 * (c + 1) * (context as u64 + 512) * 4 > SCORES_BUDGET_BYTES);
        }
    }

    #[test]
    fn byte_formatting() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(24_576), "24.00 KiB");
        assert_eq!(format_bytes(3 * 1024 * MIB / 2), "1.50 GiB");
    }
}
