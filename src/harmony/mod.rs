//! The harmony chat format: tokenizer, conversation model, renderer and streaming parser.
//!
//! The judge is OpenAI's `openai_harmony` library (goldens in
//! `tests/fixtures/o200k_harmony/`): `render_for_completion` produces the ids it produces,
//! `StreamParser` the per-token channel/recipient/content-type/delta it reports on well-formed
//! output, and stays lenient (never panics, never drops text) on malformed output.

mod builtin_tools;
mod conversation;
mod parser;
mod render;
mod schema_typescript;
mod text_chunks;
mod tokenizer;
mod utf8_stream;

use std::path::PathBuf;

pub use builtin_tools::{BROWSER_TOOL_DESCRIPTION, PYTHON_TOOL_DESCRIPTION};
pub use conversation::{
    ChannelConfig, Content, Conversation, DEFAULT_KNOWLEDGE_CUTOFF, DEFAULT_MODEL_IDENTITY,
    DEFAULT_VALID_CHANNELS, DeveloperContent, ExtraFields, Message, ReasoningEffort, Role,
    SystemContent, ToolDescription, ToolNamespaceConfig, ToolNamespaces,
};
pub use parser::{ParserStep, StopReason, StreamParser};
pub use render::{
    RenderOptions, render_conversation, render_conversation_for_training, render_for_completion,
    render_for_completion_counted, render_for_completion_with_role,
};
pub use tokenizer::{SpecialIds, Tokenizer};
pub use utf8_stream::Utf8StreamDecoder;

/// What can go wrong loading a tokenizer or rendering a conversation.
#[derive(Debug, thiserror::Error)]
pub enum HarmonyError {
    /// The tokenizer file could not be loaded or is not usable.
    #[error("cannot load tokenizer {path}: {reason}")]
    TokenizerLoad {
        /// The tokenizer.json.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An essential harmony special token is missing from the tokenizer.
    #[error(
        "tokenizer {path} has no {token} token: it is not a harmony (gpt-oss) tokenizer; use the \
         model folder's tokenizer.json"
    )]
    MissingSpecial {
        /// The tokenizer.json.
        path: PathBuf,
        /// The special token's text.
        token: String,
    },
    /// The tokenizer failed on some text.
    #[error("tokenizer {path} could not encode text: {reason}")]
    Encode {
        /// The tokenizer.json.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The conversation cannot be rendered (e.g. a tool message without a name).
    #[error("cannot render message {index}: {reason}")]
    InvalidMessage {
        /// The message's position in the conversation.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}
