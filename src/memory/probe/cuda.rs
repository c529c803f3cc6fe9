//! CUDA probe: free/total from the driver (`cuMemGetInfo` in the device's context), plus this
//! process's RSS. The driver does not split used memory by process; the engine reports its
//! own model and KV bytes alongside.

use candle_core::CudaDevice;

use super::{MemoryProbe, process_rss_bytes};
use crate::engine::protocol::MemorySample;

/// Reports device memory of one CUDA GPU.
pub struct CudaProbe {
    device: CudaDevice,
    device_name: String,
}

impl CudaProbe {
    /// A probe bound to `device`'s context.
    pub fn new(device: &CudaDevice) -> Result<Self, candle_core::Error> {
        let stream = device.cuda_stream();
        let context = stream.context();
        let name = context.name().unwrap_or_else(|_| "CUDA GPU".to_string());
        Ok(Self {
            device: device.clone(),
            device_name: format!("{name} (cuda:{})", context.ordinal()),
        })
    }
}

impl MemoryProbe for CudaProbe {
    fn sample(&mut self) -> MemorySample {
        // mem_get_info binds the context to this thread first.
        let (free, total) = self
            .device
            .cuda_stream()
            .context()
            .mem_get_info()
            .unwrap_or((0, 0));
        MemorySample {
            device_name: self.device_name.clone(),
            device_used_bytes: total.saturating_sub(free) as u64,
            device_free_bytes: free as u64,
            process_rss_bytes: process_rss_bytes(),
            ..MemorySample::default()
        }
    }

    /// The default memory pool's high-water mark: cudarc allocates with cuMemAllocAsync from
    /// that pool, and freed blocks go back to it, so a sample after a step never sees the
    /// step's scratch.
    fn allocated_peak_bytes(&self) -> Option<u64> {
        use candle_core::cuda_backend::cudarc::driver::sys;

        let stream = self.device.cuda_stream();
        let context = stream.context();
        if !context.has_async_alloc() {
            return None;
        }
        context.bind_to_thread().ok()?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let mut high: u64 = 0;
        // SAFETY: two driver queries writing into locals of the types the driver API takes
        // (a pool handle; a cuuint64_t for USED_MEM_HIGH), with the context bound.
        unsafe {
            sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device())
                .result()
                .ok()?;
            sys::cuMemPoolGetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                (&mut high as *mut u64).cast(),
            )
            .result()
            .ok()?;
        }
        Some(high)
    }
}
