//! Q4_0 weights times activations quantized to 8 bits: decode's expert matvec on the CPU.
//!
//! Each activation row is quantized once per call into blocks of 32 signed codes with one f32
//! scale ([`Q8Rows`]); a weight block's dot product with a block of codes is then an exact
//! integer sum (AVX-512 VNNI `vpdpbusd`, AVX2 `vpmaddubsw`, or plain Rust), scaled once by
//! both blocks' scales. This is the technique of llama.cpp's `ggml_vec_dot_q4_0_q8_0`, with its
//! sign trick replaced by a per-block offset: the weight nibbles go in unsigned (0..15) and
//! `-8 * sum(codes)`, computed once per activation block, is the integer sum's starting value,
//! so `sum((nibble - 8) * code)` comes out without sign instructions.
//!
//! What it costs: each activation moves by at most half its block's step (largest |x| / 127 /
//! 2), which is enough to move the tiny int4 fixture past the default mode's tolerances, so
//! it is opt-in (`--kernels q8`); the default keeps f32 activations
//! ([`super::quant::q4_0_matmul`]).

use super::quant::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_LEN, q4_0_rows_parallel};

/// The largest code: a block's largest |x| maps to +-127 (-128 is never used).
const Q8_MAX: f32 = 127.0;

/// Rows of activations quantized to 8 bits in blocks of [`Q4_0_BLOCK_LEN`], one f32 scale per
/// block: `x ~= scale * code`.
pub struct Q8Rows {
    /// [rows, cols] codes.
    codes: Vec<i8>,
    /// [rows, cols / 32]; NaN where the block held a NaN or an infinity, so the outputs that
    /// read it are NaN as they would be in f32.
    scales: Vec<f32>,
    /// [rows, cols / 32]: `-8 * sum(codes)`, which turns the sum over unsigned nibbles into
    /// the sum over the weights' signed values.
    offsets: Vec<i32>,
    rows: usize,
    cols: usize,
}

impl Q8Rows {
    /// Quantizes `rows` rows of `cols` values (a multiple of 32) from the start of `x`.
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> Self {
        assert!(
            cols.is_multiple_of(Q4_0_BLOCK_LEN) && x.len() >= rows * cols,
            "{} values for {rows} rows of {cols} (a multiple of {Q4_0_BLOCK_LEN})",
            x.len()
        );
        let blocks = rows * cols / Q4_0_BLOCK_LEN;
        let mut codes = vec![0i8; rows * cols];
        let mut scales = Vec::with_capacity(blocks);
        let mut offsets = Vec::with_capacity(blocks);
        for (values, codes) in x[..rows * cols]
            .chunks_exact(Q4_0_BLOCK_LEN)
            .zip(codes.chunks_exact_mut(Q4_0_BLOCK_LEN))
        {
            if !values.iter().all(|v| v.is_finite()) {
                scales.push(f32::NAN);
                offsets.push(0);
                continue;
            }
            let max_abs = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let inverse = if max_abs > 0.0 { Q8_MAX / max_abs } else { 0.0 };
            for (code, v) in codes.iter_mut().zip(values) {
                // In range up to rounding; the clamp also catches an infinite `inverse` of a
                // subnormal block (whose scale then rounds to 0 or near it).
                *code = (v * inverse).round().clamp(-Q8_MAX, Q8_MAX) as i8;
            }
            scales.push(max_abs / Q8_MAX);
            offsets.push(-8 * codes.iter().map(|&c| i32::from(c)).sum::<i32>());
        }
        Self {
            codes,
            scales,
            offsets,
            rows,
            cols,
        }
    }

    /// The value row `row`, column `col` stands for (`scale * code`).
    pub fn value(&self, row: usize, col: usize) -> f32 {
        let block = (row * self.cols + col) / Q4_0_BLOCK_LEN;
        self.scales[block] * f32::from(self.codes[row * self.cols + col])
    }

    /// The scale of block `block` (of the row-major blocks).
    pub fn scale(&self, block: usize) -> f32 {
        self.scales[block]
    }

    /// Rows quantized.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Every row's codes, [rows, cols].
    pub(super) fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// Every block's scale, [rows, cols / 32] (NaN for a block that held a non-finite value).
    pub(super) fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Every block's `-8 * sum(codes)`, [rows, cols / 32].
    pub(super) fn offsets(&self) -> &[i32] {
        &self.offsets
    }

    /// Block `block` of row `row`: its codes, scale and offset (`-8 * sum(codes)`), for
    /// prefill's GEMM ([`super::q4_0_q8_gemm`]), which lays them out its own way.
    pub(super) fn block(&self, row: usize, block: usize) -> (&[i8], f32, i32) {
        let k = row * self.cols / Q4_0_BLOCK_LEN + block;
        let codes = &self.codes[k * Q4_0_BLOCK_LEN..][..Q4_0_BLOCK_LEN];
        (codes, self.scales[k], self.offsets[k])
    }
}

/// `x` [m, cols] f32 times the transpose of a Q4_0 matrix [rows, cols] with `x` quantized to
/// 8 bits ([`Q8Rows`]): [m, rows] f32. For a few rows of `x` (decode); many rows are faster
/// and exact through [`super::quant::q4_0_matmul`]'s GEMM.
pub fn q4_0_matmul_q8(bytes: &[u8], rows: usize, cols: usize, x: &[f32], m: usize) -> Vec<f32> {
    let x = Q8Rows::quantize(x, m, cols);
    q4_0_rows_parallel(bytes, rows, cols, m, |weights, dst_row| {
        q8_row(weights, &x, dst_row)
    })
}

/// One weight row (Q4_0 blocks) against every row of `x`, into `dst_row` [x's rows].
pub fn q8_row(weights: &[u8], x: &Q8Rows, dst_row: &mut [f32]) {
    check_shapes(weights, x, dst_row);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        if std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // Safety: the CPU has AVX-512 VNNI and VL besides AVX2, FMA and F16C (checked
            // above); the shapes were checked by `check_shapes`.
            return unsafe { q8_row_avx512vnni(weights, x, dst_row) };
        }
        // Safety: AVX2, FMA and F16C are present (checked above); shapes checked.
        return unsafe { q8_row_avx2(weights, x, dst_row) };
    }
    q8_row_generic(weights, x, dst_row)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// The kernels' preconditions: `weights` holds one row of `x`'s width, `x` a row for each of
/// `dst_row`'s outputs.
fn check_shapes(weights: &[u8], x: &Q8Rows, dst_row: &[f32]) {
    assert_eq!(
        weights.len(),
        x.cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES,
        "Q4_0 row bytes for {} columns",
        x.cols
    );
    assert!(
        dst_row.len() <= x.rows,
        "{} outputs for {} rows of x",
        dst_row.len(),
        x.rows
    );
}

/// The scalar reference: per block the integer sum `offset + sum(nibble * code)`, times the
/// product of the two scales, summed over the blocks in order.
pub fn q8_row_generic(weights: &[u8], x: &Q8Rows, dst_row: &mut [f32]) {
    check_shapes(weights, x, dst_row);
    let blocks = x.cols / Q4_0_BLOCK_LEN;
    for (row, out) in dst_row.iter_mut().enumerate() {
        let mut sum = 0f32;
        for (b, block) in weights.chunks_exact(Q4_0_BLOCK_BYTES).enumerate() {
            let k = row * blocks + b;
            let codes = &x.codes[k * Q4_0_BLOCK_LEN..][..Q4_0_BLOCK_LEN];
            let (low, high) = codes.split_at(Q4_0_BLOCK_LEN / 2);
            let mut dot = x.offsets[k];
            for ((q, lo), hi) in block[2..].iter().zip(low).zip(high) {
                dot += i32::from(q & 0xF) * i32::from(*lo) + i32::from(q >> 4) * i32::from(*hi);
            }
            let weight_scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            sum += weight_scale * x.scales[k] * dot as f32;
        }
        *out = sum;
    }
}

/// The x86 row kernels: `$dot(nibbles, codes, offset)` is a block's integer sum in 8 lanes.
/// One x row at a time (decode has one; the weight row stays in L1 for the others), blocks in
/// pairs on two accumulators so consecutive blocks' multiply-adds do not wait on each other.
#[cfg(target_arch = "x86_64")]
macro_rules! q8_row_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $dot:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        unsafe fn $name(weights: &[u8], x: &Q8Rows, dst_row: &mut [f32]) {
            use std::arch::x86_64::*;
            let blocks = x.cols / Q4_0_BLOCK_LEN;
            let mask = _mm256_set1_epi8(0x0F);
            // acc + the block's integer sum x its weight scale x its activation scale.
            let step = |block: &[u8], codes: &[i8], scale: f32, offset: i32, acc: __m256| {
                let bits = i32::from(u16::from_le_bytes([block[0], block[1]]));
                let weight_scale = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
                let codes = &codes[..Q4_0_BLOCK_LEN];
                let packed = &block[2..Q4_0_BLOCK_BYTES];
                // Safety: `packed` holds 16 bytes and `codes` 32 (sliced above).
                let (packed, codes) = unsafe {
                    (
                        _mm_loadu_si128(packed.as_ptr().cast()),
                        _mm256_loadu_si256(codes.as_ptr().cast()),
                    )
                };
                // Inputs 0..16 (low nibbles) in the low half, 16..32 (high) in the high.
                let nibbles =
                    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), mask);
                let offset = _mm256_zextsi128_si256(_mm_cvtsi32_si128(offset));
                let dot = $dot(nibbles, codes, offset);
                let scale = _mm256_set1_ps(weight_scale * scale);
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc)
            };
            for (row, out) in dst_row.iter_mut().enumerate() {
                let codes = &x.codes[row * x.cols..][..x.cols];
                let scales = &x.scales[row * blocks..][..blocks];
                let offsets = &x.offsets[row * blocks..][..blocks];
                let pairs = weights
                    .chunks_exact(2 * Q4_0_BLOCK_BYTES)
                    .zip(codes.chunks_exact(2 * Q4_0_BLOCK_LEN))
                    .zip(scales.chunks_exact(2))
                    .zip(offsets.chunks_exact(2));
                let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for (((w, q), s), o) in pairs {
                    acc0 = step(w, q, s[0], o[0], acc0);
                    acc1 = step(&w[Q4_0_BLOCK_BYTES..], &q[Q4_0_BLOCK_LEN..], s[1], o[1], acc1);
                }
                if blocks % 2 == 1 {
                    let last = blocks - 1;
                    acc0 = step(
                        &weights[last * Q4_0_BLOCK_BYTES..],
                        &codes[last * Q4_0_BLOCK_LEN..],
                        scales[last],
                        offsets[last],
                        acc0,
                    );
                }
                let mut lanes = [0f32; 8];
                // Safety: `lanes` holds 8 floats.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(acc0, acc1)) };
                *out = lanes.iter().sum::<f32>();
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
q8_row_kernel!(
    /// [`q8_row_generic`] with `vpdpbusd` (see [`block_dot_vnni`]).
    q8_row_avx512vnni,
    "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
    block_dot_vnni
);

#[cfg(target_arch = "x86_64")]
q8_row_kernel!(
    /// [`q8_row_generic`] with `vpmaddubsw` (see [`block_dot_avx2`]).
    q8_row_avx2,
    "avx2,fma,f16c",
    block_dot_avx2
);

/// A block's `offset + sum(nibble * code)` in 8 i32 lanes: unsigned nibble x signed code, four
/// products a lane, added to the offset in one instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
#[inline]
fn block_dot_vnni(
    nibbles: std::arch::x86_64::__m256i,
    codes: std::arch::x86_64::__m256i,
    offset: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    std::arch::x86_64::_mm256_dpbusd_epi32(offset, nibbles, codes)
}

/// [`block_dot_vnni`] in AVX2: pairs into i16 (at most 2 x 15 x 127, no saturation), pairs of
/// those into i32, plus the offset.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn block_dot_avx2(
    nibbles: std::arch::x86_64::__m256i,
    codes: std::arch::x86_64::__m256i,
    offset: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let pairs = _mm256_maddubs_epi16(nibbles, codes);
    _mm256_add_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)), offset)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::quant::{q4_0_dequantize, q4_0_matmul};
    use half::f16;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// A row kernel: weights, x, outputs.
    type RowKernel = fn(&[u8], &Q8Rows, &mut [f32]);

    /// Every kernel this CPU can run, with its name.
    fn kernels() -> Vec<(&'static str, RowKernel)> {
        #[allow(unused_mut)]
        let mut out: Vec<(&str, RowKernel)> =
            vec![("generic", q8_row_generic), ("dispatched", q8_row)];
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // Safety (both): the features each needs are checked before it is listed.
            out.push(("avx2", |w, x, d| unsafe { q8_row_avx2(w, x, d) }));
            if std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                out.push(("avx512vnni", |w, x, d| unsafe {
                    q8_row_avx512vnni(w, x, d)
                }));
            }
        }
        out
    }

    /// Q4_0 blocks whose nibbles are often the extremes (0 -> -8, 15 -> 7) and whose scales
    /// come from `scale`.
    /// `len` activations that are their own 8-bit codes: integers in -127..=127, each block
    /// of 32 holding `pinned` (±127) somewhere, so its scale is exactly 1.
    pub(crate) fn exact_codes(rng: &mut StdRng, len: usize, pinned: f32) -> Vec<f32> {
        let mut x: Vec<f32> = (0..len)
            .map(|_| match rng.random_range(0..3) {
                0 => 127.0,
                1 => -127.0,
                _ => rng.random_range(-127..=127) as f32,
            })
            .collect();
        for block in x.chunks_exact_mut(Q4_0_BLOCK_LEN) {
            block[rng.random_range(0..Q4_0_BLOCK_LEN)] = pinned;
        }
        x
    }

    pub(crate) fn edgy_weights(
        rng: &mut StdRng,
        blocks: usize,
        scale: impl Fn(&mut StdRng) -> f32,
    ) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(blocks * Q4_0_BLOCK_BYTES);
        for _ in 0..blocks {
            bytes.extend(f16::from_f32(scale(rng)).to_le_bytes());
            bytes.extend((0..16).map(|_| match rng.random_range(0..4) {
                0 => 0x00,
                1 => 0xFF,
                2 => 0x0F,
                _ => rng.random::<u8>(),
            }));
        }
        bytes
    }

    /// Random Q4_0 weights [rows, cols] and `m` rows of x: ordinary magnitudes, or `huge`
    /// ones (the largest f16 scale, |x| up to 1e6) that test the sums' range.
    pub(crate) fn random_case(
        rng: &mut StdRng,
        rows: usize,
        cols: usize,
        m: usize,
        huge: bool,
    ) -> (Vec<u8>, Vec<f32>) {
        let weights = edgy_weights(rng, rows * cols / Q4_0_BLOCK_LEN, |r| {
            if huge {
                65504.0
            } else {
                r.random_range(-0.1f32..0.1)
            }
        });
        let amplitude = if huge { 1e6 } else { 3.0 };
        let x = (0..m * cols)
            .map(|_| rng.random_range(-amplitude..amplitude))
            .collect();
        (weights, x)
    }

    /// Decode's scalar row kernel over a whole Q4_0 matrix, one weight row at a time:
    /// [m, rows].
    pub(crate) fn rows_reference(
        bytes: &[u8],
        rows: usize,
        cols: usize,
        x: &[f32],
        m: usize,
    ) -> Vec<f32> {
        let q8 = Q8Rows::quantize(x, m, cols);
        let row_bytes = cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES;
        let mut rows_major = vec![0f32; rows * m];
        for (dst, row) in rows_major
            .chunks_exact_mut(m)
            .zip(bytes.chunks_exact(row_bytes))
        {
            q8_row_generic(row, &q8, dst);
        }
        crate::model::quant::tokens_major(rows_major, rows, m)
    }

    /// The bits of each value, for exact comparisons that NaNs do not spoil.
    pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    #[test]
    fn every_kernel_equals_the_scalar_reference_bit_for_bit_on_exact_data() {
        // Codes are the values themselves (each block's largest |x| is 127, so its scale is
        // 1) and weight scales are powers of two: every product and partial sum is an integer
        // times a power of two below 2^24, so any summation order gives the same bits, and
        // equal bits mean equal integer sums.
        let mut rng = StdRng::seed_from_u64(21);
        let cols = 2880;
        let blocks = cols / Q4_0_BLOCK_LEN;
        for m in [1, 3, 8, 11] {
            let weights = edgy_weights(&mut rng, blocks, |r| {
                [0.0, 0.25, -0.5, 1.0, 2.0][r.random_range(0..5)]
            });
            let x = exact_codes(&mut rng, m * cols, 127.0);
            let q8 = Q8Rows::quantize(&x, m, cols);
            assert!((0..m * blocks).all(|b| q8.scale(b) == 1.0));
            let mut want = vec![0f32; m];
            q8_row_generic(&weights, &q8, &mut want);
            // The integer sums computed independently, from the dequantized weights.
            let w = q4_0_dequantize(&weights);
            for (t, &got) in want.iter().enumerate() {
                let exact: f64 = (0..cols)
                    .map(|i| f64::from(w[i]) * f64::from(x[t * cols + i]))
                    .sum();
                assert_eq!(f64::from(got), exact, "row {t}");
            }
            for (name, kernel) in kernels() {
                let mut got = vec![f32::NAN; m];
                kernel(&weights, &q8, &mut got);
                assert_eq!(bits(&got), bits(&want), "{name}, m={m}");
            }
        }
    }

    #[test]
    fn every_kernel_is_close_to_the_scalar_reference_on_random_rows() {
        let mut rng = StdRng::seed_from_u64(22);
        let cols = 352;
        for (huge, m) in [(false, 1), (false, 9), (true, 2)] {
            let (weights, x) = random_case(&mut rng, 1, cols, m, huge);
            let q8 = Q8Rows::quantize(&x, m, cols);
            let mut want = vec![0f32; m];
            q8_row_generic(&weights, &q8, &mut want);
            // Summation order only: a few ulps of the sum of |terms|.
            let w = q4_0_dequantize(&weights);
            for (name, kernel) in kernels() {
                let mut got = vec![0f32; m];
                kernel(&weights, &q8, &mut got);
                for t in 0..m {
                    let magnitude: f32 = (0..cols).map(|i| (w[i] * q8.value(t, i)).abs()).sum();
                    assert!(
                        (got[t] - want[t]).abs() <= 1e-5 * magnitude,
                        "{name} huge={huge} row {t}: {} vs {}",
                        got[t],
                        want[t]
                    );
                }
            }
        }
    }

    #[test]
    fn eight_bit_activations_stay_within_their_rounding_bound_of_f32() {
        let mut rng = StdRng::seed_from_u64(23);
        let (rows, cols, m) = (37, 2880, 3);
        let weights = edgy_weights(&mut rng, rows * cols / Q4_0_BLOCK_LEN, |r| {
            r.random_range(-0.05f32..0.05)
        });
        // Blocks of very different magnitudes, one with an outlier, one all zero.
        let mut x: Vec<f32> = (0..m * cols)
            .map(|i| rng.random_range(-1f32..1.0) * [1e-3, 1.0, 50.0][i / 32 % 3])
            .collect();
        x[5] = 1e4;
        x[64..96].fill(0.0);
        let q8 = Q8Rows::quantize(&x, m, cols);
        let exact = q4_0_matmul(&weights, rows, cols, &x, m);
        let w = q4_0_dequantize(&weights);
        // Decode's row kernel, and prefill's GEMM on the same integer math.
        let gemm = crate::model::q4_0_q8_gemm::q4_0_matmul_q8_gemm;
        for got in [q4_0_matmul_q8, gemm].map(|f| f(&weights, rows, cols, &x, m)) {
            for t in 0..m {
                for r in 0..rows {
                    // |x - scale * code| <= scale / 2 per value (a hair more for the rounding
                    // of the scale itself), times |w|; plus f32 summation error on both sides.
                    let (mut bound, mut magnitude) = (0f32, 0f32);
                    for i in 0..cols {
                        let wi = w[r * cols + i].abs();
                        bound += wi * q8.scale((t * cols + i) / Q4_0_BLOCK_LEN) * 0.501;
                        magnitude += wi * x[t * cols + i].abs();
                    }
                    let diff = (got[t * rows + r] - exact[t * rows + r]).abs();
                    assert!(
                        diff <= bound + 1e-5 * magnitude,
                        "({t},{r}): {diff} > {bound}"
                    );
                }
            }
            // And the bound is not vacuous: quantizing did move the result.
            assert!(got.iter().zip(&exact).any(|(a, b)| a != b));
        }
    }

    #[test]
    fn quantizing_keeps_zero_blocks_zero_and_marks_non_finite_blocks_nan() {
        let mut x = vec![0f32; 4 * 32];
        x[32] = f32::NAN;
        x[64 + 3] = f32::INFINITY;
        x[96] = -2.0;
        x[97] = 1.0;
        let q8 = Q8Rows::quantize(&x, 1, 128);
        assert_eq!(q8.scale(0), 0.0);
        assert!(q8.scale(1).is_nan() && q8.scale(2).is_nan());
        assert_eq!((q8.value(0, 96), q8.offsets[3]), (-2.0, -8 * (-127 + 64)));
        // A row through a NaN block is NaN, as in f32, not a quietly finite sum.
        let mut rng = StdRng::seed_from_u64(24);
        let weights = edgy_weights(&mut rng, 4, |_| 0.5);
        for (name, kernel) in kernels() {
            let mut out = [0f32];
            kernel(&weights, &q8, &mut out);
            assert!(out[0].is_nan(), "{name}: {}", out[0]);
        }
    }
}
