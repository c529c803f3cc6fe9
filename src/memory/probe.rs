//! Memory probes: one small interface over what each device can report.
//!
//! The probe fills what it knows about the device and the process; the engine adds the model's
//! and the KV cache's bytes (`model_bytes`, `kv_cache_bytes`) that only it knows.

use crate::engine::protocol::MemorySample;

use super::planner::DeviceKind;

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "metal")]
mod metal;

pub use cpu::CpuProbe;

/// Something that can report the memory of one device.
pub trait MemoryProbe: Send {
    /// A fresh sample (cheap enough to call twice a second).
    fn sample(&mut self) -> MemorySample;

    /// The most bytes this process's device allocations held at once so far, where the
    /// device keeps that count (CUDA's memory pool); samples miss peaks between them.
    fn allocated_peak_bytes(&self) -> Option<u64> {
        None
    }
}

/// The probe for `device`. A GPU device whose probe is not compiled in (or fails to start)
/// falls back to the CPU probe, whose numbers are then about host RAM.
pub fn probe_for(device: &candle_core::Device) -> Box<dyn MemoryProbe> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(cuda) => match cuda::CudaProbe::new(cuda) {
            Ok(probe) => Box::new(probe),
            Err(_) => Box::new(CpuProbe::new()),
        },
        #[cfg(feature = "metal")]
        candle_core::Device::Metal(metal) => Box::new(metal::MetalProbe::new(metal)),
        _ => Box::new(CpuProbe::new()),
    }
}

/// The kind of `device`, for the planner.
pub fn device_kind(device: &candle_core::Device) -> DeviceKind {
    match device {
        candle_core::Device::Cpu => DeviceKind::Cpu,
        candle_core::Device::Cuda(_) => DeviceKind::Cuda,
        candle_core::Device::Metal(_) => DeviceKind::Metal,
    }
}

/// This process's resident memory in bytes (0 where the OS does not say).
pub fn process_rss_bytes() -> u64 {
    memory_stats::memory_stats()
        .map(|stats| stats.physical_mem as u64)
        .unwrap_or(0)
}
