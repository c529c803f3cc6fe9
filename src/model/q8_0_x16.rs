//! Dense weights (attention projections, lm_head) quantized to 8 bits at load, 16 rows at a
//! time, and the CPU kernel that multiplies them by 8-bit activations (AVX-512 VNNI): the
//! opt-in `--dtype q8-dense` mode, which reads 1.125 bytes a weight instead of bf16's 2.
//!
//! Each row is cut into blocks of 32 weights with one f32 scale, `w ~= scale * q`, `q` in
//! -127..=127 (llama.cpp's Q8_0 rounding, with an f32 scale where Q8_0 has an f16 one: f16
//! scales of blocks under ~0.008 in magnitude would be subnormal and lose precision). Codes
//! are stored offset by 128 as unsigned bytes, the operand `vpdpbusd` wants unsigned; a
//! block's dot product with a block of activation codes is then the exact integer
//! `sum((q + 128) * code) - 128 * sum(codes)`, the correction computed once per token and
//! block ([`Q8Rows`]) and shared by every row.
//!
//! The layout is [`super::q4_0_x16`]'s with whole bytes: block `b` of 16 consecutive rows is
//! one 576-byte unit (nine cache lines),
//!
//! ```text
//! [16 f32 scales, row order][8 chunks of 64 bytes: chunk k = for each row, its codes 4k..4k+4]
//! ```
//!
//! so one 512-bit `vpdpbusd` multiplies four columns of all 16 rows, each row in its own
//! i32 lane, and eight leave every row's block sum in its lane. Row counts that are not a
//! multiple of 16 are padded with zero rows (the tiny fixtures' 533-token vocabulary).
//! Integer sums stay below 2^24, so their conversion is exact and the AVX-512 kernel and
//! the scalar reference ([`Q8_0x16::matmul_reference`]) agree bit for bit.

use super::q4_0_q8::Q8Rows;
use super::q4_0_x16::{X16_ROWS, x16_matmul};

/// Weights per block (one scale each), as Q4_0's and the activations'.
const BLOCK_LEN: usize = 32;
/// Bytes of a block's 16 f32 scales.
const SCALE_BYTES: usize = X16_ROWS * 4;
/// Bytes of one chunk: four codes of each of the 16 rows.
const CHUNK_BYTES: usize = X16_ROWS * 4;
/// Chunks per block.
const CHUNKS: usize = BLOCK_LEN / 4;
/// Bytes of one block of 16 rows.
const UNIT_BYTES: usize = SCALE_BYTES + CHUNKS * CHUNK_BYTES;
/// How far ahead of the block in use the kernel prefetches.
const PREFETCH_BYTES: usize = 16 * UNIT_BYTES;
/// The largest code.
const Q8_MAX: f32 = 127.0;
/// What the stored unsigned codes add to the signed ones.
const CODE_OFFSET: i32 = 128;

/// Why a matrix cannot be quantized (the loader then keeps it bf16).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantizeError {
    #[error("matrix [{rows}, {cols}]: columns must be a multiple of 32")]
    Shape { rows: usize, cols: usize },
    #[error("matrix [{rows}, {cols}]: {got} values")]
    Length {
        rows: usize,
        cols: usize,
        got: usize,
    },
    #[error("matrix [{rows}, {cols}]: a non-finite weight at [{row}, {col}]")]
    NonFinite {
        rows: usize,
        cols: usize,
        row: usize,
        col: usize,
    },
}

/// A dense matrix [rows, cols] in 8 bits, in the 16-row layout (module docs).
pub struct Q8_0x16 {
    /// [ceil(rows / 16) groups, cols / 32 blocks, 576 bytes].
    bytes: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl Q8_0x16 {
    /// Whether this CPU runs the kernel (AVX-512 F, BW and VNNI); elsewhere the mode keeps
    /// bf16 weights (the scalar reference alone would be slower than bf16's kernel).
    pub fn supported() -> bool {
        super::q4_0_x16::Q4_0x16::supported()
    }

    /// Bytes a [rows, cols] matrix takes in this layout, or `None` for a shape it cannot
    /// hold (for the planner).
    pub fn bytes_for(rows: usize, cols: usize) -> Option<u64> {
        cols.is_multiple_of(BLOCK_LEN)
            .then(|| (rows.div_ceil(X16_ROWS) * (cols / BLOCK_LEN) * UNIT_BYTES) as u64)
    }

    /// Quantizes `values` [rows, cols] (row after row), each value widened to f32 by `f32_of`.
    pub fn quantize<T: Copy + Sync>(
        values: &[T],
        rows: usize,
        cols: usize,
        f32_of: impl Fn(T) -> f32 + Sync,
    ) -> Result<Self, QuantizeError> {
        use rayon::prelude::*;
        if !cols.is_multiple_of(BLOCK_LEN) {
            return Err(QuantizeError::Shape { rows, cols });
        }
        if values.len() != rows * cols {
            return Err(QuantizeError::Length {
                rows,
                cols,
                got: values.len(),
            });
        }
        let blocks = cols / BLOCK_LEN;
        let groups = rows.div_ceil(X16_ROWS);
        // Padding rows: scale 0, code 0 (stored 128).
        let mut bytes = vec![0u8; groups * blocks * UNIT_BYTES];
        // Units are independent: threads split them (the 1.2 GB output head takes seconds).
        bytes
            .par_chunks_exact_mut(UNIT_BYTES)
            .enumerate()
            .try_for_each(|(unit_index, unit)| {
                let (group, b) = (unit_index / blocks, unit_index % blocks);
                let (scales, codes) = unit.split_at_mut(SCALE_BYTES);
                codes.fill(CODE_OFFSET as u8);
                let mut block = [0f32; BLOCK_LEN];
                for i in 0..X16_ROWS.min(rows - group * X16_ROWS) {
                    let row = group * X16_ROWS + i;
                    let src = &values[row * cols + b * BLOCK_LEN..][..BLOCK_LEN];
                    for (dst, &v) in block.iter_mut().zip(src) {
                        *dst = f32_of(v);
                    }
                    if let Some(j) = block.iter().position(|v| !v.is_finite()) {
                        return Err(QuantizeError::NonFinite {
                            rows,
                            cols,
                            row,
                            col: b * BLOCK_LEN + j,
                        });
                    }
                    let max_abs = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let inverse = if max_abs > 0.0 { Q8_MAX / max_abs } else { 0.0 };
                    scales[4 * i..4 * i + 4].copy_from_slice(&(max_abs / Q8_MAX).to_le_bytes());
                    for (j, v) in block.iter().enumerate() {
                        // In range up to rounding; the clamp also catches the infinite
                        // `inverse` of a subnormal block.
                        let code = (v * inverse).round().clamp(-Q8_MAX, Q8_MAX) as i32;
                        codes[(j / 4) * CHUNK_BYTES + 4 * i + j % 4] = (code + CODE_OFFSET) as u8;
                    }
                }
                Ok(())
            })?;
        Ok(Self { bytes, rows, cols })
    }

    /// Appends `more`'s rows below this matrix's (same columns; this one's rows a multiple of
    /// 16, so its groups stay whole): a large matrix quantized a slice of rows at a time.
    pub fn append(&mut self, more: Self) -> Result<(), QuantizeError> {
        if more.cols != self.cols || !self.rows.is_multiple_of(X16_ROWS) {
            return Err(QuantizeError::Shape {
                rows: self.rows + more.rows,
                cols: more.cols,
            });
        }
        self.bytes.extend_from_slice(&more.bytes);
        self.rows += more.rows;
        Ok(())
    }

    /// Bytes the weights occupy.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The value the weight at [row, col] stands for (`scale * code`).
    pub fn value(&self, row: usize, col: usize) -> f32 {
        let blocks = self.cols / BLOCK_LEN;
        let (group, i, b, j) = (
            row / X16_ROWS,
            row % X16_ROWS,
            col / BLOCK_LEN,
            col % BLOCK_LEN,
        );
        let unit = &self.bytes[(group * blocks + b) * UNIT_BYTES..][..UNIT_BYTES];
        let scale = f32::from_le_bytes([
            unit[4 * i],
            unit[4 * i + 1],
            unit[4 * i + 2],
            unit[4 * i + 3],
        ]);
        let code = i32::from(unit[SCALE_BYTES + (j / 4) * CHUNK_BYTES + 4 * i + j % 4]);
        scale * (code - CODE_OFFSET) as f32
    }

    /// `x` [m, cols] f32 (quantized to 8 bits, [`Q8Rows`]) times the transpose of the
    /// matrix: [m, rows] f32. Threads split the row groups.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if Self::supported() {
            // Safety: the CPU has AVX-512 F, BW and VNNI (checked just above).
            return self.matmul_with(x, m, |group, x, first, tokens, out| unsafe {
                avx512::group_tokens(group, x, first, tokens, out)
            });
        }
        self.matmul_reference(x, m)
    }

    /// [`Self::matmul`] in plain Rust, one lane at a time: the kernel's reference.
    pub fn matmul_reference(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_with(x, m, group_tokens_reference)
    }

    fn matmul_with(
        &self,
        x: &[f32],
        m: usize,
        kernel: impl Fn(&[u8], &Q8Rows, usize, usize, &mut [[f32; X16_ROWS]]) + Sync,
    ) -> Vec<f32> {
        let x = Q8Rows::quantize(x, m, self.cols);
        let group_bytes = self.cols / BLOCK_LEN * UNIT_BYTES;
        x16_matmul(&self.bytes, group_bytes, self.rows, &x, kernel)
    }
}

/// A block's correction for the offset codes: `-128 * sum(codes)`, from [`Q8Rows`]'
/// `-8 * sum(codes)`.
fn correction(q4_offset: i32) -> i32 {
    q4_offset * (CODE_OFFSET / 8)
}

/// The reference kernel: tokens `first..first + tokens` of `x` times one group of 16 rows,
/// into `out` [tokens][16].
fn group_tokens_reference(
    group: &[u8],
    x: &Q8Rows,
    first: usize,
    tokens: usize,
    out: &mut [[f32; X16_ROWS]],
) {
    for (t, out) in (first..first + tokens).zip(out) {
        *out = [0.0; X16_ROWS];
        for (b, unit) in group.chunks_exact(UNIT_BYTES).enumerate() {
            let (codes, token_scale, offset) = x.block(t, b);
            let (scales, quants) = unit.split_at(SCALE_BYTES);
            for (i, acc) in out.iter_mut().enumerate() {
                let mut dot = correction(offset);
                for (j, &code) in codes.iter().enumerate() {
                    let q = quants[(j / 4) * CHUNK_BYTES + 4 * i + j % 4];
                    dot += i32::from(q) * i32::from(code);
                }
                let scale = f32::from_le_bytes([
                    scales[4 * i],
                    scales[4 * i + 1],
                    scales[4 * i + 2],
                    scales[4 * i + 3],
                ]);
                *acc = (dot as f32).mul_add(scale * token_scale, *acc);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::q4_0_x16::x16_avx512::{dispatch_tile, prefetch, quad, tile_blocks};
    use super::*;
    use std::arch::x86_64::*;

    /// [`group_tokens_reference`] with `vpdpbusd`, a tile of up to 8 tokens.
    ///
    /// Safety: the CPU must have AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn group_tokens(
        group: &[u8],
        x: &Q8Rows,
        first: usize,
        tokens: usize,
        out: &mut [[f32; X16_ROWS]],
    ) {
        dispatch_tile!(tile, tokens, group, x, first, out)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn tile<const T: usize>(group: &[u8], x: &Q8Rows, first: usize, out: &mut [[f32; X16_ROWS]]) {
        let blocks = tile_blocks(group, UNIT_BYTES, x, first, T, out);
        let mut acc = [_mm512_setzero_ps(); T];
        let codes = x.codes();
        let (token_scales, offsets) = (x.scales(), x.offsets());
        for (b, unit) in group.chunks_exact(UNIT_BYTES).enumerate() {
            prefetch(unit, PREFETCH_BYTES, UNIT_BYTES);
            // Safety (the loads): `unit` holds 64 scale bytes and 8 x 64 code bytes.
            let (scales, chunks) = unsafe {
                let scales = _mm512_loadu_ps(unit.as_ptr().cast());
                let quants = unit.as_ptr().add(SCALE_BYTES);
                let chunks: [__m512i; CHUNKS] =
                    std::array::from_fn(|k| _mm512_loadu_si512(quants.add(k * CHUNK_BYTES).cast()));
                (scales, chunks)
            };
            for (t, acc) in acc.iter_mut().enumerate() {
                let k = (first + t) * blocks + b;
                let block_codes = &codes[k * BLOCK_LEN..][..BLOCK_LEN];
                // Two chains so the multiply-adds do not all wait on one register.
                let mut even = _mm512_set1_epi32(correction(offsets[k]));
                let mut odd = _mm512_setzero_si512();
                for c in (0..CHUNKS).step_by(2) {
                    even = _mm512_dpbusd_epi32(even, chunks[c], quad(block_codes, 4 * c));
                    odd = _mm512_dpbusd_epi32(odd, chunks[c + 1], quad(block_codes, 4 * c + 4));
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd));
                let scale = _mm512_mul_ps(scales, _mm512_set1_ps(token_scales[k]));
                *acc = _mm512_fmadd_ps(dot, scale, *acc);
            }
        }
        for (acc, out) in acc.iter().zip(out) {
            // Safety: `out` holds 16 floats.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), *acc) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::q4_0_q8::tests::bits;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(rng: &mut StdRng, n: usize, range: f32) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-range..range)).collect()
    }

    /// `x` [m, cols] times the transpose of `w` [rows, cols], in f64.
    fn dense_reference(w: &[f32], rows: usize, cols: usize, x: &[f32], m: usize) -> Vec<f64> {
        (0..m)
            .flat_map(|t| {
                (0..rows).map(move |r| {
                    (0..cols)
                        .map(|c| f64::from(w[r * cols + c]) * f64::from(x[t * cols + c]))
                        .sum()
                })
            })
            .collect()
    }

    #[test]
    fn quantized_weights_stay_within_half_a_step_of_their_values() {
        let mut rng = StdRng::seed_from_u64(51);
        let (rows, cols) = (37, 96);
        let mut w = random(&mut rng, rows * cols, 0.05);
        // A zero block, a block of one huge value, a subnormal block.
        w[..32].fill(0.0);
        w[96 + 5] = 3e30;
        w[2 * 96..2 * 96 + 32].fill(1e-40);
        let q = Q8_0x16::quantize(&w, rows, cols, |v| v).unwrap();
        assert_eq!(
            q.len_bytes() as u64,
            Q8_0x16::bytes_for(rows, cols).unwrap()
        );
        assert_eq!(q.len_bytes(), 3 * 3 * UNIT_BYTES, "37 rows pad to 48");
        for r in 0..rows {
            for b in 0..cols / 32 {
                let block = &w[r * cols + 32 * b..][..32];
                let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                for (j, &v) in block.iter().enumerate() {
                    let got = q.value(r, 32 * b + j);
                    assert!(
                        (got - v).abs() <= step * 0.5001 + f32::MIN_POSITIVE,
                        "[{r}, {}]: {got} for {v}",
                        32 * b + j
                    );
                }
            }
        }
        assert_eq!(q.value(1, 5), 3e30f32 / 127.0 * 127.0);
    }

    #[test]
    fn the_kernel_equals_the_reference_bit_for_bit_and_the_product_within_8_bit_error() {
        let mut rng = StdRng::seed_from_u64(52);
        // 150 rows: the last group of 16 is part padding.
        let (rows, cols) = (150, 352);
        let w = random(&mut rng, rows * cols, 0.05);
        let q = Q8_0x16::quantize(&w, rows, cols, |v| v).unwrap();
        for m in [1, 3, 8, 13] {
            let x = random(&mut rng, m * cols, 2.0);
            let want = q.matmul_reference(&x, m);
            assert_eq!(want.len(), m * rows);
            assert_eq!(bits(&q.matmul(&x, m)), bits(&want), "m={m}");
            // Two 8-bit roundings: each within half a step of 1/127 of its block's largest
            // value, so the error stays well under 2% of the sum of |w| |x|.
            let exact = dense_reference(&w, rows, cols, &x, m);
            for (i, (g, e)) in want.iter().zip(&exact).enumerate() {
                let (t, r) = (i / rows, i % rows);
                let scale: f64 = (0..cols)
                    .map(|c| f64::from(w[r * cols + c].abs() * x[t * cols + c].abs()))
                    .sum();
                assert!(
                    (f64::from(*g) - e).abs() <= 0.02 * scale,
                    "m={m} [{t}, {r}]: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn a_matrix_quantized_in_slices_of_rows_equals_it_quantized_whole() {
        let mut rng = StdRng::seed_from_u64(54);
        let (rows, cols) = (70, 64);
        let w = random(&mut rng, rows * cols, 1.0);
        let whole = Q8_0x16::quantize(&w, rows, cols, |v| v).unwrap();
        let mut parts = Q8_0x16::quantize(&w[..32 * cols], 32, cols, |v| v).unwrap();
        for (start, end) in [(32, 48), (48, 70)] {
            let part = Q8_0x16::quantize(&w[start * cols..end * cols], end - start, cols, |v| v);
            parts.append(part.unwrap()).unwrap();
        }
        assert_eq!((parts.rows(), parts.cols()), (rows, cols));
        assert_eq!(parts.bytes, whole.bytes);
    }

    #[test]
    fn extreme_codes_sum_exactly() {
        // Every weight +-1 (code +-127), every activation +-1 (code +-127): the integer sums
        // reach their largest magnitude and must come out exact.
        let (rows, cols) = (16, 64);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| if (i / 3) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let q = Q8_0x16::quantize(&w, rows, cols, |v| v).unwrap();
        for sign in [1f32, -1.0] {
            let x = vec![sign; cols];
            let got = q.matmul(&x, 1);
            let want = dense_reference(&w, rows, cols, &x, 1);
            for (g, e) in got.iter().zip(&want) {
                assert!((f64::from(*g) - e).abs() < 1e-4, "{g} vs {e}");
            }
        }
    }

    #[test]
    fn a_non_finite_activation_makes_its_tokens_outputs_nan_and_no_others() {
        let mut rng = StdRng::seed_from_u64(53);
        let (rows, cols) = (20, 64);
        let w = random(&mut rng, rows * cols, 0.1);
        let q = Q8_0x16::quantize(&w, rows, cols, |v| v).unwrap();
        let mut x = random(&mut rng, 3 * cols, 1.0);
        x[cols + 5] = f32::NAN;
        let out = q.matmul(&x, 3);
        assert!(out[..rows].iter().all(|v| v.is_finite()));
        assert!(out[rows..2 * rows].iter().all(|v| v.is_nan()));
        assert!(out[2 * rows..].iter().all(|v| v.is_finite()));
    }

    #[test]
    fn what_it_cannot_hold_is_refused_with_the_place_named() {
        let err = Q8_0x16::quantize(&[0f32; 40], 2, 20, |v| v).err().unwrap();
        assert_eq!(
            err.to_string(),
            "matrix [2, 20]: columns must be a multiple of 32"
        );
        assert_eq!(Q8_0x16::bytes_for(2, 20), None);
        let err = Q8_0x16::quantize(&[0f32; 40], 2, 32, |v| v).err().unwrap();
        assert_eq!(err.to_string(), "matrix [2, 32]: 40 values");
        let mut w = vec![0f32; 64];
        w[33] = f32::INFINITY;
        let err = Q8_0x16::quantize(&w, 2, 32, |v| v).err().unwrap();
        assert_eq!(
            err.to_string(),
            "matrix [2, 32]: a non-finite weight at [1, 1]"
        );
        let mut odd = Q8_0x16::quantize(&[0f32; 32], 1, 32, |v| v).unwrap();
        let more = Q8_0x16::quantize(&[0f32; 32], 1, 32, |v| v).unwrap();
        assert!(odd.append(more).is_err(), "a part group in the middle");
        let empty = Q8_0x16::quantize(&[0f32; 32], 1, 32, |v| v).unwrap();
        assert!(empty.matmul(&[], 0).is_empty());
        assert_eq!(empty.matmul(&[1.0; 32], 1), vec![0.0]);
    }
}
