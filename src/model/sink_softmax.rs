//! Prefill attention's softmax on the CPU, in place over the scores the `Q K^T` matmul wrote:
//! each query row's visible keys (causal, and within a sliding window) become probabilities
//! with the head's sink in the denominator, the others 0. candle's ops for the same step
//! (add a mask, cat the sinks, make it contiguous, softmax, narrow, contiguous again) each
//! allocate a score-sized tensor (64 MiB per layer for 512 tokens at gpt-oss-20b's 64 heads),
//! and the cat and contiguous copies are strided.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, InplaceOp1, Layout};
use rayon::prelude::*;

use super::attend_cpu::softmax_with_sink;

/// Shapes and positions of one chunk's scores [kv_heads, per_kv * n, keys] (head-major rows:
/// query head `g * per_kv + r / n` of kv head `g`, query `r % n`).
#[derive(Debug, Clone)]
pub struct SinkSoftmax {
    /// One sink logit per query head, [kv_heads * per_kv].
    pub sinks: Vec<f32>,
    /// Queries in the chunk.
    pub n: usize,
    /// Position of the chunk's first query.
    pub start: usize,
    /// Position of the first key (a sliding layer's oldest cached one).
    pub first: usize,
    /// `Some(w)`: a query at t sees keys t-w+1..=t.
    pub window: Option<usize>,
}

impl SinkSoftmax {
    /// The keys `lo..hi` (indexes into a score row) that a query at `qp` sees.
    fn visible(&self, qp: usize, keys: usize) -> (usize, usize) {
        // Keys at positions first..=qp, and with a window only those after qp - w.
        let hi = (qp + 1).saturating_sub(self.first).min(keys);
        let lo = match self.window {
            Some(w) => (qp + 1).saturating_sub(w).saturating_sub(self.first),
            None => 0,
        };
        (lo.min(hi), hi)
    }
}

impl InplaceOp1 for SinkSoftmax {
    fn name(&self) -> &'static str {
        "sink-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (kv_heads, rows, keys) = layout.shape().dims3()?;
        let heads = self.sinks.len();
        if self.n == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || rows != heads / kv_heads * self.n
        {
            candle_core::bail!(
                "sink softmax: scores {:?} do not hold {} queries of {heads} heads",
                layout.shape(),
                self.n
            );
        }
        let (begin, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("sink softmax: scores must be contiguous".into())
        })?;
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!(
                "sink softmax: scores must be f32, not {:?}",
                storage.dtype()
            );
        };
        values[begin..end]
            .par_chunks_mut(keys.max(1))
            .enumerate()
            .for_each(|(row, scores)| {
                // Rows run head-major across kv heads too: row / n is the query head.
                let (head, query) = (row / self.n, row % self.n);
                let (lo, hi) = self.visible(self.start + query, keys);
                scores[..lo].fill(0.0);
                scores[hi..].fill(0.0);
                softmax_with_sink(&mut scores[lo..hi], self.sinks[head]);
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, DType, Device, Tensor};

    /// candle's ops as the attention ran them before: mask, sinks joined, softmax, narrowed.
    fn reference(
        scores: &Tensor,
        op: &SinkSoftmax,
        kv: usize,
        per_kv: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let (n, keys) = (op.n, scores.dim(2)?);
        let mut mask = vec![0f32; n * keys];
        for i in 0..n {
            for j in 0..keys {
                let (qp, kp) = (op.start + i, op.first + j);
                if kp > qp || op.window.is_some_and(|w| kp + w <= qp) {
                    mask[i * keys + j] = f32::NEG_INFINITY;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (n, keys), &Device::Cpu)?;
        let scores = scores
            .reshape((kv, per_kv, n, keys))?
            .broadcast_add(&mask)?;
        let sinks = Tensor::from_vec(op.sinks.clone(), (kv, per_kv, 1, 1), &Device::Cpu)?
            .broadcast_as((kv, per_kv, n, 1))?;
        let joined = Tensor::cat(&[&scores, &sinks], D::Minus1)?.contiguous()?;
        candle_nn::ops::softmax_last_dim(&joined)?
            .narrow(3, 0, keys)?
            .flatten_all()?
            .to_vec1::<f32>()
    }

    #[test]
    fn equals_candles_masked_softmax_with_sinks() -> candle_core::Result<()> {
        let (kv, per_kv) = (2, 3);
        // A later chunk of a full layer (keys from 0), and a sliding window whose oldest key
        // is past position 0.
        for (n, keys, start, first, window) in [
            (5, 12, 7, 0, None),
            (6, 9, 10, 7, Some(4)),
            (4, 4, 0, 0, Some(2)),
        ] {
            let scores = Tensor::randn(0f32, 3.0, (kv, per_kv * n, keys), &Device::Cpu)?;
            let op = SinkSoftmax {
                sinks: (0..kv * per_kv).map(|h| h as f32 * 0.7 - 1.0).collect(),
                n,
                start,
                first,
                window,
            };
            let want = reference(&scores, &op, kv, per_kv)?;
            let ours = scores.copy()?;
            ours.inplace_op1(&op)?;
            let got = ours.flatten_all()?.to_vec1::<f32>()?;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-6,
                    "n {n} window {window:?} [{i}]: {g} vs {w}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn refuses_scores_of_another_shape_or_dtype() -> candle_core::Result<()> {
        let op = SinkSoftmax {
            sinks: vec![0.0; 4],
            n: 3,
            start: 0,
            first: 0,
            window: None,
        };
        let wrong_rows = Tensor::zeros((2, 5, 3), DType::F32, &Device::Cpu)?;
        let err = wrong_rows
            .inplace_op1(&op)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not hold 3 queries of 4 heads"), "{err}");
        let bf16 = Tensor::zeros((2, 6, 3), DType::BF16, &Device::Cpu)?;
        let err = bf16.inplace_op1(&op).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("must be f32"), "{err}");
        Ok(())
    }
}
