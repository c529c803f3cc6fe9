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
}
