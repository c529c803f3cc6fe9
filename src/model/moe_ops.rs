//! The small steps of the stacked mixture of experts, each one kernel launch on CUDA
//! (`kernels/q4_0_moe.cu`) instead of the handful of candle ops they replace: decode is
//! launch-bound, not bandwidth-bound, once the experts run as one matvec per projection. The
//! CPU implementations are the reference the tests check.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor};

use super::kernels::cpu_slice;
#[cfg(feature = "cuda")]
use super::kernels::cuda;
#[cfg(any(feature = "cuda", test))]
use super::kernels::launch::{Arg, Launch, Module, contiguous_input, int};
use super::moe::route;

/// The top-k experts of each row of `logits` [n, experts] f32, largest first, ties to the lower
/// index: [n, k] u32.
pub fn route_top_k(logits: &Tensor, k: usize) -> candle_core::Result<Tensor> {
    logits.contiguous()?.apply_op1_no_bwd(&RouteTopK { k })
}

/// gpt-oss's clamped SwiGLU over the last dimension of `gate_up` [.., 2 * inter] f32 (gate
/// then up): [.., inter] f32.
pub fn swiglu(
    gate_up: &Tensor,
    inter: usize,
    alpha: f64,
    limit: f64,
) -> candle_core::Result<Tensor> {
    gate_up.contiguous()?.apply_op1_no_bwd(&Swiglu {
        inter,
        alpha: alpha as f32,
        limit: limit as f32,
    })
}

/// The experts' outputs `down` [n, k, hidden] f32 weighted by the softmax of the router logits
/// [n, experts] f32 at `ids` [n, k] and summed: [n, hidden], bf16 when `dtype` is bf16, else f32.
pub fn combine(
    down: &Tensor,
    logits: &Tensor,
    ids: &Tensor,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    down.contiguous()?.apply_op3_no_bwd(
        &logits.contiguous()?,
        &ids.contiguous()?,
        &Combine { dtype },
    )
}

struct RouteTopK {
    k: usize,
}

impl RouteTopK {
    /// The CUDA launch (one thread per token) and the ids' shape.
    #[cfg(any(feature = "cuda", test))]
    fn launch(&self, l: &Layout) -> candle_core::Result<(Launch, Shape)> {
        let (n, experts) = l.shape().dims2()?;
        if self.k > experts {
            candle_core::bail!("top-{} of {experts} experts", self.k);
        }
        let args = vec![
            contiguous_input(0, l, "router logits")?,
            Arg::Output {
                dtype: DType::U32,
                len: n * self.k,
            },
            int(n, "tokens")?,
            int(experts, "experts")?,
            int(self.k, "top_k")?,
        ];
        let launch = Launch::elementwise(Module::Moe, "moe_route_top_k", n, args);
        Ok((launch, Shape::from((n, self.k))))
    }
}

impl CustomOp1 for RouteTopK {
    fn name(&self) -> &'static str {
        "moe-route-top-k"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, experts) = l.shape().dims2()?;
        if self.k > experts {
            candle_core::bail!("top-{} of {experts} experts", self.k);
        }
        let logits = cpu_slice::<f32>(s, l, "router logits")?;
        let ids = logits
            .chunks_exact(experts)
            .flat_map(|row| route(row, self.k).into_iter().map(|(e, _)| e as u32))
            .collect();
        Ok((CpuStorage::U32(ids), Shape::from((n, self.k))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;

        let (launch, shape) = self.launch(l)?;
        Ok((cuda::run(s.device(), &[launch], &[s])?, shape))
    }
}

struct Swiglu {
    inter: usize,
    alpha: f32,
    limit: f32,
}

impl Swiglu {
    fn out_shape(&self, l: &Layout) -> candle_core::Result<Shape> {
        let mut dims = l.dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == 2 * self.inter => *last = self.inter,
            _ => candle_core::bail!(
                "SwiGLU of {:?}: the last dim must be 2 x {}",
                l.dims(),
                self.inter
            ),
        }
        Ok(Shape::from(dims))
    }

    /// The CUDA launch (one thread per output value) and the output's shape.
    #[cfg(any(feature = "cuda", test))]
    fn launch(&self, l: &Layout) -> candle_core::Result<(Launch, Shape)> {
        let shape = self.out_shape(l)?;
        let len = shape.elem_count();
        let args = vec![
            contiguous_input(0, l, "gate_up")?,
            Arg::Output {
                dtype: DType::F32,
                len,
            },
            int(len / self.inter, "pairs")?,
            int(self.inter, "intermediate size")?,
            Arg::F32(self.alpha),
            Arg::F32(self.limit),
        ];
        Ok((
            Launch::elementwise(Module::Moe, "moe_swiglu_f32", len, args),
            shape,
        ))
    }
}

impl CustomOp1 for Swiglu {
    fn name(&self) -> &'static str {
        "moe-swiglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = self.out_shape(l)?;
        let gate_up = cpu_slice::<f32>(s, l, "gate_up")?;
        let (alpha, limit) = (self.alpha, self.limit);
        let out = gate_up
            .chunks_exact(2 * self.inter)
            .flat_map(|row| {
                let (gate, up) = row.split_at(self.inter);
                gate.iter().zip(up).map(move |(&g, &u)| {
                    let g = g.min(limit);
                    // As the kernel's fminf/fmaxf: a NaN `up` clamps to -limit.
                    let u = u.max(-limit).min(limit);
                    (u + 1.0) * g / (1.0 + (-alpha * g).exp())
                })
            })
            .collect();
        Ok((CpuStorage::F32(out), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;

        let (launch, shape) = self.launch(l)?;
        Ok((cuda::run(s.device(), &[launch], &[s])?, shape))
    }
}

struct Combine {
    dtype: DType,
}

impl Combine {
    /// (n, k, hidden, experts), checked across the three inputs.
    fn dims(
        &self,
        down: &Layout,
        logits: &Layout,
        ids: &Layout,
    ) -> candle_core::Result<(usize, usize, usize, usize)> {
        let (n, k, hidden) = down.shape().dims3()?;
        let (logit_rows, experts) = logits.shape().dims2()?;
        if logit_rows != n || ids.shape().dims2()? != (n, k) {
            candle_core::bail!(
                "MoE combine: down {:?}, logits {:?} and ids {:?} disagree",
                down.shape(),
                logits.shape(),
                ids.shape()
            );
        }
        Ok((n, k, hidden, experts))
    }

    /// The CUDA launch (one thread per output value) and the output's shape.
    #[cfg(any(feature = "cuda", test))]
    fn launch(
        &self,
        down: &Layout,
        logits: &Layout,
        ids: &Layout,
    ) -> candle_core::Result<(Launch, Shape)> {
        let (n, k, hidden, experts) = self.dims(down, logits, ids)?;
        let (dtype, kernel) = match self.dtype {
            DType::BF16 => (DType::BF16, "moe_combine_bf16"),
            _ => (DType::F32, "moe_combine_f32"),
        };
        let args = vec![
            contiguous_input(0, down, "down")?,
            contiguous_input(1, logits, "router logits")?,
            contiguous_input(2, ids, "ids")?,
            Arg::Output {
                dtype,
                len: n * hidden,
            },
            int(n, "tokens")?,
            int(k, "top_k")?,
            int(hidden, "hidden size")?,
            int(experts, "experts")?,
        ];
        let launch = Launch::elementwise(Module::Moe, kernel, n * hidden, args);
        Ok((launch, Shape::from((n, hidden))))
    }
}

impl CustomOp3 for Combine {
    fn name(&self) -> &'static str {
        "moe-combine"
    }

    fn cpu_fwd(
        &self,
        down: &CpuStorage,
        down_l: &Layout,
        logits: &CpuStorage,
        logits_l: &Layout,
        ids: &CpuStorage,
        ids_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, k, hidden, experts) = self.dims(down_l, logits_l, ids_l)?;
        let down = cpu_slice::<f32>(down, down_l, "down")?;
        let logits = cpu_slice::<f32>(logits, logits_l, "router logits")?;
        let ids = cpu_slice::<u32>(ids, ids_l, "ids")?;
        let mut out = vec![0f32; n * hidden];
        for t in 0..n {
            let row = &logits[t * experts..][..experts];
            let chosen: Vec<f32> = ids[t * k..][..k]
                .iter()
                .map(|&e| row.get(e as usize).copied().unwrap_or(f32::NAN))
                .collect();
            let top = chosen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f32> = chosen.iter().map(|v| (v - top).exp()).collect();
            let total: f32 = weights.iter().sum();
            let dst = &mut out[t * hidden..][..hidden];
            for (s, w) in weights.iter().enumerate() {
                let src = &down[(t * k + s) * hidden..][..hidden];
                for (d, v) in dst.iter_mut().zip(src) {
                    *d += w / total * v;
                }
            }
        }
        let storage = match self.dtype {
            DType::BF16 => CpuStorage::BF16(out.into_iter().map(half::bf16::from_f32).collect()),
            _ => CpuStorage::F32(out),
        };
        Ok((storage, Shape::from((n, hidden))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        down: &candle_core::CudaStorage,
        down_l: &Layout,
        logits: &candle_core::CudaStorage,
        logits_l: &Layout,
        ids: &candle_core::CudaStorage,
        ids_l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;

        let (launch, shape) = self.launch(down_l, logits_l, ids_l)?;
        Ok((
            cuda::run(down.device(), &[launch], &[down, logits, ids])?,
            shape,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::emu;
    use candle_core::Device;

    #[test]
    fn route_picks_the_largest_first_and_breaks_ties_low() -> candle_core::Result<()> {
        let logits = Tensor::new(
            &[[0.0f32, 3.0, 1.0, 3.0], [2.0, -1.0, 5.0, 0.5]],
            &Device::Cpu,
        )?;
        let ids = route_top_k(&logits, 3)?.to_vec2::<u32>()?;
        assert_eq!(ids, vec![vec![1, 3, 2], vec![2, 0, 3]]);
        assert!(route_top_k(&logits, 5).is_err());
        Ok(())
    }

    #[test]
    fn swiglu_equals_the_clamped_formula() -> candle_core::Result<()> {
        let (alpha, limit) = (1.702f64, 7.0f64);
        let gate_up = Tensor::new(&[[[-2.0f32, 9.0, 0.5, -8.0]]], &Device::Cpu)?;
        let out = swiglu(&gate_up, 2, alpha, limit)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let expect = |g: f64, u: f64| {
            let g = g.min(limit);
            let u = u.clamp(-limit, limit);
            (u + 1.0) * g / (1.0 + (-alpha * g).exp())
        };
        assert!((out[0] as f64 - expect(-2.0, 0.5)).abs() < 1e-6);
        assert!((out[1] as f64 - expect(9.0, -8.0)).abs() < 1e-5);
        assert!(swiglu(&gate_up, 3, alpha, limit).is_err());
        Ok(())
    }

    #[test]
    fn combine_weights_by_the_softmax_of_the_chosen_logits() -> candle_core::Result<()> {
        let logits = Tensor::new(&[[1.0f32, 0.0, 2.0]], &Device::Cpu)?;
        let ids = Tensor::new(&[[2u32, 0]], &Device::Cpu)?;
        let down = Tensor::new(&[[[1.0f32, 10.0], [3.0, 30.0]]], &Device::Cpu)?;
        let out = combine(&down, &logits, &ids, DType::F32)?.to_vec2::<f32>()?;
        let w = 1.0 / (1.0 + (-1.0f32).exp());
        assert!((out[0][0] - (w * 1.0 + (1.0 - w) * 3.0)).abs() < 1e-6);
        assert!((out[0][1] - (w * 10.0 + (1.0 - w) * 30.0)).abs() < 1e-5);
        let bf16 = combine(&down, &logits, &ids, DType::BF16)?;
        assert_eq!(bf16.dtype(), DType::BF16);
        Ok(())
    }

    /// Router logits for `n` tokens over 32 experts with many ties (small integers).
    fn tied_logits(n: usize) -> candle_core::Result<Tensor> {
        let values: Vec<f32> = (0..n * 32).map(|i| ((i * 7919) % 5) as f32).collect();
        Tensor::from_vec(values, (n, 32), &Device::Cpu)
    }

    #[test]
    fn the_cuda_route_kernel_emulated_equals_the_cpu_op() -> candle_core::Result<()> {
        if !emu::available() {
            return Ok(());
        }
        // More tokens than one block of threads.
        let mut values = tied_logits(1030)?.flatten_all()?.to_vec1::<f32>()?;
        // Total order at the edges: NaN above +inf, +0 above -0, -NaN below -inf.
        values[..32].fill(-1.0);
        values[..4].copy_from_slice(&[-0.0, 0.0, f32::NAN, f32::INFINITY]);
        values[32..64].fill(-1.0);
        values[32..36].copy_from_slice(&[-f32::NAN, f32::NEG_INFINITY, -0.0, 0.0]);
        let logits = Tensor::from_vec(values, (1030, 32), &Device::Cpu)?;
        let (launch, _) = RouteTopK { k: 4 }.launch(logits.layout())?;
        let got = emu::run(std::slice::from_ref(&launch), &[emu::cpu_storage(&logits)]);
        let want = emu::cpu_storage(&route_top_k(&logits, 4)?);
        assert_eq!(emu::max_diff(&got, &want), 0.0);
        Ok(())
    }

    #[test]
    fn the_cuda_swiglu_kernel_emulated_equals_the_cpu_op() -> candle_core::Result<()> {
        if !emu::available() {
            return Ok(());
        }
        // Past the clamp limit on both sides, over more than one block of threads.
        let gate_up = (Tensor::randn(0f32, 1.0, (3, 2, 1400), &Device::Cpu)? * 10.0)?;
        let op = Swiglu {
            inter: 700,
            alpha: 1.702,
            limit: 7.0,
        };
        let (launch, _) = op.launch(gate_up.layout())?;
        let got = emu::run(std::slice::from_ref(&launch), &[emu::cpu_storage(&gate_up)]);
        let want = emu::cpu_storage(&swiglu(&gate_up, 700, 1.702, 7.0)?);
        let diff = emu::max_diff(&got, &want);
        assert!(diff < 1e-5, "max |diff| {diff}");
        Ok(())
    }

    #[test]
    fn the_cuda_combine_kernels_emulated_equal_the_cpu_op() -> candle_core::Result<()> {
        if !emu::available() {
            return Ok(());
        }
        let (n, k, hidden) = (3, 4, 300);
        let logits = Tensor::randn(0f32, 2.0, (n, 32), &Device::Cpu)?;
        let mut ids = route_top_k(&logits, k)?.flatten_all()?.to_vec1::<u32>()?;
        // An id past the experts: NaN for that token on both sides, no read out of bounds.
        ids[k + 1] = 40;
        let ids = Tensor::from_vec(ids, (n, k), &Device::Cpu)?;
        let down = Tensor::randn(0f32, 1.0, (n, k, hidden), &Device::Cpu)?;
        for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::BF16, 1e-2)] {
            let (launch, _) =
                Combine { dtype }.launch(down.layout(), logits.layout(), ids.layout())?;
            let inputs = [&down, &logits, &ids].map(emu::cpu_storage);
            let got = emu::run(std::slice::from_ref(&launch), &inputs);
            let want = emu::cpu_storage(&combine(&down, &logits, &ids, dtype)?);
            let diff = emu::max_diff(&got, &want);
            assert!(diff < tolerance, "{dtype:?}: max |diff| {diff}");
        }
        Ok(())
    }
}
