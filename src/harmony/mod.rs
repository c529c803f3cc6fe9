//! The harmony chat format: tokenizer, conversation model, renderer and streaming parser.
//!
//! The judge is OpenAI's `openai_harmony` library (goldens in
//! `../shared/fixtures/o200k_harmony/`); `conversation` holds the types the engine and the TUI
//! build conversations with, in the library's JSON.

mod conversation;

pub use conversation::{
    ChannelConfig, Content, Conversation, DEFAULT_KNOWLEDGE_CUTOFF, DEFAULT_MODEL_IDENTITY,
    DEFAULT_VALID_CHANNELS, DeveloperContent, Message, ReasoningEffort, Role, SystemContent,
    ToolDescription, ToolNamespaceConfig, ToolNamespaces,
};
