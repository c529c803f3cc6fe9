//! The only things the UI and the engine thread share: commands in, events out.
//!
//! The engine owns the model, tokenizer and KV cache; the UI owns the conversation. Each
//! submit sends the whole conversation; the engine renders it with harmony, re-uses the cached
//! prefix, and streams what the model writes back as parsed harmony events.

use std::path::PathBuf;
use std::time::Duration;

use crate::harmony::{Conversation, ReasoningEffort};

/// Sampling settings; temperature 0 means greedy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_p: f64,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 0 disables min-p.
    pub min_p: f64,
    pub seed: u64,
}

impl Default for SamplingParams {
    /// gpt-oss's recommended defaults: temperature 1.0, top-p 1.0.
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: 0x05_5e_77,
        }
    }
}

/// What the UI asks of the engine.
// Submit carries the conversation and the constraint by value: a few commands a turn, so
// boxing them would only churn every sender.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Command {
    /// Generate the assistant's next turn for this conversation (system/developer included).
    Submit {
        conversation: Conversation,
        /// Stop after this many generated tokens even without a stop token.
        max_new_tokens: usize,
        /// Structured output: the final answer's JSON schema and tool argument schemas
        /// (`None`: unconstrained). Reasoning stays free either way.
        constraint: Option<crate::structured::TurnConstraint>,
    },
    /// Stop the generation in progress within one decode step; what arrived is kept.
    Stop,
    /// Reasoning effort for the next submit's system message.
    SetEffort(ReasoningEffort),
    /// Sampling for the next submit.
    SetSampling(SamplingParams),
    /// Forget the cached conversation (the next submit prefills from scratch).
    NewChat,
    /// Drop cached tokens after this many (e.g. before regenerating the last answer).
    Rewind { keep_tokens: usize },
    /// Re-plan and re-allocate the KV cache for a new context limit in tokens.
    SetContextLimit(usize),
    /// End the engine thread.
    Shutdown,
    /// Keep KV snapshots of chats in `dir` (at most `budget_bytes` there): written after
    /// each turn of the chat named by [`Command::OpenChat`], restored when it is opened again.
    EnableKvSnapshots { dir: PathBuf, budget_bytes: u64 },
    /// The UI shows chat `chat_id` now (a saved one reopened, or a new one): later turns'
    /// snapshots are saved under its id, and its saved snapshot is restored when the
    /// conversation (as the next submit will send it) starts with the snapshot's tokens.
    OpenChat {
        chat_id: String,
        conversation: Conversation,
    },
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StopReason {
    /// `<|return|>`: the answer is complete.
    Return,
    /// `<|call|>`: the model called a tool.
    Call,
    /// `<|endoftext|>` or another end-of-sequence id.
    EndOfText,
    /// `max_new_tokens` reached.
    Length,
    /// The context limit is full.
    ContextFull,
    /// The user pressed stop.
    Stopped,
}

/// Speed and size of one generated turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TurnStats {
    /// Prompt tokens actually run through the model (after prefix re-use).
    pub prefill_tokens: usize,
    /// Prompt tokens served from the cache.
    pub cached_tokens: usize,
    pub prefill_ms: f64,
    /// Tokens generated, reasoning included.
    pub decode_tokens: usize,
    pub decode_ms: f64,
    /// From submit to the first generated token.
    pub time_to_first_token_ms: f64,
}

impl TurnStats {
    /// Prompt tokens per second (0 when nothing was prefilled).
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill_ms)
    }
    /// Generated tokens per second (0 before the second token).
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode_ms)
    }
}

fn rate(tokens: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        tokens as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

/// Memory as a probe sees it (see `memory::probe`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemorySample {
    /// "NVIDIA H100 80GB HBM3", "Apple M2 Max", "CPU (16 threads)".
    pub device_name: String,
    /// Bytes the model's weights occupy on the device.
    pub model_bytes: u64,
    /// Bytes the KV cache occupies now.
    pub kv_cache_bytes: u64,
    /// Device (or system RAM) bytes in use, by everyone.
    pub device_used_bytes: u64,
    /// Device (or system RAM) bytes still available.
    pub device_free_bytes: u64,
    /// This process's resident memory.
    pub process_rss_bytes: u64,
    /// KV cache bytes that hold cached tokens now (a GPU allocates the whole limit up front,
    /// so `kv_cache_bytes` can be more).
    #[serde(default)]
    pub kv_in_use_bytes: u64,
    /// KV cache bytes the planner set aside for the whole context limit.
    #[serde(default)]
    pub kv_reserved_bytes: u64,
    /// The planner's peak bytes of one prefill chunk at the context limit (transient).
    #[serde(default)]
    pub scratch_bytes: u64,
}

/// A sample of the engine's state, sent about twice a second and at each turn's end.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsSample {
    pub memory: MemorySample,
    /// Tokens in the KV cache.
    pub context_used: usize,
    /// The context limit in tokens.
    pub context_limit: usize,
    /// Of the turn in progress (or the last one).
    pub turn: TurnStats,
    /// Recent decode speed in tokens/s (over the last second or so).
    pub decode_tok_s_now: f64,
    /// True while a turn is prefilling or decoding.
    pub generating: bool,
    /// Set when the "engine" is a remote server (`--remote`): its memory is not ours to see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSample>,
}

/// What a remote server reports about itself.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RemoteSample {
    /// The server (`host:port`).
    pub server: String,
    /// Fraction of the server's KV cache in use (0 to 1), from its `/metrics`; `None` when it
    /// has no metrics we can read.
    pub kv_cache_used_fraction: Option<f64>,
}

/// What the loaded model is, for the status line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// Hub id or folder name.
    pub name: String,
    /// "cpu", "cuda:0", "metal".
    pub device: String,
    pub context_limit: usize,
    /// The model's own maximum context.
    pub max_context: usize,
}

/// What the engine tells the UI.
#[derive(Debug, Clone)]
pub enum Event {
    /// Download or load progress; `total_bytes` 0 when unknown.
    LoadProgress {
        stage: String,
        done_bytes: u64,
        total_bytes: u64,
    },
    /// The model is loaded and ready for commands.
    Ready(ModelInfo),
    /// The submitted conversation as rendered: the tokens each message took, in the
    /// conversation's order (0 for one left out, such as an earlier turn's reasoning). Sent
    /// before the prefill.
    PromptTokens { message_tokens: Vec<usize> },
    /// The prompt was processed; generation starts.
    PrefillDone { stats: TurnStats },
    /// One generated token, parsed: `delta` is the text it added to the current message
    /// (possibly empty, e.g. for header tokens or half a UTF-8 character).
    Token {
        token_id: u32,
        channel: Option<String>,
        recipient: Option<String>,
        delta: String,
    },
    /// A message of the assistant's turn is complete (the UI appends it to its conversation).
    MessageDone(crate::harmony::Message),
    /// The turn ended.
    TurnDone { stop: StopReason, stats: TurnStats },
    /// A metrics sample.
    Metrics(MetricsSample),
    /// An opened chat's KV cache was read back from disk: the next submit prefills only what
    /// is new.
    ChatRestored {
        /// Tokens put back in the cache.
        restored_tokens: usize,
        file_bytes: u64,
        restore_ms: f64,
    },
    /// A one-line note for the status line (a snapshot ignored, a save that failed).
    Notice(String),
    /// Something failed; the text says what and what to do. `fatal` when the engine stopped.
    Error { message: String, fatal: bool },
}

/// How often the engine samples metrics while generating.
pub const METRICS_INTERVAL: Duration = Duration::from_millis(500);
