//! Prefill's GEMM for weights stored narrower than f32 (Q4_0 experts, bf16 projections) on
//! the CPU: the weight is widened to f32 a tile of rows at a time, in parallel, into one
//! buffer reused for every tile, and each tile is multiplied by all the tokens with the `gemm`
//! crate (what candle's CPU matmul uses). Widening the whole matrix instead costs an
//! allocation of its full f32 size per call, whose pages are faulted in anew every time.

/// Weight rows per widened tile: 256 rows of 2880 f32 are 2.9 MB, about one core's L2 plus a
/// share of L3, so the GEMM reads the tile from cache.
pub(crate) const TILE_ROWS: usize = 256;

/// `x` [m, cols] f32 times the transpose of a [rows, cols] weight: [m, rows] f32.
/// `widen_row(r, dst)` writes weight row `r` as `cols` f32 into `dst`; rows of one tile are
/// widened in parallel.
pub(crate) fn widened_tiles_matmul(
    rows: usize,
    cols: usize,
    x: &[f32],
    m: usize,
    widen_row: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    assert!(
        x.len() >= m * cols,
        "x holds {} values, not {m} x {cols}",
        x.len()
    );
    let mut out = vec![0f32; m * rows];
    if m == 0 || rows == 0 || cols == 0 {
        return out;
    }
    let mut tile = vec![0f32; TILE_ROWS.min(rows) * cols];
    let threads = rayon::current_num_threads();
    for start in (0..rows).step_by(TILE_ROWS) {
        let n = TILE_ROWS.min(rows - start);
        tile[..n * cols]
            .par_chunks_mut(cols)
            .enumerate()
            .for_each(|(k, dst)| widen_row(start + k, dst));
        // out[i, start + j] = sum_l x[i, l] * tile[j, l].
        // Safety: dst covers m rows of `rows` floats from column `start` (n <= rows - start),
        // lhs m x cols (asserted), rhs the n x cols tile read transposed; all in bounds.
        unsafe {
            gemm::gemm(
                m,
                n,
                cols,
                out.as_mut_ptr().add(start),
                1,
                rows as isize,
                false,
                x.as_ptr(),
                1,
                cols as isize,
                tile.as_ptr(),
                cols as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn tiles_give_the_plain_matmul_for_rows_past_one_tile() {
        let mut rng = StdRng::seed_from_u64(40);
        // 300 rows: one whole tile and a partial one.
        let (rows, cols, m) = (TILE_ROWS + 44, 96, 11);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-1f32..1.0))
            .collect();
        let x: Vec<f32> = (0..m * cols)
            .map(|_| rng.random_range(-1f32..1.0))
            .collect();
        let got = widened_tiles_matmul(rows, cols, &x, m, |r, dst| {
            dst.copy_from_slice(&w[r * cols..][..cols])
        });
        for t in 0..m {
            for r in 0..rows {
                let want: f64 = (0..cols)
                    .map(|i| f64::from(x[t * cols + i]) * f64::from(w[r * cols + i]))
                    .sum();
                let diff = (f64::from(got[t * rows + r]) - want).abs();
                assert!(diff < 1e-4, "({t},{r}): {} vs {want}", got[t * rows + r]);
            }
        }
        assert!(widened_tiles_matmul(rows, cols, &[], 0, |_, _| unreachable!()).is_empty());
    }
}
