//! Attention for one new token in one launch (CUDA, `kernels/attention.cu`): scores against
//! the cached keys, softmax with the head's sink, weighted values. It reads K and V where the
//! cache keeps them (a strided view), where candle's ops would first copy them, and replaces
//! a dozen launches per layer. The CPU implementation is the reference the tests check.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use super::attend_cpu::{AttendDims, attend};
#[cfg(feature = "cuda")]
use super::kernels::cuda;
#[cfg(any(feature = "cuda", test))]
use super::kernels::launch::{Arg, Launch, Module, contiguous_input, grid_y, int};
use super::kernels::{cpu_f32, cpu_slice, own_cpu};

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
        split_from: SPLIT_FROM_KEYS,
    };
    q.contiguous()?.apply_op3_no_bwd(k, v, &op)
}

struct DecodeAttention {
    /// f32 [heads] (a fourth input; custom ops take three).
    sinks: Tensor,
    /// Keys from which CUDA splits them over blocks too (tests lower it).
    #[cfg_attr(not(any(feature = "cuda", test)), allow(dead_code))]
    split_from: usize,
}

/// Keys from which CUDA decode attention splits the keys over blocks as well as heads: below
/// it one block per head (one launch) keeps up; above, heads alone would leave most of a
/// large GPU idle at long contexts. A guess, not yet tuned on a GPU.
const SPLIT_FROM_KEYS: usize = 1024;

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

    /// The CUDA launches (inputs: q, k, v, sinks) and the output's shape: one block of
    /// `ATTENTION_THREADS` per head, or from `split_from` keys one per head and
    /// `ATTENTION_THREADS` keys, then one per head to combine the shares.
    #[cfg(any(feature = "cuda", test))]
    fn launches(
        &self,
        q: &Layout,
        k: &Layout,
        v: &Layout,
        sinks: &Layout,
        (dtype, kv_dtype): (DType, DType),
    ) -> candle_core::Result<(Vec<Launch>, Shape)> {
        let (heads, kv, keys, d) = self.dims(q, k, v)?;
        // The kernels split a block into groups of d threads for the values.
        if d > MAX_HEAD_DIM || !ATTENTION_THREADS.is_multiple_of(d) {
            candle_core::bail!("decode attention: head_dim {d} must divide {ATTENTION_THREADS}");
        }
        let (k_start, k_stride) = cache_view(k, kv, keys, d)?;
        let (v_start, v_stride) = cache_view(v, kv, keys, d)?;
        let stride = |s: usize| -> candle_core::Result<Arg> {
            i64::try_from(s)
                .map(Arg::I64)
                .map_err(|_| candle_core::Error::Msg(format!("decode attention: stride {s}")))
        };
        // Kernels by (q, cache) dtype; the output is q's.
        let variant = match (dtype, kv_dtype) {
            (DType::BF16, DType::BF16) => 0,
            (DType::F32, DType::F32) => 1,
            (DType::F32, DType::BF16) => 2,
            other => candle_core::bail!("decode attention: q and cache of {other:?}"),
        };
        let name = |names: [&'static str; 3]| names[variant];
        let q_k_v = [
            contiguous_input(0, q, "q")?,
            Arg::Input {
                index: 1,
                offset: k_start,
            },
            Arg::Input {
                index: 2,
                offset: v_start,
            },
        ];
        let shapes = [
            int(heads, "heads")?,
            int(kv, "kv heads")?,
            int(keys, "keys")?,
            int(d, "head_dim")?,
            stride(k_stride)?,
            stride(v_stride)?,
        ];
        let output = Arg::Output {
            dtype,
            len: heads * d,
        };
        let sinks = contiguous_input(3, sinks, "sinks")?;
        let launches = if keys < self.split_from {
            let mut args = q_k_v.to_vec();
            args.extend([
                sinks,
                Arg::Scratch {
                    slot: 0,
                    len: heads * keys,
                },
                output,
            ]);
            args.extend(shapes);
            vec![Launch {
                module: Module::Attention,
                kernel: name([
                    "attention_decode_bf16",
                    "attention_decode_f32",
                    "attention_decode_f32_bf16",
                ]),
                grid: (heads as u32, 1, 1),
                block: (ATTENTION_THREADS as u32, 1, 1),
                args,
            }]
        } else {
            let splits = keys.div_ceil(ATTENTION_THREADS);
            let part = Arg::Scratch {
                slot: 0,
                len: heads * splits * (d + 2),
            };
            let mut args = q_k_v.to_vec();
            args.push(part.clone());
            args.extend(shapes);
            let split = Launch {
                module: Module::Attention,
                kernel: name([
                    "attention_decode_split_bf16",
                    "attention_decode_split_f32",
                    "attention_decode_split_f32_bf16",
                ]),
                grid: (heads as u32, grid_y(splits, "key splits")?, 1),
                block: (ATTENTION_THREADS as u32, 1, 1),
                args,
            };
            let combine = Launch {
                module: Module::Attention,
                kernel: if dtype == DType::BF16 {
                    "attention_decode_combine_bf16"
                } else {
                    "attention_decode_combine_f32"
                },
                grid: (heads as u32, 1, 1),
                block: (d as u32, 1, 1),
                args: vec![
                    part,
                    sinks,
                    output,
                    int(splits, "splits")?,
                    int(d, "head_dim")?,
                ],
            };
            vec![split, combine]
        };
        Ok((launches, Shape::from((heads, d))))
    }
}

/// Threads per block of the CUDA kernel, and the largest head_dim it takes (`attention.cu`'s
/// `MAX_HEAD_DIM`).
#[cfg(any(feature = "cuda", test))]
const ATTENTION_THREADS: usize = 256;
#[cfg(any(feature = "cuda", test))]
const MAX_HEAD_DIM: usize = 256;

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
        let (heads, kv, keys, d) = self.dims(q_l, k_l, v_l)?;
        let (k_start, k_stride) = cache_view(k_l, kv, keys, d)?;
        let (v_start, v_stride) = cache_view(v_l, kv, keys, d)?;
        let (sinks_storage, sinks_l) = self.sinks.storage_and_layout();
        let sinks_storage = own_cpu(&sinks_storage, "decode attention: the sinks")?;
        let sinks = cpu_slice::<f32>(sinks_storage, sinks_l, "sinks")?;
        let dims = AttendDims {
            heads,
            kv_heads: kv,
            keys,
            head_dim: d,
            k_stride,
            v_stride,
        };
        let q_f32 = cpu_f32(q, q_l, "q")?;
        let out = match (k, v) {
            (CpuStorage::F32(k), CpuStorage::F32(v)) => {
                attend(&q_f32, &k[k_start..], &v[v_start..], sinks, dims)
            }
            (CpuStorage::BF16(k), CpuStorage::BF16(v)) => {
                attend(&q_f32, &k[k_start..], &v[v_start..], sinks, dims)
            }
            (CpuStorage::F16(k), CpuStorage::F16(v)) => {
                attend(&q_f32, &k[k_start..], &v[v_start..], sinks, dims)
            }
            _ => candle_core::bail!(
                "decode attention: k and v must both be f32, both bf16 or both f16"
            ),
        };
        // The output in q's dtype.
        let storage = match q {
            CpuStorage::BF16(_) => {
                CpuStorage::BF16(out.into_iter().map(half::bf16::from_f32).collect())
            }
            _ => CpuStorage::F32(out),
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
        use candle_core::backend::BackendStorage;

        let (sinks_storage, sinks_l) = self.sinks.storage_and_layout();
        let sinks = cuda::own_storage(&sinks_storage, "decode attention: the sinks")?;
        let dtypes = (q.dtype(), k.dtype());
        let (launches, shape) = self.launches(q_l, k_l, v_l, sinks_l, dtypes)?;
        let out = cuda::run(q.device(), &launches, &[q, k, v, sinks])?;
        Ok((out, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::emu;
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
    fn f32_queries_over_a_16_bit_cache_equal_candle_ops_on_its_values() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (heads, kv, d, capacity, keys) = (8, 2, 64, 40, 29);
        let q = Tensor::randn(0f32, 1.0, (heads, d), &dev)?;
        let sinks = Tensor::randn(0f32, 1.0, heads, &dev)?;
        for dtype in [DType::F16, DType::BF16] {
            let cache = Tensor::randn(0f32, 1.0, (2, kv, capacity, d), &dev)?.to_dtype(dtype)?;
            let k = cache.get(0)?.narrow(1, 3, keys)?;
            let v = cache.get(1)?.narrow(1, 3, keys)?;
            let ours = attention_decode(&q, &k, &v, &sinks)?;
            assert_eq!(ours.dtype(), DType::F32);
            let widen = |t: &Tensor| t.to_dtype(DType::F32);
            let theirs = reference(&q, &widen(&k)?, &widen(&v)?, &sinks)?;
            let diff = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "{dtype:?}: max |diff| {diff}");
        }
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

    #[test]
    fn the_cuda_kernels_emulated_equal_the_cpu_op_on_cache_views() -> candle_core::Result<()> {
        if !emu::available() {
            return Ok(());
        }
        let dev = Device::Cpu;
        // More keys than threads a block; head_dim 64 (gpt-oss) and 16 (16 value groups);
        // the one-block-per-head kernel and the split one (3 shares, the last partial).
        for (heads, kv, d, keys, split_from) in [
            (8, 2, 64, 270, usize::MAX),
            (4, 4, 16, 5, usize::MAX),
            (8, 2, 64, 700, 512),
            (4, 1, 16, 300, 1),
        ] {
            let capacity = keys + 9;
            let q = Tensor::randn(0f32, 0.3, (heads, d), &dev)?;
            let sinks = Tensor::randn(0f32, 1.0, heads, &dev)?;
            let cache = |seed: f32| -> candle_core::Result<Tensor> {
                // Positions 3.. of a preallocated cache, as the KV cache hands them out.
                (Tensor::randn(0f32, 1.0, (kv, capacity, d), &dev)? + seed as f64)?
                    .narrow(1, 3, keys)
            };
            let (k, v) = (cache(0.0)?, cache(0.5)?);
            for (dtype, kv_dtype, tolerance) in [
                (DType::F32, DType::F32, 1e-5),
                (DType::BF16, DType::BF16, 2e-2),
                (DType::F32, DType::BF16, 1e-5),
            ] {
                let q = q.to_dtype(dtype)?;
                let (k, v) = (k.to_dtype(kv_dtype)?, v.to_dtype(kv_dtype)?);
                let out = attention_decode(&q, &k, &v, &sinks)?;
                let op = DecodeAttention {
                    sinks: sinks.clone(),
                    split_from,
                };
                let (launches, _) = op.launches(
                    q.layout(),
                    k.layout(),
                    v.layout(),
                    sinks.layout(),
                    (dtype, kv_dtype),
                )?;
                assert_eq!(launches.len(), if keys < split_from { 1 } else { 2 });
                let inputs = [&q, &k, &v, &sinks].map(emu::cpu_storage);
                let got = emu::run(&launches, &inputs);
                let diff = emu::max_diff(&got, &emu::cpu_storage(&out));
                assert!(
                    diff < tolerance,
                    "{dtype:?}/{kv_dtype:?} d {d} keys {keys}: max |diff| {diff}"
                );
            }
        }
        Ok(())
    }
}
