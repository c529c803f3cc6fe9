//! Metal probe: the GPU's recommended working set (what macOS lets one process keep resident)
//! and what this process has allocated on it.

use candle_core::MetalDevice;

use super::{MemoryProbe, process_rss_bytes};
use crate::engine::protocol::MemorySample;

/// Reports unified memory as Metal sees it.
pub struct MetalProbe {
    device: MetalDevice,
    device_name: String,
}

impl MetalProbe {
    /// A probe for `device`.
    pub fn new(device: &MetalDevice) -> Self {
        Self {
            device: device.clone(),
            device_name: "Apple GPU (Metal)".to_string(),
        }
    }
}

impl MemoryProbe for MetalProbe {
    fn sample(&mut self) -> MemorySample {
        let metal = self.device.device();
        let working_set = metal.recommended_max_working_set_size() as u64;
        let allocated = metal.current_allocated_size() as u64;
        MemorySample {
            device_name: self.device_name.clone(),
            device_used_bytes: allocated,
            device_free_bytes: working_set.saturating_sub(allocated),
            process_rss_bytes: process_rss_bytes(),
            ..MemorySample::default()
        }
    }
}
