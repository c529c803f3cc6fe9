//! gpt-oss itself: config, weights (checkpoint layouts -> tensors), quantization repacks,
//! RoPE, attention, MoE, KV cache and the forward pass.

pub mod config;

pub use config::{Config, ConfigError, LayerKind};
