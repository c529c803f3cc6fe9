//! Prefill's Q4_0 expert GEMM on 8-bit activations: many tokens times one Q4_0 matrix with
//! integer dot products, each unpacked weight block reused across a tile of tokens.
//!
//! The math is decode's ([`super::q4_0_q8`]): every token's row is quantized once to blocks of
//! 32 codes with one f32 scale ([`Q8Rows`]), a block's dot product is the exact integer
//! `offset + sum(nibble * code)` (`offset = -8 * sum(codes)`), scaled by the product of the
//! two blocks' scales. What differs is the layout, chosen so that the float work is paid once
//! per 16 blocks instead of once per block: 16 consecutive blocks form a *group*, and the
//! group's values are interleaved into 8 vectors of 64 bytes where lane `j` (4 bytes, one i32
//! lane of `vpdpbusd`) of vector `v` holds values `4v..4v+4` of block `j`. Eight `vpdpbusd`
//! then leave each block's whole integer sum in its own lane, and one convert and one FMA
//! (by the 16 per-block scale products) add the group to 16 f32 accumulators. Rows whose
//! block count is not a multiple of 16 are padded with zero blocks of scale 0.
//!
//! A tile of [`TILE_ROWS`] weight rows is unpacked (nibbles to bytes, interleaved) into a
//! buffer that stays in L1 while every tile of [`TILE_TOKENS`] tokens passes over it; the
//! tokens were interleaved once per call. Threads split the rows.

use half::f16;

use super::q4_0_q8::Q8Rows;
use super::quant::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_LEN};

/// Blocks per group: one i32 lane of a 512-bit vector each.
const GROUP_BLOCKS: usize = 16;
/// Vectors per group: each lane takes 4 of its block's 32 values.
const GROUP_VECTORS: usize = Q4_0_BLOCK_LEN / 4;
/// Bytes of one vector of a group (one per lane x 4 values).
const VECTOR_BYTES: usize = GROUP_BLOCKS * 4;
/// Bytes of one group's values: 16 blocks x 32.
const GROUP_BYTES: usize = GROUP_BLOCKS * Q4_0_BLOCK_LEN;
/// Weight rows per register tile.
const TILE_ROWS: usize = 4;
/// Tokens per register tile: 4 x 4 tiles keep 16 integer and 16 float accumulators.
const TILE_TOKENS: usize = 4;
/// Weight rows per parallel task (a multiple of [`TILE_ROWS`]).
const TASK_ROWS: usize = 32;

/// The tokens' 8-bit rows in the interleaved group layout, padded with zero tokens to a
/// multiple of [`TILE_TOKENS`] and with zero blocks (scale 0, offset 0) to whole groups.
struct GroupedActivations {
    /// [tokens, groups, 8 vectors, 16 lanes, 4 codes].
    codes: Vec<i8>,
    /// [tokens, groups, 16]: each block's scale (NaN for a block that held a non-finite x).
    scales: Vec<f32>,
    /// [tokens, groups, 16]: each block's `-8 * sum(codes)`.
    offsets: Vec<i32>,
    groups: usize,
}

impl GroupedActivations {
    /// Quantizes the `m` rows of `x` [m, blocks * 32] ([`Q8Rows`], one token per parallel
    /// task) and interleaves them.
    fn new(x: &[f32], m: usize, blocks: usize) -> Self {
        use rayon::prelude::*;
        let cols = blocks * Q4_0_BLOCK_LEN;
        assert!(
            x.len() >= m * cols,
            "x holds {} values, not {m} x {cols}",
            x.len()
        );
        let groups = blocks.div_ceil(GROUP_BLOCKS);
        let tokens = m.next_multiple_of(TILE_TOKENS);
        let mut codes = vec![0i8; tokens * groups * GROUP_BYTES];
        let mut scales = vec![0f32; tokens * groups * GROUP_BLOCKS];
        let mut offsets = vec![0i32; tokens * groups * GROUP_BLOCKS];
        codes
            .par_chunks_mut(groups * GROUP_BYTES)
            .zip(scales.par_chunks_mut(groups * GROUP_BLOCKS))
            .zip(offsets.par_chunks_mut(groups * GROUP_BLOCKS))
            .zip(x[..m * cols].par_chunks(cols))
            .for_each(|(((codes, scales), offsets), row)| {
                let quantized = Q8Rows::quantize(row, 1, cols);
                for b in 0..blocks {
                    let (block_codes, scale, offset) = quantized.block(0, b);
                    let (g, lane) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
                    let group = &mut codes[g * GROUP_BYTES..][..GROUP_BYTES];
                    for (v, four) in block_codes.chunks_exact(4).enumerate() {
                        group[v * VECTOR_BYTES + lane * 4..][..4].copy_from_slice(four);
                    }
                    scales[b] = scale;
                    offsets[b] = offset;
                }
            });
        Self {
            codes,
            scales,
            offsets,
            groups,
        }
    }

    /// Tokens held, padding included.
    fn tokens(&self) -> usize {
        self.scales.len() / (self.groups * GROUP_BLOCKS)
    }
}

/// A tile of [`TILE_ROWS`] weight rows unpacked into the group layout.
struct WeightTile {
    /// [TILE_ROWS, groups, 8 vectors, 16 lanes, 4 nibbles as bytes 0..15].
    nibbles: Vec<u8>,
    /// [TILE_ROWS, groups, 16]: each block's f16 scale as f32 (0 for padding).
    scales: Vec<f32>,
    groups: usize,
}

impl WeightTile {
    fn new(groups: usize) -> Self {
        Self {
            nibbles: vec![0; TILE_ROWS * groups * GROUP_BYTES],
            scales: vec![0.0; TILE_ROWS * groups * GROUP_BLOCKS],
            groups,
        }
    }

    /// Fills the tile from `rows` (whole Q4_0 rows, at most [`TILE_ROWS`]); the tile's rows
    /// past them become zero.
    fn fill(&mut self, rows: &[&[u8]], kernel: Kernel) {
        let (nibble_len, scale_len) = (self.groups * GROUP_BYTES, self.groups * GROUP_BLOCKS);
        let chunks = self
            .nibbles
            .chunks_exact_mut(nibble_len)
            .zip(self.scales.chunks_exact_mut(scale_len));
        for (r, (nibbles, scales)) in chunks.enumerate() {
            match rows.get(r) {
                #[cfg(target_arch = "x86_64")]
                Some(row) if kernel == Kernel::Avx512Vnni => {
                    // Safety: this kernel is only chosen where the CPU has AVX-512 F/BW/VNNI
                    // (`Kernel::detect` or the tests' listing); the lengths are those
                    // `unpack_row_generic` asserts, checked there first.
                    check_unpack(row, nibbles, scales);
                    unsafe { unpack_row_avx512(row, nibbles, scales) }
                }
                Some(row) => unpack_row_generic(row, nibbles, scales),
                None => {
                    nibbles.fill(0);
                    scales.fill(0.0);
                }
            }
        }
    }
}

/// [`unpack_row_generic`]'s preconditions: the buffers hold whole groups for the row.
fn check_unpack(row: &[u8], nibbles: &[u8], scales: &[f32]) {
    let blocks = row.len() / Q4_0_BLOCK_BYTES;
    let groups = blocks.div_ceil(GROUP_BLOCKS);
    assert!(
        row.len() == blocks * Q4_0_BLOCK_BYTES
            && nibbles.len() == groups * GROUP_BYTES
            && scales.len() == groups * GROUP_BLOCKS,
        "unpacking {} Q4_0 bytes into {} nibbles and {} scales",
        row.len(),
        nibbles.len(),
        scales.len()
    );
}

/// One Q4_0 row into the group layout: the low nibble of packed byte `i` is value `i`
/// (vector `i / 4`), the high nibble value `16 + i` (vector `4 + i / 4`).
fn unpack_row_generic(row: &[u8], nibbles: &mut [u8], scales: &mut [f32]) {
    check_unpack(row, nibbles, scales);
    nibbles.fill(0);
    scales.fill(0.0);
    for (b, block) in row.chunks_exact(Q4_0_BLOCK_BYTES).enumerate() {
        let (g, lane) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
        scales[b] = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let group = &mut nibbles[g * GROUP_BYTES..][..GROUP_BYTES];
        for (i, q) in block[2..].iter().enumerate() {
            let at = lane * 4 + i % 4;
            group[(i / 4) * VECTOR_BYTES + at] = q & 0x0F;
            group[(4 + i / 4) * VECTOR_BYTES + at] = q >> 4;
        }
    }
}

/// [`unpack_row_generic`] with gathers: word `k` (packed bytes `4k..4k+4`) of the group's 16
/// blocks in one instruction, its low and high nibbles two of the group's vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn unpack_row_avx512(row: &[u8], nibbles: &mut [u8], scales: &mut [f32]) {
    use std::arch::x86_64::*;
    let blocks = row.len() / Q4_0_BLOCK_BYTES;
    let mask = _mm512_set1_epi32(0x0F0F_0F0F);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let block_starts = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(Q4_0_BLOCK_BYTES as i32));
    for (g, (group, group_scales)) in nibbles
        .chunks_exact_mut(GROUP_BYTES)
        .zip(scales.chunks_exact_mut(GROUP_BLOCKS))
        .enumerate()
    {
        let present = (blocks - g * GROUP_BLOCKS).min(GROUP_BLOCKS);
        let valid: __mmask16 = ((1u32 << present) - 1) as u16;
        let base = row[g * GROUP_BLOCKS * Q4_0_BLOCK_BYTES..].as_ptr();
        // Safety (gathers): lanes at or past `present` are masked off and read nothing; the
        // others read 4 bytes at offset at most 14 into one of the row's 18-byte blocks.
        let bits = unsafe {
            _mm512_mask_i32gather_epi32::<1>(
                _mm512_setzero_si512(),
                valid,
                block_starts,
                base.cast(),
            )
        };
        let halves = _mm512_cvtepi32_epi16(_mm512_and_si512(bits, _mm512_set1_epi32(0xFFFF)));
        // Safety: `group_scales` holds 16 f32.
        unsafe { _mm512_storeu_ps(group_scales.as_mut_ptr(), _mm512_cvtph_ps(halves)) };
        for k in 0..4 {
            let at = _mm512_add_epi32(block_starts, _mm512_set1_epi32(2 + 4 * k as i32));
            // Safety: as above.
            let word = unsafe {
                _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), valid, at, base.cast())
            };
            let low = _mm512_and_si512(word, mask);
            let high = _mm512_and_si512(_mm512_srli_epi32(word, 4), mask);
            // Safety: `group` holds 8 vectors of 64 bytes; k + 4 < 8.
            unsafe {
                let dst = group.as_mut_ptr();
                _mm512_storeu_si512(dst.add(k * VECTOR_BYTES).cast(), low);
                _mm512_storeu_si512(dst.add((4 + k) * VECTOR_BYTES).cast(), high);
            }
        }
    }
}

/// Which tile kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Plain Rust: the reference, and what other CPUs run.
    Generic,
    /// AVX2 `vpmaddubsw` + `vpmaddwd` on two 256-bit halves.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 VNNI `vpdpbusd` on 512-bit vectors.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Kernel {
    /// The fastest this CPU runs.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                return Self::Avx512Vnni;
            }
            if has!("avx2") && has!("fma") {
                return Self::Avx2;
            }
        }
        Self::Generic
    }

    /// One tile: [`TILE_ROWS`] rows of `w` times tokens `first..first + TILE_TOKENS` of `x`.
    fn tile(self, w: &WeightTile, x: &GroupedActivations, first: usize) -> Tile {
        assert!(
            w.groups == x.groups && first + TILE_TOKENS <= x.tokens(),
            "tile of tokens {first}.. over {} tokens, {} / {} groups",
            x.tokens(),
            w.groups,
            x.groups
        );
        match self {
            Self::Generic => tile_generic(w, x, first),
            // Safety (both): chosen only where the CPU has the features (`detect`, or the
            // tests' listing); the bounds were asserted above.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { tile_avx2(w, x, first) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Vnni => unsafe { tile_avx512vnni(w, x, first) },
        }
    }
}

/// A tile's outputs: [row][token].
type Tile = [[f32; TILE_TOKENS]; TILE_ROWS];

/// The sum of a tile's 16 per-block lanes, in lane order (every kernel sums the same way, so
/// they agree to the bit).
fn lane_sum(lanes: &[f32; GROUP_BLOCKS]) -> f32 {
    lanes.iter().fold(0.0, |sum, v| sum + v)
}

/// The reference: per block lane, the integer sum from the offset, converted and multiplied
/// by the scales' product with one rounding (`mul_add`), as the vector kernels' FMA does.
fn tile_generic(w: &WeightTile, x: &GroupedActivations, first: usize) -> Tile {
    let groups = w.groups;
    let mut lanes = [[[0f32; GROUP_BLOCKS]; TILE_TOKENS]; TILE_ROWS];
    for g in 0..groups {
        for (r, row_lanes) in lanes.iter_mut().enumerate() {
            let nibbles = &w.nibbles[(r * groups + g) * GROUP_BYTES..][..GROUP_BYTES];
            let w_scales = &w.scales[(r * groups + g) * GROUP_BLOCKS..][..GROUP_BLOCKS];
            for (t, acc) in row_lanes.iter_mut().enumerate() {
                let at = (first + t) * groups + g;
                let codes = &x.codes[at * GROUP_BYTES..][..GROUP_BYTES];
                let x_scales = &x.scales[at * GROUP_BLOCKS..][..GROUP_BLOCKS];
                let offsets = &x.offsets[at * GROUP_BLOCKS..][..GROUP_BLOCKS];
                for (lane, acc) in acc.iter_mut().enumerate() {
                    let mut dot = offsets[lane];
                    for v in 0..GROUP_VECTORS {
                        for i in 0..4 {
                            let k = v * VECTOR_BYTES + lane * 4 + i;
                            dot += i32::from(nibbles[k]) * i32::from(codes[k]);
                        }
                    }
                    *acc = (dot as f32).mul_add(w_scales[lane] * x_scales[lane], *acc);
                }
            }
        }
    }
    lanes.map(|row| row.map(|acc| lane_sum(&acc)))
}

/// [`tile_generic`] with `vpdpbusd`: unsigned nibbles times signed codes, four products a
/// lane, into 16 integer accumulators per group.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_avx512vnni(w: &WeightTile, x: &GroupedActivations, first: usize) -> Tile {
    use std::arch::x86_64::*;
    let groups = w.groups;
    let mut acc = [[_mm512_setzero_ps(); TILE_TOKENS]; TILE_ROWS];
    // Safety (every load in the loop): `Kernel::tile` asserted that tokens first..first + 4
    // exist in `x` and that `w` and `x` have `groups` groups, so each group index below is in
    // bounds of the buffers' documented shapes.
    let (nibbles, w_scales) = (w.nibbles.as_ptr(), w.scales.as_ptr());
    let (codes, x_scales, offsets) = (x.codes.as_ptr(), x.scales.as_ptr(), x.offsets.as_ptr());
    for g in 0..groups {
        let mut dots = [[_mm512_setzero_si512(); TILE_TOKENS]; TILE_ROWS];
        for t in 0..TILE_TOKENS {
            let at = ((first + t) * groups + g) * GROUP_BLOCKS;
            let offset = unsafe { _mm512_loadu_si512(offsets.add(at).cast()) };
            for row in dots.iter_mut() {
                row[t] = offset;
            }
        }
        for v in 0..GROUP_VECTORS {
            // A loop, not `array::from_fn`: a closure would not inherit the target features
            // and the loads would leave registers.
            let mut weights = [_mm512_setzero_si512(); TILE_ROWS];
            for (r, weight) in weights.iter_mut().enumerate() {
                let at = (r * groups + g) * GROUP_BYTES + v * VECTOR_BYTES;
                *weight = unsafe { _mm512_loadu_si512(nibbles.add(at).cast()) };
            }
            for t in 0..TILE_TOKENS {
                let at = ((first + t) * groups + g) * GROUP_BYTES + v * VECTOR_BYTES;
                let code = unsafe { _mm512_loadu_si512(codes.add(at).cast()) };
                for (row, weight) in dots.iter_mut().zip(&weights) {
                    row[t] = _mm512_dpbusd_epi32(row[t], *weight, code);
                }
            }
        }
        for t in 0..TILE_TOKENS {
            let at = ((first + t) * groups + g) * GROUP_BLOCKS;
            let x_scale = unsafe { _mm512_loadu_ps(x_scales.add(at)) };
            for r in 0..TILE_ROWS {
                let w_scale =
                    unsafe { _mm512_loadu_ps(w_scales.add((r * groups + g) * GROUP_BLOCKS)) };
                let scale = _mm512_mul_ps(w_scale, x_scale);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[r][t]), scale, acc[r][t]);
            }
        }
    }
    let mut out = [[0f32; TILE_TOKENS]; TILE_ROWS];
    for (out, acc) in out.iter_mut().zip(&acc) {
        for (out, v) in out.iter_mut().zip(acc) {
            let mut lanes = [0f32; GROUP_BLOCKS];
            // Safety: `lanes` holds 16 f32.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *v) };
            *out = lane_sum(&lanes);
        }
    }
    out
}

/// [`tile_generic`] in AVX2: each 64-byte vector as two halves (blocks 0..8 and 8..16),
/// `vpmaddubsw` pairs into i16 (at most 2 x 15 x 127, no saturation), `vpmaddwd` by ones
/// into the i32 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(w: &WeightTile, x: &GroupedActivations, first: usize) -> Tile {
    use std::arch::x86_64::*;
    let groups = w.groups;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[[_mm256_setzero_ps(); 2]; TILE_TOKENS]; TILE_ROWS];
    // Safety (every load): as in `tile_avx512vnni`; a half is 32 bytes or 8 lanes into a
    // 64-byte vector or a 16-lane group.
    let (nibbles, w_scales) = (w.nibbles.as_ptr(), w.scales.as_ptr());
    let (codes, x_scales, offsets) = (x.codes.as_ptr(), x.scales.as_ptr(), x.offsets.as_ptr());
    for g in 0..groups {
        // `half` also offsets every load, not only `acc`'s index.
        #[allow(clippy::needless_range_loop)]
        for half in 0..2 {
            let mut dots = [[_mm256_setzero_si256(); TILE_TOKENS]; TILE_ROWS];
            for t in 0..TILE_TOKENS {
                let at = ((first + t) * groups + g) * GROUP_BLOCKS + 8 * half;
                let offset = unsafe { _mm256_loadu_si256(offsets.add(at).cast()) };
                for row in dots.iter_mut() {
                    row[t] = offset;
                }
            }
            for v in 0..GROUP_VECTORS {
                let mut weights = [_mm256_setzero_si256(); TILE_ROWS];
                for (r, weight) in weights.iter_mut().enumerate() {
                    let at = (r * groups + g) * GROUP_BYTES + v * VECTOR_BYTES + 32 * half;
                    *weight = unsafe { _mm256_loadu_si256(nibbles.add(at).cast()) };
                }
                for t in 0..TILE_TOKENS {
                    let at =
                        ((first + t) * groups + g) * GROUP_BYTES + v * VECTOR_BYTES + 32 * half;
                    let code = unsafe { _mm256_loadu_si256(codes.add(at).cast()) };
                    for (row, weight) in dots.iter_mut().zip(&weights) {
                        let pairs = _mm256_maddubs_epi16(*weight, code);
                        row[t] = _mm256_add_epi32(row[t], _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
            for t in 0..TILE_TOKENS {
                let at = ((first + t) * groups + g) * GROUP_BLOCKS + 8 * half;
                let x_scale = unsafe { _mm256_loadu_ps(x_scales.add(at)) };
                for r in 0..TILE_ROWS {
                    let w_at = (r * groups + g) * GROUP_BLOCKS + 8 * half;
                    let w_scale = unsafe { _mm256_loadu_ps(w_scales.add(w_at)) };
                    let scale = _mm256_mul_ps(w_scale, x_scale);
                    let dot = _mm256_cvtepi32_ps(dots[r][t]);
                    acc[r][t][half] = _mm256_fmadd_ps(dot, scale, acc[r][t][half]);
                }
            }
        }
    }
    let mut out = [[0f32; TILE_TOKENS]; TILE_ROWS];
    for (out, acc) in out.iter_mut().zip(&acc) {
        for (out, [low, high]) in out.iter_mut().zip(acc) {
            let mut lanes = [0f32; GROUP_BLOCKS];
            // Safety: `lanes` holds 16 f32, two halves of 8.
            unsafe {
                _mm256_storeu_ps(lanes.as_mut_ptr(), *low);
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8), *high);
            }
            *out = lane_sum(&lanes);
        }
    }
    out
}

/// `x` [m, cols] f32 times the transpose of a Q4_0 matrix [rows, cols], with `x` quantized to
/// 8 bits: [m, rows] f32. The same values as [`super::q4_0_q8::q4_0_matmul_q8`] up to the
/// order of the f32 sums, at a GEMM's speed for many rows of `x` (prefill).
pub fn q4_0_matmul_q8_gemm(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    m: usize,
) -> Vec<f32> {
    gemm_with(Kernel::detect(), bytes, rows, cols, x, m)
}

/// [`q4_0_matmul_q8_gemm`] with the tile kernel `kernel`.
fn gemm_with(
    kernel: Kernel,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    m: usize,
) -> Vec<f32> {
    use rayon::prelude::*;
    let blocks = cols / Q4_0_BLOCK_LEN;
    let row_bytes = blocks * Q4_0_BLOCK_BYTES;
    assert_eq!(
        bytes.len(),
        rows * row_bytes,
        "Q4_0 bytes for [{rows}, {cols}]"
    );
    assert!(
        cols.is_multiple_of(Q4_0_BLOCK_LEN),
        "{cols} columns: not a multiple of {Q4_0_BLOCK_LEN}"
    );
    let mut rows_major = vec![0f32; rows * m];
    if m == 0 {
        return rows_major;
    }
    let activations = GroupedActivations::new(x, m, blocks);
    let groups = activations.groups;
    rows_major
        .par_chunks_mut(TASK_ROWS * m)
        .zip(bytes.par_chunks(TASK_ROWS * row_bytes))
        .for_each(|(dst, task_bytes)| {
            let mut tile = WeightTile::new(groups);
            for (dst, tile_bytes) in dst
                .chunks_mut(TILE_ROWS * m)
                .zip(task_bytes.chunks(TILE_ROWS * row_bytes))
            {
                let tile_rows: Vec<&[u8]> = tile_bytes.chunks_exact(row_bytes).collect();
                tile.fill(&tile_rows, kernel);
                for first in (0..m).step_by(TILE_TOKENS) {
                    let out = kernel.tile(&tile, &activations, first);
                    for (r, dst_row) in dst.chunks_exact_mut(m).enumerate() {
                        let tokens = first..(first + TILE_TOKENS).min(m);
                        for (t, value) in tokens.clone().zip(out[r]) {
                            dst_row[t] = value;
                        }
                    }
                }
            }
        });
    tokens_major_parallel(&rows_major, rows, m)
}

/// [`super::quant::tokens_major`] with the tokens split across threads: [rows, m] -> [m, rows].
fn tokens_major_parallel(rows_major: &[f32], rows: usize, m: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0f32; m * rows];
    out.par_chunks_mut(rows).enumerate().for_each(|(t, token)| {
        for (r, value) in token.iter_mut().enumerate() {
            *value = rows_major[r * m + t];
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::q4_0_q8::tests::{bits, edgy_weights, exact_codes, rows_reference};
    use crate::model::quant::{q4_0_dequantize, q4_0_matmul};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Every kernel this CPU can run.
    fn kernels() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut out = vec![Kernel::Generic];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                out.push(Kernel::Avx2);
            }
            if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                out.push(Kernel::Avx512Vnni);
            }
        }
        out
    }

    #[test]
    fn unpacking_with_gathers_equals_the_scalar_unpacking() {
        let mut rng = StdRng::seed_from_u64(30);
        // 2 blocks (one short group), 16 (one whole), 90 (the real shape: 5 whole + 10).
        for blocks in [2, 16, 90] {
            let row = edgy_weights(&mut rng, blocks, |r| r.random_range(-2f32..2.0));
            let groups = blocks.div_ceil(GROUP_BLOCKS);
            for kernel in kernels() {
                let mut want = WeightTile::new(groups);
                want.fill(&[&row], Kernel::Generic);
                // Garbage first: padding must be written, not left over.
                let mut got = WeightTile::new(groups);
                got.nibbles.fill(0xAA);
                got.scales.fill(f32::NAN);
                got.fill(&[&row], kernel);
                assert_eq!(got.nibbles, want.nibbles, "{kernel:?}, {blocks} blocks");
                assert_eq!(bits(&got.scales), bits(&want.scales), "{kernel:?}");
            }
        }
    }

    #[test]
    fn every_kernel_equals_the_row_kernel_bit_for_bit_on_exact_data() {
        // Codes are the values themselves (each block's largest |x| is 127: scale 1) and
        // weight scales powers of two: every sum is an exact integer times a power of two,
        // so any order of the f32 sums gives the same bits as decode's row kernel.
        let mut rng = StdRng::seed_from_u64(31);
        for (rows, cols, m) in [(37, 2880, 9), (5, 64, 4), (8, 512, 17)] {
            let blocks = rows * cols / Q4_0_BLOCK_LEN;
            let weights = edgy_weights(&mut rng, blocks, |r| {
                [0.0, 0.25, -0.5, 1.0, 2.0][r.random_range(0..5)]
            });
            let x = exact_codes(&mut rng, m * cols, -127.0);
            let want = rows_reference(&weights, rows, cols, &x, m);
            for kernel in kernels() {
                let got = gemm_with(kernel, &weights, rows, cols, &x, m);
                assert_eq!(bits(&got), bits(&want), "{kernel:?} [{rows}, {cols}] x {m}");
            }
        }
    }

    #[test]
    fn every_kernel_equals_the_generic_tile_bit_for_bit_on_random_data() {
        // Same integer sums, same f32 rounding steps in the same order: identical bits, with
        // huge scales and values as well as ordinary ones.
        let mut rng = StdRng::seed_from_u64(32);
        for (huge, rows, m) in [(false, 37, 1), (false, 13, 22), (true, 6, 5)] {
            let cols = 2880;
            let weights = edgy_weights(&mut rng, rows * cols / Q4_0_BLOCK_LEN, |r| {
                if huge {
                    65504.0
                } else {
                    r.random_range(-0.1f32..0.1)
                }
            });
            let amplitude = if huge { 1e6 } else { 3.0 };
            let x: Vec<f32> = (0..m * cols)
                .map(|_| rng.random_range(-amplitude..amplitude))
                .collect();
            let want = gemm_with(Kernel::Generic, &weights, rows, cols, &x, m);
            // And the same values as decode's row kernel, up to the order of the f32 sums.
            let reference = rows_reference(&weights, rows, cols, &x, m);
            let w = q4_0_dequantize(&weights);
            let q8 = Q8Rows::quantize(&x, m, cols);
            for t in 0..m {
                for r in 0..rows {
                    let magnitude: f32 = (0..cols)
                        .map(|i| (w[r * cols + i] * q8.value(t, i)).abs())
                        .sum();
                    let (a, b) = (want[t * rows + r], reference[t * rows + r]);
                    assert!((a - b).abs() <= 1e-5 * magnitude, "({t},{r}): {a} vs {b}");
                }
            }
            for kernel in kernels() {
                let got = gemm_with(kernel, &weights, rows, cols, &x, m);
                assert_eq!(bits(&got), bits(&want), "{kernel:?} huge={huge} m={m}");
            }
        }
    }

    #[test]
    fn a_non_finite_activation_makes_only_its_tokens_outputs_nan() {
        let mut rng = StdRng::seed_from_u64(34);
        let (rows, cols, m) = (6, 96, 5);
        let weights = edgy_weights(&mut rng, rows * cols / Q4_0_BLOCK_LEN, |_| 0.5);
        let mut x: Vec<f32> = (0..m * cols)
            .map(|_| rng.random_range(-1f32..1.0))
            .collect();
        x[2 * cols + 40] = f32::INFINITY;
        x[4 * cols + 95] = f32::NAN;
        for kernel in kernels() {
            let got = gemm_with(kernel, &weights, rows, cols, &x, m);
            for t in 0..m {
                let row = &got[t * rows..][..rows];
                let nan = t == 2 || t == 4;
                assert!(
                    row.iter().all(|v| v.is_nan() == nan),
                    "{kernel:?} token {t}: {row:?}"
                );
            }
        }
    }

    #[test]
    fn q8_prefill_mode_runs_prefill_through_the_integer_gemm() {
        use crate::model::quant::{GEMM_MIN_ROWS, Q4Activations, q4_0_matmul_with};
        let mut rng = StdRng::seed_from_u64(35);
        let (rows, cols, m) = (9, 128, GEMM_MIN_ROWS);
        let weights = edgy_weights(&mut rng, rows * cols / Q4_0_BLOCK_LEN, |r| {
            r.random_range(-0.1f32..0.1)
        });
        let x: Vec<f32> = (0..m * cols)
            .map(|_| rng.random_range(-2f32..2.0))
            .collect();
        let q8 = q4_0_matmul_with(&weights, rows, cols, &x, m, Q4Activations::Q8Prefill);
        assert_eq!(
            bits(&q8),
            bits(&q4_0_matmul_q8_gemm(&weights, rows, cols, &x, m))
        );
        // The f32 and decode-only q8 modes keep the exact GEMM (8-bit activations would move
        // these values).
        let exact = q4_0_matmul(&weights, rows, cols, &x, m);
        for mode in [Q4Activations::F32, Q4Activations::Q8] {
            let got = q4_0_matmul_with(&weights, rows, cols, &x, m, mode);
            assert_eq!(bits(&got), bits(&exact), "{mode:?}");
        }
        assert_ne!(bits(&q8), bits(&exact));
    }

    #[test]
    fn no_tokens_give_no_outputs() {
        let weights = vec![0u8; 4 * Q4_0_BLOCK_BYTES];
        assert!(q4_0_matmul_q8_gemm(&weights, 4, 32, &[], 0).is_empty());
    }
}
