//! Every expert's weight for one projection in one Q4_0 byte tensor on the device,
//! [experts, rows, cols / 32 blocks], and the two ops the GPU mixture of experts runs on it:
//!
//! - [`Q4Stack::indexed_matvec`]: each token times its top-k experts in one launch, with the
//!   expert ids read on the device, so decode never waits for the host to learn the routing;
//! - [`Q4Stack::dequantize`]: one expert as a dense matrix, for prefill's grouped matmuls.
//!
//! Both stay lossless (Q4_0 holds AutoRound's int4 groups exactly). The CUDA kernels live in
//! `kernels/q4_0_moe.cu`; the CPU implementations are the reference the tests check the
//! semantics against (`--kernels fused` on the CPU).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Device, Layout, Shape, Tensor};

use super::kernels::cpu_slice;
#[cfg(feature = "cuda")]
use super::kernels::cuda;
use super::quant::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_LEN, q4_0_dequantize, q4_0_matmul};

/// One projection of every expert, Q4_0, stacked expert-major, with its biases.
pub struct Q4Stack {
    /// u8 [experts * rows * cols / 32 * 18].
    bytes: Tensor,
    /// f32 [experts, rows].
    bias: Tensor,
    experts: usize,
    rows: usize,
    cols: usize,
}

impl Q4Stack {
    /// Stacks Q4_0 bytes of `experts` matrices [rows, cols] (concatenated expert-major) and
    /// their biases ([experts * rows]) onto `device`; one host-to-device copy each.
    pub fn new(
        bytes: &[u8],
        bias: Vec<f32>,
        experts: usize,
        rows: usize,
        cols: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let expected = experts * matrix_bytes(rows, cols);
        if !cols.is_multiple_of(Q4_0_BLOCK_LEN) || bytes.len() != expected {
            candle_core::bail!(
                "Q4_0 expert stack: {} bytes for {experts} x [{rows}, {cols}] (expected {expected}, cols a multiple of 32)",
                bytes.len()
            );
        }
        let bytes = Tensor::from_slice(bytes, bytes.len(), device)?;
        let bias = Tensor::from_vec(bias, (experts, rows), device)?;
        Ok(Self {
            bytes,
            bias,
            experts,
            rows,
            cols,
        })
    }

    /// Bytes the stack and its biases occupy.
    pub fn size_in_bytes(&self) -> u64 {
        (self.bytes.elem_count() + 4 * self.bias.elem_count()) as u64
    }

    /// The biases, f32 [experts, rows].
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Experts in the stack.
    pub fn experts(&self) -> usize {
        self.experts
    }

    /// `x` [tokens, slots, cols] f32 (slots 1: every chosen expert sees the token's row; slots
    /// top_k: each its own row) times the experts in `ids` [tokens, top_k] u32, plus their
    /// biases: [tokens, top_k, rows] f32.
    pub fn indexed_matvec(&self, x: &Tensor, ids: &Tensor) -> candle_core::Result<Tensor> {
        let op = IndexedMatvec {
            bias: self.bias.clone(),
            experts: self.experts,
            rows: self.rows,
            cols: self.cols,
        };
        x.contiguous()?
            .apply_op3_no_bwd(&self.bytes, &ids.contiguous()?, &op)
    }

    /// Expert `expert` as a dense [rows, cols] matrix, bf16 when `dtype` is bf16, else f32.
    pub fn dequantize(&self, expert: usize, dtype: DType) -> candle_core::Result<Tensor> {
        if expert >= self.experts {
            candle_core::bail!("expert {expert} of {}", self.experts);
        }
        let op = DequantizeExpert {
            expert,
            rows: self.rows,
            cols: self.cols,
            dtype,
        };
        self.bytes.apply_op1_no_bwd(&op)
    }
}

/// Output rows per thread block of the CUDA matvec (one warp each).
#[cfg(feature = "cuda")]
const WARPS_PER_BLOCK: usize = 4;

/// Bytes of one Q4_0 matrix [rows, cols].
fn matrix_bytes(rows: usize, cols: usize) -> usize {
    rows * cols / Q4_0_BLOCK_LEN * Q4_0_BLOCK_BYTES
}

struct IndexedMatvec {
    /// f32 [experts, rows] (a fourth input; custom ops take three).
    bias: Tensor,
    experts: usize,
    rows: usize,
    cols: usize,
}

impl IndexedMatvec {
    /// (tokens, top_k, x_slots) from the shapes of x and ids.
    fn dims(&self, x: &Layout, ids: &Layout) -> candle_core::Result<(usize, usize, usize)> {
        let (tokens, slots, cols) = x.shape().dims3()?;
        let (id_tokens, top_k) = ids.shape().dims2()?;
        if cols != self.cols || id_tokens != tokens || (slots != 1 && slots != top_k) {
            candle_core::bail!(
                "indexed Q4_0 matvec: x {:?} and ids {:?} do not fit weights [{}, {}]",
                x.shape(),
                ids.shape(),
                self.rows,
                self.cols
            );
        }
        Ok((tokens, top_k, slots))
    }
}

impl CustomOp3 for IndexedMatvec {
    fn name(&self) -> &'static str {
        "q4_0-indexed-matvec"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
        ids: &CpuStorage,
        ids_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (tokens, top_k, slots) = self.dims(x_l, ids_l)?;
        let x = cpu_slice::<f32>(x, x_l, "x")?;
        let w = cpu_slice::<u8>(w, w_l, "weights")?;
        let ids = cpu_slice::<u32>(ids, ids_l, "ids")?;
        let (bias_storage, bias_l) = self.bias.storage_and_layout();
        let candle_core::Storage::Cpu(bias_storage) = &*bias_storage else {
            candle_core::bail!("indexed Q4_0 matvec: the biases are not on the CPU");
        };
        let bias = cpu_slice::<f32>(bias_storage, bias_l, "bias")?;
        let expert_bytes = matrix_bytes(self.rows, self.cols);
        let mut out = Vec::with_capacity(tokens * top_k * self.rows);
        for (pair, &expert) in ids.iter().enumerate() {
            let expert = expert as usize;
            if expert >= self.experts {
                // As the kernel does: NaN marks a bad id instead of reading out of bounds.
                out.extend(std::iter::repeat_n(f32::NAN, self.rows));
                continue;
            }
            let (token, slot) = (pair / top_k, pair % top_k);
            let row = token * slots + if slots == 1 { 0 } else { slot };
            let x_row = &x[row * self.cols..][..self.cols];
            let weights = &w[expert * expert_bytes..][..expert_bytes];
            let bias = &bias[expert * self.rows..][..self.rows];
            let dot = q4_0_matmul(weights, self.rows, self.cols, x_row, 1);
            out.extend(dot.iter().zip(bias).map(|(d, b)| d + b));
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((tokens, top_k, self.rows)),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        x_l: &Layout,
        w: &candle_core::CudaStorage,
        w_l: &Layout,
        ids: &candle_core::CudaStorage,
        ids_l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use cuda::prelude::*;

        let (tokens, top_k, slots) = self.dims(x_l, ids_l)?;
        let dev = x.device().clone();
        let x = cuda::view::<f32>(x, x_l, "x")?;
        let w = cuda::view::<u8>(w, w_l, "weights")?;
        let ids = cuda::view::<u32>(ids, ids_l, "ids")?;
        let (bias_storage, bias_l) = self.bias.storage_and_layout();
        let candle_core::Storage::Cuda(bias_storage) = &*bias_storage else {
            candle_core::bail!("indexed Q4_0 matvec: the biases are not on the GPU");
        };
        let bias = cuda::view::<f32>(bias_storage, bias_l, "bias")?;
        let func =
            dev.get_or_load_custom_func("q4_0_indexed_matvec_f32", cuda::MODULE, cuda::PTX)?;
        // SAFETY: every element is written by the kernel (one warp per output row).
        let out = unsafe { dev.alloc::<f32>(tokens * top_k * self.rows)? };
        let cfg = LaunchConfig {
            grid_dim: (
                self.rows.div_ceil(WARPS_PER_BLOCK) as u32,
                (tokens * top_k) as u32,
                1,
            ),
            block_dim: (32, WARPS_PER_BLOCK as u32, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = func.builder();
        builder.arg(&w);
        builder.arg(&x);
        builder.arg(&ids);
        builder.arg(&bias);
        builder.arg(&out);
        candle_core::builder_arg!(
            builder,
            self.experts as i32,
            self.rows as i32,
            self.cols as i32,
            top_k as i32,
            slots as i32
        );
        // SAFETY: the shapes were checked against the buffers above.
        unsafe { builder.launch(cfg) }.w()?;
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from((tokens, top_k, self.rows)),
        ))
    }
}

struct DequantizeExpert {
    expert: usize,
    rows: usize,
    cols: usize,
    /// What to write: bf16, else f32.
    dtype: DType,
}

impl CustomOp1 for DequantizeExpert {
    fn name(&self) -> &'static str {
        "q4_0-dequantize-expert"
    }

    fn cpu_fwd(&self, w: &CpuStorage, w_l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = cpu_slice::<u8>(w, w_l, "weights")?;
        let expert_bytes = matrix_bytes(self.rows, self.cols);
        let values = q4_0_dequantize(&w[self.expert * expert_bytes..][..expert_bytes]);
        let storage = match self.dtype {
            DType::BF16 => CpuStorage::BF16(values.into_iter().map(half::bf16::from_f32).collect()),
            _ => CpuStorage::F32(values),
        };
        Ok((storage, Shape::from((self.rows, self.cols))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        w: &candle_core::CudaStorage,
        w_l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use cuda::prelude::*;

        let dev = w.device().clone();
        let w = cuda::view::<u8>(w, w_l, "weights")?;
        let blocks = self.rows * self.cols / Q4_0_BLOCK_LEN;
        let cfg = LaunchConfig::for_num_elems(blocks as u32);
        let values = self.rows * self.cols;
        let args = (self.expert as i32, self.rows as i32, self.cols as i32);
        // The same launch for either output type.
        macro_rules! launch {
            ($t:ty, $name:literal) => {{
                let func = dev.get_or_load_custom_func($name, cuda::MODULE, cuda::PTX)?;
                // SAFETY: one thread writes each block of 32 values.
                let out = unsafe { dev.alloc::<$t>(values)? };
                let mut builder = func.builder();
                builder.arg(&w);
                builder.arg(&out);
                candle_core::builder_arg!(builder, args.0, args.1, args.2);
                // SAFETY: the output holds rows * cols values.
                unsafe { builder.launch(cfg) }.w()?;
                candle_core::CudaStorage::wrap_cuda_slice(out, dev)
            }};
        }
        let storage = match self.dtype {
            DType::BF16 => launch!(half::bf16, "q4_0_dequantize_expert_bf16"),
            _ => launch!(f32, "q4_0_dequantize_expert_f32"),
        };
        Ok((storage, Shape::from((self.rows, self.cols))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    /// Random Q4_0 bytes for `n` blocks with small positive f16 scales.
    fn random_q4_0(rng: &mut SmallRng, blocks: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(blocks * Q4_0_BLOCK_BYTES);
        for _ in 0..blocks {
            let d = half::f16::from_f32(rng.random_range(0.001f32..0.05));
            bytes.extend(d.to_le_bytes());
            bytes.extend((0..16).map(|_| rng.random::<u8>()));
        }
        bytes
    }

    #[test]
    fn indexed_matvec_equals_dense_matvec_of_each_chosen_expert() -> candle_core::Result<()> {
        let (experts, rows, cols, tokens, top_k) = (5, 24, 64, 3, 2);
        let mut rng = SmallRng::seed_from_u64(7);
        let bytes = random_q4_0(&mut rng, experts * rows * cols / 32);
        let bias: Vec<f32> = (0..experts * rows).map(|i| i as f32 * 0.01).collect();
        let stack = Q4Stack::new(&bytes, bias.clone(), experts, rows, cols, &Device::Cpu)?;
        let ids = Tensor::new(&[[4u32, 0], [2, 2], [1, 3]], &Device::Cpu)?;
        let x = Tensor::randn(0f32, 1.0, (tokens, 1, cols), &Device::Cpu)?;
        let per_slot = Tensor::randn(0f32, 1.0, (tokens, top_k, cols), &Device::Cpu)?;
        let shared = stack.indexed_matvec(&x, &ids)?.to_vec3::<f32>()?;
        let own = stack.indexed_matvec(&per_slot, &ids)?.to_vec3::<f32>()?;
        let ids = ids.to_vec2::<u32>()?;
        for t in 0..tokens {
            for s in 0..top_k {
                let expert = ids[t][s] as usize;
                let w = stack.dequantize(expert, DType::F32)?;
                let expect = |x_row: Tensor| -> candle_core::Result<Vec<f32>> {
                    w.matmul(&x_row.reshape((cols, 1))?)?
                        .flatten_all()?
                        .to_vec1()
                };
                let a = expect(x.get(t)?.get(0)?)?;
                let b = expect(per_slot.get(t)?.get(s)?)?;
                for r in 0..rows {
                    let bias = bias[expert * rows + r];
                    let (a, b) = (a[r] + bias, b[r] + bias);
                    assert!(
                        (shared[t][s][r] - a).abs() < 1e-4,
                        "token {t} slot {s} row {r}"
                    );
                    assert!(
                        (own[t][s][r] - b).abs() < 1e-4,
                        "token {t} slot {s} row {r}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn dequantize_takes_the_right_expert() -> candle_core::Result<()> {
        let (experts, rows, cols) = (3, 4, 64);
        let mut rng = SmallRng::seed_from_u64(3);
        let bytes = random_q4_0(&mut rng, experts * rows * cols / 32);
        let zeros = vec![0.0; experts * rows];
        let stack = Q4Stack::new(&bytes, zeros, experts, rows, cols, &Device::Cpu)?;
        let one = matrix_bytes(rows, cols);
        let got = stack
            .dequantize(2, DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(got, q4_0_dequantize(&bytes[2 * one..3 * one]));
        assert!(stack.dequantize(3, DType::F32).is_err());
        Ok(())
    }

    #[test]
    fn bad_ids_and_shapes_are_errors_or_nan_not_out_of_bounds_reads() -> candle_core::Result<()> {
        let mut rng = SmallRng::seed_from_u64(1);
        let bytes = random_q4_0(&mut rng, 2 * 4 * 64 / 32);
        assert!(Q4Stack::new(&bytes[1..], vec![0.0; 8], 2, 4, 64, &Device::Cpu).is_err());
        let stack = Q4Stack::new(&bytes, vec![0.0; 8], 2, 4, 64, &Device::Cpu)?;
        let x = Tensor::zeros((1, 1, 64), DType::F32, &Device::Cpu)?;
        let out = stack
            .indexed_matvec(&x, &Tensor::new(&[[9u32]], &Device::Cpu)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert!(out.iter().all(|v| v.is_nan()));
        let wrong_cols = Tensor::zeros((1, 1, 32), DType::F32, &Device::Cpu)?;
        assert!(
            stack
                .indexed_matvec(&wrong_cols, &Tensor::new(&[[0u32]], &Device::Cpu)?)
                .is_err()
        );
        Ok(())
    }
}
