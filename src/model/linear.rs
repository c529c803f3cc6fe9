//! Dense Linear weights [out, in]. On the CPU, 16-bit checkpoint weights stay bf16 (half the
//! bytes to stream per token) and run through a bf16 x f32 kernel that accumulates in f32, so
//! results equal the f32 matmul up to summation order; elsewhere a plain tensor, bf16 on CUDA
//! in the default mode, multiplied with f32 activations by `kernels/dense.cu` for decode.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};
use half::bf16;

use super::kernels::cpu_slice;
#[cfg(feature = "cuda")]
use super::kernels::cuda;
#[cfg(any(feature = "cuda", test))]
use super::kernels::launch::{Arg, Launch, Module, aligned_input, contiguous_input, grid_y, int};

use super::q8_0_x16::Q8_0x16;
use super::quant::tokens_major;

/// Prefill batches larger than this widen the bf16 weight to f32 a tile at a time for the
/// `gemm` crate ([`super::tiled_gemm`]).
const KERNEL_MAX_ROWS: usize = 8;
/// Output rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// A Linear weight in Linear layout [out, in].
pub enum Linear {
    /// A tensor in the activation dtype.
    Tensor(Tensor),
    /// bf16 values on the host (CPU only).
    Bf16Cpu {
        values: Vec<bf16>,
        rows: usize,
        cols: usize,
    },
    /// 8-bit blocks on the host (CPU only, `--dtype q8-dense`).
    Q8Cpu(Q8_0x16),
}

impl Linear {
    /// Keeps `values` as bf16 on the CPU when that is lossless, else a tensor of `dtype`.
    pub fn new(
        values: Vec<f32>,
        rows: usize,
        cols: usize,
        dtype: DType,
        device: &Device,
        prefer_bf16: bool,
    ) -> candle_core::Result<Self> {
        if prefer_bf16
            && device.is_cpu()
            && values
                .iter()
                .all(|&v| bf16::from_f32(v).to_f32().to_bits() == v.to_bits())
        {
            let values = values.into_iter().map(bf16::from_f32).collect();
            return Self::from_bf16(values, rows, cols, dtype, device, true);
        }
        Self::tensor(values, rows, cols, dtype, device)
    }

    /// From bf16 values: kept as they are on the CPU when `prefer_bf16`, else a tensor of
    /// `dtype` (no f32 copy of the whole matrix on the way).
    pub fn from_bf16(
        values: Vec<bf16>,
        rows: usize,
        cols: usize,
        dtype: DType,
        device: &Device,
        prefer_bf16: bool,
    ) -> candle_core::Result<Self> {
        if prefer_bf16 && device.is_cpu() {
            return Ok(Self::Bf16Cpu { values, rows, cols });
        }
        Self::tensor(values, rows, cols, dtype, device)
    }

    /// A [rows, cols] tensor of `dtype` on `device`.
    fn tensor<T: candle_core::WithDType>(
        values: Vec<T>,
        rows: usize,
        cols: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Ok(Self::Tensor(
            Tensor::from_vec(values, (rows, cols), &Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(device)?,
        ))
    }

    /// This weight in 8 bits ([`Q8_0x16`]) where it is a host bf16 matrix, the CPU has the
    /// kernel, and the shape and values allow it; otherwise unchanged (still exact).
    pub fn into_q8(self) -> Self {
        match self {
            Self::Bf16Cpu { values, rows, cols } if Q8_0x16::supported() => {
                match Q8_0x16::quantize(&values, rows, cols, bf16::to_f32) {
                    Ok(q8) => Self::Q8Cpu(q8),
                    Err(_) => Self::Bf16Cpu { values, rows, cols },
                }
            }
            other => other,
        }
    }

    /// Bytes the weight occupies.
    pub fn bytes(&self) -> u64 {
        match self {
            Self::Tensor(t) => (t.elem_count() * t.dtype().size_in_bytes()) as u64,
            Self::Bf16Cpu { values, .. } => (values.len() * 2) as u64,
            Self::Q8Cpu(q8) => q8.len_bytes() as u64,
        }
    }

    /// `x` [m, in] -> [m, out], in x's dtype.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Tensor(w) if w.dtype() == x.dtype() => x.matmul(&w.t()?),
            // bf16 weights with f32 activations (CUDA's default): a matvec kernel for decode,
            // the weight widened to f32 for a prefill chunk's matmul.
            Self::Tensor(w) if x.dim(0)? <= KERNEL_MAX_ROWS && w.dtype() == DType::BF16 => {
                bf16_matvec(x, w)
            }
            Self::Tensor(w) => widened_matmul(x, w),
            Self::Bf16Cpu { values, rows, cols } => {
                let m = x.dim(0)?;
                let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let out = if m > KERNEL_MAX_ROWS {
                    bf16_matmul_tiled(values, *rows, *cols, &xs, m)
                } else {
                    bf16_matmul(values, *rows, *cols, &xs, m)
                };
                Tensor::from_vec(out, (m, *rows), x.device())?.to_dtype(x.dtype())
            }
            Self::Q8Cpu(q8) => {
                let (m, cols) = x.dims2()?;
                if cols != q8.cols() {
                    candle_core::bail!(
                        "8-bit linear [{}, {}]: x {:?}",
                        q8.rows(),
                        q8.cols(),
                        x.dims()
                    );
                }
                let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let out = q8.matmul(&xs, m);
                Tensor::from_vec(out, (m, q8.rows()), x.device())?.to_dtype(x.dtype())
            }
        }
    }
}

/// Output rows widened at a time for a prefill matmul: 8,192 rows of gpt-oss's 2,880 columns
/// are 94 MB of f32 (the planner's widened-weight scratch covers the larger qkv matrix), where
/// lm_head widened whole would be 2.3 GB.
const WIDEN_ROWS: usize = 8192;

/// `x` [m, cols] times the transpose of `w` [rows, cols] of another dtype, `w` widened to x's
/// dtype a block of rows at a time.
fn widened_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let rows = w.dim(0)?;
    let block = |start: usize| -> candle_core::Result<Tensor> {
        let len = WIDEN_ROWS.min(rows - start);
        x.matmul(&w.narrow(0, start, len)?.to_dtype(x.dtype())?.t()?)
    };
    if rows <= WIDEN_ROWS {
        return block(0);
    }
    let parts = (0..rows)
        .step_by(WIDEN_ROWS)
        .map(block)
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// `x` [m, cols] f32 times the transpose of `w` [rows, cols] bf16, in f32: [m, rows] f32.
fn bf16_matvec(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.to_dtype(DType::F32)?
        .contiguous()?
        .apply_op2_no_bwd(&w.contiguous()?, &Bf16Matvec)
}

/// The op behind [`bf16_matvec`]; on CUDA `kernels/dense.cu`.
struct Bf16Matvec;

impl Bf16Matvec {
    /// (m, rows, cols), checked.
    fn dims(x: &Layout, w: &Layout) -> candle_core::Result<(usize, usize, usize)> {
        let (m, cols) = x.shape().dims2()?;
        let (rows, w_cols) = w.shape().dims2()?;
        if w_cols != cols || !cols.is_multiple_of(2) {
            candle_core::bail!(
                "bf16 matvec: x {:?} and w {:?} (even columns)",
                x.dims(),
                w.dims()
            );
        }
        Ok((m, rows, cols))
    }

    /// The CUDA launch (inputs: x, w): a warp per output row, 4 rows a block, a grid row per
    /// token.
    #[cfg(any(feature = "cuda", test))]
    fn launch(x: &Layout, w: &Layout) -> candle_core::Result<(Launch, Shape)> {
        let (m, rows, cols) = Self::dims(x, w)?;
        let launch = Launch {
            module: Module::Dense,
            kernel: "bf16_matvec_f32",
            grid: (rows.div_ceil(4) as u32, grid_y(m, "tokens")?, 1),
            block: (32, 4, 1),
            args: vec![
                // Read two weights (32 bits) at a time.
                aligned_input(1, w, 2, "bf16 matvec weights")?,
                contiguous_input(0, x, "x")?,
                Arg::Output {
                    dtype: DType::F32,
                    len: m * rows,
                },
                int(rows, "rows")?,
                int(cols, "cols")?,
            ],
        };
        Ok((launch, Shape::from((m, rows))))
    }
}

impl CustomOp2 for Bf16Matvec {
    fn name(&self) -> &'static str {
        "bf16-matvec"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, rows, cols) = Self::dims(x_l, w_l)?;
        let x = cpu_slice::<f32>(x, x_l, "x")?;
        let w = cpu_slice::<bf16>(w, w_l, "weights")?;
        let mut out = Vec::with_capacity(m * rows);
        for xt in x.chunks_exact(cols) {
            out.extend(
                w.chunks_exact(cols)
                    .map(|row| row.iter().zip(xt).map(|(w, x)| w.to_f32() * x).sum::<f32>()),
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((m, rows))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        x_l: &Layout,
        w: &candle_core::CudaStorage,
        w_l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;

        let (launch, shape) = Self::launch(x_l, w_l)?;
        Ok((cuda::run(x.device(), &[launch], &[x, w])?, shape))
    }
}

/// [`bf16_matmul`] for a prefill chunk: `w` widened to f32 a tile of rows at a time for a
/// GEMM, never the whole matrix at once.
fn bf16_matmul_tiled(w: &[bf16], rows: usize, cols: usize, x: &[f32], m: usize) -> Vec<f32> {
    assert_eq!(w.len(), rows * cols, "bf16 values for [{rows}, {cols}]");
    super::tiled_gemm::widened_tiles_matmul(rows, cols, x, m, |r, dst| {
        for (d, v) in dst.iter_mut().zip(&w[r * cols..][..cols]) {
            *d = v.to_f32();
        }
    })
}

/// `x` [m, cols] times the transpose of bf16 `w` [rows, cols], accumulated in f32.
fn bf16_matmul(w: &[bf16], rows: usize, cols: usize, x: &[f32], m: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let split = SplitX::new(x);
    let mut transposed = vec![0f32; rows * m];
    transposed
        .par_chunks_mut(m * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, dst)| {
            for (k, dst_row) in dst.chunks_mut(m).enumerate() {
                let r = task * ROWS_PER_TASK + k;
                let row = &w[r * cols..][..cols];
                for (t, out) in dst_row.iter_mut().enumerate() {
                    *out = split.dot(row, x, t * cols, cols);
                }
            }
        });
    tokens_major(transposed, rows, m)
}

/// `x` as the sum of two bf16 vectors (`hi` = x rounded, `lo` = the rest rounded), when the
/// CPU has AVX-512 BF16: `vdpbf16ps` then multiplies bf16 weights by x with products exact in
/// f32 and x kept to ~16 significant bits (f32 has 24; the rounding is ~1e-5 relative), at a
/// fraction of the instructions of converting every weight to f32.
struct SplitX {
    halves: Option<(Vec<bf16>, Vec<bf16>)>,
}

impl SplitX {
    fn new(x: &[f32]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bf16") {
            let hi: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
            let lo = x
                .iter()
                .zip(&hi)
                .map(|(&v, h)| bf16::from_f32(v - h.to_f32()))
                .collect();
            return Self {
                halves: Some((hi, lo)),
            };
        }
        Self { halves: None }
    }

    /// `w` . x[at..at + len], accumulated in f32.
    fn dot(&self, w: &[bf16], x: &[f32], at: usize, len: usize) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if let Some((hi, lo)) = &self.halves {
            // Safety: `halves` exists only when the CPU has AVX-512 BF16 (checked in `new`).
            return unsafe { dot_avx512bf16(w, &hi[at..at + len], &lo[at..at + len]) };
        }
        dot(w, &x[at..at + len])
    }
}

/// How far ahead of the weights in use [`dot_avx512bf16`] prefetches, in values.
#[cfg(target_arch = "x86_64")]
const PREFETCH_VALUES: usize = 1024;

/// bf16 `w` . (bf16 `hi` + bf16 `lo`), accumulated in f32 by `vdpbf16ps`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dot_avx512bf16(w: &[bf16], hi: &[bf16], lo: &[bf16]) -> f32 {
    use std::arch::x86_64::*;
    assert!(hi.len() == w.len() && lo.len() == w.len());
    let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let chunks = w.len() / 32;
    for c in 0..chunks {
        // The weights stream from memory once; the hardware prefetcher alone leaves them
        // arriving late (a row is only 5.6 KiB). A prefetch past the row's end reads the
        // next row, or nothing: it never faults.
        _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().wrapping_add(c * 32 + PREFETCH_VALUES).cast());
        // Safety: each load reads 32 bf16 (64 bytes) at c * 32, inside all three slices.
        unsafe {
            let wv: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(w.as_ptr().add(c * 32).cast()));
            let h: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(hi.as_ptr().add(c * 32).cast()));
            let l: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(lo.as_ptr().add(c * 32).cast()));
            a0 = _mm512_dpbf16_ps(a0, wv, h);
            a1 = _mm512_dpbf16_ps(a1, wv, l);
        }
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for i in chunks * 32..w.len() {
        sum += w[i].to_f32() * (hi[i].to_f32() + lo[i].to_f32());
    }
    sum
}

/// bf16 `w` . f32 `x`, accumulated in f32.
fn dot(w: &[bf16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // Safety: the CPU supports AVX2, checked just above.
        return unsafe { dot_avx2(w, x) };
    }
    dot_generic(w, x)
}

/// [`dot_generic`] compiled with AVX2 enabled (the default x86-64 target has SSE2 only).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(w: &[bf16], x: &[f32]) -> f32 {
    dot_generic(w, x)
}

#[inline(always)]
fn dot_generic(w: &[bf16], x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut wc = w.chunks_exact(16);
    let mut xc = x.chunks_exact(16);
    for (wv, xv) in (&mut wc).zip(&mut xc) {
        for l in 0..16 {
            // bf16 -> f32 is a shift of the bits.
            acc[l] += f32::from_bits((wv[l].to_bits() as u32) << 16) * xv[l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (wv, xv) in wc.remainder().iter().zip(xc.remainder()) {
        sum += wv.to_f32() * xv;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn values_of(linear: &Linear) -> &[bf16] {
        match linear {
            Linear::Bf16Cpu { values, .. } => values,
            Linear::Tensor(_) | Linear::Q8Cpu(_) => panic!("expected bf16 values"),
        }
    }

    #[test]
    fn bf16_kernel_equals_the_f32_matmul() -> candle_core::Result<()> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let (rows, cols) = (70, 100);
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| bf16::from_f32(rng.random_range(-1f32..1.0)).to_f32())
            .collect();
        let dense = Tensor::from_vec(values.clone(), (rows, cols), &Device::Cpu)?;
        let linear = Linear::new(values, rows, cols, DType::F32, &Device::Cpu, true)?;
        assert!(matches!(linear, Linear::Bf16Cpu { .. }));
        assert_eq!(linear.bytes(), (rows * cols * 2) as u64);
        for m in [1, 3, 20] {
            let x: Vec<f32> = (0..m * cols)
                .map(|_| rng.random_range(-1f32..1.0))
                .collect();
            let x = Tensor::from_vec(x, (m, cols), &Device::Cpu)?;
            let want = x.matmul(&dense.t()?)?;
            let got = linear.forward(&x)?;
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "m={m}: {diff}");
        }
        // Every variant, whatever this CPU picks.
        let row = &values_of(&linear)[..cols];
        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1f32..1.0)).collect();
        let want: f32 = row.iter().zip(&x).map(|(w, v)| w.to_f32() * v).sum();
        assert!((dot_generic(row, &x) - want).abs() < 1e-4);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bf16") {
            let split = SplitX::new(&x);
            assert!(split.halves.is_some());
            let got = split.dot(row, &x, 0, cols);
            assert!((got - want).abs() < 1e-4, "avx512bf16: {got} vs {want}");
        }
        // Values that bf16 cannot hold stay f32.
        let lossy = Linear::new(vec![0.1; 4], 2, 2, DType::F32, &Device::Cpu, true)?;
        assert!(matches!(lossy, Linear::Tensor(_)));
        Ok(())
    }

    #[test]
    fn an_8_bit_weight_is_close_to_the_bf16_one_and_falls_back_where_it_cannot_hold_it()
    -> candle_core::Result<()> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let (rows, cols) = (50, 96);
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| bf16::from_f32(rng.random_range(-0.1f32..0.1)).to_f32())
            .collect();
        let bf16 = Linear::new(values.clone(), rows, cols, DType::F32, &Device::Cpu, true)?;
        let q8 = Linear::new(values.clone(), rows, cols, DType::F32, &Device::Cpu, true)?.into_q8();
        if !Q8_0x16::supported() {
            assert!(
                matches!(q8, Linear::Bf16Cpu { .. }),
                "kept bf16 without VNNI"
            );
            return Ok(());
        }
        assert!(matches!(q8, Linear::Q8Cpu(_)));
        assert_eq!(
            q8.bytes(),
            4 * 3 * 576,
            "50 rows pad to 64: 4 groups of 3 blocks"
        );
        for m in [1, 5, 12] {
            let x = Tensor::randn(0f32, 1.0, (m, cols), &Device::Cpu)?;
            let want = bf16.forward(&x)?;
            let got = q8.forward(&x)?;
            assert_eq!(got.dims(), &[m, rows]);
            // Relative to the output's scale: two 8-bit roundings, ~1% each at most.
            let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 0.03 * scale, "m={m}: max |diff| {diff} of {scale}");
        }
        let x = Tensor::zeros((1, cols + 32), DType::F32, &Device::Cpu)?;
        let err = q8.forward(&x).expect_err("wrong width refused").to_string();
        assert!(err.contains("[50, 96]"), "{err}");
        // A non-finite weight, or columns that are not whole blocks, keep the weight bf16.
        let mut broken = values;
        broken[7] = f32::INFINITY;
        let kept = Linear::new(broken, rows, cols, DType::F32, &Device::Cpu, true)?.into_q8();
        assert!(matches!(kept, Linear::Bf16Cpu { .. }));
        let narrow = Linear::new(vec![0.5; 40], 2, 20, DType::F32, &Device::Cpu, true)?.into_q8();
        assert!(matches!(narrow, Linear::Bf16Cpu { .. }));
        Ok(())
    }

    #[test]
    fn bf16_prefill_over_several_widened_tiles_matches_the_f32_matmul() -> candle_core::Result<()> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        // Two tiles and a part of a third, a chunk of prefill tokens.
        let (rows, cols, m) = (2 * crate::model::tiled_gemm::TILE_ROWS + 7, 64, 13);
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| bf16::from_f32(rng.random_range(-1f32..1.0)).to_f32())
            .collect();
        let dense = Tensor::from_vec(values.clone(), (rows, cols), &Device::Cpu)?;
        let linear = Linear::new(values, rows, cols, DType::F32, &Device::Cpu, true)?;
        let x = Tensor::randn(0f32, 1.0, (m, cols), &Device::Cpu)?;
        let want = x.matmul(&dense.t()?)?;
        let diff = (linear.forward(&x)? - want)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max |diff| {diff}");
        Ok(())
    }

    #[test]
    fn bf16_weights_with_f32_activations_match_the_f32_matmul() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (70, 96), &dev)?.to_dtype(DType::BF16)?;
        let linear = Linear::Tensor(w.clone());
        let exact = |x: &Tensor| x.matmul(&w.to_dtype(DType::F32)?.t()?);
        // Decode (the matvec op) and prefill (the widened weight) sizes.
        for m in [1, 3, KERNEL_MAX_ROWS + 5] {
            let x = Tensor::randn(0f32, 1.0, (m, 96), &dev)?;
            let got = linear.forward(&x)?;
            assert_eq!(got.dtype(), DType::F32);
            let diff = (got - exact(&x)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "m {m}: max |diff| {diff}");
        }
        Ok(())
    }

    #[test]
    fn prefill_widens_a_tall_weight_in_blocks() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (WIDEN_ROWS + 70, 8), &dev)?.to_dtype(DType::BF16)?;
        let x = Tensor::randn(0f32, 1.0, (KERNEL_MAX_ROWS + 1, 8), &dev)?;
        let got = Linear::Tensor(w.clone()).forward(&x)?;
        let exact = x.matmul(&w.to_dtype(DType::F32)?.t()?)?;
        assert_eq!(got.dims(), exact.dims());
        let diff = (got - exact)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "max |diff| {diff}");
        Ok(())
    }

    #[test]
    fn the_cuda_bf16_matvec_kernel_emulated_equals_the_cpu_op() -> candle_core::Result<()> {
        use crate::model::kernels::emu;
        if !emu::available() {
            return Ok(());
        }
        let dev = Device::Cpu;
        // Rows not a multiple of a block's 4 warps; 2880 columns (gpt-oss's hidden size:
        // 1440 pairs, not a multiple of a warp's 32 lanes); a weight view 2 rows in.
        let w = Tensor::randn(0f32, 0.1, (39, 2880), &dev)?
            .to_dtype(DType::BF16)?
            .narrow(0, 2, 37)?;
        let x = Tensor::randn(0f32, 1.0, (3, 2880), &dev)?;
        let (launch, _) = Bf16Matvec::launch(x.layout(), w.layout())?;
        let got = emu::run(&[launch], &[emu::cpu_storage(&x), emu::cpu_storage(&w)]);
        let want = emu::cpu_storage(&bf16_matvec(&x, &w)?);
        let diff = emu::max_diff(&got, &want);
        assert!(diff < 1e-4, "max |diff| {diff}");
        Ok(())
    }
}
