//! Grouped-query attention with biases, per-head sinks and an optional sliding window
//! (spec 2). GQA without copying K/V: the query heads that share a kv head become rows of one
//! matmul against that head's keys.

use candle_core::{D, DType, Tensor};

use super::cache::KvCache;
use super::decode_attention::attention_decode;
use super::error::ModelError;
use super::linear::Linear;
use super::rope::{self, RopeTables};
use super::sink_softmax::SinkSoftmax;

/// One layer's attention weights (Linear layout [out, in]).
pub struct Attention {
    /// q, k and v projections stacked: [(heads + 2 kv_heads) * head_dim, hidden].
    pub qkv_weight: Linear,
    pub qkv_bias: Tensor,
    /// [hidden, heads * head_dim].
    pub o_weight: Linear,
    pub o_bias: Tensor,
    /// [kv_heads, heads_per_kv, 1, 1] f32: per-head logit that joins the softmax denominator.
    pub sinks: Tensor,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// `Some(w)`: a query at t sees keys t-w+1..=t.
    pub window: Option<usize>,
    /// Decode (one token) in one launch with [`attention_decode`] instead of candle's ops.
    pub fused_decode: bool,
}

impl Attention {
    /// Runs `x` [n, hidden] at positions `cache.len()..`; appends k/v to `layer` of the cache.
    pub fn forward(
        &self,
        x: &Tensor,
        tables: &RopeTables,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor, ModelError> {
        let n = x.dim(0)?;
        let (h, kv, d) = (self.heads, self.kv_heads, self.head_dim);
        let start = cache.len();
        let qkv = self.qkv_weight.forward(x)?.broadcast_add(&self.qkv_bias)?;
        let q = qkv
            .narrow(1, 0, h * d)?
            .reshape((n, h, d))?
            .transpose(0, 1)?;
        let k = qkv
            .narrow(1, h * d, kv * d)?
            .reshape((n, kv, d))?
            .transpose(0, 1)?;
        let v = qkv
            .narrow(1, (h + kv) * d, kv * d)?
            .reshape((n, kv, d))?
            .transpose(0, 1)?
            .contiguous()?;
        // Rotated and scaled by 1/sqrt(d) in one pass (see `RopeTables`).
        let q = rope::apply(&q.unsqueeze(0)?, &tables.q_cos, &tables.q_sin)?.squeeze(0)?;
        let k = rope::apply(&k.unsqueeze(0)?, &tables.cos, &tables.sin)?.squeeze(0)?;
        let (k_all, v_all, first) = cache.append(layer, &k, &v)?;
        // A cache narrower than the activations (bf16 under f32) is read where it sits and
        // summed in f32 by the one-op decode, rather than widened whole every token.
        if n == 1 && (self.fused_decode || k_all.dtype() != x.dtype()) {
            // Keys before the window's start (a sliding layer's oldest cached one) are skipped.
            let keys = k_all.dim(1)?;
            let hidden = (0..keys)
                .take_while(|&j| !self.visible(start, first + j))
                .count();
            let (k_all, v_all) = (
                k_all.narrow(1, hidden, keys - hidden)?,
                v_all.narrow(1, hidden, keys - hidden)?,
            );
            let out = attention_decode(&q.reshape((h, d))?, &k_all, &v_all, &self.sinks)?
                .reshape((1, h * d))?;
            return Ok(self.o_weight.forward(&out)?.broadcast_add(&self.o_bias)?);
        }
        // The cache may be narrower than the activations (16-bit under f32): prefill widens it
        // (the planner's `kv_copy` scratch). Over the CPU's f16 cache the chunk attends to its
        // own keys and values as computed, only earlier chunks' rounded: a prompt prefilled in
        // one chunk is exact (the bf16 cache of the fused kernels keeps CUDA's behaviour).
        let (k_all, v_all) = if k_all.dtype() == DType::F16 && x.dtype() == DType::F32 {
            (
                with_chunk(&k_all, &k, x.dtype())?,
                with_chunk(&v_all, &v, x.dtype())?,
            )
        } else {
            (k_all.to_dtype(x.dtype())?, v_all.to_dtype(x.dtype())?)
        };
        let (k_all, v_all) = if k_all.device().is_cpu() {
            (k_all, v_all)
        } else {
            (k_all.contiguous()?, v_all.contiguous()?)
        };
        let keys = k_all.dim(1)?;
        let per_kv = h / kv;
        // [kv, per_kv * n, d]: rows of one kv head's query heads, head-major.
        let q = q.contiguous()?.reshape((kv, per_kv * n, d))?;
        let probs = if x.device().is_cpu() {
            self.probabilities_in_place(&q, &k_all, n, start, first)?
        } else {
            let mask = self
                .mask(n, start, first, keys)
                .map(|mask| Tensor::from_vec(mask, (n, keys), x.device()))
                .transpose()?;
            self.probabilities(&q, &k_all, mask.as_ref(), n)?
        };
        let out = probs
            .to_dtype(v_all.dtype())?
            .matmul(&v_all)?
            .reshape((h, n, d))?
            .transpose(0, 1)?
            .reshape((n, h * d))?;
        Ok(self.o_weight.forward(&out)?.broadcast_add(&self.o_bias)?)
    }

    /// [`Attention::probabilities`] on the CPU: one pass over the scores the matmul wrote
    /// ([`SinkSoftmax`]), no mask, no copies; `start` and `first` are the positions of the
    /// first query and the first key.
    fn probabilities_in_place(
        &self,
        q: &Tensor,
        k_all: &Tensor,
        n: usize,
        start: usize,
        first: usize,
    ) -> Result<Tensor, ModelError> {
        // A fresh tensor (the matmul's, or its f32 copy), so no other tensor sees the writes.
        let scores = q.matmul(&k_all.t()?)?.to_dtype(DType::F32)?;
        scores.inplace_op1(&SinkSoftmax {
            sinks: self.sinks.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
            n,
            start,
            first,
            window: self.window,
        })?;
        Ok(scores)
    }

    /// Softmax over each query's visible keys and its head's sink, [kv, per_kv * n, keys] f32.
    /// Each step replaces the tensor before it, so at most two score-sized f32 tensors are
    /// alive at once (the planner's `SCORE_COPIES`); long prefills are scratch-bound by this.
    fn probabilities(
        &self,
        q: &Tensor,
        k_all: &Tensor,
        mask: Option<&Tensor>,
        n: usize,
    ) -> Result<Tensor, ModelError> {
        let (kv, keys) = (self.kv_heads, k_all.dim(1)?);
        let per_kv = self.heads / kv;
        let mut scores = q
            .matmul(&k_all.t()?)?
            .to_dtype(DType::F32)?
            .reshape((kv, per_kv, n, keys))?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let sinks = self.sinks.broadcast_as((kv, per_kv, n, 1))?;
        let with_sinks = {
            // cat along the last dim can hand back a strided view; softmax wants it contiguous.
            let joined = Tensor::cat(&[&scores, &sinks], D::Minus1)?;
            drop(scores);
            joined.contiguous()?
        };
        let softmax = candle_nn::ops::softmax_last_dim(&with_sinks)?;
        drop(with_sinks);
        Ok(softmax
            .narrow(3, 0, keys)?
            .contiguous()?
            .reshape((kv, per_kv * n, keys))?)
    }

    /// Whether a query at position `qp` sees the key at `kp`.
    fn visible(&self, qp: usize, kp: usize) -> bool {
        kp <= qp && self.window.is_none_or(|w| kp + w > qp)
    }

    /// Additive mask [n, keys] (0 or -inf) for queries at `start..start+n` and keys at
    /// `first..first+keys`; `None` when every key is visible.
    fn mask(&self, n: usize, start: usize, first: usize, keys: usize) -> Option<Vec<f32>> {
        let visible = |qp: usize, kp: usize| self.visible(qp, kp);
        let all_visible = (0..n).all(|i| {
            let qp = start + i;
            visible(qp, first) && visible(qp, first + keys - 1)
        });
        if all_visible {
            return None;
        }
        let mut mask = vec![0f32; n * keys];
        for i in 0..n {
            for j in 0..keys {
                if !visible(start + i, first + j) {
                    mask[i * keys + j] = f32::NEG_INFINITY;
                }
            }
        }
        Some(mask)
    }
}

/// The cached `all` [kv, keys, d], narrower than `dtype`, widened to `dtype` with its last
/// `chunk.dim(1)` positions overwritten by `chunk` (the same positions before the cache
/// rounded them): one widened copy, as plain widening makes.
fn with_chunk(all: &Tensor, chunk: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    let (keys, n) = (all.dim(1)?, chunk.dim(1)?);
    if all.dtype() == dtype {
        // Widening would share the cache's storage, and the overwrite below would change it.
        candle_core::bail!("attention: the cache is already {dtype:?}");
    }
    let widened = all.to_dtype(dtype)?;
    widened.slice_set(&chunk.to_dtype(dtype)?.contiguous()?, 1, keys - n)?;
    Ok(widened)
}
