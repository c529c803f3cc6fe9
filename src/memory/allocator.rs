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
