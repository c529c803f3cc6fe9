//! Checkpoint folder -> [`GptOss`]: layout detection (spec 4a/4b/4c), shape checks, and the
//! builder that turns host values into device tensors (shared with the synthetic models).

use std::borrow::Cow;
use std::path::Path;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Shape, Tensor};
use half::f16;
use rayon::prelude::*;
use safetensors::Dtype;

use super::attention::Attention;
use super::config::{Config, LayerKind};
use super::error::ModelError;
use super::linear::Linear;
use super::moe::{Expert, ExpertLinear, Experts, Moe, StackedExperts};
use super::q4_0_x16::Q4_0x16;
use super::q4_stack::Q4Stack;
use super::q8_0_x16::Q8_0x16;
use super::quant::{GptqInt4, mxfp4_dequantize, q4_0_dequantize};
use super::rope::Rope;
use super::weights::{Checkpoint, ShardProgress};
use super::{Embedding, GptOss, HostBytes, Kernels, Layer, Layout, Precision};

/// An expert projection's weight on the host, Linear layout [out, in].
pub(super) enum HostLinear {
    F32(Vec<f32>),
    /// GGML Q4_0 blocks, rows = outputs.
    Q4_0(Vec<u8>),
}

/// A dense matrix on the host, in the dtype it came in.
pub(super) enum HostDense {
    Bf16(Vec<half::bf16>),
    F32(Vec<f32>),
    /// Already in 8 bits (`--dtype q8-dense`, quantized as it was read).
    Q8(Q8_0x16),
}

/// One expert on the host.
pub(super) struct HostExpert {
    /// [2I, H]: gate rows then up rows.
    pub gate_up: HostLinear,
    pub gate_up_bias: Vec<f32>,
    /// [H, I].
    pub down: HostLinear,
    pub down_bias: Vec<f32>,
}

/// One layer on the host, f32 except the experts.
pub(super) struct HostLayer {
    pub input_norm: Vec<f32>,
    pub post_norm: Vec<f32>,
    /// [(heads + 2 kv) * d, H].
    pub qkv_weight: Vec<f32>,
    pub qkv_bias: Vec<f32>,
    pub o_weight: Vec<f32>,
    pub o_bias: Vec<f32>,
    pub sinks: Vec<f32>,
    pub router_weight: Vec<f32>,
    pub router_bias: Vec<f32>,
    pub experts: Vec<HostExpert>,
}

/// Moves host values to the device in the model's dtype, counting the bytes.
pub(super) struct Builder<'a> {
    pub config: &'a Config,
    pub device: &'a Device,
    pub dtype: DType,
    /// 16-bit dense weights' dtype (see `Precision::storage_dtype`).
    pub weight_dtype: DType,
    pub precision: Precision,
    pub bytes: u64,
    pub kernels: Kernels,
    /// Dense matrices kept in 8 bits (`--dtype q8-dense`).
    pub q8_matrices: usize,
}

impl<'a> Builder<'a> {
    pub fn new(
        config: &'a Config,
        device: &'a Device,
        precision: Precision,
        kernels: Kernels,
    ) -> Self {
        Self {
            config,
            device,
            dtype: precision.activation_dtype(),
            weight_dtype: precision.storage_dtype(device, kernels),
            precision,
            bytes: 0,
            kernels,
            q8_matrices: 0,
        }
    }

    /// Whether 16-bit weights stay bf16 host values for the CPU's own kernel (the CPU's
    /// default mode), rather than tensors of `weight_dtype`.
    fn host_bf16(&self) -> bool {
        self.precision.keeps_quantized() && !self.kernels.fused_on(self.device)
    }

    fn dense<S: Into<Shape>>(&mut self, values: Vec<f32>, shape: S) -> Result<Tensor, ModelError> {
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(self.dtype)?
            .to_device(self.device)?;
        self.bytes += (t.elem_count() * self.dtype.size_in_bytes()) as u64;
        Ok(t)
    }

    /// A dense Linear; on the CPU in the default mode a bf16-exact weight stays bf16.
    fn linear16(
        &mut self,
        values: Vec<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<Linear, ModelError> {
        let prefer_bf16 = self.host_bf16();
        let linear = Linear::new(
            values,
            rows,
            cols,
            self.weight_dtype,
            self.device,
            prefer_bf16,
        )?;
        Ok(self.count_dense(linear))
    }

    /// Whether dense weights go to 8 bits ([`Linear::into_q8`]): `--dtype q8-dense` on a CPU
    /// with the kernel, where 16-bit weights stay host values.
    fn quantizes_dense(&self) -> bool {
        self.precision == Precision::Q8Dense && self.host_bf16() && Q8_0x16::supported()
    }

    /// `linear` in 8 bits where `--dtype q8-dense` asks for it (and the weight allows it),
    /// its bytes counted.
    fn count_dense(&mut self, linear: Linear) -> Linear {
        let linear = if self.quantizes_dense() {
            linear.into_q8()
        } else {
            linear
        };
        if matches!(linear, Linear::Q8Cpu(_)) {
            self.q8_matrices += 1;
        }
        self.bytes += linear.bytes();
        linear
    }

    fn linear(
        &mut self,
        weight: HostLinear,
        rows: usize,
        cols: usize,
    ) -> Result<ExpertLinear, ModelError> {
        Ok(match weight {
            HostLinear::F32(v) => ExpertLinear::Dense(self.dense(v, (rows, cols))?),
            HostLinear::Q4_0(bytes) => match self.precision {
                Precision::F32 => {
                    ExpertLinear::Dense(self.dense(q4_0_dequantize(&bytes), (rows, cols))?)
                }
                Precision::Default | Precision::Bf16 | Precision::Q8Dense
                    if self.device.is_cpu() =>
                {
                    self.bytes += bytes.len() as u64;
                    let activations = self.kernels.q4_activations();
                    if self.kernels.repacks_q4_0()
                        && Q4_0x16::supported()
                        && let Ok(weights) = Q4_0x16::from_q4_0(&bytes, rows, cols)
                    {
                        // 8 bits in decode and prefill on a CPU with VNNI: the 16-row
                        // layout (a shape it cannot hold keeps plain Q4_0's kernels).
                        return Ok(ExpertLinear::Q4CpuX16(weights));
                    }
                    ExpertLinear::Q4Cpu {
                        bytes,
                        rows,
                        cols,
                        activations,
                    }
                }
                Precision::Default | Precision::Bf16 | Precision::Q8Dense => {
                    self.bytes += bytes.len() as u64;
                    let storage =
                        QStorage::from_data(Cow::Owned(bytes), self.device, GgmlDType::Q4_0)?;
                    ExpertLinear::Quantized(QMatMul::from_qtensor(QTensor::new(
                        storage,
                        (rows, cols),
                    )?)?)
                }
            },
        })
    }

    /// Whether this layer's experts go into [`StackedExperts`]: Q4_0 experts, when the fused
    /// kernels run (in any precision: the stack is lossless).
    fn stacks_experts(&self, experts: &[HostExpert]) -> bool {
        self.kernels.fused_on(self.device)
            && !experts.is_empty()
            && experts.iter().all(|e| {
                matches!(
                    (&e.gate_up, &e.down),
                    (HostLinear::Q4_0(_), HostLinear::Q4_0(_))
                )
            })
    }

    /// Stacks Q4_0 experts: one host buffer per projection, one copy to the device each.
    fn stacked_experts(
        &mut self,
        experts: Vec<HostExpert>,
        router_bias: &[f32],
    ) -> Result<StackedExperts, ModelError> {
        let c = self.config;
        let (hidden, inter, count) = (c.hidden_size, c.intermediate_size, experts.len());
        let (mut gate_up, mut down) = (Vec::new(), Vec::new());
        let (mut gate_up_bias, mut down_bias) = (Vec::new(), Vec::new());
        for e in experts {
            if let (HostLinear::Q4_0(g), HostLinear::Q4_0(d)) = (e.gate_up, e.down) {
                gate_up.extend_from_slice(&g);
                down.extend_from_slice(&d);
            }
            gate_up_bias.extend(e.gate_up_bias);
            down_bias.extend(e.down_bias);
        }
        let stacked = StackedExperts {
            gate_up: Q4Stack::new(
                &gate_up,
                gate_up_bias,
                count,
                2 * inter,
                hidden,
                self.device,
            )?,
            down: Q4Stack::new(&down, down_bias, count, hidden, inter, self.device)?,
            router_bias: Tensor::from_slice(router_bias, count, self.device)?,
        };
        self.bytes += stacked.bytes();
        Ok(stacked)
    }

    /// Builds a layer's tensors.
    pub fn layer(&mut self, index: usize, host: HostLayer) -> Result<Layer, ModelError> {
        let c = self.config;
        let (h, kv, d, hidden, inter) = (
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.hidden_size,
            c.intermediate_size,
        );
        let sinks = Tensor::from_vec(host.sinks, (kv, h / kv, 1, 1), &Device::Cpu)?
            .to_device(self.device)?;
        self.bytes += (h * 4) as u64;
        let attention = Attention {
            qkv_weight: self.linear16(host.qkv_weight, (h + 2 * kv) * d, hidden)?,
            qkv_bias: self.dense(host.qkv_bias, (h + 2 * kv) * d)?,
            o_weight: self.linear16(host.o_weight, hidden, h * d)?,
            o_bias: self.dense(host.o_bias, hidden)?,
            sinks,
            heads: h,
            kv_heads: kv,
            head_dim: d,
            window: (c.layer_types[index] == LayerKind::SlidingAttention)
                .then_some(c.sliding_window),
            fused_decode: self.kernels.fused_on(self.device),
        };
        let experts = if self.stacks_experts(&host.experts) {
            Experts::Stacked(self.stacked_experts(host.experts, &host.router_bias)?)
        } else {
            let mut experts = Vec::with_capacity(host.experts.len());
            for e in host.experts {
                experts.push(Expert {
                    gate_up: self.linear(e.gate_up, 2 * inter, hidden)?,
                    gate_up_bias: self.dense(e.gate_up_bias, 2 * inter)?,
                    down: self.linear(e.down, hidden, inter)?,
                    down_bias: self.dense(e.down_bias, hidden)?,
                });
            }
            Experts::PerExpert(experts)
        };
        Ok(Layer {
            input_norm: self.dense(host.input_norm, hidden)?,
            attention,
            post_norm: self.dense(host.post_norm, hidden)?,
            moe: Moe {
                router_weight: self.dense(host.router_weight, (c.num_local_experts, hidden))?,
                router_bias: self.dense(host.router_bias, c.num_local_experts)?,
                experts,
                top_k: c.num_experts_per_tok,
                intermediate: inter,
                alpha: c.swiglu_alpha,
                limit: c.swiglu_limit,
            },
        })
    }

    /// Assembles the model.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        mut self,
        layout: Layout,
        layers: Vec<Layer>,
        embedding_bytes: HostBytes,
        embedding_dtype: Dtype,
        norm: Vec<f32>,
        lm_head: HostDense,
    ) -> Result<GptOss, ModelError> {
        let c = self.config;
        let norm = self.dense(norm, c.hidden_size)?;
        let lm_head = match lm_head {
            HostDense::Bf16(values) => {
                let linear = Linear::from_bf16(
                    values,
                    c.vocab_size,
                    c.hidden_size,
                    self.weight_dtype,
                    self.device,
                    self.host_bf16(),
                )?;
                self.count_dense(linear)
            }
            HostDense::F32(values) => self.linear16(values, c.vocab_size, c.hidden_size)?,
            HostDense::Q8(q8) => self.count_dense(Linear::Q8Cpu(q8)),
        };
        let embedding = Embedding {
            dtype: embedding_dtype,
            hidden: c.hidden_size,
            bytes: embedding_bytes,
        };
        Ok(GptOss {
            config: c.clone(),
            device: self.device.clone(),
            dtype: self.dtype,
            kv_dtype: self.precision.kv_cache_dtype(self.device, self.kernels),
            layout,
            weight_bytes: self.bytes + embedding.bytes.bytes().len() as u64,
            embedding,
            layers,
            norm,
            lm_head,
            rope: Rope::new(&c.rope, c.head_dim),
            dense_q8: self.q8_matrices > 0,
        })
    }
}

/// The bf16 output projection (`bytes`, [vocab, hidden]) quantized to 8 bits a slice of rows
/// at a time, `release_pages` dropping the file pages behind each slice: the 1.2 GB bf16
/// matrix is never resident next to its 0.7 GB quantized copy. `None` where it cannot be
/// quantized (the caller then keeps it bf16).
fn lm_head_q8(
    bytes: &[u8],
    vocab: usize,
    hidden: usize,
    release_pages: &dyn Fn(),
) -> Option<Q8_0x16> {
    let row_bytes = hidden * 2;
    let slice_rows = (COPY_SLICE_BYTES / row_bytes.max(1))
        .max(1)
        .next_multiple_of(16);
    let (pairs, rest) = bytes.as_chunks::<2>();
    if !rest.is_empty() || pairs.len() != vocab * hidden {
        return None;
    }
    let mut whole: Option<Q8_0x16> = None;
    for start in (0..vocab).step_by(slice_rows) {
        let rows = slice_rows.min(vocab - start);
        let part = Q8_0x16::quantize(
            &pairs[start * hidden..][..rows * hidden],
            rows,
            hidden,
            |b| half::bf16::from_le_bytes(b).to_f32(),
        )
        .ok()?;
        match &mut whole {
            None => whole = Some(part),
            Some(whole) => whole.append(part).ok()?,
        }
        release_pages();
    }
    whole
}

/// How much of a large tensor is copied before its file pages are dropped (an even number,
/// so no bf16 value straddles two slices).
const COPY_SLICE_BYTES: usize = 64 << 20;

/// Reads config.json and the safetensors in `dir`; `progress` hears after each layer (and at
/// the end) which shard loading has reached.
pub(super) fn load(
    dir: &Path,
    device: &Device,
    precision: Precision,
    kernels: Kernels,
    progress: &mut dyn FnMut(&ShardProgress),
) -> Result<GptOss, ModelError> {
    if precision == Precision::Q8Dense && !device.is_cpu() {
        return Err(ModelError::Device(
            "--dtype q8-dense keeps dense weights in 8 bits on the CPU only; on a GPU use auto"
                .into(),
        ));
    }
    let config_path = dir.join("config.json");
    let mut config = Config::from_file(&config_path)?;
    let generation_path = dir.join("generation_config.json");
    if generation_path.exists() {
        for id in super::config::generation_eos_token_ids(&generation_path)? {
            if !config.eos_token_ids.contains(&id) {
                config.eos_token_ids.push(id);
            }
        }
    }
    let ckpt = Checkpoint::open(dir)?;
    check_layer_count(&config, &ckpt, &config_path)?;
    let layout = detect_layout(&config, &ckpt, &config_path)?;
    let (hidden, vocab) = (config.hidden_size, config.vocab_size);
    // The embedding stays mapped (rows are gathered per step); mapped first, as transformers
    // stores it first, so progress runs through the shards in order.
    let embed = ckpt.get("model.embed_tokens.weight", "the embedding table")?;
    embed.expect_shape(&[vocab, hidden])?;
    embed.expect_dtype(&[Dtype::BF16, Dtype::F16, Dtype::F32])?;
    let embedding = HostBytes::Mapped {
        mmap: embed.mmap.clone(),
        offset: embed.offset,
        len: embed.bytes.len(),
    };
    let embedding_dtype = embed.dtype;
    let mut builder = Builder::new(&config, device, precision, kernels);
    // Int4 experts repack losslessly into Q4_0: kept so in every mode but f32 and, where the
    // fused kernels run (which stack them), in f32 mode too.
    let q4_experts = precision.keeps_quantized() || kernels.fused_on(device);
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for index in 0..config.num_hidden_layers {
        let host = read_layer(&config, &ckpt, index, layout, q4_experts)?;
        layers.push(builder.layer(index, host)?);
        // The layer's file pages are copied out: resident memory holds the weights once.
        ckpt.release_pages();
        report(&ckpt, progress);
    }
    let norm = ckpt
        .get("model.norm.weight", "the final norm")?
        .to_f32(&[hidden])?;
    let lm_head_raw = ckpt.get("lm_head.weight", "the untied output projection")?;
    lm_head_raw.expect_shape(&[vocab, hidden])?;
    // bf16 as stored (no f32 copy of the largest matrix); other dtypes through f32. Copied a
    // slice at a time, dropping the file pages behind it, so the 1.2 GB matrix is never
    // resident twice.
    let streamed_q8 = if lm_head_raw.dtype == Dtype::BF16 && builder.quantizes_dense() {
        lm_head_q8(lm_head_raw.bytes, vocab, hidden, &|| ckpt.release_pages())
    } else {
        None
    };
    let lm_head = if let Some(q8) = streamed_q8 {
        HostDense::Q8(q8)
    } else if lm_head_raw.dtype == Dtype::BF16 {
        let mut values = Vec::with_capacity(lm_head_raw.bytes.len() / 2);
        for slice in lm_head_raw.bytes.chunks(COPY_SLICE_BYTES) {
            values.extend(
                slice
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]])),
            );
            ckpt.release_pages();
        }
        HostDense::Bf16(values)
    } else {
        HostDense::F32(lm_head_raw.to_f32(&[vocab, hidden])?)
    };
    let model = builder.finish(layout, layers, embedding, embedding_dtype, norm, lm_head)?;
    ckpt.release_pages();
    report(&ckpt, progress);
    Ok(model)
}

fn report(ckpt: &Checkpoint, progress: &mut dyn FnMut(&ShardProgress)) {
    if let Some(at) = ckpt.progress() {
        progress(&at);
    }
}

/// Fails when the files hold layers past `num_hidden_layers`: a config that undercounts them
/// would otherwise run a truncated model without a word.
fn check_layer_count(
    config: &Config,
    ckpt: &Checkpoint,
    config_path: &Path,
) -> Result<(), ModelError> {
    let layer_of = |name: &str| -> Option<usize> {
        name.strip_prefix("model.layers.")?
            .split('.')
            .next()?
            .parse()
            .ok()
    };
    // The deepest extra layer, and its alphabetically first tensor: a stable message.
    let extra = ckpt
        .names()
        .filter_map(|name| layer_of(name).map(|layer| (layer, name)))
        .filter(|(layer, _)| *layer >= config.num_hidden_layers)
        .min_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let Some((layer, name)) = extra else {
        return Ok(());
    };
    let file = ckpt.get(name, "a tensor of an extra layer")?.path;
    Err(ModelError::File {
        path: config_path.to_path_buf(),
        problem: format!(
            "num_hidden_layers is {} but {} holds tensor '{name}' of layer {layer}: the config does not describe these weights",
            config.num_hidden_layers,
            file.display()
        ),
    })
}

/// Which layout the experts use, checked against `quantization_config`.
fn detect_layout(
    config: &Config,
    ckpt: &Checkpoint,
    config_path: &Path,
) -> Result<Layout, ModelError> {
    if let Some(q) = &config.quantization {
        let unsupported = |problem: String| ModelError::Unsupported {
            path: config_path.to_path_buf(),
            problem,
        };
        match q.quant_method.as_str() {
            "auto-round" | "auto_round" | "intel/auto-round" | "gptq" => {
                if q.bits != Some(4) {
                    return Err(unsupported(format!(
                        "quantization_config.bits is {:?}; ossterm reads 4-bit AutoRound checkpoints",
                        q.bits
                    )));
                }
                if q.sym == Some(false) {
                    return Err(unsupported(
                        "quantization_config.sym is false; ossterm reads symmetric int4 only"
                            .into(),
                    ));
                }
                if let Some(format) = &q.packing_format
                    && !format.contains("gptq")
                {
                    return Err(unsupported(format!(
                        "quantization_config.packing_format is '{format}'; ossterm reads 'auto_round:auto_gptq'"
                    )));
                }
            }
            "mxfp4" => {}
            other => {
                return Err(unsupported(format!(
                    "quantization_config.quant_method is '{other}'; ossterm reads bf16, AutoRound int4 (auto_round:auto_gptq) and MXFP4 checkpoints"
                )));
            }
        }
    }
    let prefix = "model.layers.0.mlp.experts";
    if ckpt.contains(&format!("{prefix}.gate_up_proj")) {
        Ok(Layout::Bf16)
    } else if ckpt.contains(&format!("{prefix}.gate_up_proj_blocks")) {
        Ok(Layout::Mxfp4)
    } else if ckpt.contains(&format!("{prefix}.0.gate_proj.qweight")) {
        Ok(Layout::Int4)
    } else {
        Err(ModelError::MissingTensor {
            dir: ckpt.dir().to_path_buf(),
            tensor: format!("{prefix}.gate_up_proj"),
            expected: "expert weights in a known layout: bf16 'gate_up_proj', MXFP4 'gate_up_proj_blocks' or AutoRound int4 '0.gate_proj.qweight'".into(),
        })
    }
}

/// A Linear [out, in] as f32: 16-bit `weight`, or int4 `qweight`/`qzeros`/`scales` when the
/// checkpoint quantized it.
fn dense_linear(
    ckpt: &Checkpoint,
    prefix: &str,
    out: usize,
    inp: usize,
    group: usize,
) -> Result<Vec<f32>, ModelError> {
    let qweight = format!("{prefix}.qweight");
    if ckpt.contains(&qweight) {
        return with_int4(
            ckpt,
            prefix,
            inp,
            out,
            group,
            |layer| Ok(layer.dequantize()),
        );
    }
    let name = format!("{prefix}.weight");
    ckpt.get(&name, &format!("[{out}, {inp}] Linear weight"))?
        .to_f32(&[out, inp])
}

fn vector(ckpt: &Checkpoint, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
    ckpt.get(name, &format!("[{len}] vector"))?.to_f32(&[len])
}

/// Reads an int4 Linear (in -> out) and hands it to `f`.
fn with_int4<T>(
    ckpt: &Checkpoint,
    prefix: &str,
    inp: usize,
    out: usize,
    group: usize,
    f: impl FnOnce(&GptqInt4) -> Result<T, ModelError>,
) -> Result<T, ModelError> {
    let names = [
        format!("{prefix}.qweight"),
        format!("{prefix}.qzeros"),
        format!("{prefix}.scales"),
    ];
    if !inp.is_multiple_of(group) || !inp.is_multiple_of(8) {
        return Err(ModelError::BadTensor {
            path: ckpt.dir().to_path_buf(),
            tensor: names[0].clone(),
            problem: format!("has {inp} inputs, not a multiple of the group size {group}"),
        });
    }
    let qweight = ckpt
        .get(&names[0], "int4 weights")?
        .to_i32(&[inp / 8, out])?;
    let qzeros = ckpt
        .get(&names[1], "int4 zero points")?
        .to_i32(&[inp / group, out.div_ceil(8)])?;
    let scales_raw = ckpt.get(&names[2], "f16 group scales")?;
    scales_raw.expect_shape(&[inp / group, out])?;
    scales_raw.expect_dtype(&[Dtype::F16])?;
    let scales: Vec<f16> = scales_raw
        .bytes
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]))
        .collect();
    let layer = GptqInt4 {
        qweight: &qweight,
        qzeros: &qzeros,
        scales: &scales,
        in_dim: inp,
        out_dim: out,
        group,
    };
    f(&layer).map_err(|e| match e {
        ModelError::Invalid(problem) => ModelError::BadTensor {
            path: scales_raw.path.to_path_buf(),
            tensor: names[1].clone(),
            problem,
        },
        other => other,
    })
}

/// An int4 Linear as Q4_0 (`q4`) or dequantized to f32.
fn int4_linear(
    ckpt: &Checkpoint,
    prefix: &str,
    inp: usize,
    out: usize,
    group: usize,
    q4: bool,
) -> Result<HostLinear, ModelError> {
    with_int4(ckpt, prefix, inp, out, group, |layer| {
        if q4 {
            layer
                .to_q4_0()
                .map(HostLinear::Q4_0)
                .map_err(ModelError::Invalid)
        } else {
            Ok(HostLinear::F32(layer.dequantize()))
        }
    })
}

fn read_layer(
    config: &Config,
    ckpt: &Checkpoint,
    index: usize,
    layout: Layout,
    q4_experts: bool,
) -> Result<HostLayer, ModelError> {
    let c = config;
    let (h, kv, d, hidden, inter, n_experts) = (
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.hidden_size,
        c.intermediate_size,
        c.num_local_experts,
    );
    let group = c
        .quantization
        .as_ref()
        .and_then(|q| q.group_size)
        .unwrap_or(64);
    let p = format!("model.layers.{index}");
    let mut qkv_weight =
        dense_linear(ckpt, &format!("{p}.self_attn.q_proj"), h * d, hidden, group)?;
    qkv_weight.extend(dense_linear(
        ckpt,
        &format!("{p}.self_attn.k_proj"),
        kv * d,
        hidden,
        group,
    )?);
    qkv_weight.extend(dense_linear(
        ckpt,
        &format!("{p}.self_attn.v_proj"),
        kv * d,
        hidden,
        group,
    )?);
    let mut qkv_bias = vector(ckpt, &format!("{p}.self_attn.q_proj.bias"), h * d)?;
    qkv_bias.extend(vector(ckpt, &format!("{p}.self_attn.k_proj.bias"), kv * d)?);
    qkv_bias.extend(vector(ckpt, &format!("{p}.self_attn.v_proj.bias"), kv * d)?);
    let experts = match layout {
        // Experts repack independently: one per core (the repack is most of a load's CPU time).
        Layout::Int4 => (0..n_experts)
            .into_par_iter()
            .map(|e| {
                let ep = format!("{p}.mlp.experts.{e}");
                let gate = int4_linear(
                    ckpt,
                    &format!("{ep}.gate_proj"),
                    hidden,
                    inter,
                    group,
                    q4_experts,
                )?;
                let up = int4_linear(
                    ckpt,
                    &format!("{ep}.up_proj"),
                    hidden,
                    inter,
                    group,
                    q4_experts,
                )?;
                let gate_up = match (gate, up) {
                    (HostLinear::F32(mut g), HostLinear::F32(u)) => {
                        g.extend(u);
                        HostLinear::F32(g)
                    }
                    (HostLinear::Q4_0(mut g), HostLinear::Q4_0(u)) => {
                        g.extend(u);
                        HostLinear::Q4_0(g)
                    }
                    _ => unreachable!("both projections use the same format"),
                };
                let mut gate_up_bias = vector(ckpt, &format!("{ep}.gate_proj.bias"), inter)?;
                gate_up_bias.extend(vector(ckpt, &format!("{ep}.up_proj.bias"), inter)?);
                Ok(HostExpert {
                    gate_up,
                    gate_up_bias,
                    down: int4_linear(
                        ckpt,
                        &format!("{ep}.down_proj"),
                        inter,
                        hidden,
                        group,
                        q4_experts,
                    )?,
                    down_bias: vector(ckpt, &format!("{ep}.down_proj.bias"), hidden)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?,
        Layout::Bf16 | Layout::Mxfp4 => fused_experts(c, ckpt, &p, layout)?,
        Layout::Synthetic => unreachable!("synthetic models are not loaded from files"),
    };
    Ok(HostLayer {
        input_norm: vector(ckpt, &format!("{p}.input_layernorm.weight"), hidden)?,
        post_norm: vector(
            ckpt,
            &format!("{p}.post_attention_layernorm.weight"),
            hidden,
        )?,
        qkv_weight,
        qkv_bias,
        o_weight: dense_linear(ckpt, &format!("{p}.self_attn.o_proj"), hidden, h * d, group)?,
        o_bias: vector(ckpt, &format!("{p}.self_attn.o_proj.bias"), hidden)?,
        sinks: vector(ckpt, &format!("{p}.self_attn.sinks"), h)?,
        router_weight: ckpt
            .get(&format!("{p}.mlp.router.weight"), "router weight")?
            .to_f32(&[n_experts, hidden])?,
        router_bias: vector(ckpt, &format!("{p}.mlp.router.bias"), n_experts)?,
        experts,
    })
}

/// Experts of layouts 4a (bf16 `x @ W`, gate/up interleaved in columns) and 4c (MXFP4
/// [E, out, in], gate/up interleaved in rows), converted to Linear layout, gate rows first.
fn fused_experts(
    c: &Config,
    ckpt: &Checkpoint,
    p: &str,
    layout: Layout,
) -> Result<Vec<HostExpert>, ModelError> {
    let (e_count, hidden, inter) = (c.num_local_experts, c.hidden_size, c.intermediate_size);
    let ep = format!("{p}.mlp.experts");
    // [E, 2I, H] and [E, H, I] Linear layout, gate/up still interleaved in rows.
    let (gate_up, down) = match layout {
        Layout::Bf16 => {
            let gu = ckpt
                .get(&format!("{ep}.gate_up_proj"), "[E, H, 2I] fused experts")?
                .to_f32(&[e_count, hidden, 2 * inter])?;
            let dn = ckpt
                .get(&format!("{ep}.down_proj"), "[E, I, H] fused experts")?
                .to_f32(&[e_count, inter, hidden])?;
            (
                transpose_experts(&gu, e_count, hidden, 2 * inter),
                transpose_experts(&dn, e_count, inter, hidden),
            )
        }
        _ => {
            let mx = |name: &str, out: usize, inp: usize| -> Result<Vec<f32>, ModelError> {
                if !inp.is_multiple_of(32) {
                    return Err(ModelError::Invalid(format!(
                        "{name}: {inp} inputs are not a multiple of the MXFP4 block of 32"
                    )));
                }
                let blocks_name = format!("{ep}.{name}_blocks");
                let scales_name = format!("{ep}.{name}_scales");
                let blocks = ckpt.get(&blocks_name, "MXFP4 blocks")?;
                let blocks = blocks.to_u8(&[e_count, out, inp / 32, 16])?;
                let scales = ckpt.get(&scales_name, "MXFP4 E8M0 scales")?;
                let scales = scales.to_u8(&[e_count, out, inp / 32])?;
                Ok(mxfp4_dequantize(blocks, scales, e_count * out, inp))
            };
            (
                mx("gate_up_proj", 2 * inter, hidden)?,
                mx("down_proj", hidden, inter)?,
            )
        }
    };
    let gu_bias = ckpt
        .get(&format!("{ep}.gate_up_proj_bias"), "[E, 2I] bias")?
        .to_f32(&[e_count, 2 * inter])?;
    let down_bias = ckpt
        .get(&format!("{ep}.down_proj_bias"), "[E, H] bias")?
        .to_f32(&[e_count, hidden])?;
    let mut experts = Vec::with_capacity(e_count);
    for e in 0..e_count {
        let rows = &gate_up[e * 2 * inter * hidden..][..2 * inter * hidden];
        let mut w = Vec::with_capacity(2 * inter * hidden);
        for parity in 0..2 {
            for r in 0..inter {
                w.extend_from_slice(&rows[(2 * r + parity) * hidden..][..hidden]);
            }
        }
        let bias = &gu_bias[e * 2 * inter..][..2 * inter];
        let gate_up_bias = (0..2)
            .flat_map(|parity| (0..inter).map(move |r| bias[2 * r + parity]))
            .collect();
        experts.push(HostExpert {
            gate_up: HostLinear::F32(w),
            gate_up_bias,
            down: HostLinear::F32(down[e * hidden * inter..][..hidden * inter].to_vec()),
            down_bias: down_bias[e * hidden..][..hidden].to_vec(),
        });
    }
    Ok(experts)
}

/// [E, a, b] -> [E, b, a].
fn transpose_experts(values: &[f32], e_count: usize, a: usize, b: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for e in 0..e_count {
        let src = &values[e * a * b..][..a * b];
        let dst = &mut out[e * a * b..][..a * b];
        for i in 0..a {
            for j in 0..b {
                dst[j * a + i] = src[i * b + j];
            }
        }
    }
    out
}
