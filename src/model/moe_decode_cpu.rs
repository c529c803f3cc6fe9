//! One decode token through its chosen Q4_0 experts on the CPU, in two parallel regions per
//! layer instead of eight.
//!
//! The grouped path ([`super::moe::Moe`]) runs each chosen expert on its own: two matmuls
//! (each a rayon region the engine thread waits on), a dozen small candle ops, and with 8-bit
//! activations a quantization of the same `x` once per expert. Here the top-k experts' gate_up
//! rows are one parallel region over all of them and their down rows another, `x` is
//! quantized once, and SwiGLU, biases and the weighted sum run on the host in f32 in the
//! grouped path's order, so the result is the same to the bit.

use rayon::prelude::*;

use super::moe::{Expert, ExpertLinear};
use super::q4_0_q8::{Q8Rows, q8_row};
use super::quant::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_LEN, Q4Activations, ROWS_PER_TASK, q4_0_row};

/// One chosen expert's Q4_0 projection: its bytes and shape.
#[derive(Clone, Copy)]
struct Q4Matrix<'a> {
    bytes: &'a [u8],
    rows: usize,
    cols: usize,
}

impl<'a> Q4Matrix<'a> {
    /// The matrix of a Q4_0 CPU expert projection, with the activations it runs on; `None`
    /// for any other form (the grouped path handles those).
    fn of(linear: &'a ExpertLinear) -> Option<(Self, Q4Activations)> {
        match linear {
            ExpertLinear::Q4Cpu {
                bytes,
                rows,
                cols,
                activations,
            } => Some((
                Self {
                    bytes,
                    rows: *rows,
                    cols: *cols,
                },
                *activations,
            )),
            _ => None,
        }
    }

    fn row_bytes(&self) -> usize {
        self.cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES
    }
}

/// One row of activations as a kernel reads it: f32 as given, or quantized once to 8 bits.
enum Activations<'a> {
    F32(&'a [f32]),
    Q8(Q8Rows),
}

impl<'a> Activations<'a> {
    fn new(x: &'a [f32], activations: Q4Activations) -> Self {
        match activations {
            Q4Activations::F32 => Self::F32(x),
            Q4Activations::Q8 => Self::Q8(Q8Rows::quantize(x, 1, x.len())),
        }
    }

    /// One weight row's dot product with this row, into `out` (which holds 0: the f32
    /// kernel adds to it).
    fn dot(&self, weights: &[u8], out: &mut f32) {
        let dst = std::slice::from_mut(out);
        match self {
            Self::F32(x) => q4_0_row(weights, x, x.len(), dst),
            Self::Q8(x) => q8_row(weights, x, dst),
        }
    }
}

/// Every row of every matrix in `mats` against its own activations (`xs[i]` for `mats[i]`),
/// as one parallel region: tasks of [`ROWS_PER_TASK`] rows of any matrix. Returns each
/// matrix's outputs [rows].
fn rows_of_all(mats: &[Q4Matrix], xs: &[&Activations]) -> Vec<Vec<f32>> {
    let mut outs: Vec<Vec<f32>> = mats.iter().map(|m| vec![0f32; m.rows]).collect();
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (slot, out) in outs.iter_mut().enumerate() {
        for (chunk, dst) in out.chunks_mut(ROWS_PER_TASK).enumerate() {
            tasks.push((slot, chunk * ROWS_PER_TASK, dst));
        }
    }
    tasks.into_par_iter().for_each(|(slot, first_row, dst)| {
        let mat = mats[slot];
        let row_bytes = mat.row_bytes();
        for (k, out) in dst.iter_mut().enumerate() {
            let r = first_row + k;
            xs[slot].dot(&mat.bytes[r * row_bytes..][..row_bytes], out);
        }
    });
    outs
}

/// gpt-oss's clamped SwiGLU of one expert's `gate_up` [2 * inter] (gate then up, bias added),
/// with candle's f32 ops' arithmetic (the grouped path's): [inter].
fn swiglu(gate_up: &[f32], inter: usize, alpha: f32, limit: f32) -> Vec<f32> {
    let (gate, up) = gate_up.split_at(inter);
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| {
            let g = g.min(limit);
            let u = u.max(-limit).min(limit);
            // candle's sigmoid: `1 / (exp(-v) + 1)`.
            let glu = g * (1.0 / ((-(g * alpha)).exp() + 1.0));
            (u + 1.0) * glu
        })
        .collect()
}

/// What the layer's MoE needs besides the experts: SwiGLU's constants.
#[derive(Debug, Clone, Copy)]
pub(super) struct SwigluParams {
    pub intermediate: usize,
    pub alpha: f32,
    pub limit: f32,
}

/// `residual` [hidden] plus the chosen experts' outputs for one token's normed `x` [hidden]
/// f32, weighted by `chosen` ((expert, weight), as [`super::moe::route`] gives them); `None`
/// when a chosen expert is not a Q4_0 CPU expert or the projections disagree on their
/// activations (the caller then runs the grouped path).
pub(super) fn forward_token(
    experts: &[Expert],
    chosen: &[(usize, f32)],
    x: &[f32],
    residual: &[f32],
    swiglu_params: SwigluParams,
) -> candle_core::Result<Option<Vec<f32>>> {
    // Ascending expert order: the grouped path adds the experts' outputs in that order.
    let mut chosen = chosen.to_vec();
    chosen.sort_by_key(|&(e, _)| e);
    let mut gate_ups = Vec::with_capacity(chosen.len());
    let mut downs = Vec::with_capacity(chosen.len());
    let mut activations = None;
    for &(e, _) in &chosen {
        let Some(expert) = experts.get(e) else {
            candle_core::bail!("the router chose expert {e} of {}", experts.len());
        };
        let (Some((gate_up, a)), Some((down, b))) =
            (Q4Matrix::of(&expert.gate_up), Q4Matrix::of(&expert.down))
        else {
            return Ok(None);
        };
        if a != b || activations.is_some_and(|c| c != a) {
            return Ok(None);
        }
        activations = Some(a);
        gate_ups.push(gate_up);
        downs.push(down);
    }
    let Some(activations) = activations else {
        return Ok(None);
    };
    let SwigluParams {
        intermediate,
        alpha,
        limit,
    } = swiglu_params;
    let x = Activations::new(x, activations);
    let gate_up = rows_of_all(&gate_ups, &vec![&x; chosen.len()]);
    let mut hidden = Vec::with_capacity(chosen.len());
    for (&(e, _), mut row) in chosen.iter().zip(gate_up) {
        let bias = experts[e].gate_up_bias.to_vec1::<f32>()?;
        for (v, b) in row.iter_mut().zip(&bias) {
            *v += b;
        }
        hidden.push(swiglu(&row, intermediate, alpha, limit));
    }
    let hidden: Vec<Activations> = hidden
        .iter()
        .map(|h| Activations::new(h, activations))
        .collect();
    let down = rows_of_all(&downs, &hidden.iter().collect::<Vec<_>>());
    let mut sum = vec![0f32; residual.len()];
    for (&(e, weight), row) in chosen.iter().zip(down) {
        let bias = experts[e].down_bias.to_vec1::<f32>()?;
        for ((s, v), b) in sum.iter_mut().zip(row).zip(&bias) {
            *s += (v + b) * weight;
        }
    }
    Ok(Some(
        residual.iter().zip(&sum).map(|(r, s)| r + s).collect(),
    ))
}
