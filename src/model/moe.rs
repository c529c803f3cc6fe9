//! The mixture of experts (spec 2): top-k router with softmax over the chosen k, clamped
//! SwiGLU experts with biases. Tokens are grouped per expert so each chosen expert runs one
//! matmul over all its tokens.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Tensor};

use super::error::ModelError;
use super::quant::q4_0_matmul;

/// A Linear's weight in Linear layout [out, in]: dense or GGML-quantized.
pub enum ExpertLinear {
    /// Dense in the activation dtype.
    Dense(Tensor),
    /// Q4_0 on a GPU through candle (activations converted to f32 around it).
    Quantized(QMatMul),
    /// Q4_0 blocks on the CPU [rows, cols], run by [`q4_0_matmul`] with f32 activations.
    Q4Cpu {
        bytes: Vec<u8>,
        rows: usize,
        cols: usize,
    },
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
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(w) => x.matmul(&w.t()?),
            Self::Quantized(q) => q.forward(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype()),
            Self::Q4Cpu { bytes, rows, cols } => {
                let m = x.dim(0)?;
                let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let out = q4_0_matmul(bytes, *rows, *cols, &xs, m);
                Tensor::from_vec(out, (m, *rows), x.device())?.to_dtype(x.dtype())
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

/// Router and experts of one layer.
pub struct Moe {
    /// [experts, hidden].
    pub router_weight: Tensor,
    pub router_bias: Tensor,
    pub experts: Vec<Expert>,
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
    /// Runs `x` [n, hidden] through the router and the chosen experts.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let n = x.dim(0)?;
        let logits = x
            .matmul(&self.router_weight.t()?)?
            .broadcast_add(&self.router_bias)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        let mut groups: Vec<(Vec<u32>, Vec<f32>)> =
            vec![(Vec::new(), Vec::new()); self.experts.len()];
        for (token, row) in logits.iter().enumerate() {
            for (expert, weight) in route(row, self.top_k) {
                groups[expert].0.push(token as u32);
                groups[expert].1.push(weight);
            }
        }
        let mut out = x.zeros_like()?;
        for (expert, (tokens, weights)) in self.experts.iter().zip(groups) {
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
            let y = self.expert_forward(expert, &xs)?;
            let weights = Tensor::from_vec(weights, (m, 1), x.device())?.to_dtype(y.dtype())?;
            out = out.index_add(&index, &y.broadcast_mul(&weights)?, 0)?;
        }
        Ok(out)
    }

    fn expert_forward(&self, expert: &Expert, xs: &Tensor) -> candle_core::Result<Tensor> {
        let i = self.intermediate;
        let gate_up = expert
            .gate_up
            .forward(xs)?
            .broadcast_add(&expert.gate_up_bias)?;
        let gate = gate_up.narrow(1, 0, i)?.minimum(self.limit)?;
        let up = gate_up.narrow(1, i, i)?.clamp(-self.limit, self.limit)?;
        let glu = (&gate * candle_nn::ops::sigmoid(&(&gate * self.alpha)?)?)?;
        let hidden = ((up + 1.0)? * glu)?;
        expert
            .down
            .forward(&hidden)?
            .broadcast_add(&expert.down_bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
