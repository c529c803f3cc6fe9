//! Attention for one new token in one launch (CUDA, `kernels/attention.cu`): scores against
//! the cached keys, softmax with the head's sink, weighted values. It reads K and V where the
//! cache keeps them (a strided view), where candle's ops would first copy them, and replaces
//! a dozen launches per layer. The CPU implementation is the reference the tests check.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use super::kernels::cpu_slice;
#[cfg(feature = "cuda")]
use super::kernels::cuda;

/// `q` [heads, d] (already scaled) attending over `k`, `v` [kv_heads, keys, d] (rows of d
/// contiguous values, any stride between kv heads) with `sinks` [heads] f32: [heads, d] in
/// q's dtype.
pub fn attention_decode(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    sinks: &Tensor,
) -> candle_core::Result<Tensor> {
    let op = DecodeAttention {
        sinks: sinks.flatten_all()?.to_dtype(DType::F32)?.contiguous()?,
    };
    q.contiguous()?.apply_op3_no_bwd(k, v, &op)
}

struct DecodeAttention {
    /// f32 [heads] (a fourth input; custom ops take three).
    sinks: Tensor,
}

/// Where K or V sits in its storage: (first element, stride between kv heads).
fn cache_view(l: &Layout, kv: usize, keys: usize, d: usize) -> candle_core::Result<(usize, usize)> {
    let stride = l.stride();
    if l.dims() != [kv, keys, d] || stride[2] != 1 || stride[1] != d {
        candle_core::bail!(
            "decode attention: the cache view {:?} (strides {stride:?}) is not [{kv}, {keys}, {d}] with contiguous rows",
            l.dims()
        );
    }
    Ok((l.start_offset(), stride[0]))
}

impl DecodeAttention {
    /// (heads, kv_heads, keys, d), checked across the inputs.
    fn dims(
        &self,
        q: &Layout,
        k: &Layout,
        v: &Layout,
    ) -> candle_core::Result<(usize, usize, usize, usize)> {
        let (heads, d) = q.shape().dims2()?;
        let (kv, keys, kd) = k.shape().dims3()?;
        if kd != d || v.dims() != k.dims() || kv == 0 || heads % kv != 0 || keys == 0 {
            candle_core::bail!(
                "decode attention: q {:?}, k {:?}, v {:?} do not fit",
                q.dims(),
                k.dims(),
                v.dims()
            );
        }
        if self.sinks.elem_count() != heads {
            candle_core::bail!(
                "decode attention: {} sinks for {heads} heads",
                self.sinks.elem_count()
            );
        }
        Ok((heads, kv, keys, d))
    }
}

/// The reference: one head at a time, in f32.
fn attend_cpu<T: candle_core::WithDType>(
    q: &[T],
    k: &[T],
    v: &[T],
    sinks: &[f32],
    (heads, kv, keys, d): (usize, usize, usize, usize),
    (k_stride, v_stride): (usize, usize),
) -> Vec<f32> {
    let mut out = vec![0f32; heads * d];
    for head in 0..heads {
        let group = head / (heads / kv);
        let q = &q[head * d..][..d];
        let scores: Vec<f32> = (0..keys)
            .map(|j| {
                let row = &k[group * k_stride + j * d..][..d];
                q.iter()
                    .zip(row)
                    .map(|(a, b)| a.to_f64() as f32 * b.to_f64() as f32)
                    .sum()
            })
            .collect();
        let top = scores.iter().copied().fold(sinks[head], f32::max);
        let weights: Vec<f32> = scores.iter().map(|s| (s - top).exp()).collect();
        let total: f32 = weights.iter().sum::<f32>() + (sinks[head] - top).exp();
        let dst = &mut out[head * d..][..d];
        for (j, w) in weights.iter().enumerate() {
            let row = &v[group * v_stride + j * d..][..d];
            for (o, x) in dst.iter_mut().zip(row) {
                *o += w / total * x.to_f64() as f32;
            }
        }
    }
    out
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_l: &Layout,
        k: &CpuStorage,
        k_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.dims(q_l, k_l, v_l)?;
        let (heads, kv, keys, d) = dims;
        let (k_start, k_stride) = cache_view(k_l, kv, keys, d)?;
        let (v_start, v_stride) = cache_view(v_l, kv, keys, d)?;
        let (sinks_storage, sinks_l) = self.sinks.storage_and_layout();
        let candle_core::Storage::Cpu(sinks_storage) = &*sinks_storage else {
            candle_core::bail!("decode attention: the sinks are not on the CPU");
        };
        let sinks = cpu_slice::<f32>(sinks_storage, sinks_l, "sinks")?;
        let strides = (k_stride, v_stride);
        let storage = match (k, v) {
            (CpuStorage::F32(k), CpuStorage::F32(v)) => {
                let q = cpu_slice::<f32>(q, q_l, "q")?;
                let out = attend_cpu(q, &k[k_start..], &v[v_start..], sinks, dims, strides);
                CpuStorage::F32(out)
            }
            (CpuStorage::BF16(k), CpuStorage::BF16(v)) => {
                let q = cpu_slice::<half::bf16>(q, q_l, "q")?;
                let out = attend_cpu(q, &k[k_start..], &v[v_start..], sinks, dims, strides);
                CpuStorage::BF16(out.into_iter().map(half::bf16::from_f32).collect())
            }
            _ => candle_core::bail!("decode attention: q, k and v must all be f32 or all bf16"),
        };
        Ok((storage, Shape::from((heads, d))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        q_l: &Layout,
        k: &candle_core::CudaStorage,
        k_l: &Layout,
        v: &candle_core::CudaStorage,
        v_l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use cuda::prelude::*;

        let (heads, kv, keys, d) = self.dims(q_l, k_l, v_l)?;
        if d > 256 {
            candle_core::bail!("decode attention: head_dim {d} > 256");
        }
        let (k_start, k_stride) = cache_view(k_l, kv, keys, d)?;
        let (v_start, v_stride) = cache_view(v_l, kv, keys, d)?;
        let dev = q.device().clone();
        let (sinks_storage, sinks_l) = self.sinks.storage_and_layout();
        let candle_core::Storage::Cuda(sinks_storage) = &*sinks_storage else {
            candle_core::bail!("decode attention: the sinks are not on the GPU");
        };
        let sinks = cuda::view::<f32>(sinks_storage, sinks_l, "sinks")?;
        // SAFETY: the kernel writes every score before reading it.
        let scratch = unsafe { dev.alloc::<f32>(heads * keys)? };
        let cfg = LaunchConfig {
            grid_dim: (heads as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = (
            heads as i32,
            kv as i32,
            keys as i32,
            d as i32,
            k_stride as i64,
            v_stride as i64,
        );
        macro_rules! launch {
            ($t:ty, $name:literal) => {{
                let q = cuda::view::<$t>(q, q_l, "q")?;
                let k = k.as_cuda_slice::<$t>()?.slice(k_start..);
                let v = v.as_cuda_slice::<$t>()?.slice(v_start..);
                let func = dev.get_or_load_custom_func(
                    $name,
                    cuda::ATTENTION_MODULE,
                    cuda::ATTENTION_PTX,
                )?;
                // SAFETY: threads below d write every output value.
                let out = unsafe { dev.alloc::<$t>(heads * d)? };
                let mut builder = func.builder();
                builder.arg(&q);
                builder.arg(&k);
                builder.arg(&v);
                builder.arg(&sinks);
                builder.arg(&scratch);
                builder.arg(&out);
                candle_core::builder_arg!(builder, args.0, args.1, args.2, args.3, args.4, args.5);
                // SAFETY: shapes and strides were checked against the views above.
                unsafe { builder.launch(cfg) }.w()?;
                candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let storage = match q.dtype() {
            DType::BF16 => launch!(half::bf16, "attention_decode_bf16"),
            DType::F32 => launch!(f32, "attention_decode_f32"),
            other => candle_core::bail!("decode attention: {other:?} is not supported"),
        };
        Ok((storage, Shape::from((heads, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device};

    /// The same attention with candle's ops: scores, sink column, softmax, values.
    fn reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        sinks: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (heads, d) = q.dims2()?;
        let (kv, keys, _) = k.dims3()?;
        let per_kv = heads / kv;
        let q = q.reshape((kv, per_kv, d))?;
        let scores = q.matmul(&k.contiguous()?.t()?)?;
        let sinks = sinks.reshape((kv, per_kv, 1))?;
        let probs = candle_nn::ops::softmax_last_dim(&Tensor::cat(&[&scores, &sinks], D::Minus1)?)?
            .narrow(2, 0, keys)?;
        probs.matmul(&v.contiguous()?)?.reshape((heads, d))
    }

    #[test]
    fn equals_candle_ops_on_a_strided_cache_view() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (heads, kv, d, capacity, keys) = (8, 2, 16, 40, 29);
        let q = Tensor::randn(0f32, 1.0, (heads, d), &dev)?;
        // A view of the first `keys` positions of a preallocated cache, as the KV cache hands out.
        let k = Tensor::randn(0f32, 1.0, (kv, capacity, d), &dev)?.narrow(1, 3, keys)?;
        let v = Tensor::randn(0f32, 1.0, (kv, capacity, d), &dev)?.narrow(1, 3, keys)?;
        let sinks = Tensor::randn(0f32, 1.0, heads, &dev)?;
        let ours = attention_decode(&q, &k, &v, &sinks)?;
        let theirs = reference(&q, &k, &v, &sinks)?;
        let diff = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "max |diff| {diff}");
        Ok(())
    }

    #[test]
    fn bf16_inputs_give_bf16_and_bad_shapes_are_errors() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (4, 8), &dev)?.to_dtype(DType::BF16)?;
        let k = Tensor::randn(0f32, 1.0, (2, 5, 8), &dev)?.to_dtype(DType::BF16)?;
        let sinks = Tensor::zeros(4, DType::F32, &dev)?;
        let out = attention_decode(&q, &k, &k, &sinks)?;
        assert_eq!((out.dtype(), out.dims()), (DType::BF16, &[4usize, 8][..]));
        let three_heads = Tensor::zeros((3, 8), DType::BF16, &dev)?;
        assert!(attention_decode(&three_heads, &k, &k, &sinks).is_err());
        let transposed = k.transpose(1, 2)?;
        assert!(attention_decode(&q, &transposed, &transposed, &sinks).is_err());
        Ok(())
    }
}
