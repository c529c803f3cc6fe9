//! Where the device's memory goes, in the parts the metrics pane's bar and `ask --json` show:
//! weights | KV in use | KV reserved | scratch | other | free, against the device's total.
//!
//! The engine's sample says what the device holds (used, free) and what the model and its
//! plan take; "other" is the rest of what is in use (other processes, the runtime). On a CPU
//! the reserved KV and the scratch are not backed until written, so they are also inside
//! "free": the parts can add up to more than the total, and the bar scales to the larger.

use serde::Serialize;

use crate::engine::protocol::MemorySample;

/// One sample's memory in the bar's parts, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemoryBreakdown {
    /// The model's weights.
    pub weights_bytes: u64,
    /// KV cache holding cached tokens.
    pub kv_in_use_bytes: u64,
    /// KV cache set aside for the rest of the context limit.
    pub kv_reserved_bytes: u64,
    /// The planned peak of one prefill chunk (transient).
    pub scratch_bytes: u64,
    /// In use by everything else (other processes, the runtime).
    pub other_bytes: u64,
    /// Still available on the device (or in system RAM).
    pub free_bytes: u64,
    /// The device's total (used + free).
    pub total_bytes: u64,
}

impl MemoryBreakdown {
    /// The parts of `sample`.
    pub fn from_sample(sample: &MemorySample) -> Self {
        let total_bytes = sample
            .device_used_bytes
            .saturating_add(sample.device_free_bytes);
        let kv_in_use_bytes = sample.kv_in_use_bytes;
        let kv_reserved_bytes = sample.kv_reserved_bytes.saturating_sub(kv_in_use_bytes);
        let ours = sample
            .model_bytes
            .saturating_add(kv_in_use_bytes)
            .saturating_add(kv_reserved_bytes)
            .saturating_add(sample.scratch_bytes);
        Self {
            weights_bytes: sample.model_bytes,
            kv_in_use_bytes,
            kv_reserved_bytes,
            scratch_bytes: sample.scratch_bytes,
            other_bytes: sample.device_used_bytes.saturating_sub(ours),
            free_bytes: sample.device_free_bytes,
            total_bytes,
        }
    }

    /// The parts in the bar's order, left to right.
    pub fn parts(&self) -> [u64; 6] {
        [
            self.weights_bytes,
            self.kv_in_use_bytes,
            self.kv_reserved_bytes,
            self.scratch_bytes,
            self.other_bytes,
            self.free_bytes,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn parts_come_from_the_sample_and_other_is_what_is_left_of_used() {
        let sample = MemorySample {
            model_bytes: 13 * GIB,
            kv_in_use_bytes: GIB,
            kv_reserved_bytes: 3 * GIB,
            scratch_bytes: GIB,
            device_used_bytes: 20 * GIB,
            device_free_bytes: 12 * GIB,
            ..MemorySample::default()
        };
        let parts = MemoryBreakdown::from_sample(&sample);
        assert_eq!(
            parts.parts(),
            [13 * GIB, GIB, 2 * GIB, GIB, 3 * GIB, 12 * GIB],
            "reserved KV counts only what is not in use yet"
        );
        assert_eq!(parts.total_bytes, 32 * GIB);
    }

    #[test]
    fn a_sample_with_nothing_known_is_all_zero_and_never_underflows() {
        let parts = MemoryBreakdown::from_sample(&MemorySample {
            model_bytes: 5 * GIB,
            kv_in_use_bytes: 2 * GIB,
            kv_reserved_bytes: GIB,
            ..MemorySample::default()
        });
        assert_eq!(parts.kv_reserved_bytes, 0);
        assert_eq!(parts.other_bytes, 0);
        assert_eq!(parts.total_bytes, 0);
        assert_eq!(
            MemoryBreakdown::from_sample(&MemorySample::default()),
            MemoryBreakdown::default()
        );
    }
}
