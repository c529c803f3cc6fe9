//! Weight formats: AutoRound/GPTQ int4 (spec 4b) -> GGML Q4_0 bytes (lossless) or f32, and
//! MXFP4 (spec 4c) -> f32.

use half::f16;

/// Bytes of one GGML Q4_0 block: an f16 scale and 32 nibbles.
pub const Q4_0_BLOCK_BYTES: usize = 18;
/// Weights per Q4_0 block.
pub const Q4_0_BLOCK_LEN: usize = 32;

/// One int4 Linear as AutoRound's `auto_round:auto_gptq` packing stores it.
pub struct GptqInt4<'a> {
    /// [in/8, out]: 8 nibbles per word along `in`, lowest nibble = lowest input index.
    pub qweight: &'a [i32],
    /// [in/group, out/8]: 8 nibbles per word along `out`; stored value is zero - 1.
    pub qzeros: &'a [i32],
    /// [in/group, out].
    pub scales: &'a [f16],
    pub in_dim: usize,
    pub out_dim: usize,
    pub group: usize,
}

impl GptqInt4<'_> {
    /// The 4-bit code of weight (o, i).
    fn code(&self, o: usize, i: usize) -> u8 {
        let word = self.qweight[(i / 8) * self.out_dim + o] as u32;
        ((word >> (4 * (i % 8))) & 0xF) as u8
    }

    /// The zero point of group `g`, output `o` (stored value + 1).
    fn zero(&self, g: usize, o: usize) -> u8 {
        let word = self.qzeros[g * self.out_dim.div_ceil(8) + o / 8] as u32;
        (((word >> (4 * (o % 8))) & 0xF) as u8) + 1
    }

    /// Dequantizes to f32 in Linear layout [out, in]:
    /// `w[o, i] = scales[i/group, o] * (q[i, o] - zero[i/group, o])`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.out_dim * self.in_dim];
        for o in 0..self.out_dim {
            for i in 0..self.in_dim {
                let g = i / self.group;
                let scale = self.scales[g * self.out_dim + o].to_f32();
                let q = self.code(o, i) as f32 - self.zero(g, o) as f32;
                out[o * self.in_dim + i] = scale * q;
            }
        }
        out
    }

    /// Repacks to GGML Q4_0 blocks, rows = outputs, `in/32` blocks per row. Exact when the
    /// format is symmetric (every zero point 8): a group of 64 becomes two blocks that share
    /// its f16 scale. Returns the first non-symmetric group otherwise.
    pub fn to_q4_0(&self) -> Result<Vec<u8>, String> {
        if !self.group.is_multiple_of(Q4_0_BLOCK_LEN) || !self.in_dim.is_multiple_of(self.group) {
            return Err(format!(
                "group size {} with {} inputs cannot be repacked into Q4_0 blocks of 32",
                self.group, self.in_dim
            ));
        }
        let blocks_per_row = self.in_dim / Q4_0_BLOCK_LEN;
        let row_bytes = blocks_per_row * Q4_0_BLOCK_BYTES;
        let mut bytes = vec![0u8; self.out_dim * row_bytes];
        // Outputs in tiles: each packed row of `qweight` is read contiguously across the tile
        // and its nibbles land in the tile's rows, which stay in cache (a column-at-a-time
        // gather strides through the whole matrix for every output).
        const TILE_OUTPUTS: usize = 64;
        for tile_start in (0..self.out_dim).step_by(TILE_OUTPUTS) {
            let tile = tile_start..(tile_start + TILE_OUTPUTS).min(self.out_dim);
            for o in tile.clone() {
                for b in 0..blocks_per_row {
                    let g = b * Q4_0_BLOCK_LEN / self.group;
                    let zero = self.zero(g, o);
                    if zero != 8 {
                        return Err(format!(
                            "group {g} of output {o} has zero point {zero}, not 8: only symmetric int4 fits Q4_0"
                        ));
                    }
                    let at = o * row_bytes + b * Q4_0_BLOCK_BYTES;
                    bytes[at..at + 2]
                        .copy_from_slice(&self.scales[g * self.out_dim + o].to_le_bytes());
                }
            }
            // Word k holds inputs 8k..8k+8: block k/4; inputs 0..16 of a block are the low
            // nibbles of its 16 bytes, inputs 16..32 the high nibbles.
            for k in 0..self.in_dim / 8 {
                let block = k / 4;
                let shift = 4 * ((k % 4) / 2);
                let first_byte = 2 + 8 * (k % 2);
                let words =
                    &self.qweight[k * self.out_dim + tile.start..k * self.out_dim + tile.end];
                for (o, &word) in tile.clone().zip(words) {
                    let at = o * row_bytes + block * Q4_0_BLOCK_BYTES + first_byte;
                    let dst = &mut bytes[at..at + 8];
                    let mut eight = [0u8; 8];
                    eight.copy_from_slice(dst);
                    let merged = u64::from_le_bytes(eight) | nibbles_to_bytes(word as u32) << shift;
                    dst.copy_from_slice(&merged.to_le_bytes());
                }
            }
        }
        Ok(bytes)
    }
}

/// The 8 nibbles of `word` spread one per byte (nibble j in the low half of byte j, little
/// endian).
fn nibbles_to_bytes(word: u32) -> u64 {
    let mut x = u64::from(word);
    x = (x | x << 16) & 0x0000_FFFF_0000_FFFF;
    x = (x | x << 8) & 0x00FF_00FF_00FF_00FF;
    (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F
}

/// Dequantizes Q4_0 blocks (`w = d * (q - 8)`) to f32; used by tests and f32 mode.
pub fn q4_0_dequantize(bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / Q4_0_BLOCK_BYTES * Q4_0_BLOCK_LEN];
    q4_0_dequantize_into(bytes, &mut out);
    out
}

/// [`q4_0_dequantize`] into `out` (32 values per block).
fn q4_0_dequantize_into(bytes: &[u8], out: &mut [f32]) {
    for (block, dst) in bytes
        .chunks_exact(Q4_0_BLOCK_BYTES)
        .zip(out.chunks_exact_mut(Q4_0_BLOCK_LEN))
    {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let (low, high) = dst.split_at_mut(16);
        for ((q, lo), hi) in block[2..].iter().zip(low).zip(high) {
            *lo = d * ((q & 0xF) as f32 - 8.0);
            *hi = d * ((q >> 4) as f32 - 8.0);
        }
    }
}

/// From this many rows of `x` on, [`q4_0_matmul`] is compute-bound (prefill): it dequantizes
/// the weight a tile at a time and runs a GEMM, instead of decoding every block once per
/// group of rows.
pub const GEMM_MIN_ROWS: usize = 16;

/// Output rows per parallel task of [`q4_0_matmul`].
const ROWS_PER_TASK: usize = 16;

/// `x` [m, cols] f32 times the transpose of a Q4_0 matrix [rows, cols]: [m, rows] f32.
/// Weights are decoded in registers and activations stay f32 (candle's CPU path quantizes
/// them to Q8_0, which costs accuracy); each decoded block serves all `m` rows of `x`.
pub fn q4_0_matmul(bytes: &[u8], rows: usize, cols: usize, x: &[f32], m: usize) -> Vec<f32> {
    if m >= GEMM_MIN_ROWS {
        return q4_0_matmul_gemm(bytes, rows, cols, x, m);
    }
    q4_0_rows_parallel(bytes, rows, cols, m, |weights, dst_row| {
        q4_0_row(weights, x, cols, dst_row)
    })
}

/// What the CPU's Q4_0 expert matmul multiplies the weights by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Q4Activations {
    /// f32 as given ([`q4_0_matmul`]): exact products, compute-bound in decode.
    F32,
    /// Below [`GEMM_MIN_ROWS`] rows (decode), the rows quantized to 8 bits for integer dot
    /// products ([`super::q4_0_q8`]); from there on prefill's f32 GEMM as with `F32`.
    Q8,
    /// As `Q8`, and from [`GEMM_MIN_ROWS`] rows on (prefill) on 8 bits too, in integer
    /// register tiles of rows x tokens ([`super::q4_0_q8_gemm`]).
    Q8Prefill,
}

/// [`q4_0_matmul`] with the activations `activations` says.
pub fn q4_0_matmul_with(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    m: usize,
    activations: Q4Activations,
) -> Vec<f32> {
    match activations {
        Q4Activations::Q8 | Q4Activations::Q8Prefill if m < GEMM_MIN_ROWS => {
            super::q4_0_q8::q4_0_matmul_q8(bytes, rows, cols, x, m)
        }
        Q4Activations::Q8Prefill => {
            super::q4_0_q8_gemm::q4_0_matmul_q8_gemm(bytes, rows, cols, x, m)
        }
        Q4Activations::Q8 | Q4Activations::F32 => q4_0_matmul(bytes, rows, cols, x, m),
    }
}

/// Runs `row_kernel(weight_row_bytes, dst_row)` for every row of a Q4_0 matrix [rows, cols],
/// [`ROWS_PER_TASK`] rows per parallel task, each writing its `m` outputs (one per row of x);
/// returns them [m, rows].
pub(crate) fn q4_0_rows_parallel(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    m: usize,
    row_kernel: impl Fn(&[u8], &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let row_bytes = cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES;
    assert_eq!(
        bytes.len(),
        rows * row_bytes,
        "Q4_0 bytes for [{rows}, {cols}]"
    );
    let mut transposed = vec![0f32; rows * m];
    transposed
        .par_chunks_mut(m * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, dst)| {
            for (k, dst_row) in dst.chunks_mut(m).enumerate() {
                let r = task * ROWS_PER_TASK + k;
                row_kernel(&bytes[r * row_bytes..][..row_bytes], dst_row);
            }
        });
    tokens_major(transposed, rows, m)
}

/// [`q4_0_matmul`] for many rows of `x`: tiles of the weight dequantized to f32 and
/// multiplied by all of `x` ([`super::tiled_gemm`]): [m, rows] f32.
fn q4_0_matmul_gemm(bytes: &[u8], rows: usize, cols: usize, x: &[f32], m: usize) -> Vec<f32> {
    let row_bytes = cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES;
    assert_eq!(
        bytes.len(),
        rows * row_bytes,
        "Q4_0 bytes for [{rows}, {cols}]"
    );
    super::tiled_gemm::widened_tiles_matmul(rows, cols, x, m, |r, dst| {
        q4_0_dequantize_into(&bytes[r * row_bytes..][..row_bytes], dst)
    })
}

/// Reorders a `[rows, m]` result (what the row-parallel kernels write) into `[m, rows]`, one
/// row per token, as the callers expect.
pub(crate) fn tokens_major(rows_major: Vec<f32>, rows: usize, m: usize) -> Vec<f32> {
    if m == 1 {
        return rows_major;
    }
    let mut out = vec![0f32; m * rows];
    for r in 0..rows {
        for t in 0..m {
            out[t * rows + r] = rows_major[r * m + t];
        }
    }
    out
}

/// One weight row (Q4_0 blocks) against every row of `x`, into `dst_row` [m].
fn q4_0_row(weights: &[u8], x: &[f32], cols: usize, dst_row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // Safety: the CPU supports AVX-512F, checked just above.
        return unsafe { q4_0_row_avx512(weights, x, cols, dst_row) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // Safety: the CPU supports AVX2 and FMA, checked just above; slices are bounds-checked
        // by the callers' layout (`weights` holds cols/32 blocks, `x` holds m rows of cols).
        return unsafe { q4_0_row_avx2(weights, x, cols, dst_row) };
    }
    q4_0_row_generic(weights, x, cols, dst_row)
}

/// AVX-512 version of [`q4_0_row_avx2`]: 16 lanes, two vectors per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn q4_0_row_avx512(weights: &[u8], x: &[f32], cols: usize, dst_row: &mut [f32]) {
    use std::arch::x86_64::*;
    assert_eq!(weights.len(), cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES);
    assert!(x.len() >= dst_row.len() * cols);
    let mask = _mm_set1_epi8(0x0F);
    let eight = _mm_set1_epi8(8);
    for (group, outs) in dst_row.chunks_mut(AVX2_TOKENS).enumerate() {
        let first_token = group * AVX2_TOKENS;
        let mut acc = [_mm512_setzero_ps(); AVX2_TOKENS];
        for (b, block) in weights.chunks_exact(Q4_0_BLOCK_BYTES).enumerate() {
            let d = _mm512_set1_ps(f16::from_le_bytes([block[0], block[1]]).to_f32());
            // Safety: `block` has 18 bytes, so bytes 2..18 are in bounds.
            let qs = unsafe { _mm_loadu_si128(block.as_ptr().add(2) as *const __m128i) };
            let low = _mm_sub_epi8(_mm_and_si128(qs, mask), eight);
            let high = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), mask), eight);
            let v0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(low));
            let v1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(high));
            for (t, a) in acc.iter_mut().enumerate().take(outs.len()) {
                let xs = &x[(first_token + t) * cols + b * Q4_0_BLOCK_LEN..][..Q4_0_BLOCK_LEN];
                // Safety: `xs` has 32 floats, so the two 16-wide loads are in bounds.
                let p = xs.as_ptr();
                let (x0, x1) = unsafe { (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))) };
                let dot = _mm512_fmadd_ps(v1, x1, _mm512_mul_ps(v0, x0));
                *a = _mm512_fmadd_ps(dot, d, *a);
            }
        }
        for (out, a) in outs.iter_mut().zip(acc) {
            *out += _mm512_reduce_add_ps(a);
        }
    }
}

/// Tokens that share one decode of a weight block in [`q4_0_row_avx2`].
#[cfg(target_arch = "x86_64")]
const AVX2_TOKENS: usize = 8;

/// AVX2/FMA version of [`q4_0_row_generic`]: nibbles -> i8 -> f32 in registers, one
/// accumulator vector per token, a horizontal sum per token at the end of the row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_0_row_avx2(weights: &[u8], x: &[f32], cols: usize, dst_row: &mut [f32]) {
    use std::arch::x86_64::*;
    assert_eq!(weights.len(), cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES);
    assert!(x.len() >= dst_row.len() * cols);
    let mask = _mm_set1_epi8(0x0F);
    let eight = _mm_set1_epi8(8);
    for (group, outs) in dst_row.chunks_mut(AVX2_TOKENS).enumerate() {
        let first_token = group * AVX2_TOKENS;
        let mut acc = [_mm256_setzero_ps(); AVX2_TOKENS];
        for (b, block) in weights.chunks_exact(Q4_0_BLOCK_BYTES).enumerate() {
            let d = _mm256_set1_ps(f16::from_le_bytes([block[0], block[1]]).to_f32());
            // Safety: `block` has 18 bytes, so bytes 2..18 are in bounds.
            let qs = unsafe { _mm_loadu_si128(block.as_ptr().add(2) as *const __m128i) };
            let low = _mm_sub_epi8(_mm_and_si128(qs, mask), eight);
            let high = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), mask), eight);
            let v0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(low));
            let v1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(low, 8)));
            let v2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(high));
            let v3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(high, 8)));
            for (t, a) in acc.iter_mut().enumerate().take(outs.len()) {
                let xs = &x[(first_token + t) * cols + b * Q4_0_BLOCK_LEN..][..Q4_0_BLOCK_LEN];
                // Safety: `xs` has 32 floats, so the four 8-wide loads are in bounds.
                let p = xs.as_ptr();
                let (x0, x1, x2, x3) = unsafe {
                    (
                        _mm256_loadu_ps(p),
                        _mm256_loadu_ps(p.add(8)),
                        _mm256_loadu_ps(p.add(16)),
                        _mm256_loadu_ps(p.add(24)),
                    )
                };
                let mut dot = _mm256_mul_ps(v0, x0);
                dot = _mm256_fmadd_ps(v1, x1, dot);
                dot = _mm256_fmadd_ps(v2, x2, dot);
                dot = _mm256_fmadd_ps(v3, x3, dot);
                *a = _mm256_fmadd_ps(dot, d, *a);
            }
        }
        for (out, a) in outs.iter_mut().zip(acc) {
            let mut lanes = [0f32; 8];
            // Safety: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
            *out += lanes.iter().sum::<f32>();
        }
    }
}

#[inline(always)]
fn q4_0_row_generic(weights: &[u8], x: &[f32], cols: usize, dst_row: &mut [f32]) {
    for (b, block) in weights.chunks_exact(Q4_0_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let mut values = [0f32; Q4_0_BLOCK_LEN];
        for j in 0..16 {
            values[j] = (block[2 + j] & 0xF) as f32 - 8.0;
            values[j + 16] = (block[2 + j] >> 4) as f32 - 8.0;
        }
        for (t, out) in dst_row.iter_mut().enumerate() {
            let xs = &x[t * cols + b * Q4_0_BLOCK_LEN..][..Q4_0_BLOCK_LEN];
            // Eight lanes so the loop vectorizes without fast-math.
            let mut acc = [0f32; 8];
            for (v, xv) in values.chunks_exact(8).zip(xs.chunks_exact(8)) {
                for l in 0..8 {
                    acc[l] += v[l] * xv[l];
                }
            }
            *out += d * acc.iter().sum::<f32>();
        }
    }
}

/// E2M1 code -> value (bit 3 is the sign).
const FP4_VALUES: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// Dequantizes MXFP4 (spec 4c): `blocks` [rows, in/32, 16] (two codes per byte, low nibble
/// first), `scales` [rows, in/32] (E8M0, bias 127). Returns [rows, in] f32.
pub fn mxfp4_dequantize(blocks: &[u8], scales: &[u8], rows: usize, in_dim: usize) -> Vec<f32> {
    let per_row = in_dim / 32;
    let mut out = vec![0f32; rows * in_dim];
    for r in 0..rows {
        for b in 0..per_row {
            let scale = (2f32).powi(scales[r * per_row + b] as i32 - 127);
            let block = &blocks[(r * per_row + b) * 16..][..16];
            let dst = &mut out[r * in_dim + b * 32..][..32];
            for (j, byte) in block.iter().enumerate() {
                for (k, code) in [byte & 0xF, byte >> 4].into_iter().enumerate() {
                    let magnitude = FP4_VALUES[(code & 7) as usize];
                    let value = if code & 8 != 0 { -magnitude } else { magnitude };
                    dst[2 * j + k] = value * scale;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_gptq(
        rng: &mut rand::rngs::StdRng,
        in_dim: usize,
        out_dim: usize,
    ) -> (Vec<i32>, Vec<i32>, Vec<f16>) {
        let qweight = (0..in_dim / 8 * out_dim)
            .map(|_| rng.random::<i32>())
            .collect();
        // Symmetric: every stored zero nibble is 7.
        let qzeros = vec![0x7777_7777u32 as i32; in_dim / 64 * out_dim.div_ceil(8)];
        let scales = (0..in_dim / 64 * out_dim)
            .map(|_| f16::from_f32(rng.random_range(-0.1f32..0.1)))
            .collect();
        (qweight, qzeros, scales)
    }

    #[test]
    fn q4_0_repack_equals_the_int4_formula_exactly() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // 136 outputs: two full tiles of 64 and a partial one.
        for (in_dim, out_dim) in [(64, 8), (128, 24), (192, 16), (128, 136)] {
            let (qweight, qzeros, scales) = random_gptq(&mut rng, in_dim, out_dim);
            let layer = GptqInt4 {
                qweight: &qweight,
                qzeros: &qzeros,
                scales: &scales,
                in_dim,
                out_dim,
                group: 64,
            };
            let bytes = layer.to_q4_0().expect("symmetric repacks");
            let from_q4 = q4_0_dequantize(&bytes);
            // Independent reading of the spec 4b formula.
            for o in 0..out_dim {
                for i in 0..in_dim {
                    let word = qweight[(i / 8) * out_dim + o] as u32;
                    let q = ((word >> (4 * (i % 8))) & 0xF) as f32;
                    let w = scales[(i / 64) * out_dim + o].to_f32() * (q - 8.0);
                    assert_eq!(from_q4[o * in_dim + i].to_bits(), w.to_bits(), "({o},{i})");
                }
            }
            assert_eq!(layer.dequantize(), from_q4);
            // candle's own Q4_0 dequantization agrees with ours.
            let storage = candle_core::quantized::QStorage::from_data(
                std::borrow::Cow::Borrowed(&bytes),
                &candle_core::Device::Cpu,
                candle_core::quantized::GgmlDType::Q4_0,
            )
            .expect("storage");
            let qt =
                candle_core::quantized::QTensor::new(storage, (out_dim, in_dim)).expect("qtensor");
            let candle = qt
                .dequantize(&candle_core::Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .expect("dequantize");
            assert_eq!(candle, from_q4);
        }
    }

    #[test]
    fn asymmetric_groups_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (qweight, mut qzeros, scales) = random_gptq(&mut rng, 64, 8);
        qzeros[0] = 0x7777_7775;
        let layer = GptqInt4 {
            qweight: &qweight,
            qzeros: &qzeros,
            scales: &scales,
            in_dim: 64,
            out_dim: 8,
            group: 64,
        };
        let err = layer.to_q4_0().unwrap_err();
        assert!(err.contains("zero point 6"), "{err}");
    }

    #[test]
    fn mxfp4_decodes_known_codes() {
        // One row of 32: codes 0..15 then 15..0, scale 2^1.
        let mut block = [0u8; 16];
        for (j, b) in block.iter_mut().enumerate() {
            let (lo, hi) = if j < 8 {
                (2 * j as u8, 2 * j as u8 + 1)
            } else {
                (31 - 2 * j as u8, 30 - 2 * j as u8)
            };
            *b = lo | (hi << 4);
        }
        let out = mxfp4_dequantize(&block, &[128], 1, 32);
        assert_eq!(&out[..8], &[0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]);
        assert_eq!(
            &out[8..16],
            &[-0.0, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0, -12.0]
        );
        assert_eq!(out[16], -12.0);
    }

    #[test]
    fn q4_0_matmul_equals_dequantized_matmul() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // More rows than one GEMM tile, and row counts on both sides of GEMM_MIN_ROWS.
        let (rows, cols) = (crate::model::tiled_gemm::TILE_ROWS + 44, 96);
        let mut bytes = vec![0u8; rows * cols / 32 * Q4_0_BLOCK_BYTES];
        rng.fill(&mut bytes[..]);
        for block in bytes.chunks_exact_mut(Q4_0_BLOCK_BYTES) {
            block[..2]
                .copy_from_slice(&f16::from_f32(rng.random_range(-0.5f32..0.5)).to_le_bytes());
        }
        let w = q4_0_dequantize(&bytes);
        for m in [1, 3, 11, GEMM_MIN_ROWS, 40] {
            let x: Vec<f32> = (0..m * cols)
                .map(|_| rng.random_range(-1f32..1.0))
                .collect();
            let got = q4_0_matmul(&bytes, rows, cols, &x, m);
            for t in 0..m {
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|i| w[r * cols + i] * x[t * cols + i]).sum();
                    assert!((got[t * rows + r] - want).abs() < 1e-4, "m={m} ({t},{r})");
                }
            }
        }
    }

    #[test]
    fn every_simd_variant_equals_the_generic_row() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let cols = 128;
        let mut weights = vec![0u8; cols / 32 * Q4_0_BLOCK_BYTES];
        rng.fill(&mut weights[..]);
        for block in weights.chunks_exact_mut(Q4_0_BLOCK_BYTES) {
            block[..2]
                .copy_from_slice(&f16::from_f32(rng.random_range(-0.5f32..0.5)).to_le_bytes());
        }
        for m in [1, 9] {
            let x: Vec<f32> = (0..m * cols)
                .map(|_| rng.random_range(-1f32..1.0))
                .collect();
            let mut want = vec![0f32; m];
            q4_0_row_generic(&weights, &x, cols, &mut want);
            #[cfg(target_arch = "x86_64")]
            {
                let close = |got: &[f32]| got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4);
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    let mut got = vec![0f32; m];
                    // Safety: AVX2 and FMA are present (checked above).
                    unsafe { q4_0_row_avx2(&weights, &x, cols, &mut got) };
                    assert!(close(&got), "avx2 {got:?} vs {want:?}");
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    let mut got = vec![0f32; m];
                    // Safety: AVX-512F is present (checked above).
                    unsafe { q4_0_row_avx512(&weights, &x, cols, &mut got) };
                    assert!(close(&got), "avx512 {got:?} vs {want:?}");
                }
            }
        }
    }
}
