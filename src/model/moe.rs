//! The mixture of experts (spec 2): top-k router with softmax over the chosen k, clamped
//! SwiGLU experts with biases.
//!
//! Two forms. Per-expert weights (CPU, Metal, f32 mode): the routing is read on the host and
//! tokens are grouped per expert so each chosen expert runs one matmul over all its tokens.
//! Stacked Q4_0 weights (CUDA): the routing stays on the device; a few tokens (decode) run
//! as one indexed matvec per projection over their top-k experts, many tokens (prefill) as
//! grouped matmuls over dequantized experts.

use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Module, Tensor};

use super::error::ModelError;
use super::moe_host::{self, Routing};
use super::moe_ops;
use super::q4_0_x16::Q4_0x16;
use super::q4_stack::Q4Stack;
use super::quant::{Q4Activations, q4_0_matmul_with};

/// A Linear's weight in Linear layout [out, in]: dense or GGML-quantized.
pub enum ExpertLinear {
    /// Dense in the activation dtype.
    Dense(Tensor),
    /// Q4_0 on a GPU through candle (activations converted to f32 around it).
    Quantized(QMatMul),
    /// Q4_0 blocks on the CPU [rows, cols], run by [`q4_0_matmul_with`] on `activations`.
    Q4Cpu {
        bytes: Vec<u8>,
        rows: usize,
        cols: usize,
        activations: Q4Activations,
    },
    /// Q4_0 on the CPU repacked 16 rows at a time, on 8-bit activations in decode and
    /// prefill ([`Q4_0x16`]): the default where the CPU has AVX-512 VNNI.
    Q4CpuX16(Q4_0x16),
}

impl ExpertLinear {
    /// Bytes the weight occupies.
    pub fn bytes(&self) -> u64 {
        match self {
            Self::Dense(w) => (w.elem_count() * w.dtype().size_in_bytes()) as u64,
            Self::Quantized(QMatMul::QTensor(q)) => q.storage_size_in_bytes() as u64,
            Self::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => {
                (w.elem_count() * w.dtype().size_in_bytes()) as u64
            }
            Self::Q4Cpu { bytes, .. } => bytes.len() as u64,
            Self::Q4CpuX16(weights) => weights.len_bytes() as u64,
        }
    }

    /// The shape [rows, cols] of a weight the host runs itself (Q4_0 on the CPU, in either
    /// layout: what the host MoE path multiplies by); `None` for the other kinds.
    pub(crate) fn host_shape(&self) -> Option<(usize, usize)> {
        match self {
            Self::Q4Cpu { rows, cols, .. } => Some((*rows, *cols)),
            Self::Q4CpuX16(weights) => Some((weights.rows(), weights.cols())),
            Self::Dense(_) | Self::Quantized(_) => None,
        }
    }

    /// `x` [m, cols] f32 times the transpose of a weight the host runs itself: [m, rows];
    /// `None` for the other kinds.
    pub(crate) fn host_matmul(&self, x: &[f32], m: usize) -> Option<Vec<f32>> {
        match self {
            Self::Q4Cpu {
                bytes,
                rows,
                cols,
                activations,
            } => Some(q4_0_matmul_with(bytes, *rows, *cols, x, m, *activations)),
            Self::Q4CpuX16(weights) => Some(weights.matmul_q8(x, m)),
            Self::Dense(_) | Self::Quantized(_) => None,
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(w) => x.matmul(&w.t()?),
            Self::Quantized(q) => q.forward(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype()),
            Self::Q4Cpu { .. } | Self::Q4CpuX16(_) => {
                let m = x.dim(0)?;
                let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let (rows, out) = self
                    .host_shape()
                    .zip(self.host_matmul(&xs, m))
                    .map(|((rows, _), out)| (rows, out))
                    .ok_or_else(|| candle_core::Error::Msg("not a host weight".into()))?;
                Tensor::from_vec(out, (m, rows), x.device())?.to_dtype(x.dtype())
            }
        }
    }
}

/// One expert: gate and up stacked ([2I, H]: rows 0..I gate, I..2I up) and down ([H, I]).
pub struct Expert {
    pub gate_up: ExpertLinear,
    pub gate_up_bias: Tensor,
    pub down: ExpertLinear,
    pub down_bias: Tensor,
}

/// Every expert's projections stacked (CUDA, Q4_0), biases inside.
pub struct StackedExperts {
    /// [experts][2I, H].
    pub gate_up: Q4Stack,
    /// [experts][H, I].
    pub down: Q4Stack,
    /// The router's bias in f32 [experts], which the routing and combine kernels add.
    pub router_bias: Tensor,
}

/// How a layer's experts are held.
pub enum Experts {
    PerExpert(Vec<Expert>),
    Stacked(StackedExperts),
}

impl Experts {
    /// Number of experts.
    pub fn len(&self) -> usize {
        match self {
            Self::PerExpert(v) => v.len(),
            Self::Stacked(s) => s.gate_up.experts(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of all experts' weights and biases.
    pub fn bytes(&self) -> u64 {
        match self {
            Self::PerExpert(v) => v.iter().map(Expert::bytes).sum(),
            Self::Stacked(s) => s.bytes(),
        }
    }

    /// Whether any expert multiplies 8-bit activations (the CPU's Q4_0 kernels).
    pub fn quantizes_activations(&self) -> bool {
        let q8 = |linear: &ExpertLinear| {
            matches!(
                linear,
                ExpertLinear::Q4Cpu {
                    activations: Q4Activations::Q8 | Q4Activations::Q8Prefill,
                    ..
                } | ExpertLinear::Q4CpuX16(_)
            )
        };
        match self {
            Self::PerExpert(v) => v.iter().any(|e| q8(&e.gate_up) || q8(&e.down)),
            Self::Stacked(_) => false,
        }
    }
}

impl StackedExperts {
    /// Bytes of the stacks and biases.
    pub fn bytes(&self) -> u64 {
        self.gate_up.size_in_bytes()
            + self.down.size_in_bytes()
            + 4 * self.router_bias.elem_count() as u64
    }
}

/// Stacked experts run as one indexed matvec per projection up to this many (token, expert)
/// pairs; beyond, each expert's weight is dequantized once for a grouped matmul, which reads
/// it once instead of once per pair.
const INDEXED_MAX_PAIRS: usize = 64;

/// Router and experts of one layer.
pub struct Moe {
    /// [experts, hidden].
    pub router_weight: Tensor,
    pub router_bias: Tensor,
    pub experts: Experts,
    pub top_k: usize,
    pub intermediate: usize,
    pub alpha: f64,
    pub limit: f64,
}

/// The top-k experts of one token and their weights (softmax over the k logits).
pub fn route(logits: &[f32], top_k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Stable sort: ties go to the lower expert index, as torch.topk does on CPU.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(top_k);
    let max = order
        .iter()
        .map(|&e| logits[e])
        .fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = order.iter().map(|&e| (logits[e] - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    order
        .into_iter()
        .zip(exps)
        .map(|(e, x)| (e, x / sum))
        .collect()
}

impl Expert {
    /// Bytes of the expert's weights and biases.
    pub fn bytes(&self) -> u64 {
        let bias = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        self.gate_up.bytes() + self.down.bytes() + bias(&self.gate_up_bias) + bias(&self.down_bias)
    }
}

impl Moe {
    /// The residual stream `residual` [n, hidden] plus what the router and the chosen experts
    /// make of its normed `x`.
    pub fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor, ModelError> {
        let scores = x.matmul(&self.router_weight.t()?)?;
        let n = x.dim(0)?;
        if let Experts::Stacked(s) = &self.experts
            && n * self.top_k <= INDEXED_MAX_PAIRS
        {
            // The kernels add the router's bias and the residual themselves.
            return Ok(self.forward_indexed(s, x, &scores, residual)?);
        }
        let logits = scores
            .broadcast_add(&self.router_bias)?
            .to_dtype(DType::F32)?;
        if let Experts::PerExpert(experts) = &self.experts
            && x.device().is_cpu()
            && x.dtype() == DType::F32
            && experts
                .iter()
                .all(|e| e.gate_up.host_shape().is_some() && e.down.host_shape().is_some())
        {
            return self.forward_host(experts, x, &logits, residual);
        }
        let out = match &self.experts {
            Experts::PerExpert(experts) => {
                self.forward_grouped(x, &logits, experts.len(), |e, xs| {
                    self.expert_forward(&experts[e], xs)
                })?
            }
            Experts::Stacked(s) => {
                self.forward_grouped(x, &logits, s.gate_up.experts(), |e, xs| {
                    self.dequantized_expert_forward(s, e, xs)
                })?
            }
        };
        Ok((residual + out)?)
    }

    /// Reads the routing on the host and runs each chosen expert once over all its tokens;
    /// `run(expert, xs)` gives that expert's outputs for the rows `xs`.
    fn forward_grouped(
        &self,
        x: &Tensor,
        logits: &Tensor,
        experts: usize,
        run: impl Fn(usize, &Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let logits = logits.to_vec2::<f32>()?;
        let mut groups: Vec<(Vec<u32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); experts];
        for (token, row) in logits.iter().enumerate() {
            for (expert, weight) in route(row, self.top_k) {
                groups[expert].0.push(token as u32);
                groups[expert].1.push(weight);
            }
        }
        let mut out = x.zeros_like()?;
        for (expert, (tokens, weights)) in groups.into_iter().enumerate() {
            if tokens.is_empty() {
                continue;
            }
            let m = tokens.len();
            let index = Tensor::from_vec(tokens, m, x.device())?;
            let xs = if n == 1 {
                x.clone()
            } else {
                x.index_select(&index, 0)?
            };
            let y = run(expert, &xs)?;
            let weights = Tensor::from_vec(weights, (m, 1), x.device())?.to_dtype(y.dtype())?;
            out = out.index_add(&index, &y.broadcast_mul(&weights)?, 0)?;
        }
        Ok(out)
    }

    /// [`Moe::forward_grouped`] for Q4_0 experts on the CPU with f32 activations, on host
    /// slices ([`moe_host`]): the same sums without a tensor per step.
    fn forward_host(
        &self,
        experts: &[Expert],
        x: &Tensor,
        logits: &Tensor,
        residual: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let (n, hidden) = x.dims2()?;
        let routing = Routing {
            n,
            hidden,
            experts: experts.len(),
            top_k: self.top_k,
        };
        let host = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        let out = moe_host::grouped(
            &host(x)?,
            &host(residual)?,
            &host(logits)?,
            routing,
            |e, xs, m| self.expert_host(e, &experts[e], xs, m, hidden),
        )?;
        Ok(Tensor::from_vec(out, (n, hidden), x.device())?.to_dtype(residual.dtype())?)
    }

    /// Expert `index` over the rows `xs` [m, hidden]: [m, hidden] with its biases, on the host.
    fn expert_host(
        &self,
        index: usize,
        expert: &Expert,
        xs: &[f32],
        m: usize,
        hidden: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let inter = self.intermediate;
        let bias = |t: &Tensor, what: &str, len: usize| -> Result<Vec<f32>, ModelError> {
            let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            if values.len() != len {
                return Err(ModelError::Invalid(format!(
                    "expert {index}: the {what} bias has {} values, not {len}",
                    values.len()
                )));
            }
            Ok(values)
        };
        let project = |linear: &ExpertLinear, what: &str, x: &[f32], shape: (usize, usize)| {
            match linear.host_shape() {
                Some(found) if found == shape => linear.host_matmul(x, m),
                _ => None,
            }
            .ok_or_else(|| {
                ModelError::Invalid(format!(
                    "expert {index}: the {what} weight is {:?}, not a Q4_0 [{}, {}] on the CPU",
                    linear.host_shape().map(|(rows, cols)| [rows, cols]),
                    shape.0,
                    shape.1
                ))
            })
        };
        let gate_up = project(&expert.gate_up, "gate_up", xs, (2 * inter, hidden))?;
        let gate_up_bias = bias(&expert.gate_up_bias, "gate_up", 2 * inter)?;
        let glu = moe_host::bias_swiglu(
            &gate_up,
            &gate_up_bias,
            inter,
            self.alpha as f32,
            self.limit as f32,
        );
        let mut y = project(&expert.down, "down", &glu, (hidden, inter))?;
        let down_bias = bias(&expert.down_bias, "down", hidden)?;
        for row in y.chunks_exact_mut(hidden) {
            for (v, b) in row.iter_mut().zip(&down_bias) {
                *v += b;
            }
        }
        Ok(y)
    }

    fn expert_forward(&self, expert: &Expert, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gate_up = expert
            .gate_up
            .forward(xs)?
            .broadcast_add(&expert.gate_up_bias)?;
        expert
            .down
            .forward(&self.swiglu(&gate_up)?)?
            .broadcast_add(&expert.down_bias)
    }

    /// One stacked expert, dequantized to the activation dtype for a dense matmul (on CUDA
    /// bf16, for tensor-core matmuls: that rounds each weight to 8 significant bits, where
    /// decode's indexed matvec reads them exactly).
    fn dequantized_expert_forward(
        &self,
        s: &StackedExperts,
        expert: usize,
        xs: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let dtype = xs.dtype();
        let gate_up = xs
            .matmul(&s.gate_up.dequantize(expert, dtype)?.t()?)?
            .broadcast_add(&s.gate_up.bias().get(expert)?.to_dtype(dtype)?)?;
        self.swiglu(&gate_up)?
            .matmul(&s.down.dequantize(expert, dtype)?.t()?)?
            .broadcast_add(&s.down.bias().get(expert)?.to_dtype(dtype)?)
    }

    /// The clamped SwiGLU of gate and up (the two halves of the last dimension).
    fn swiglu(&self, gate_up: &Tensor) -> candle_core::Result<Tensor> {
        let i = self.intermediate;
        let gate = gate_up.narrow(D::Minus1, 0, i)?.minimum(self.limit)?;
        let up = gate_up
            .narrow(D::Minus1, i, i)?
            .clamp(-self.limit, self.limit)?;
        let glu = (&gate * candle_nn::ops::sigmoid(&(&gate * self.alpha)?)?)?;
        (up + 1.0)? * glu
    }

    /// A few tokens: the routing never leaves the device, and each projection is one indexed
    /// matvec over every token's chosen experts: with the router's matmul, six launches for
    /// the whole MoE and its residual add.
    fn forward_indexed(
        &self,
        s: &StackedExperts,
        x: &Tensor,
        scores: &Tensor,
        residual: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let ids = moe_ops::route_top_k(scores, &s.router_bias, self.top_k)?;
        let gate_up = s.gate_up.indexed_matvec(&x.unsqueeze(1)?, &ids)?;
        let hidden = moe_ops::swiglu(&gate_up, self.intermediate, self.alpha, self.limit)?;
        let down = s.down.indexed_matvec(&hidden, &ids)?;
        moe_ops::combine(&down, scores, &s.router_bias, &ids, residual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn only_q4_0_cpu_experts_on_8_bit_activations_quantize_them() {
        let q4 = |activations| ExpertLinear::Q4Cpu {
            bytes: Vec::new(),
            rows: 0,
            cols: 0,
            activations,
        };
        let bias = Tensor::zeros(1, DType::F32, &candle_core::Device::Cpu).expect("bias");
        let expert = |gate_up, down| Expert {
            gate_up,
            gate_up_bias: bias.clone(),
            down,
            down_bias: bias.clone(),
        };
        let dense = || ExpertLinear::Dense(bias.clone());
        assert!(
            Experts::PerExpert(vec![expert(q4(Q4Activations::Q8), q4(Q4Activations::Q8))])
                .quantizes_activations()
        );
        let x16 =
            || ExpertLinear::Q4CpuX16(Q4_0x16::from_q4_0(&[0; 288], 16, 32).expect("one block"));
        assert!(Experts::PerExpert(vec![expert(x16(), x16())]).quantizes_activations());
        for experts in [
            vec![expert(q4(Q4Activations::F32), q4(Q4Activations::F32))],
            vec![expert(dense(), dense())],
            Vec::new(),
        ] {
            assert!(!Experts::PerExpert(experts).quantizes_activations());
        }
    }

    /// Q4_0 blocks [rows, cols] with small scales and varied codes.
    fn q4_bytes(rows: usize, cols: usize, seed: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for block in 0..rows * cols / 32 {
            let scale = half::f16::from_f32(0.01 + ((block + seed) % 7) as f32 * 0.002);
            bytes.extend_from_slice(&scale.to_le_bytes());
            bytes.extend((0..16).map(|i| ((block * 31 + i * 17 + seed * 5) % 256) as u8));
        }
        bytes
    }

    #[test]
    fn the_host_path_equals_candles_grouped_ops() -> candle_core::Result<()> {
        use candle_core::Device;
        let (hidden, inter, experts, n) = (64, 32, 4, 40);
        let cpu = &Device::Cpu;
        let q4 = |rows, cols, seed| ExpertLinear::Q4Cpu {
            bytes: q4_bytes(rows, cols, seed),
            rows,
            cols,
            activations: Q4Activations::F32,
        };
        let experts: Vec<Expert> = (0..experts)
            .map(|e| -> candle_core::Result<Expert> {
                Ok(Expert {
                    gate_up: q4(2 * inter, hidden, e),
                    gate_up_bias: Tensor::randn(0f32, 0.5, 2 * inter, cpu)?,
                    down: q4(hidden, inter, e + 10),
                    down_bias: Tensor::randn(0f32, 0.5, hidden, cpu)?,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        let moe = Moe {
            router_weight: Tensor::randn(0f32, 1.0, (4, hidden), cpu)?,
            router_bias: Tensor::randn(0f32, 0.1, 4, cpu)?,
            experts: Experts::PerExpert(experts),
            top_k: 2,
            intermediate: inter,
            alpha: 1.702,
            limit: 7.0,
        };
        // Large enough that some gate values pass the clamp limit.
        let x = Tensor::randn(0f32, 3.0, (n, hidden), cpu)?;
        let residual = Tensor::randn(0f32, 1.0, (n, hidden), cpu)?;
        let host = moe
            .forward(&x, &residual)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let Experts::PerExpert(list) = &moe.experts else {
            unreachable!("built per expert above")
        };
        let logits = x
            .matmul(&moe.router_weight.t()?)?
            .broadcast_add(&moe.router_bias)?;
        let ops = (&residual
            + moe.forward_grouped(&x, &logits, list.len(), |e, xs| {
                moe.expert_forward(&list[e], xs)
            })?)?;
        let diff = (host - ops)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max |host - candle ops| {diff}");
        Ok(())
    }

    #[test]
    fn the_host_path_names_an_expert_of_the_wrong_shape() -> candle_core::Result<()> {
        use candle_core::Device;
        let cpu = &Device::Cpu;
        let q4 = |rows, cols| ExpertLinear::Q4Cpu {
            bytes: q4_bytes(rows, cols, 1),
            rows,
            cols,
            activations: Q4Activations::F32,
        };
        // down is [32, 32] where the hidden size is 64.
        let expert = Expert {
            gate_up: q4(64, 64),
            gate_up_bias: Tensor::zeros(64, DType::F32, cpu)?,
            down: q4(32, 32),
            down_bias: Tensor::zeros(64, DType::F32, cpu)?,
        };
        let moe = Moe {
            router_weight: Tensor::zeros((1, 64), DType::F32, cpu)?,
            router_bias: Tensor::zeros(1, DType::F32, cpu)?,
            experts: Experts::PerExpert(vec![expert]),
            top_k: 1,
            intermediate: 32,
            alpha: 1.702,
            limit: 7.0,
        };
        let x = Tensor::ones((2, 64), DType::F32, cpu)?;
        let err = moe.forward(&x, &x).map(|_| ()).unwrap_err().to_string();
        assert!(
            err.contains("expert 0: the down weight is Some([32, 32]), not a Q4_0 [64, 32]"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn routes_to_top_k_with_softmax_over_k() {
        let chosen = route(&[0.0, 3.0, 1.0, 3.0], 2);
        assert_eq!(chosen[0].0, 1);
        assert_eq!(chosen[1].0, 3);
        assert!((chosen[0].1 - 0.5).abs() < 1e-6);
        let chosen = route(&[2.0, 0.0, 1.0], 2);
        assert_eq!((chosen[0].0, chosen[1].0), (0, 2));
        let e = 1f32.exp();
        assert!((chosen[0].1 - e / (e + 1.0)).abs() < 1e-6);
    }
}
