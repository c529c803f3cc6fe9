//! The model's error type: every message names the file, tensor or setting involved.

use std::path::PathBuf;

use super::config::ConfigError;

/// What can go wrong loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// config.json is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be opened or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is not what it should be (bad header, truncated, bad index).
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    /// A tensor the layout needs is absent from every shard.
    #[error("tensor '{tensor}' is missing from the checkpoint in {dir} ({expected})")]
    MissingTensor {
        dir: PathBuf,
        tensor: String,
        expected: String,
    },
    /// A tensor has the wrong dtype or shape.
    #[error("{path}: tensor '{tensor}' {problem}")]
    BadTensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },
    /// The checkpoint uses a quantization ossterm cannot read.
    #[error("{path}: {problem}")]
    Unsupported { path: PathBuf, problem: String },
    /// The KV cache cannot hold more tokens.
    #[error(
        "the context limit of {limit} tokens is reached ({needed} needed); start a new chat or raise the context limit"
    )]
    ContextFull { limit: usize, needed: usize },
    /// A bad argument from the caller (empty ids, token id out of range, bad position).
    #[error("{0}")]
    Invalid(String),
    /// The requested device is not available.
    #[error("device: {0}")]
    Device(String),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}
