//! CPU probe: system RAM from `sysinfo`, this process's RSS from `memory-stats`.

use sysinfo::{MemoryRefreshKind, RefreshKind, System};

use super::{MemoryProbe, process_rss_bytes};
use crate::engine::protocol::MemorySample;

/// Reports available RAM and this process's resident memory.
pub struct CpuProbe {
    system: System,
    device_name: String,
}

impl CpuProbe {
    /// A probe with a first refresh done.
    pub fn new() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            system,
            device_name: format!("CPU ({threads} threads)"),
        }
    }

    /// RAM the OS could give us now (free plus reclaimable caches).
    pub fn available_bytes(&mut self) -> u64 {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.system.available_memory()
    }
}

impl Default for CpuProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryProbe for CpuProbe {
    fn sample(&mut self) -> MemorySample {
        let available = self.available_bytes();
        let total = self.system.total_memory();
        MemorySample {
            device_name: self.device_name.clone(),
            device_used_bytes: total.saturating_sub(available),
            device_free_bytes: available,
            process_rss_bytes: process_rss_bytes(),
            ..MemorySample::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_probe_sees_ram_and_our_own_allocation() {
        let mut probe = CpuProbe::new();
        let before = probe.sample();
        assert!(before.device_free_bytes > 0);
        assert!(before.device_used_bytes > 0);
        assert!(before.process_rss_bytes > 0);
        assert!(before.device_name.starts_with("CPU ("));
        // Touch 64 MiB: RSS must grow by about that much. Other tests in this binary run on
        // threads beside this one and may free memory between the two samples, so one of a few
        // tries must see the growth (a probe that never sees it fails every try).
        let mut grown_per_try = Vec::new();
        for _ in 0..5 {
            let before = probe.sample().process_rss_bytes;
            let block = std::hint::black_box(vec![1u8; 64 << 20]);
            let after = probe.sample().process_rss_bytes;
            drop(block);
            let grown = after.saturating_sub(before);
            if grown >= 60 << 20 {
                return;
            }
            grown_per_try.push(grown);
        }
        panic!("RSS grew by only {grown_per_try:?} bytes in five tries");
    }
}
