//! Allocator policy that makes resident memory follow the plan.
//!
//! The KV cache preallocates its full-attention buffers for the whole context limit and relies
//! on untouched zero pages costing nothing. With glibc's default *dynamic* mmap threshold,
//! once a large block has been freed (model building does that), later blocks up to 32 MiB
//! come from the heap, and `calloc` clears — touches — them: measured here, 17 MB of a 64 MiB
//! cache was resident before a single token. A fixed threshold keeps every large block a
//! fresh mapping: zero pages until written, returned to the OS when freed.

/// Blocks at least this large get their own mapping.
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD_BYTES`]; call once at startup, before the
/// model loads. Returns whether the policy was applied (false off glibc, where the system
/// allocator already maps large blocks or the call does not exist).
pub fn map_large_blocks() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes glibc's allocation policy for later allocations.
        unsafe { mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// While a [`HeapScratch`] is alive, blocks up to this size come from the heap: glibc's
/// largest fixed threshold (`HEAP_MAX_SIZE / 2` on 64-bit).
pub const SCRATCH_MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// While a [`HeapScratch`] is alive, freed heap memory is kept up to this much at the top.
const SCRATCH_TRIM_THRESHOLD_BYTES: i32 = 1 << 30;
/// glibc's default trim threshold, restored with [`MMAP_THRESHOLD_BYTES`].
const DEFAULT_TRIM_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Live [`HeapScratch`] guards (the policy is process-wide; the last one restores it).
static SCRATCH_GUARDS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// Sets glibc's mmap and trim thresholds; false off glibc.
fn set_thresholds(mmap_bytes: i32, trim_bytes: i32) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocation policy for later allocations.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_bytes) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, trim_bytes) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (mmap_bytes, trim_bytes);
        false
    }
}

/// A prefill's allocation policy, for as long as it lives: the CPU forward pass makes and
/// frees the same large temporaries layer after layer (activations, expert outputs, attention
/// scores), and under [`map_large_blocks`] each is a fresh mapping whose every page faults on
/// first touch and is unmapped on free. The guard serves blocks up to
/// [`SCRATCH_MMAP_THRESHOLD_BYTES`] from the heap and keeps freed ones there, so later layers
/// reuse resident pages; dropping the last guard restores [`map_large_blocks`]' policy and
/// returns the freed pages to the OS, so resident memory after the pass follows the plan again.
/// The KV cache is allocated outside a pass, so its zero pages stay unbacked.
pub struct HeapScratch {
    applied: bool,
}

impl HeapScratch {
    /// Applies the policy (a no-op off glibc).
    pub fn new() -> Self {
        let mut guards = SCRATCH_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        *guards += 1;
        let applied = set_thresholds(SCRATCH_MMAP_THRESHOLD_BYTES, SCRATCH_TRIM_THRESHOLD_BYTES);
        Self { applied }
    }

    /// Whether the policy took effect (glibc only).
    pub fn applied(&self) -> bool {
        self.applied
    }
}

impl Default for HeapScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HeapScratch {
    fn drop(&mut self) {
        let mut guards = SCRATCH_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        *guards = guards.saturating_sub(1);
        if *guards == 0 {
            set_thresholds(MMAP_THRESHOLD_BYTES, DEFAULT_TRIM_THRESHOLD_BYTES);
            release_free_memory();
        }
    }
}

/// Hands freed heap pages back to the OS (glibc `malloc_trim`); a no-op elsewhere. Useful
/// before a memory reading that should show what is live.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free memory of glibc's heaps to the OS.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn applies_on_glibc() {
        let applied = super::map_large_blocks();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        super::release_free_memory();
    }
}
