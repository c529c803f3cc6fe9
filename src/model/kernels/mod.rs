//! What ossterm's own CUDA kernels (`q4_0_moe.cu`, `attention.cu`, compiled to PTX by
//! build.rs) share on the Rust side: the modules, views of tensor storage, and the CPU-side
//! slice helper the reference implementations use.

use std::borrow::Cow;

use candle_core::{CpuStorage, Layout};

#[cfg(test)]
pub mod emu;
#[cfg(any(feature = "cuda", test))]
pub mod launch;

/// The contiguous values of a CPU tensor.
pub fn cpu_slice<'a, T: candle_core::WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))?;
    Ok(&storage.as_slice::<T>()?[start..end])
}

/// The contiguous values of an f32 or bf16 CPU tensor, as f32.
pub fn cpu_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<Cow<'a, [f32]>> {
    Ok(match storage {
        CpuStorage::BF16(_) => Cow::Owned(
            cpu_slice::<half::bf16>(storage, layout, what)?
                .iter()
                .map(|v| v.to_f32())
                .collect(),
        ),
        _ => Cow::Borrowed(cpu_slice::<f32>(storage, layout, what)?),
    })
}

/// The CPU storage of a tensor that an op takes besides its inputs (biases, sinks).
pub fn own_cpu<'a>(
    storage: &'a candle_core::Storage,
    what: &str,
) -> candle_core::Result<&'a CpuStorage> {
    match storage {
        candle_core::Storage::Cpu(s) => Ok(s),
        _ => candle_core::bail!("{what} are not on the CPU"),
    }
}

#[cfg(feature = "cuda")]
pub mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::WrapErr;
    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, CudaView, LaunchConfig, PushKernelArg,
    };
    use candle_core::{CudaDevice, CudaStorage, DType};

    use super::launch::{Arg, Launch, Module, output_of};

    /// The MoE kernels, compiled by build.rs.
    pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/q4_0_moe.ptx"));
    /// The name candle caches the loaded module under.
    pub const MODULE: &str = "ossterm_q4_0_moe";
    /// The attention kernels.
    pub const ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
    pub const ATTENTION_MODULE: &str = "ossterm_attention";
    /// The dense (bf16-weight) kernels.
    pub const DENSE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/dense.ptx"));
    pub const DENSE_MODULE: &str = "ossterm_dense";

    /// An input buffer, typed as its storage is.
    enum Input<'a> {
        U8(CudaView<'a, u8>),
        U32(CudaView<'a, u32>),
        F32(CudaView<'a, f32>),
        BF16(CudaView<'a, half::bf16>),
    }

    /// The launch's output.
    enum Output {
        U32(CudaSlice<u32>),
        F32(CudaSlice<f32>),
        BF16(CudaSlice<half::bf16>),
    }

    /// Runs `launches` in order on `dev` with `inputs` (the op's inputs, then its own
    /// tensors, as their `Arg::Input`s index them) and returns the one output. Scratch slots
    /// are shared by the launches that name them. The kernel emulator tests replay the same
    /// `Launch` descriptions.
    pub fn run(
        dev: &CudaDevice,
        launches: &[Launch],
        inputs: &[&CudaStorage],
    ) -> candle_core::Result<CudaStorage> {
        let (dtype, len) = output_of(launches)?;
        // SAFETY: every kernel writes its whole output; the emulator tests fill outputs with
        // NaN first and compare every value with the CPU implementation.
        let output = unsafe {
            match dtype {
                DType::U32 => Output::U32(dev.alloc::<u32>(len)?),
                DType::F32 => Output::F32(dev.alloc::<f32>(len)?),
                DType::BF16 => Output::BF16(dev.alloc::<half::bf16>(len)?),
                other => candle_core::bail!("kernel output of {other:?}"),
            }
        };
        let mut scratch: Vec<Option<CudaSlice<f32>>> = Vec::new();
        for launch in launches {
            for arg in &launch.args {
                if let Arg::Scratch { slot, len } = *arg {
                    if scratch.len() <= slot {
                        scratch.resize_with(slot + 1, || None);
                    }
                    if scratch[slot].is_none() {
                        // SAFETY: the first launch naming a slot writes it before any reads.
                        scratch[slot] = Some(unsafe { dev.alloc::<f32>(len)? });
                    }
                }
            }
        }
        for launch in launches {
            launch_one(dev, launch, inputs, &output, &scratch)?;
        }
        let dev = dev.clone();
        Ok(match output {
            Output::U32(s) => CudaStorage::wrap_cuda_slice(s, dev),
            Output::F32(s) => CudaStorage::wrap_cuda_slice(s, dev),
            Output::BF16(s) => CudaStorage::wrap_cuda_slice(s, dev),
        })
    }

    fn launch_one(
        dev: &CudaDevice,
        launch: &Launch,
        inputs: &[&CudaStorage],
        output: &Output,
        scratch: &[Option<CudaSlice<f32>>],
    ) -> candle_core::Result<()> {
        let (module, ptx) = match launch.module {
            Module::Moe => (MODULE, PTX),
            Module::Attention => (ATTENTION_MODULE, ATTENTION_PTX),
            Module::Dense => (DENSE_MODULE, DENSE_PTX),
        };
        let func = dev.get_or_load_custom_func(launch.kernel, module, ptx)?;
        let mut views = Vec::new();
        for arg in &launch.args {
            if let Arg::Input { index, offset } = *arg {
                let Some(storage) = inputs.get(index) else {
                    candle_core::bail!("kernel {}: no input {index}", launch.kernel);
                };
                views.push(match storage.dtype() {
                    DType::U8 => Input::U8(storage.as_cuda_slice::<u8>()?.slice(offset..)),
                    DType::U32 => Input::U32(storage.as_cuda_slice::<u32>()?.slice(offset..)),
                    DType::F32 => Input::F32(storage.as_cuda_slice::<f32>()?.slice(offset..)),
                    DType::BF16 => {
                        Input::BF16(storage.as_cuda_slice::<half::bf16>()?.slice(offset..))
                    }
                    other => candle_core::bail!("kernel {}: {other:?} input", launch.kernel),
                });
            }
        }
        let mut builder = func.builder();
        let mut views = views.iter();
        for arg in &launch.args {
            match arg {
                Arg::Input { .. } => match views.next() {
                    Some(Input::U8(v)) => builder.arg(v),
                    Some(Input::U32(v)) => builder.arg(v),
                    Some(Input::F32(v)) => builder.arg(v),
                    Some(Input::BF16(v)) => builder.arg(v),
                    None => candle_core::bail!("kernel {}: inputs out of step", launch.kernel),
                },
                Arg::Output { .. } => match output {
                    Output::U32(s) => builder.arg(s),
                    Output::F32(s) => builder.arg(s),
                    Output::BF16(s) => builder.arg(s),
                },
                Arg::Scratch { slot, .. } => match scratch.get(*slot) {
                    Some(Some(s)) => builder.arg(s),
                    _ => candle_core::bail!("kernel {}: no scratch slot {slot}", launch.kernel),
                },
                Arg::I32(v) => builder.arg(v),
                Arg::I64(v) => builder.arg(v),
                Arg::F32(v) => builder.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: launch.grid,
            block_dim: launch.block,
            shared_mem_bytes: 0,
        };
        // SAFETY: the launch's shapes were checked against its buffers when it was built, and
        // the emulator tests run every launch the ops build against their CPU implementations.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(())
    }

    /// The CUDA storage of a tensor that an op takes besides its inputs (biases, sinks).
    pub fn own_storage<'a>(
        storage: &'a candle_core::Storage,
        what: &str,
    ) -> candle_core::Result<&'a CudaStorage> {
        match storage {
            candle_core::Storage::Cuda(s) => Ok(s),
            _ => candle_core::bail!("{what} are not on the GPU"),
        }
    }
}
