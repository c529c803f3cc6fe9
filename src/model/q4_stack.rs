//! Every expert's weight for one projection in one Q4_0 byte tensor on the device,
//! [experts, rows, cols / 32 blocks], and the two ops the GPU mixture of experts runs on it:
//!
//! - [`Q4Stack::indexed_matvec`]: each token times its top-k experts in one launch, with the
//!   expert ids read on the device, so decode never waits for the host to learn the routing;
//! - [`Q4Stack::dequantize`]: one expert as a dense matrix, for prefill's grouped matmuls.
//!
//! The stack is lossless (Q4_0 holds AutoRound's int4 groups exactly), and so are the matvec
//! and an f32 dequantization. Dequantized to bf16 (prefill on CUDA, for bf16 tensor-core
//! matmuls with activations that are bf16 there anyway) a weight keeps 8 of the up to 14
//! significant bits its f16 scale times its int4 needs. The CUDA kernels live in
//! `kernels/q4_0_moe.cu`; the CPU implementations are the reference the tests check the
//! semantics against (`--kernels fused` on the CPU).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Device, Layout, Shape, Tensor};

#[cfg(feature = "cuda")]
use super::kernels::cuda;
#[cfg(any(feature = "cuda", test))]
use super::kernels::launch::{Arg, Launch, Module, aligned_input, contiguous_input, grid_y, int};
use super::kernels::{cpu_f32, cpu_slice, own_cpu};
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

    /// `x` [tokens, slots, cols] f32 or bf16 (slots 1: every chosen expert sees the token's
    /// row; slots top_k: each its own row) times the experts in `ids` [tokens, top_k] u32,
    /// plus their biases: [tokens, top_k, rows] f32.
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
#[cfg(any(feature = "cuda", test))]
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

    /// The CUDA launch (inputs: x, weights, ids, bias) and the output's shape: a warp per
    /// output row, `WARPS_PER_BLOCK` rows a block, a grid row per (token, expert) pair.
    #[cfg(any(feature = "cuda", test))]
    fn launch(
        &self,
        [x, w, ids, bias]: [&Layout; 4],
        x_dtype: DType,
    ) -> candle_core::Result<(Launch, Shape)> {
        let (tokens, top_k, slots) = self.dims(x, ids)?;
        let pairs = tokens * top_k;
        // The kernel reads the blocks' f16 scales and quants 16 bits at a time.
        let weights = aligned_input(1, w, 2, "Q4_0 expert weights")?;
        let launch = Launch {
            module: Module::Moe,
            kernel: match x_dtype {
                DType::BF16 => "q4_0_indexed_matvec_bf16",
                DType::F32 => "q4_0_indexed_matvec_f32",
                other => candle_core::bail!("indexed Q4_0 matvec: x of {other:?}"),
            },
            grid: (
                self.rows.div_ceil(WARPS_PER_BLOCK) as u32,
                grid_y(pairs, "(token, expert) pairs")?,
                1,
            ),
            block: (32, WARPS_PER_BLOCK as u32, 1),
            args: vec![
                weights,
                contiguous_input(0, x, "x")?,
                contiguous_input(2, ids, "ids")?,
                contiguous_input(3, bias, "bias")?,
                Arg::Output {
                    dtype: DType::F32,
                    len: pairs * self.rows,
                },
                int(self.experts, "experts")?,
                int(self.rows, "rows")?,
                int(self.cols, "cols")?,
                int(top_k, "top_k")?,
                int(slots, "x slots")?,
            ],
        };
        Ok((launch, Shape::from((tokens, top_k, self.rows))))
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
        let x = cpu_f32(x, x_l, "x")?;
        let w = cpu_slice::<u8>(w, w_l, "weights")?;
        let ids = cpu_slice::<u32>(ids, ids_l, "ids")?;
        let (bias_storage, bias_l) = self.bias.storage_and_layout();
        let bias_storage = own_cpu(&bias_storage, "indexed Q4_0 matvec: the biases")?;
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
        use candle_core::backend::BackendStorage;

        let (bias_storage, bias_l) = self.bias.storage_and_layout();
        let bias = cuda::own_storage(&bias_storage, "indexed Q4_0 matvec: the biases")?;
        let (launch, shape) = self.launch([x_l, w_l, ids_l, bias_l], x.dtype())?;
        let out = cuda::run(x.device(), &[launch], &[x, w, ids, bias])?;
        Ok((out, shape))
    }
}

struct DequantizeExpert {
    expert: usize,
    rows: usize,
    cols: usize,
    /// What to write: bf16, else f32.
    dtype: DType,
}

impl DequantizeExpert {
    /// The CUDA launch: one thread per Q4_0 block, bf16 or f32 out.
    #[cfg(any(feature = "cuda", test))]
    fn launch(&self, w: &Layout) -> candle_core::Result<Launch> {
        let weights = aligned_input(0, w, 2, "Q4_0 expert weights")?;
        let (dtype, kernel) = match self.dtype {
            DType::BF16 => (DType::BF16, "q4_0_dequantize_expert_bf16"),
            _ => (DType::F32, "q4_0_dequantize_expert_f32"),
        };
        let values = self.rows * self.cols;
        let args = vec![
            weights,
            Arg::Output { dtype, len: values },
            int(self.expert, "expert")?,
            int(self.rows, "rows")?,
            int(self.cols, "cols")?,
        ];
        Ok(Launch::elementwise(
            Module::Moe,
            kernel,
            values / Q4_0_BLOCK_LEN,
            args,
        ))
    }
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
        use candle_core::backend::BackendStorage;

        let launch = self.launch(w_l)?;
        let out = cuda::run(w.device(), &[launch], &[w])?;
        Ok((out, Shape::from((self.rows, self.cols))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::emu;
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

    /// A stack of 5 experts [37, 352] (rows not a multiple of a block's 4 warps, 11 Q4_0
    /// blocks a row: not a multiple of the 8 a warp takes per step) and its matvec op.
    fn emulated_stack() -> candle_core::Result<(Q4Stack, IndexedMatvec)> {
        let (experts, rows, cols) = (5, 37, 352);
        let mut rng = SmallRng::seed_from_u64(11);
        let bytes = random_q4_0(&mut rng, experts * rows * cols / 32);
        let bias: Vec<f32> = (0..experts * rows).map(|i| (i % 7) as f32 * 0.1).collect();
        let stack = Q4Stack::new(&bytes, bias, experts, rows, cols, &Device::Cpu)?;
        let op = IndexedMatvec {
            bias: stack.bias.clone(),
            experts,
            rows,
            cols,
        };
        Ok((stack, op))
    }

    /// The matvec launch for `x` and `ids` and its inputs, as the CUDA path passes them.
    fn matvec_launch(
        stack: &Q4Stack,
        op: &IndexedMatvec,
        x: &Tensor,
        ids: &Tensor,
    ) -> candle_core::Result<(Launch, Vec<CpuStorage>)> {
        let layouts = [
            x.layout(),
            stack.bytes.layout(),
            ids.layout(),
            stack.bias.layout(),
        ];
        let (launch, _) = op.launch(layouts, x.dtype())?;
        let inputs = [x, &stack.bytes, ids, &stack.bias].map(emu::cpu_storage);
        Ok((launch, inputs.to_vec()))
    }

    #[test]
    fn the_cuda_matvec_kernel_emulated_equals_the_cpu_op() -> candle_core::Result<()> {
        if !emu::available() {
            return Ok(());
        }
        let (stack, op) = emulated_stack()?;
        let (tokens, top_k) = (3, 2);
        // Expert 7 does not exist: NaN on both sides, no read out of bounds.
        let ids = Tensor::new(&[[4u32, 0], [2, 2], [7, 1]], &Device::Cpu)?;
        for (slots, dtype) in [(1, DType::BF16), (1, DType::F32), (top_k, DType::F32)] {
            // A view one token into its storage: the launch passes the offset.
            let x = Tensor::randn(0f32, 1.0, (tokens + 1, slots, 352), &Device::Cpu)?
                .to_dtype(dtype)?
                .narrow(0, 1, tokens)?;
            let (launch, inputs) = matvec_launch(&stack, &op, &x, &ids)?;
            let got = emu::run(std::slice::from_ref(&launch), &inputs);
            let want = emu::cpu_storage(&stack.indexed_matvec(&x, &ids)?);
            let diff = emu::max_diff(&got, &want);
            assert!(diff < 1e-4, "slots {slots} {dtype:?}: max |diff| {diff}");
        }
        Ok(())
    }

    #[test]
    fn the_emulator_refuses_launches_a_gpu_would_get_wrong() -> candle_core::Result<()> {
        if !emu::available() {
            return Ok(());
        }
        let (stack, op) = emulated_stack()?;
        let x = Tensor::randn(0f32, 1.0, (1, 1, 352), &Device::Cpu)?;
        let ids = Tensor::new(&[[1u32, 3]], &Device::Cpu)?;
        let (launch, inputs) = matvec_launch(&stack, &op, &x, &ids)?;
        assert!(emu::try_run(std::slice::from_ref(&launch), &inputs).is_ok());
        let refused = |mutate: &dyn Fn(&mut Launch), complaint: &str| {
            let mut bad = launch.clone();
            mutate(&mut bad);
            let err = emu::try_run(std::slice::from_ref(&bad), &inputs).expect_err(complaint);
            assert!(err.contains(complaint), "expected '{complaint}': {err}");
        };
        refused(
            &|l| l.args[5] = Arg::I64(5),
            "argument 5: the kernel takes an i32",
        );
        refused(
            &|l| {
                l.args.pop();
            },
            "the kernel takes 10 arguments, the launch has 9",
        );
        let short = Arg::Output {
            dtype: DType::F32,
            len: 37,
        };
        refused(&|l| l.args[4] = short.clone(), "outside its buffers");
        refused(
            &|l| l.block = (33, 4, 1),
            "a warp shuffle without all 32 lanes",
        );
        refused(&|l| l.kernel = "q4_0_indexed_matvec_f16", "no kernel named");
        refused(&|l| l.grid.1 = 70_000, "outside CUDA's limits");
        Ok(())
    }

    #[test]
    fn the_cuda_dequantize_kernel_emulated_equals_the_cpu_op() -> candle_core::Result<()> {
        if !emu::available() {
            return Ok(());
        }
        let (stack, _) = emulated_stack()?;
        for dtype in [DType::F32, DType::BF16] {
            let op = DequantizeExpert {
                expert: 3,
                rows: 37,
                cols: 352,
                dtype,
            };
            let got = emu::run(
                &[op.launch(stack.bytes.layout())?],
                &[emu::cpu_storage(&stack.bytes)],
            );
            let want = emu::cpu_storage(&stack.dequantize(3, dtype)?);
            assert_eq!(emu::max_diff(&got, &want), 0.0, "{dtype:?}");
        }
        Ok(())
    }
}
