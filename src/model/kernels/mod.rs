//! What ossterm's own CUDA kernels (`q4_0_moe.cu`, `attention.cu`, compiled to PTX by
//! build.rs) share on the Rust side: the modules, views of tensor storage, and the CPU-side
//! slice helper the reference implementations use.

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

#[cfg(feature = "cuda")]
pub mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::WrapErr;
    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, CudaView, LaunchConfig, PushKernelArg,
    };
    use candle_core::{CudaDevice, CudaStorage, DType};

    use super::launch::{Arg, Launch, Module};

    /// The MoE kernels, compiled by build.rs.
    pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/q4_0_moe.ptx"));
    /// The name candle caches the loaded module under.
    pub const MODULE: &str = "ossterm_q4_0_moe";
    /// The attention kernels.
    pub const ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
    pub const ATTENTION_MODULE: &str = "ossterm_attention";

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

    /// Runs `launch` on `dev` with `inputs` (the op's inputs, then its own tensors, as the
    /// launch's `Arg::Input`s index them) and returns its output. The kernel emulator tests
    /// replay the same `Launch` descriptions.
    pub fn run(
        dev: &CudaDevice,
        launch: &Launch,
        inputs: &[&CudaStorage],
    ) -> candle_core::Result<CudaStorage> {
        let (module, ptx) = match launch.module {
            Module::Moe => (MODULE, PTX),
            Module::Attention => (ATTENTION_MODULE, ATTENTION_PTX),
        };
        let func = dev.get_or_load_custom_func(launch.kernel, module, ptx)?;
        let mut views = Vec::new();
        let mut scratch = Vec::new();
        for arg in &launch.args {
            match arg {
                Arg::Input { index, offset } => {
                    let Some(storage) = inputs.get(*index) else {
                        candle_core::bail!("kernel {}: no input {index}", launch.kernel);
                    };
                    views.push(match storage.dtype() {
                        DType::U8 => Input::U8(storage.as_cuda_slice::<u8>()?.slice(*offset..)),
                        DType::U32 => Input::U32(storage.as_cuda_slice::<u32>()?.slice(*offset..)),
                        DType::F32 => Input::F32(storage.as_cuda_slice::<f32>()?.slice(*offset..)),
                        DType::BF16 => {
                            Input::BF16(storage.as_cuda_slice::<half::bf16>()?.slice(*offset..))
                        }
                        other => candle_core::bail!("kernel {}: {other:?} input", launch.kernel),
                    });
                }
                // SAFETY: the kernel writes the scratch before reading it.
                Arg::Scratch { len } => scratch.push(unsafe { dev.alloc::<f32>(*len)? }),
                _ => {}
            }
        }
        let (dtype, len) = launch.output()?;
        // SAFETY: every kernel writes its whole output; the emulator tests fill outputs with
        // NaN first and compare every value with the CPU implementation.
        let output = unsafe {
            match dtype {
                DType::U32 => Output::U32(dev.alloc::<u32>(len)?),
                DType::F32 => Output::F32(dev.alloc::<f32>(len)?),
                DType::BF16 => Output::BF16(dev.alloc::<half::bf16>(len)?),
                other => candle_core::bail!("kernel {}: {other:?} output", launch.kernel),
            }
        };
        let mut builder = func.builder();
        let (mut views, mut scratch) = (views.iter(), scratch.iter());
        for arg in &launch.args {
            match arg {
                Arg::Input { .. } => match views.next() {
                    Some(Input::U8(v)) => builder.arg(v),
                    Some(Input::U32(v)) => builder.arg(v),
                    Some(Input::F32(v)) => builder.arg(v),
                    Some(Input::BF16(v)) => builder.arg(v),
                    None => candle_core::bail!("kernel {}: inputs out of step", launch.kernel),
                },
                Arg::Output { .. } => match &output {
                    Output::U32(s) => builder.arg(s),
                    Output::F32(s) => builder.arg(s),
                    Output::BF16(s) => builder.arg(s),
                },
                Arg::Scratch { .. } => match scratch.next() {
                    Some(s) => builder.arg(s),
                    None => candle_core::bail!("kernel {}: scratch out of step", launch.kernel),
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
        let dev = dev.clone();
        Ok(match output {
            Output::U32(s) => CudaStorage::wrap_cuda_slice(s, dev),
            Output::F32(s) => CudaStorage::wrap_cuda_slice(s, dev),
            Output::BF16(s) => CudaStorage::wrap_cuda_slice(s, dev),
        })
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
