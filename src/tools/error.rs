//! What can go wrong starting the tool host or one of its runners.

/// Errors of the tool host and its runners (a failed call is a `ToolResult`, not this).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A process or thread could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    /// A file or folder operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A runner is not usable (docker missing, a server that failed its handshake).
    #[error("{0}")]
    Runner(String),
}
