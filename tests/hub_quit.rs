//! Quitting while the engine is downloading its model: shutdown returns at once instead of
//! waiting for a silent hub (the app's Ctrl+Q calls `EngineHandle::shutdown`). One test in
//! this binary: it points the process's HF_* variables at a local fake hub.

mod common;

use std::time::{Duration, Instant};

use common::fake_hub::{self, FakeHub};
use ossterm::cli::{DeviceChoice, DtypeChoice};
use ossterm::engine::{EngineOptions, ModelSource, SamplingParams, spawn};
use ossterm::harmony::ReasoningEffort;

#[test]
fn shutdown_during_a_download_returns_promptly() {
    let server = FakeHub::start();
    server.arm(|f| &f.stall_info, true);
    let home = tempfile::tempdir().expect("temp dir");
    // SAFETY: the only test of this binary sets them before the engine thread starts, and
    // the fake hub's threads never read the environment.
    unsafe {
        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_ENDPOINT", &server.endpoint);
        std::env::remove_var("HF_HUB_OFFLINE");
        std::env::remove_var("OSSTERM_HUB_TIMEOUT_S");
    }
    let engine = spawn(EngineOptions {
        source: ModelSource::Hub {
            id: fake_hub::REPO.to_string(),
            revision: None,
        },
        device: DeviceChoice::Cpu,
        dtype: DtypeChoice::Auto,
        kernels: ossterm::model::Kernels::Auto,
        context_limit: None,
        effort: ReasoningEffort::Medium,
        sampling: SamplingParams::default(),
    });
    // Wait until the engine is stuck on the silent repo-info request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.seen.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "the engine never asked the hub");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    engine.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown waited {:?} for the hub",
        started.elapsed()
    );
}
