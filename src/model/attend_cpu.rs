//! Decode attention on the CPU: one query token's heads over the cached keys and values,
//! summed in f32 whatever the cache's dtype. Work is split per kv head: a block of its K (or
//! V) rows is widened to f32 once, in L1, for all the query heads that share it, where a
//! per-query-head loop would widen (and read) every row once per head. With AVX-512 the dot
//! products and weighted sums keep a row in registers (head_dim a multiple of 16).

use rayon::prelude::*;

/// Cache rows widened at a time: a block (`KEY_BLOCK` x head_dim f32, 8 KiB at head_dim 64)
/// stays in L1 while the query heads of its kv head read it.
const KEY_BLOCK: usize = 32;

/// A cache element the kernel reads, widened to f32 a slice at a time.
pub trait CacheElement: Copy + Send + Sync {
    /// Writes `src` as f32 into `dst` (same length).
    fn widen(src: &[Self], dst: &mut [f32]);
}

impl CacheElement for f32 {
    fn widen(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl CacheElement for half::f16 {
    fn widen(src: &[Self], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // Safety: the CPU supports AVX-512F, checked just above.
            return unsafe { avx512::widen_f16(src, dst) };
        }
        src.convert_to_f32_slice(dst);
    }
}

impl CacheElement for half::bf16 {
    fn widen(src: &[Self], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
}

/// Shapes of one decode attention: `heads` query heads of `head_dim` over `keys` positions of
/// `kv_heads` cached heads; `k_stride`/`v_stride` are the elements between two kv heads' rows.
#[derive(Debug, Clone, Copy)]
pub struct AttendDims {
    pub heads: usize,
    pub kv_heads: usize,
    pub keys: usize,
    pub head_dim: usize,
    pub k_stride: usize,
    pub v_stride: usize,
}

/// `q` [heads, head_dim] (already scaled) over `k`, `v` (kv head `g`'s row `j` at
/// `g * stride + j * head_dim`) with one sink logit per head: [heads, head_dim] f32. The kv
/// heads run in parallel. The caller checks the shapes (`heads % kv_heads == 0`, the slices
/// long enough); a slice too short panics on its bounds check rather than reading past it.
pub fn attend<T: CacheElement>(
    q: &[f32],
    k: &[T],
    v: &[T],
    sinks: &[f32],
    dims: AttendDims,
) -> Vec<f32> {
    let AttendDims {
        heads,
        kv_heads,
        keys,
        head_dim: d,
        k_stride,
        v_stride,
    } = dims;
    let group = heads / kv_heads;
    let mut out = vec![0f32; heads * d];
    out.par_chunks_mut(group * d)
        .enumerate()
        .for_each(|(g, dst)| {
            attend_kv_head(
                &q[g * group * d..][..group * d],
                &k[g * k_stride..][..keys * d],
                &v[g * v_stride..][..keys * d],
                &sinks[g * group..][..group],
                d,
                dst,
            );
        });
    out
}

/// The query heads `q` [group, d] sharing one kv head (`k`, `v` [keys, d]) into `dst`
/// [group, d] (zeros on entry).
fn attend_kv_head<T: CacheElement>(
    q: &[f32],
    k: &[T],
    v: &[T],
    sinks: &[f32],
    d: usize,
    dst: &mut [f32],
) {
    let group = sinks.len();
    let keys = k.len() / d;
    let rows = Rows::for_head_dim(d);
    // Head-major scores, then probabilities.
    let mut probs = vec![0f32; group * keys];
    let mut block = vec![0f32; KEY_BLOCK * d];
    for start in (0..keys).step_by(KEY_BLOCK) {
        let n = KEY_BLOCK.min(keys - start);
        let block = &mut block[..n * d];
        T::widen(&k[start * d..][..n * d], block);
        for (h, q) in q.chunks_exact(d).enumerate() {
            rows.dots(q, block, &mut probs[h * keys + start..][..n]);
        }
    }
    for (h, p) in probs.chunks_exact_mut(keys).enumerate() {
        softmax_with_sink(p, sinks[h]);
    }
    for start in (0..keys).step_by(KEY_BLOCK) {
        let n = KEY_BLOCK.min(keys - start);
        let block = &mut block[..n * d];
        T::widen(&v[start * d..][..n * d], block);
        for (h, out) in dst.chunks_exact_mut(d).enumerate() {
            rows.weighted_sum(&probs[h * keys + start..][..n], block, out);
        }
    }
}

/// Scores to probabilities in place, the sink joining the denominator (spec 2).
pub(crate) fn softmax_with_sink(scores: &mut [f32], sink: f32) {
    let top = scores.iter().copied().fold(sink, f32::max);
    let mut total = (sink - top).exp();
    for s in scores.iter_mut() {
        *s = (*s - top).exp();
        total += *s;
    }
    for s in scores.iter_mut() {
        *s /= total;
    }
}

/// The row kernels for one head_dim: AVX-512 where the CPU has it and head_dim is 32, 64 or
/// 128, portable loops otherwise.
#[derive(Clone, Copy)]
enum Rows {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512 {
        vectors: usize,
    },
}

impl Rows {
    fn for_head_dim(d: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if matches!(d, 32 | 64 | 128) && std::arch::is_x86_feature_detected!("avx512f") {
            return Self::Avx512 { vectors: d / 16 };
        }
        let _ = d;
        Self::Portable
    }

    /// `out[j] = q . rows[j]` for each row of `rows` [out.len(), q.len()].
    fn dots(self, q: &[f32], rows: &[f32], out: &mut [f32]) {
        assert_eq!(rows.len(), out.len() * q.len());
        match self {
            Self::Portable => {
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(q.len())) {
                    *o = dot(q, row);
                }
            }
            // Safety: `for_head_dim` chose this only where the CPU has AVX-512F, for a
            // head_dim of `vectors` x 16; the lengths are asserted above.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 { vectors: 2 } => unsafe { avx512::dots::<2>(q, rows, out) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 { vectors: 4 } => unsafe { avx512::dots::<4>(q, rows, out) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 { .. } => unsafe { avx512::dots::<8>(q, rows, out) },
        }
    }

    /// `out += sum_j weights[j] * rows[j]` for each row of `rows` [weights.len(), out.len()].
    fn weighted_sum(self, weights: &[f32], rows: &[f32], out: &mut [f32]) {
        assert_eq!(rows.len(), weights.len() * out.len());
        match self {
            Self::Portable => {
                for (w, row) in weights.iter().zip(rows.chunks_exact(out.len())) {
                    for (o, x) in out.iter_mut().zip(row) {
                        *o += w * x;
                    }
                }
            }
            // Safety: as in `dots`.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 { vectors: 2 } => unsafe { avx512::weighted_sum::<2>(weights, rows, out) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 { vectors: 4 } => unsafe { avx512::weighted_sum::<4>(weights, rows, out) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 { .. } => unsafe { avx512::weighted_sum::<8>(weights, rows, out) },
        }
    }
}

/// `a . b` in eight independent lanes, so the compiler vectorizes it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::CacheElement::widen`] for f16: 16 values an instruction (`vcvtph2ps`), where
    /// `half`'s slice conversion takes 8 at a time and measured slower than the f32 cache.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn widen_f16(src: &[half::f16], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        let whole = src.len() / 16 * 16;
        let (src_head, src_tail) = src.split_at(whole);
        let (dst_head, dst_tail) = dst.split_at_mut(whole);
        for (s, d) in src_head.chunks_exact(16).zip(dst_head.chunks_exact_mut(16)) {
            // Safety: `s` holds 16 f16 (32 bytes) and `d` 16 f32, the widths loaded and stored.
            unsafe {
                let halves = _mm256_loadu_si256(s.as_ptr() as *const __m256i);
                _mm512_storeu_ps(d.as_mut_ptr(), _mm512_cvtph_ps(halves));
            }
        }
        for (s, d) in src_tail.iter().zip(dst_tail) {
            *d = s.to_f32();
        }
    }

    /// [`super::Rows::dots`] for rows of `V` x 16 floats: a row's products in `V` registers,
    /// one horizontal sum per row.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dots<const V: usize>(q: &[f32], rows: &[f32], out: &mut [f32]) {
        assert!(q.len() == V * 16 && rows.len() == out.len() * V * 16);
        // Safety: every load below is within `q` or `rows` by the assertion.
        unsafe {
            let qv: [__m512; V] = std::array::from_fn(|i| _mm512_loadu_ps(q.as_ptr().add(i * 16)));
            for (j, o) in out.iter_mut().enumerate() {
                let row = rows.as_ptr().add(j * V * 16);
                let mut acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(row));
                for (i, q) in qv.iter().enumerate().skip(1) {
                    acc = _mm512_fmadd_ps(*q, _mm512_loadu_ps(row.add(i * 16)), acc);
                }
                *o = _mm512_reduce_add_ps(acc);
            }
        }
    }

    /// [`super::Rows::weighted_sum`] for rows of `V` x 16 floats: `out` in registers for the
    /// whole block, two sets of accumulators (even and odd rows) so that consecutive FMAs do
    /// not wait on each other.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sum<const V: usize>(
        weights: &[f32],
        rows: &[f32],
        out: &mut [f32],
    ) {
        assert!(out.len() == V * 16 && rows.len() == weights.len() * V * 16);
        // Safety: every load and store below is within `out` or `rows` by the assertion.
        unsafe {
            let mut even: [__m512; V] =
                std::array::from_fn(|i| _mm512_loadu_ps(out.as_ptr().add(i * 16)));
            let mut odd = [_mm512_setzero_ps(); V];
            let mut pairs = weights.chunks_exact(2);
            let mut row = rows.as_ptr();
            for pair in &mut pairs {
                let (w0, w1) = (_mm512_set1_ps(pair[0]), _mm512_set1_ps(pair[1]));
                for i in 0..V {
                    even[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(row.add(i * 16)), even[i]);
                    odd[i] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(row.add((V + i) * 16)), odd[i]);
                }
                row = row.add(2 * V * 16);
            }
            if let [w] = pairs.remainder() {
                let w = _mm512_set1_ps(*w);
                for (i, e) in even.iter_mut().enumerate() {
                    *e = _mm512_fmadd_ps(w, _mm512_loadu_ps(row.add(i * 16)), *e);
                }
            }
            for i in 0..V {
                _mm512_storeu_ps(out.as_mut_ptr().add(i * 16), _mm512_add_ps(even[i], odd[i]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition, head by head, in f64.
    fn naive(q: &[f32], k: &[f32], v: &[f32], sinks: &[f32], dims: AttendDims) -> Vec<f32> {
        let (heads, keys, d) = (dims.heads, dims.keys, dims.head_dim);
        let (kv_heads, k_stride, v_stride) = (dims.kv_heads, dims.k_stride, dims.v_stride);
        let mut out = vec![0f32; heads * d];
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            let scores: Vec<f64> = (0..keys)
                .map(|j| {
                    (0..d)
                        .map(|c| q[h * d + c] as f64 * k[g * k_stride + j * d + c] as f64)
                        .sum()
                })
                .collect();
            let top = scores.iter().copied().fold(sinks[h] as f64, f64::max);
            let total: f64 =
                scores.iter().map(|s| (s - top).exp()).sum::<f64>() + (sinks[h] as f64 - top).exp();
            for c in 0..d {
                out[h * d + c] = (0..keys)
                    .map(|j| (scores[j] - top).exp() / total * v[g * v_stride + j * d + c] as f64)
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // A small deterministic spread in [-1.5, 1.5).
        (0..n)
            .map(|i| {
                let x = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 97);
                (x % 3000) as f32 / 1000.0 - 1.5
            })
            .collect()
    }

    #[test]
    fn every_head_dim_and_block_edge_equals_the_definition() {
        // head_dims with AVX-512 rows (32, 64, 128) and without (24); key counts below, at
        // and across KEY_BLOCK, odd and even (the weighted sum's pairs).
        for d in [24, 32, 64, 128] {
            for keys in [1, 7, KEY_BLOCK, KEY_BLOCK + 1, 3 * KEY_BLOCK + 6] {
                let (heads, kv_heads, stride) = (8, 2, (keys + 5) * d);
                let dims = AttendDims {
                    heads,
                    kv_heads,
                    keys,
                    head_dim: d,
                    k_stride: stride,
                    v_stride: stride,
                };
                let q = values(heads * d, 1);
                let (k, v) = (values(kv_heads * stride, 2), values(kv_heads * stride, 3));
                let sinks = values(heads, 4);
                let ours = attend(&q, &k, &v, &sinks, dims);
                let want = naive(&q, &k, &v, &sinks, dims);
                let diff = ours
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-5, "d {d}, {keys} keys: max |diff| {diff}");
            }
        }
    }

    #[test]
    fn f16_rows_widen_exactly_with_a_partial_last_vector() {
        let src: Vec<half::f16> = values(37, 9)
            .iter()
            .map(|&x| half::f16::from_f32(x))
            .collect();
        let mut dst = vec![0f32; 37];
        half::f16::widen(&src, &mut dst);
        let want: Vec<f32> = src.iter().map(|x| x.to_f32()).collect();
        assert_eq!(dst, want);
    }

    #[test]
    fn a_16_bit_cache_is_read_as_its_widened_values() {
        let dims = AttendDims {
            heads: 8,
            kv_heads: 1,
            keys: 45,
            head_dim: 64,
            k_stride: 0,
            v_stride: 0,
        };
        let q = values(8 * 64, 5);
        let (k, v) = (values(45 * 64, 6), values(45 * 64, 7));
        let sinks = values(8, 8);
        let k16: Vec<half::f16> = k.iter().map(|&x| half::f16::from_f32(x)).collect();
        let v16: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        let widened = |x: &[half::f16]| x.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
        let ours = attend(&q, &k16, &v16, &sinks, dims);
        let want = attend(&q, &widened(&k16), &widened(&v16), &sinks, dims);
        assert_eq!(ours, want);
    }
}
