//! The small steps of the stacked mixture of experts, each one kernel launch on CUDA
//! (`kernels/q4_0_moe.cu`) instead of the handful of candle ops they replace: decode is
//! launch-bound, not bandwidth-bound, once the experts run as one matvec per projection. The
//! CPU implementations are the reference the tests check.

#[cfg(any(feature = "cuda", test))]
use candle_core::DType;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};

#[cfg(feature = "cuda")]
use super::kernels::cuda;
#[cfg(any(feature = "cuda", test))]
use super::kernels::launch::{Arg, Launch, Module, contiguous_input, int};
use super::kernels::{cpu_f32, cpu_slice, own_cpu};
use super::moe::route;

/// The top-k experts of each row of `scores` [n, experts] (f32 or bf16) plus `bias` [experts]
/// f32, the sum in f32, largest first, ties to the lower index: [n, k] u32.
pub fn route_top_k(scores: &Tensor, bias: &Tensor, k: usize) -> candle_core::Result<Tensor> {
    let op = RouteTopK {
        k,
        bias: bias.contiguous()?,
    };
    scores.contiguous()?.apply_op1_no_bwd(&op)
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

/// gpt-oss's clamped SwiGLU of one gate value `g` and its up value `u`.
pub fn swiglu_value(g: f32, u: f32, alpha: f32, limit: f32) -> f32 {
    let g = g.min(limit);
    // As the kernel's fminf/fmaxf: a NaN `up` clamps to -limit.
    let u = u.max(-limit).min(limit);
    (u + 1.0) * g / (1.0 + (-alpha * g).exp())
}

/// `residual` [n, hidden] plus the experts' outputs `down` [n, k, hidden] f32 weighted by the
/// softmax of the router's `scores` [n, experts] + `bias` [experts] f32 at `ids` [n, k]: [n,
/// hidden] in the residual's dtype (f32 or bf16, as the scores), summed in f32.
pub fn combine(
    down: &Tensor,
    scores: &Tensor,
    bias: &Tensor,
    ids: &Tensor,
    residual: &Tensor,
) -> candle_core::Result<Tensor> {
    let op = Combine {
        bias: bias.contiguous()?,
        residual: residual.contiguous()?,
    };
    down.contiguous()?
        .apply_op3_no_bwd(&scores.contiguous()?, &ids.contiguous()?, &op)
}

/// The kernel for activations of `dtype`: the bf16 one or the f32 one.
#[cfg(any(feature = "cuda", test))]
fn by_dtype(
    dtype: DType,
    bf16: &'static str,
    f32: &'static str,
) -> candle_core::Result<&'static str> {
    match dtype {
        DType::BF16 => Ok(bf16),
        DType::F32 => Ok(f32),
        other => candle_core::bail!("MoE kernels take f32 or bf16, not {other:?}"),
    }
}

struct RouteTopK {
    k: usize,
    /// f32 [experts] (a second input; this op takes one).
    bias: Tensor,
}

impl RouteTopK {
    /// (n, experts), checked against k and the bias.
    fn dims(&self, l: &Layout) -> candle_core::Result<(usize, usize)> {
        let (n, experts) = l.shape().dims2()?;
        if self.k > experts || self.bias.elem_count() != experts {
            candle_core::bail!(
                "top-{} of {experts} experts with {} biases",
                self.k,
                self.bias.elem_count()
            );
        }
        Ok((n, experts))
    }

    /// The CUDA launch (inputs: scores, bias; one thread per token) and the ids' shape.
    #[cfg(any(feature = "cuda", test))]
    fn launch(
        &self,
        l: &Layout,
        bias: &Layout,
        dtype: DType,
    ) -> candle_core::Result<(Launch, Shape)> {
        let (n, experts) = self.dims(l)?;
        let args = vec![
            contiguous_input(0, l, "router scores")?,
            contiguous_input(1, bias, "router bias")?,
            Arg::Output {
                dtype: DType::U32,
                len: n * self.k,
            },
            int(n, "tokens")?,
            int(experts, "experts")?,
            int(self.k, "top_k")?,
        ];
        let kernel = by_dtype(dtype, "moe_route_top_k_bf16", "moe_route_top_k_f32")?;
        let launch = Launch::elementwise(Module::Moe, kernel, n, args);
        Ok((launch, Shape::from((n, self.k))))
    }
}

impl CustomOp1 for RouteTopK {
    fn name(&self) -> &'static str {
        "moe-route-top-k"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, experts) = self.dims(l)?;
        let scores = cpu_f32(s, l, "router scores")?;
        let (bias_storage, bias_l) = self.bias.storage_and_layout();
        let bias = own_cpu(&bias_storage, "the router's biases")?;
        let bias = cpu_slice::<f32>(bias, bias_l, "router bias")?;
        let ids = scores
            .chunks_exact(experts)
            .flat_map(|row| {
                let logits: Vec<f32> = row.iter().zip(bias).map(|(s, b)| s + b).collect();
                route(&logits, self.k).into_iter().map(|(e, _)| e as u32)
            })
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

        let (bias_storage, bias_l) = self.bias.storage_and_layout();
        let bias = cuda::own_storage(&bias_storage, "the router's biases")?;
        let (launch, shape) = self.launch(l, bias_l, s.dtype())?;
        Ok((cuda::run(s.device(), &[launch], &[s, bias])?, shape))
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
                gate.iter()
                    .zip(up)
                    .map(move |(&g, &u)| swiglu_value(g, u, alpha, limit))
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
    /// The router's bias, f32 [experts] (a fourth input; custom ops take three).
    bias: Tensor,
    /// [n, hidden], the scores' dtype (a fifth input).
    residual: Tensor,
}

impl Combine {
    /// (n, k, hidden, experts), checked across the inputs.
    fn dims(
        &self,
        down: &Layout,
        scores: &Layout,
        ids: &Layout,
    ) -> candle_core::Result<(usize, usize, usize, usize)> {
        let (n, k, hidden) = down.shape().dims3()?;
        let (score_rows, experts) = scores.shape().dims2()?;
        if score_rows != n
            || ids.shape().dims2()? != (n, k)
            || self.residual.dims() != [n, hidden]
            || self.bias.elem_count() != experts
        {
            candle_core::bail!(
                "MoE combine: down {:?}, scores {:?}, ids {:?}, residual {:?} and {} biases disagree",
                down.shape(),
                scores.shape(),
                ids.shape(),
                self.residual.shape(),
                self.bias.elem_count()
            );
        }
        Ok((n, k, hidden, experts))
    }

    /// The CUDA launch (inputs: down, scores, ids, bias, residual; one thread per output
    /// value) and the output's shape.
    #[cfg(any(feature = "cuda", test))]
    fn launch(
        &self,
        [down, scores, ids, bias, residual]: [&Layout; 5],
        dtype: DType,
    ) -> candle_core::Result<(Launch, Shape)> {
        let (n, k, hidden, experts) = self.dims(down, scores, ids)?;
        if self.residual.dtype() != dtype {
            candle_core::bail!(
                "MoE combine: scores {dtype:?}, residual {:?}",
                self.residual.dtype()
            );
        }
        let args = vec![
            contiguous_input(0, down, "down")?,
            contiguous_input(1, scores, "router scores")?,
            contiguous_input(3, bias, "router bias")?,
            contiguous_input(2, ids, "ids")?,
            contiguous_input(4, residual, "residual")?,
            Arg::Output {
                dtype,
                len: n * hidden,
            },
            int(n, "tokens")?,
            int(k, "top_k")?,
            int(hidden, "hidden size")?,
            int(experts, "experts")?,
        ];
        let kernel = by_dtype(dtype, "moe_combine_bf16", "moe_combine_f32")?;
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
        scores: &CpuStorage,
        scores_l: &Layout,
        ids: &CpuStorage,
        ids_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, k, hidden, experts) = self.dims(down_l, scores_l, ids_l)?;
        let down = cpu_slice::<f32>(down, down_l, "down")?;
        let scores = cpu_f32(scores, scores_l, "router scores")?;
        let ids = cpu_slice::<u32>(ids, ids_l, "ids")?;
        let (bias_storage, bias_l) = self.bias.storage_and_layout();
        let bias = cpu_slice::<f32>(
            own_cpu(&bias_storage, "the router's biases")?,
            bias_l,
            "router bias",
        )?;
        let (residual_storage, residual_l) = self.residual.storage_and_layout();
        let residual = own_cpu(&residual_storage, "the residual stream's values")?;
        let mut out = cpu_f32(residual, residual_l, "residual")?.into_owned();
        for t in 0..n {
            let row = &scores[t * experts..][..experts];
            let chosen: Vec<f32> = ids[t * k..][..k]
                .iter()
                .map(|&e| {
                    let e = e as usize;
                    row.get(e).map_or(f32::NAN, |s| s + bias[e])
                })
                .collect();
            let top = chosen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f32> = chosen.iter().map(|v| (v - top).exp()).collect();
            let total: f32 = weights.iter().sum();
            let mut acc = vec![0f32; hidden];
            for (s, w) in weights.iter().enumerate() {
                let src = &down[(t * k + s) * hidden..][..hidden];
                for (a, v) in acc.iter_mut().zip(src) {
                    *a += w * v;
                }
            }
            for (o, a) in out[t * hidden..][..hidden].iter_mut().zip(acc) {
                *o += a / total;
            }
        }
        let storage = match residual {
            CpuStorage::BF16(_) => {
                CpuStorage::BF16(out.into_iter().map(half::bf16::from_f32).collect())
            }
            _ => CpuStorage::F32(out),
        };
        Ok((storage, Shape::from((n, hidden))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        down: &candle_core::CudaStorage,
        down_l: &Layout,
        scores: &candle_core::CudaStorage,
        scores_l: &Layout,
        ids: &candle_core::CudaStorage,
        ids_l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;

        let (bias_storage, bias_l) = self.bias.storage_and_layout();
        let bias = cuda::own_storage(&bias_storage, "the router's biases")?;
        let (residual_storage, residual_l) = self.residual.storage_and_layout();
        let residual = cuda::own_storage(&residual_storage, "the residual stream's values")?;
        let layouts = [down_l, scores_l, ids_l, bias_l, residual_l];
        let (launch, shape) = self.launch(layouts, scores.dtype())?;
        let inputs = [down, scores, ids, bias, residual];
        Ok((cuda::run(down.device(), &[launch], &inputs)?, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::emu;
    use candle_core::Device;

    #[test]
    fn route_picks_the_largest_first_and_breaks_ties_low() -> candle_core::Result<()> {
        let scores = Tensor::new(
            &[[0.0f32, 3.0, 1.0, 2.5], [2.0, -1.0, 5.0, 0.5]],
            &Device::Cpu,
        )?;
        // The bias joins the scores before ranking: expert 3 ties expert 1 in row 0.
        let bias = Tensor::new(&[0.0f32, 0.0, 0.0, 0.5], &Device::Cpu)?;
        let ids = route_top_k(&scores, &bias, 3)?.to_vec2::<u32>()?;
        assert_eq!(ids, vec![vec![1, 3, 2], vec![2, 0, 3]]);
        let bf16 = route_top_k(&scores.to_dtype(DType::BF16)?, &bias, 3)?;
        assert_eq!(bf16.to_vec2::<u32>()?, ids);
        assert!(route_top_k(&scores, &bias, 5).is_err());
        assert!(route_top_k(&scores, &bias.narrow(0, 0, 3)?, 2).is_err());
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
    fn combine_adds_the_softmax_weighted_experts_to_the_residual() -> candle_core::Result<()> {
        let scores = Tensor::new(&[[1.0f32, 0.5, 2.0]], &Device::Cpu)?;
        let bias = Tensor::new(&[0.0f32, -0.5, 0.0], &Device::Cpu)?;
        let ids = Tensor::new(&[[2u32, 0]], &Device::Cpu)?;
        let down = Tensor::new(&[[[1.0f32, 10.0], [3.0, 30.0]]], &Device::Cpu)?;
        let residual = Tensor::new(&[[100.0f32, -100.0]], &Device::Cpu)?;
        let out = combine(&down, &scores, &bias, &ids, &residual)?.to_vec2::<f32>()?;
        let w = 1.0 / (1.0 + (-1.0f32).exp());
        assert!((out[0][0] - (100.0 + w * 1.0 + (1.0 - w) * 3.0)).abs() < 1e-5);
        assert!((out[0][1] - (-100.0 + w * 10.0 + (1.0 - w) * 30.0)).abs() < 1e-5);
        let wrong_residual = Tensor::zeros((2, 2), DType::F32, &Device::Cpu)?;
        assert!(combine(&down, &scores, &bias, &ids, &wrong_residual).is_err());
        let [scores, residual] = [&scores, &residual].map(|t| t.to_dtype(DType::BF16));
        let bf16 = combine(&down, &scores?, &bias, &ids, &residual?)?;
        assert_eq!(bf16.dtype(), DType::BF16);
        Ok(())
    }

    /// Router scores for `n` tokens over 32 experts with many ties (small integers).
    fn tied_logits(n: usize) -> candle_core::Result<Tensor> {
        let values: Vec<f32> = (0..n * 32).map(|i| ((i * 7919) % 5) as f32).collect();
        Tensor::from_vec(values, (n, 32), &Device::Cpu)
    }

    /// A small router bias, f32 [32].
    fn router_bias() -> candle_core::Result<Tensor> {
        let values: Vec<f32> = (0..32).map(|e| (e % 3) as f32 * 0.25).collect();
        Tensor::from_vec(values, 32, &Device::Cpu)
    }

    #[test]
    fn the_cuda_route_kernels_emulated_equal_the_cpu_op() -> candle_core::Result<()> {
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
        let scores = Tensor::from_vec(values, (1030, 32), &Device::Cpu)?;
        // A zero bias keeps the edge cases as they are; a small one reorders the ties.
        let zero = Tensor::zeros(32, DType::F32, &Device::Cpu)?;
        for (bias, dtype) in [
            (&zero, DType::F32),
            (&router_bias()?, DType::F32),
            (&router_bias()?, DType::BF16),
        ] {
            let scores = scores.to_dtype(dtype)?;
            let op = RouteTopK {
                k: 4,
                bias: bias.clone(),
            };
            let (launch, _) = op.launch(scores.layout(), bias.layout(), dtype)?;
            let inputs = [&scores, bias].map(emu::cpu_storage);
            let got = emu::run(&[launch], &inputs);
            let want = emu::cpu_storage(&route_top_k(&scores, bias, 4)?);
            assert_eq!(emu::max_diff(&got, &want), 0.0, "{dtype:?}");
        }
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
        let got = emu::run(&[launch], &[emu::cpu_storage(&gate_up)]);
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
        let scores = Tensor::randn(0f32, 2.0, (n, 32), &Device::Cpu)?;
        let bias = router_bias()?;
        let mut ids = route_top_k(&scores, &bias, k)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        // An id past the experts: NaN for that token on both sides, no read out of bounds.
        ids[k + 1] = 40;
        let ids = Tensor::from_vec(ids, (n, k), &Device::Cpu)?;
        let down = Tensor::randn(0f32, 1.0, (n, k, hidden), &Device::Cpu)?;
        let residual = Tensor::randn(0f32, 4.0, (n, hidden), &Device::Cpu)?;
        for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::BF16, 5e-2)] {
            let [scores, residual] = [&scores, &residual].map(|t| t.to_dtype(dtype));
            let (scores, residual) = (scores?, residual?);
            let op = Combine {
                bias: bias.clone(),
                residual: residual.clone(),
            };
            let layouts = [
                down.layout(),
                scores.layout(),
                ids.layout(),
                bias.layout(),
                residual.layout(),
            ];
            let (launch, _) = op.launch(layouts, dtype)?;
            let inputs = [&down, &scores, &ids, &bias, &residual].map(emu::cpu_storage);
            let got = emu::run(&[launch], &inputs);
            let want = emu::cpu_storage(&combine(&down, &scores, &bias, &ids, &residual)?);
            let diff = emu::max_diff(&got, &want);
            assert!(diff < tolerance, "{dtype:?}: max |diff| {diff}");
        }
        Ok(())
    }
}
