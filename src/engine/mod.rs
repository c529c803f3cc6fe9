//! The thread that owns a model: protocol (Command/Event), worker, sampler, session
//! (prefix reuse, rewind, snapshots) and metrics.

pub mod kv_key;
pub mod kv_store;
pub mod protocol;
pub mod sampler;
pub mod session;
pub mod worker;

pub use protocol::{Command, Event, MetricsSample, SamplingParams, StopReason, TurnStats};
pub use worker::{EngineHandle, EngineOptions, ModelSource, spawn};
