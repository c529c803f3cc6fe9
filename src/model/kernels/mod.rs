//! What ossterm's own CUDA kernels (`q4_0_moe.cu`, `attention.cu`, compiled to PTX by
//! build.rs) share on the Rust side: the modules, views of tensor storage, and the CPU-side
//! slice helper the reference implementations use.

use candle_core::{CpuStorage, Layout};

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
    use candle_core::Layout;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::cuda_backend::cudarc::driver::{CudaView, DeviceRepr};

    /// The MoE kernels, compiled by build.rs.
    pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/q4_0_moe.ptx"));
    /// The name candle caches the loaded module under.
    pub const MODULE: &str = "ossterm_q4_0_moe";
    /// The attention kernels.
    pub const ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
    pub const ATTENTION_MODULE: &str = "ossterm_attention";

    /// What every `cuda_fwd` launching these kernels uses.
    pub mod prelude {
        pub use candle_core::backend::BackendStorage;
        pub use candle_core::cuda_backend::WrapErr;
        pub use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    }

    /// The contiguous part of a CUDA tensor that `layout` describes.
    pub fn view<'a, T: CudaDType + DeviceRepr>(
        storage: &'a candle_core::CudaStorage,
        layout: &Layout,
        what: &str,
    ) -> candle_core::Result<CudaView<'a, T>> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))?;
        Ok(storage.as_cuda_slice::<T>()?.slice(start..end))
    }
}
