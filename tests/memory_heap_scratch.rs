//! `allocator::HeapScratch` against the page faults it exists to avoid. Its own binary: the
//! allocation policy is process-wide, and other tests' forward passes hold the guard. glibc
//! only (elsewhere the guard does nothing).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use ossterm::memory::allocator::{HeapScratch, map_large_blocks};

/// Page faults of this thread so far.
fn thread_faults() -> i64 {
    // SAFETY: getrusage writes one plain struct, zeroed before.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage.ru_minflt
    }
}

/// Faults taken while a 16 MiB block is allocated, filled and freed a second time.
fn faults_of_a_reused_block() -> i64 {
    let fill = || {
        let block = vec![1u8; 16 << 20];
        std::hint::black_box(&block);
    };
    fill();
    let before = thread_faults();
    fill();
    thread_faults() - before
}

#[test]
fn a_scratch_guard_reuses_large_blocks_and_restores_mapping_them() {
    assert!(map_large_blocks());
    // 16 MiB is 4,096 pages: every one faults as a fresh mapping.
    let mapped = faults_of_a_reused_block();
    assert!(mapped >= 4000, "{mapped} faults without the guard");
    {
        let guard = HeapScratch::new();
        assert!(guard.applied());
        let reused = faults_of_a_reused_block();
        assert!(reused < 100, "{reused} faults with the guard");
    }
    let restored = faults_of_a_reused_block();
    assert!(restored >= 4000, "{restored} faults after the guard");
}
