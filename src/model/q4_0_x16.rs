//! Q4_0 expert weights repacked 16 rows at a time, and the CPU kernels that multiply them by
//! 8-bit activations in decode and prefill (AVX-512 VNNI).
//!
//! The math is [`super::q4_0_q8`]'s: each token's row is quantized once to blocks of 32
//! codes with one f32 scale ([`Q8Rows`]); a weight block's dot product with a block of codes
//! is the exact integer `offset + sum(nibble * code)` (`offset = -8 * sum(codes)`), scaled by
//! the product of the two blocks' scales. What differs is the layout, the one llama.cpp's
//! repacked Q4_0 uses in spirit: Q4_0 keeps a row's blocks together, so a row kernel pays the
//! float work (scale conversion, integer-to-float, horizontal sum) once per 32 weights and
//! reads its bytes at about half the memory's speed. Here block `b` of 16 consecutive rows is
//! stored as one 288-byte unit:
//!
//! ```text
//! [16 f16 scales, row order][4 chunks of 64 bytes: chunk k = for each row, its quant bytes 4k..4k+4]
//! ```
//!
//! so that a 512-bit `vpdpbusd` works on all 16 rows at once, each row in its own i32 lane: a
//! chunk's low nibbles are columns `4k..4k+4` of every row, its high nibbles columns
//! `16+4k..20+4k`, each multiplied by the same four codes broadcast to every lane. Eight
//! `vpdpbusd` leave each row's whole block sum in its lane; one convert and one FMA by the
//! 16 rows' scales (times the token's) add the block to 16 f32 accumulators. Nothing is
//! reduced across lanes, and a tile of tokens reuses the unpacked weights from registers
//! (prefill).
//!
//! Sums run block by block, each block's integer sum converted exactly (it stays below
//! 2^24) and added with one fused multiply-add: the AVX-512 kernel and the scalar reference
//! ([`Q4_0x16::matmul_q8_reference`]) agree bit for bit.

use half::f16;

use super::q4_0_q8::Q8Rows;
use super::quant::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_LEN};

/// Rows stored together: one i32 lane of a 512-bit vector each.
pub const X16_ROWS: usize = 16;
/// Bytes of a block's 16 f16 scales.
const SCALE_BYTES: usize = X16_ROWS * 2;
/// Bytes of the quants a row keeps per block.
const QUANT_BYTES: usize = Q4_0_BLOCK_BYTES - 2;
/// Bytes of one chunk: four quant bytes (eight weights) of each of the 16 rows.
const CHUNK_BYTES: usize = X16_ROWS * 4;
/// Chunks per block.
const CHUNKS: usize = QUANT_BYTES / 4;
/// Bytes of one block of 16 rows.
const UNIT_BYTES: usize = X16_ROWS * Q4_0_BLOCK_BYTES;
/// How far ahead of the block in use the kernel prefetches.
const PREFETCH_BYTES: usize = 16 * UNIT_BYTES;
/// Tokens per register tile: eight unpacked weight vectors, eight accumulators.
const TILE_TOKENS: usize = 8;
/// Groups of 16 rows per parallel task when there are few tokens (decode): enough work per
/// task that rayon's hand-off stays small, enough tasks that both threads stay busy.
const DECODE_TASK_GROUPS: usize = 8;

/// Why Q4_0 bytes cannot be repacked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RepackError {
    #[error("Q4_0 matrix [{rows}, {cols}]: rows must be a multiple of 16, columns of 32")]
    Shape { rows: usize, cols: usize },
    #[error("Q4_0 matrix [{rows}, {cols}]: {got} bytes, expected {expected}")]
    Length {
        rows: usize,
        cols: usize,
        got: usize,
        expected: usize,
    },
}

/// A Q4_0 matrix [rows, cols] in the 16-row layout (module docs).
pub struct Q4_0x16 {
    /// [rows / 16 groups, cols / 32 blocks, 288 bytes].
    bytes: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl Q4_0x16 {
    /// Whether this CPU runs the fast kernel (AVX-512 F, BW and VNNI); elsewhere the layout
    /// would only run the scalar reference, so callers keep plain Q4_0 and its kernels.
    pub fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            has!("avx512f") && has!("avx512bw") && has!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Repacks Q4_0 bytes of a matrix [rows, cols] (row after row, 18-byte blocks).
    pub fn from_q4_0(q4_0: &[u8], rows: usize, cols: usize) -> Result<Self, RepackError> {
        if !rows.is_multiple_of(X16_ROWS) || !cols.is_multiple_of(Q4_0_BLOCK_LEN) {
            return Err(RepackError::Shape { rows, cols });
        }
        let blocks = cols / Q4_0_BLOCK_LEN;
        let row_bytes = blocks * Q4_0_BLOCK_BYTES;
        let expected = rows * row_bytes;
        if q4_0.len() != expected {
            return Err(RepackError::Length {
                rows,
                cols,
                got: q4_0.len(),
                expected,
            });
        }
        let mut bytes = vec![0u8; expected];
        for (unit_index, unit) in bytes.chunks_exact_mut(UNIT_BYTES).enumerate() {
            let (group, block) = (unit_index / blocks, unit_index % blocks);
            let (scales, quants) = unit.split_at_mut(SCALE_BYTES);
            for i in 0..X16_ROWS {
                let src = &q4_0[(group * X16_ROWS + i) * row_bytes + block * Q4_0_BLOCK_BYTES..]
                    [..Q4_0_BLOCK_BYTES];
                scales[2 * i..2 * i + 2].copy_from_slice(&src[..2]);
                for k in 0..CHUNKS {
                    quants[k * CHUNK_BYTES + 4 * i..][..4].copy_from_slice(&src[2 + 4 * k..][..4]);
                }
            }
        }
        Ok(Self { bytes, rows, cols })
    }

    /// Bytes the weights occupy (as many as Q4_0's).
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

    /// `x` [m, cols] f32 (quantized to 8 bits, [`Q8Rows`]) times the transpose of the
    /// matrix: [m, rows] f32. Threads split the row groups.
    pub fn matmul_q8(&self, x: &[f32], m: usize) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if Self::supported() {
            // Safety: the CPU has AVX-512 F, BW and VNNI (checked just above).
            return self.matmul_q8_with(x, m, |group, x, first, tokens, out| unsafe {
                avx512::group_tokens(group, x, first, tokens, out)
            });
        }
        self.matmul_q8_reference(x, m)
    }

    /// [`Self::matmul_q8`] in plain Rust, one lane at a time: the kernels' reference.
    pub fn matmul_q8_reference(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_q8_with(x, m, group_tokens_reference)
    }

    /// Runs `kernel` over every group of 16 rows ([`x16_matmul`]).
    fn matmul_q8_with(
        &self,
        x: &[f32],
        m: usize,
        kernel: impl Fn(&[u8], &Q8Rows, usize, usize, &mut [[f32; X16_ROWS]]) + Sync,
    ) -> Vec<f32> {
        let x = Q8Rows::quantize(x, m, self.cols);
        let group_bytes = self.cols / Q4_0_BLOCK_LEN * UNIT_BYTES;
        x16_matmul(&self.bytes, group_bytes, self.rows, &x, kernel)
    }
}

/// Runs `kernel(group bytes, x, first token, tokens, out [tokens][16])` over every group of
/// 16 rows in `bytes` (`group_bytes` each), in parallel, and returns `x`'s rows times the
/// matrix: [m, rows] f32, where `rows` may leave the last group's padding rows out. The
/// driver of every 16-row layout (this one and [`super::q8_0_x16`]).
pub(super) fn x16_matmul(
    bytes: &[u8],
    group_bytes: usize,
    rows: usize,
    x: &Q8Rows,
    kernel: impl Fn(&[u8], &Q8Rows, usize, usize, &mut [[f32; X16_ROWS]]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let m = x.rows();
    if group_bytes == 0 {
        // No columns: every output is an empty sum.
        return vec![0.0; m * rows];
    }
    let groups = bytes.len() / group_bytes;
    assert!(
        groups * group_bytes == bytes.len() && rows <= groups * X16_ROWS,
        "{} bytes: not whole groups of {group_bytes} for {rows} rows",
        bytes.len()
    );
    if m == 0 {
        return Vec::new();
    }
    // [groups][m][16]: each group's outputs together, so tasks write disjoint slices.
    let mut by_group = vec![[0f32; X16_ROWS]; groups * m];
    let task_groups = if m < TILE_TOKENS {
        DECODE_TASK_GROUPS
    } else {
        1
    };
    by_group
        .par_chunks_mut(task_groups * m)
        .zip(bytes.par_chunks(task_groups * group_bytes))
        .for_each(|(out, weights)| {
            for (out, group) in out
                .chunks_exact_mut(m)
                .zip(weights.chunks_exact(group_bytes))
            {
                for first in (0..m).step_by(TILE_TOKENS) {
                    let tokens = TILE_TOKENS.min(m - first);
                    kernel(group, x, first, tokens, &mut out[first..first + tokens]);
                }
            }
        });
    if m == 1 {
        let mut out: Vec<f32> = by_group.into_iter().flatten().collect();
        out.truncate(rows);
        return out;
    }
    let mut out = vec![0f32; m * rows];
    out.par_chunks_mut(rows).enumerate().for_each(|(t, token)| {
        for (g, dst) in token.chunks_mut(X16_ROWS).enumerate() {
            dst.copy_from_slice(&by_group[g * m + t][..dst.len()]);
        }
    });
    out
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
                let mut dot = offset;
                for k in 0..CHUNKS {
                    for j in 0..4 {
                        let q = quants[k * CHUNK_BYTES + 4 * i + j];
                        dot += i32::from(q & 0xF) * i32::from(codes[4 * k + j])
                            + i32::from(q >> 4) * i32::from(codes[16 + 4 * k + j]);
                    }
                }
                let scale = f16::from_le_bytes([scales[2 * i], scales[2 * i + 1]]).to_f32();
                *acc = (dot as f32).mul_add(scale * token_scale, *acc);
            }
        }
    }
}

/// The pieces every 16-row layout's AVX-512 kernel shares (this one's and
/// [`super::q8_0_x16`]'s).
#[cfg(target_arch = "x86_64")]
pub(super) mod x16_avx512 {
    use super::{Q8Rows, X16_ROWS};
    use std::arch::x86_64::*;

    /// `$tile::<T>(group, x, first, out)` with `T` = `tokens` (1 to
    /// [`super::TILE_TOKENS`]): one tile size per token count keeps every accumulator in a
    /// register.
    macro_rules! dispatch_tile {
        ($tile:ident, $tokens:expr, $group:expr, $x:expr, $first:expr, $out:expr) => {
            match $tokens {
                8 => $tile::<8>($group, $x, $first, $out),
                7 => $tile::<7>($group, $x, $first, $out),
                6 => $tile::<6>($group, $x, $first, $out),
                5 => $tile::<5>($group, $x, $first, $out),
                4 => $tile::<4>($group, $x, $first, $out),
                3 => $tile::<3>($group, $x, $first, $out),
                2 => $tile::<2>($group, $x, $first, $out),
                1 => $tile::<1>($group, $x, $first, $out),
                tokens => unreachable!("tiles hold 1 to 8 tokens, not {tokens}"),
            }
        };
    }
    pub(in crate::model) use dispatch_tile;

    /// The blocks of a group of `unit_bytes` units, after checking that a tile of `tokens`
    /// tokens from `first` fits `x` and `outputs`.
    pub(in crate::model) fn tile_blocks(
        group: &[u8],
        unit_bytes: usize,
        x: &Q8Rows,
        first: usize,
        tokens: usize,
        outputs: &[[f32; X16_ROWS]],
    ) -> usize {
        let blocks = group.len() / unit_bytes;
        assert!(
            outputs.len() == tokens
                && group.len() == blocks * unit_bytes
                && blocks * 32 == x.cols()
                && first + tokens <= x.rows(),
            "a tile of {tokens} tokens from {first}: {} outputs, {} group bytes, x [{}, {}]",
            outputs.len(),
            group.len(),
            x.rows(),
            x.cols()
        );
        blocks
    }

    /// Asks for the `unit_bytes` bytes `ahead` bytes past `unit` (past the group's end they
    /// are the next group's, or nothing: a prefetch never faults).
    #[inline(always)]
    pub(in crate::model) fn prefetch(unit: &[u8], ahead: usize, unit_bytes: usize) {
        let ahead = unit.as_ptr().wrapping_add(ahead);
        for line in 0..unit_bytes.div_ceil(64) {
            // Safety: prefetching never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast()) };
        }
    }

    /// Codes `at..at + 4` of `codes` as one i32, broadcast to every row's lane.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::model) fn quad(codes: &[i8], at: usize) -> __m512i {
        _mm512_set1_epi32(i32::from_le_bytes([
            codes[at] as u8,
            codes[at + 1] as u8,
            codes[at + 2] as u8,
            codes[at + 3] as u8,
        ]))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::x16_avx512::{dispatch_tile, prefetch, quad, tile_blocks};
    use super::*;
    use std::arch::x86_64::*;

    /// [`group_tokens_reference`] with `vpdpbusd`, up to [`TILE_TOKENS`] tokens.
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
        let mask = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); T];
        let codes = x.codes();
        let (token_scales, offsets) = (x.scales(), x.offsets());
        for (b, unit) in group.chunks_exact(UNIT_BYTES).enumerate() {
            prefetch(unit, PREFETCH_BYTES, UNIT_BYTES);
            // Safety (the loads): `unit` holds 32 scale bytes and 4 x 64 quant bytes.
            let (scales, lo, hi) = unsafe {
                let scales = _mm512_cvtph_ps(_mm256_loadu_si256(unit.as_ptr().cast()));
                let quants = unit.as_ptr().add(SCALE_BYTES);
                let chunks: [__m512i; CHUNKS] =
                    std::array::from_fn(|k| _mm512_loadu_si512(quants.add(k * CHUNK_BYTES).cast()));
                let lo = chunks.map(|c| _mm512_and_si512(c, mask));
                let hi = chunks.map(|c| _mm512_and_si512(_mm512_srli_epi16::<4>(c), mask));
                (scales, lo, hi)
            };
            for (t, acc) in acc.iter_mut().enumerate() {
                let k = (first + t) * blocks + b;
                let block_codes = &codes[k * Q4_0_BLOCK_LEN..][..Q4_0_BLOCK_LEN];
                // Two chains so the multiply-adds do not all wait on one register.
                let mut dot_lo = _mm512_set1_epi32(offsets[k]);
                let mut dot_hi = _mm512_setzero_si512();
                for c in 0..CHUNKS {
                    dot_lo = _mm512_dpbusd_epi32(dot_lo, lo[c], quad(block_codes, 4 * c));
                    dot_hi = _mm512_dpbusd_epi32(dot_hi, hi[c], quad(block_codes, 16 + 4 * c));
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(dot_lo, dot_hi));
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
    use crate::model::q4_0_q8::tests::{
        bits, edgy_weights, exact_codes, random_case, rows_reference,
    };
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn on_exact_data_the_kernel_the_reference_and_plain_q4_0_agree_bit_for_bit() {
        // Codes are the values (scale 1) and weight scales powers of two: every partial sum
        // is an integer times a power of two below 2^24, so the summation order cannot show
        // and equal bits mean equal integer sums, whichever layout the weights came from.
        let mut rng = StdRng::seed_from_u64(41);
        let (rows, cols) = (48, 2880);
        let blocks = rows * cols / Q4_0_BLOCK_LEN;
        for m in [1, 2, 7, 8, 9, 20] {
            let q4_0 = edgy_weights(&mut rng, blocks, |r| {
                [0.0, 0.25, -0.5, 1.0, 2.0][r.random_range(0..5)]
            });
            let x = exact_codes(&mut rng, m * cols, -127.0);
            let want = rows_reference(&q4_0, rows, cols, &x, m);
            let packed = Q4_0x16::from_q4_0(&q4_0, rows, cols).unwrap();
            assert_eq!(packed.len_bytes(), q4_0.len());
            assert_eq!(
                bits(&packed.matmul_q8_reference(&x, m)),
                bits(&want),
                "m={m}"
            );
            assert_eq!(bits(&packed.matmul_q8(&x, m)), bits(&want), "m={m}");
        }
    }

    #[test]
    fn on_random_data_the_kernel_equals_the_reference_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(42);
        let (rows, cols) = (160, 352);
        for (huge, m) in [(false, 1), (false, 3), (false, 8), (false, 37), (true, 2)] {
            let (q4_0, x) = random_case(&mut rng, rows, cols, m, huge);
            let packed = Q4_0x16::from_q4_0(&q4_0, rows, cols).unwrap();
            let want = packed.matmul_q8_reference(&x, m);
            assert_eq!(bits(&packed.matmul_q8(&x, m)), bits(&want), "m={m}");
            // Plain Q4_0's row kernel sums in another order: close, not equal.
            let plain = rows_reference(&q4_0, rows, cols, &x, m);
            for (i, (g, p)) in want.iter().zip(&plain).enumerate() {
                let tolerance = 1e-4 * p.abs().max(if huge { 1e9 } else { 1.0 });
                assert!((g - p).abs() <= tolerance, "m={m} [{i}]: {g} vs {p}");
            }
        }
    }

    #[test]
    fn a_non_finite_activation_makes_its_tokens_outputs_nan_and_no_others() {
        let mut rng = StdRng::seed_from_u64(43);
        let (rows, cols) = (32, 64);
        let q4_0 = edgy_weights(&mut rng, rows * cols / 32, |r| r.random_range(-0.1f32..0.1));
        let mut x: Vec<f32> = (0..3 * cols)
            .map(|_| rng.random_range(-1f32..1.0))
            .collect();
        x[cols + 5] = f32::INFINITY;
        let packed = Q4_0x16::from_q4_0(&q4_0, rows, cols).unwrap();
        let out = packed.matmul_q8(&x, 3);
        assert!(out[..rows].iter().all(|v| v.is_finite()));
        assert!(out[rows..2 * rows].iter().all(|v| v.is_nan()));
        assert!(out[2 * rows..].iter().all(|v| v.is_finite()));
    }

    #[test]
    fn shapes_it_cannot_hold_are_refused_with_the_shape_named() {
        let err = Q4_0x16::from_q4_0(&[0u8; 18 * 8], 8, 32).err().unwrap();
        assert_eq!(err, RepackError::Shape { rows: 8, cols: 32 });
        assert!(err.to_string().contains("[8, 32]"), "{err}");
        let err = Q4_0x16::from_q4_0(&[0u8; 100], 16, 32).err().unwrap();
        assert_eq!(
            err.to_string(),
            "Q4_0 matrix [16, 32]: 100 bytes, expected 288"
        );
        let empty = Q4_0x16::from_q4_0(&[0u8; 288], 16, 32).unwrap();
        assert!(empty.matmul_q8(&[], 0).is_empty());
    }
}
