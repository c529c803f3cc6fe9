//! The CPU's grouped mixture of experts on host slices: the routing is read once, each chosen
//! expert's tokens are gathered into one reused buffer, its projections run on the host
//! ([`super::quant::q4_0_matmul_with`] for Q4_0 weights), bias and SwiGLU are one pass, and
//! the weighted outputs are added into one output buffer. candle's ops for the same steps
//! (gather, two bias adds, six SwiGLU ops, weight multiply, `index_add`) made a fresh tensor
//! each, per expert and layer, `index_add` a copy of the whole [n, hidden] output every time,
//! and each binary op a barrier across the threads.

use rayon::prelude::*;

use super::moe::route;

/// Token rows per parallel task of [`bias_swiglu`]: fewer rows than this run on one thread,
/// where fanning out costs more than the pass.
const SWIGLU_ROWS_PER_TASK: usize = 16;

/// The shape of one layer's routing.
#[derive(Debug, Clone, Copy)]
pub struct Routing {
    /// Tokens.
    pub n: usize,
    /// The residual stream's width.
    pub hidden: usize,
    /// Experts the router scores.
    pub experts: usize,
    /// Experts each token runs.
    pub top_k: usize,
}

/// For each expert, the tokens routed to it (ascending) and their softmax weights, from the
/// router's `logits` [n, experts] (bias added).
pub fn groups(logits: &[f32], routing: Routing) -> Vec<(Vec<usize>, Vec<f32>)> {
    let mut groups = vec![(Vec::new(), Vec::new()); routing.experts];
    for (token, row) in logits.chunks_exact(routing.experts).enumerate() {
        for (expert, weight) in route(row, routing.top_k) {
            groups[expert].0.push(token);
            groups[expert].1.push(weight);
        }
    }
    groups
}

/// `residual` [n, hidden] plus, for each expert in index order, its outputs over its tokens
/// weighted by the routing: `run(expert, xs, m)` gives the expert's [m, hidden] outputs for
/// the rows `xs` [m, hidden] of `x`. Sums in the order candle's `index_add` path summed (the
/// weighted outputs from zero, expert by expert, then the residual), so results are the same.
pub fn grouped<E>(
    x: &[f32],
    residual: &[f32],
    logits: &[f32],
    routing: Routing,
    mut run: impl FnMut(usize, &[f32], usize) -> Result<Vec<f32>, E>,
) -> Result<Vec<f32>, E> {
    let hidden = routing.hidden;
    let mut out = vec![0f32; routing.n * hidden];
    let mut gathered: Vec<f32> = Vec::new();
    for (expert, (tokens, weights)) in groups(logits, routing).into_iter().enumerate() {
        if tokens.is_empty() {
            continue;
        }
        let m = tokens.len();
        gathered.clear();
        for &t in &tokens {
            gathered.extend_from_slice(&x[t * hidden..][..hidden]);
        }
        let y = run(expert, &gathered, m)?;
        for ((&t, &w), y) in tokens.iter().zip(&weights).zip(y.chunks_exact(hidden)) {
            for (o, v) in out[t * hidden..][..hidden].iter_mut().zip(y) {
                *o += v * w;
            }
        }
    }
    // f32 addition commutes: the same values as residual + out.
    for (o, r) in out.iter_mut().zip(residual) {
        *o += r;
    }
    Ok(out)
}

/// gate_up [m, 2 * inter] (gate then up) plus `bias` [2 * inter], through the clamped SwiGLU
/// ([`super::moe_ops::swiglu_value`]): [m, inter].
pub fn bias_swiglu(
    gate_up: &[f32],
    bias: &[f32],
    inter: usize,
    alpha: f32,
    limit: f32,
) -> Vec<f32> {
    let rows = gate_up.len() / (2 * inter).max(1);
    let mut out = vec![0f32; rows * inter];
    let row = |(dst, src): (&mut [f32], &[f32])| {
        let (gate, up) = src.split_at(inter);
        let (gate_bias, up_bias) = bias.split_at(inter);
        for (o, ((g, gb), (u, ub))) in dst
            .iter_mut()
            .zip(gate.iter().zip(gate_bias).zip(up.iter().zip(up_bias)))
        {
            *o = super::moe_ops::swiglu_value(g + gb, u + ub, alpha, limit);
        }
    };
    if rows < 2 * SWIGLU_ROWS_PER_TASK {
        out.chunks_mut(inter)
            .zip(gate_up.chunks(2 * inter))
            .for_each(row);
    } else {
        out.par_chunks_mut(inter)
            .zip(gate_up.par_chunks(2 * inter))
            .with_min_len(SWIGLU_ROWS_PER_TASK)
            .for_each(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_gets_its_top_k_experts_weighted_plus_the_residual() {
        // 2 tokens, 3 experts, top 2; an "expert" e multiplies its rows by e + 1.
        let routing = Routing {
            n: 2,
            hidden: 2,
            experts: 3,
            top_k: 2,
        };
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let residual = [10.0f32, 20.0, 30.0, 40.0];
        let logits = [0.0f32, 1.0, 1.0, 2.0, -5.0, 2.0];
        let mut calls = Vec::new();
        let out = grouped(&x, &residual, &logits, routing, |e, xs, m| {
            calls.push((e, m, xs.to_vec()));
            Ok::<_, ()>(xs.iter().map(|v| v * (e + 1) as f32).collect())
        })
        .expect("the test's experts do not fail");
        // Token 0: experts 1 and 2 at 0.5 each; token 1: experts 0 and 2 at 0.5 each.
        assert_eq!(
            calls,
            vec![
                (0, 1, vec![3.0, 4.0]),
                (1, 1, vec![1.0, 2.0]),
                (2, 2, vec![1.0, 2.0, 3.0, 4.0])
            ]
        );
        let want = [10.0 + 2.5, 20.0 + 5.0, 30.0 + 6.0, 40.0 + 8.0];
        assert_eq!(out, want);
    }

    #[test]
    fn an_experts_error_ends_the_layer() {
        let routing = Routing {
            n: 1,
            hidden: 1,
            experts: 2,
            top_k: 1,
        };
        let got = grouped(&[1.0], &[0.0], &[0.0, 1.0], routing, |e, _, _| {
            Err(format!("expert {e} failed"))
        });
        assert_eq!(got, Err("expert 1 failed".to_string()));
    }

    #[test]
    fn bias_and_swiglu_match_the_formula_in_parallel_and_not() {
        let (alpha, limit, inter) = (1.702f32, 7.0f32, 3);
        for rows in [1, 2 * SWIGLU_ROWS_PER_TASK + 3] {
            let gate_up: Vec<f32> = (0..rows * 2 * inter)
                .map(|i| (i % 11) as f32 * 1.5 - 8.0)
                .collect();
            let bias = [0.5f32, -0.25, 0.0, 1.0, -1.0, 0.125];
            let out = bias_swiglu(&gate_up, &bias, inter, alpha, limit);
            assert_eq!(out.len(), rows * inter);
            for r in 0..rows {
                for i in 0..inter {
                    let g = gate_up[r * 2 * inter + i] + bias[i];
                    let u = gate_up[r * 2 * inter + inter + i] + bias[inter + i];
                    let g = g.min(limit);
                    let u = u.clamp(-limit, limit);
                    let want = (u + 1.0) * g / (1.0 + (-alpha * g).exp());
                    assert_eq!(out[r * inter + i], want, "row {r} col {i}");
                }
            }
        }
    }
}
