//! The demo model on the engine thread, greedy, as the engine-level tests drive it.

use std::path::Path;

use ossterm::cli::{DeviceChoice, DtypeChoice};
use ossterm::engine::{EngineHandle, EngineOptions, ModelSource, SamplingParams, spawn};
use ossterm::harmony::ReasoningEffort;

/// `assets/demo` on the CPU, 1024-token context, low effort, temperature 0 (so two runs of
/// the same prompt are comparable token for token).
pub fn greedy_demo_engine() -> EngineHandle {
    spawn(EngineOptions {
        source: ModelSource::Local(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo")),
        device: DeviceChoice::Cpu,
        dtype: DtypeChoice::Auto,
        kernels: ossterm::model::Kernels::Auto,
        context_limit: Some(1024),
        effort: ReasoningEffort::Low,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
    })
}
