//! Command-line definitions (clap). `main.rs` parses these and hands them to `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ossterm: chat with gpt-oss-20b in your terminal.
#[derive(Debug, Parser)]
#[command(name = "ossterm", version, about)]
pub struct Cli {
    /// Settings for the interactive app (used when no subcommand is given).
    #[command(flatten)]
    pub app: AppArgs,
    /// A headless command; without one, ossterm opens the chat app.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The headless commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score a token sequence: mean NLL and argmax at every position.
    Score(ScoreArgs),
    /// Generate tokens after a prompt of ids, using the KV cache.
    Generate(GenerateArgs),
    /// Measure prefill and decode speed (llama-bench style).
    Bench(BenchArgs),
    /// Show what context length fits in memory, from config and headers alone.
    Fit(FitArgs),
    /// Render a harmony conversation (JSON) to token ids for the assistant's next turn.
    Render(RenderArgs),
    /// Stream-parse harmony output ids into channels, deltas and messages.
    Parse(ParseArgs),
    /// Download a model from the Hugging Face hub into the standard cache.
    Download(DownloadArgs),
    /// Print the config file's path and the effective settings.
    Config(ConfigArgs),
    /// Check the engine on this device against golden logits (reference fixtures).
    Verify(VerifyArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (chat completions, SSE streaming).
    Serve(ServeArgs),
    /// Ask one question: the answer streams to stdout (tools run only when allowed).
    Ask(AskArgs),
    /// Write a full-size, sparse replica of the Intel int4 checkpoint (for load tests).
    #[command(hide = true)]
    Replica(ReplicaArgs),
}

// The choices are the model's domain types; the CLI parses into them.
pub use crate::model::DtypeChoice;
pub use crate::model::device::DeviceChoice;

/// Whose kernels run the MoE and decode attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum KernelsChoice {
    /// ossterm's fused kernels on CUDA; on the CPU the Q4_0 experts multiply 8-bit
    /// activations in decode and prefill (integer dot products, as llama.cpp), repacked 16
    /// rows at a time where the CPU has AVX-512 VNNI: fast, a little less exact.
    #[default]
    Auto,
    /// As `auto` with f32 activations everywhere: the closest to the reference, slower
    /// decode on the CPU.
    Exact,
    /// candle's ops: experts one at a time with the routing read on the host.
    Candle,
    /// ossterm's: stacked experts with the routing on the device, fused decode attention
    /// (on the CPU through their reference implementations, for tests).
    Fused,
    /// The CPU's Q4_0 experts on 8-bit activations in decode only (plain Q4_0 rows; prefill
    /// as `exact`).
    Q8,
    /// As `q8`, and prefill's experts on 8-bit activations too (integer GEMM), still on plain
    /// Q4_0 rows: the kernels `auto` runs on a CPU without AVX-512 VNNI.
    Q8Prefill,
}

impl From<KernelsChoice> for crate::model::Kernels {
    fn from(choice: KernelsChoice) -> Self {
        match choice {
            KernelsChoice::Auto => Self::Auto,
            KernelsChoice::Exact => Self::Exact,
            KernelsChoice::Candle => Self::Candle,
            KernelsChoice::Fused => Self::Fused,
            KernelsChoice::Q8 => Self::Q8,
            KernelsChoice::Q8Prefill => Self::Q8Prefill,
        }
    }
}

/// Where the model comes from and what runs it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A local model folder or a hub id (default: Intel/gpt-oss-20b-int4-g64-rtn-AutoRound).
    #[arg(long)]
    pub model: Option<String>,
    /// Hub revision (branch, tag or commit) when --model is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// auto, cpu, cuda:N or metal.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// Precision mode.
    #[arg(long, value_enum, default_value_t = DtypeChoice::Auto)]
    pub dtype: DtypeChoice,
    /// Whose kernels run the MoE and decode attention (for comparing the GPU paths).
    #[arg(long, value_enum, default_value_t = KernelsChoice::Auto)]
    pub kernels: KernelsChoice,
}

/// Token ids given as `1,2,3`.
#[derive(Debug, Clone, Args)]
pub struct IdsArg {
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<u32>,
}

/// `ossterm score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub ids: IdsArg,
    /// Write all logits as tensor `logits` [n, vocab] f32 to this safetensors file.
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Sampling settings shared by `generate` and the app.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// 0 means greedy.
    #[arg(long)]
    pub temperature: Option<f64>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub min_p: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `ossterm generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub ids: IdsArg,
    /// How many tokens to generate at most.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Hold the final channel's answer to this JSON schema (reasoning stays free); the
    /// answer is printed as text too. The ids must be a harmony prompt.
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<PathBuf>,
}

/// A model of the real shape with seeded random weights, or a local/hub model.
#[derive(Debug, Clone, Args)]
pub struct SyntheticArgs {
    /// Build a synthetic model of this preset's shape (e.g. gpt-oss-20b) instead of loading one.
    #[arg(long)]
    pub synthetic: Option<String>,
    /// Override the synthetic model's layer count.
    #[arg(long)]
    pub layers: Option<usize>,
}

/// `ossterm bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub synthetic: SyntheticArgs,
    /// Prompt tokens to prefill (0: no prefill test).
    #[arg(long, default_value_t = 512)]
    pub pp: usize,
    /// Tokens to decode.
    #[arg(long, default_value_t = 128)]
    pub tg: usize,
    /// Context already in the cache before the timed prefill and decode; a list (0,8192)
    /// measures each depth on the same loaded model.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub depth: Vec<usize>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed samples of the prefill and of the decode at each depth (llama-bench's -r); the
    /// depth is filled once and restored before each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ossterm verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// A fixture folder (config, weights, golden.json, golden.safetensors) or a folder of them.
    #[arg(long)]
    pub fixtures: PathBuf,
    /// auto, cpu, cuda:N or metal.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// Check this precision mode only (default: both, each against its own tolerances).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeChoice>,
    /// Whose kernels run the MoE and decode attention.
    #[arg(long, value_enum, default_value_t = KernelsChoice::Auto)]
    pub kernels: KernelsChoice,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ossterm fit`.
#[derive(Debug, Clone, Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub synthetic: SyntheticArgs,
    /// Memory to plan for in bytes (default: what the device reports free).
    #[arg(long)]
    pub memory: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ossterm render`.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The tokenizer.json to encode with.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// A harmony conversation as JSON (openai_harmony's Conversation.to_json()).
    #[arg(long)]
    pub conversation: PathBuf,
    /// Print the ids as a JSON array instead of the text with specials visible.
    #[arg(long)]
    pub json: bool,
}

/// `ossterm parse`.
#[derive(Debug, Clone, Args)]
pub struct ParseArgs {
    /// The tokenizer.json to decode with.
    #[arg(long)]
    pub tokenizer: PathBuf,
    #[command(flatten)]
    pub ids: IdsArg,
    /// Print one JSON object per token, then the parsed messages.
    #[arg(long)]
    pub json: bool,
}

/// `ossterm download`.
#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// Hub id (default: Intel/gpt-oss-20b-int4-g64-rtn-AutoRound).
    pub model: Option<String>,
    /// Branch, tag or commit.
    #[arg(long)]
    pub revision: Option<String>,
}

/// `ossterm replica` (hidden): a stand-in for the Intel repo at the real shape.
#[derive(Debug, Clone, Args)]
pub struct ReplicaArgs {
    /// The folder to create (it must not exist, or be empty).
    pub out: PathBuf,
    /// Decoder layers to write (default: the published 24).
    #[arg(long, default_value_t = 24)]
    pub layers: usize,
    /// Seeds the random values.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The tokenizer.json to copy (default: the checkout's o200k_harmony fixture).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// `ossterm serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Serve the small demo model that ships with ossterm (no download).
    #[arg(long, conflicts_with = "model")]
    pub demo: bool,
    /// Address to listen on; anything but a loopback address needs an API key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests that may wait while one generates; more get 429 with Retry-After.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub queue: u64,
    /// The key clients must send as `Authorization: Bearer KEY`.
    #[arg(long, conflicts_with = "api_key_env")]
    pub api_key: Option<String>,
    /// Read the API key from this environment variable (keeps it out of `ps`).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Context length in tokens (default: the largest that fits in memory).
    #[arg(long)]
    pub context: Option<usize>,
    /// Reasoning effort when a request gives none: low, medium or high.
    #[arg(long, default_value = "medium")]
    pub effort: String,
}

/// `ossterm ask`.
#[derive(Debug, Clone, Args)]
pub struct AskArgs {
    /// The question; read from stdin when left out.
    pub prompt: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Ask the small demo model that ships with ossterm (no download).
    #[arg(long, conflicts_with = "model")]
    pub demo: bool,
    /// Reasoning effort: low, medium or high.
    #[arg(long)]
    pub effort: Option<String>,
    /// Offer the tools the config file sets up ([python], [mcp.NAME], [browser]).
    #[arg(long)]
    pub tools: bool,
    /// Run calls to this tool without asking (python, browser, functions.NAME, NAME, or a
    /// prefix ending in *); repeatable. Without a terminal, nothing else runs.
    #[arg(long, requires = "tools", value_name = "TOOL")]
    pub allow: Vec<String>,
    /// Print the whole transcript (every message, tool calls and results) and the stats as
    /// JSON instead of streaming the answer.
    #[arg(long)]
    pub json: bool,
    /// Stream the model's reasoning to stderr.
    #[arg(long)]
    pub show_reasoning: bool,
    /// Most tokens one generation may write (each tool round trip is a new generation).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_new_tokens: u64,
    /// Context length in tokens (default: the largest that fits in memory).
    #[arg(long)]
    pub context: Option<usize>,
    /// Use this config file instead of the default one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Hold the final answer to the JSON schema in this file (llguidance; reasoning stays
    /// free). A schema feature that cannot be enforced is an error before generation.
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<PathBuf>,
    /// With --tools: the first message after any reasoning must call this function tool
    /// (NAME or functions.NAME), or one of them with `required`, with arguments held to its
    /// schema. Without it, calling is the model's choice.
    #[arg(long, requires = "tools", value_name = "NAME|required")]
    pub tool_choice: Option<String>,
    /// Ask a model on an OpenAI-compatible server instead of the local engine: its API base
    /// URL (vLLM, SGLang, llama-server, Ollama or ossterm serve).
    #[arg(long, value_name = "URL", conflicts_with = "demo")]
    pub remote: Option<String>,
    /// With --remote: read the server's API key (sent as a Bearer token) from this
    /// environment variable.
    #[arg(long, value_name = "VAR", requires = "remote")]
    pub api_key_env: Option<String>,
    /// With --remote: the model to ask for (default: the first the server lists).
    #[arg(long, value_name = "NAME", requires = "remote")]
    pub remote_model: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `ossterm config`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Read this config file instead of the default one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Settings of the interactive app; each overrides the config file.
#[derive(Debug, Clone, Args)]
pub struct AppArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Run the small demo model that ships with ossterm (no download).
    #[arg(long)]
    pub demo: bool,
    /// Context length in tokens (default: the largest that fits in memory).
    #[arg(long)]
    pub context: Option<usize>,
    /// Reasoning effort: low, medium or high.
    #[arg(long)]
    pub effort: Option<String>,
    /// Theme name from themes/ (dark, light, high-contrast, ...).
    #[arg(long)]
    pub theme: Option<String>,
    /// Use this config file instead of the default one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Chat with a model on an OpenAI-compatible server instead of the local engine: its API
    /// base URL (vLLM, SGLang, llama-server, Ollama or ossterm serve), e.g.
    /// http://gpu-box:8000/v1.
    #[arg(long, value_name = "URL", conflicts_with = "demo")]
    pub remote: Option<String>,
    /// With --remote: read the server's API key (sent as a Bearer token) from this
    /// environment variable.
    #[arg(long, value_name = "VAR", requires = "remote")]
    pub api_key_env: Option<String>,
    /// With --remote: the model to ask for (default: the first the server lists).
    #[arg(long, value_name = "NAME", requires = "remote")]
    pub remote_model: Option<String>,
}
