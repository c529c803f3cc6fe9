//! `config.json` of a gpt-oss checkpoint: the shape, RoPE and quantization settings.
//!
//! The file is read as the hub publishes it: OpenAI's and transformers' spellings of a setting
//! (`experts_per_token` / `num_experts_per_tok`, `num_experts` / `num_local_experts`,
//! `initial_context_length` / `rope_scaling.original_max_position_embeddings`, `torch_dtype` /
//! `dtype`, `rope_scaling` + `rope_theta` / `rope_parameters`, `type` / `rope_type`) may appear
//! alone or together; together they must agree. Unknown keys are ignored. Values the model
//! cannot run with, or sizes whose byte counts no machine (or the planner's u64 sums) can hold,
//! are refused here, before anything is allocated.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// More layers than this is refused: the deepest published transformers have under 200, and
/// the bound keeps per-layer lists and the planner's `layers × ...` products small.
pub const MAX_LAYERS: usize = 1024;

/// Any single byte count the config implies (a weight matrix in f32, the KV cache or one
/// prefill's scratch at `max_position_embeddings`) must stay at or below this: 2^56 bytes
/// (64 PiB) is past any machine, and the planner can add a hundred such terms in u64 without
/// overflowing.
pub const MAX_IMPLIED_BYTES: u128 = 1 << 56;

/// Errors reading or validating `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid JSON or misses a required field.
    #[error("{path} is not a gpt-oss config.json: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A field holds a value the model cannot run with.
    #[error("{path}: {field} {problem}")]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
    /// Two spellings of one setting are both present with different values.
    #[error("{path}: {first} but {second}; both spell one setting and must agree")]
    Conflict {
        path: PathBuf,
        /// The first spelling and its value, e.g. `num_experts_per_tok is 4`.
        first: String,
        /// The second spelling and its value.
        second: String,
    },
}

/// Whether a layer attends to every earlier token or only to the last `sliding_window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// Attends to keys `pos - window + 1 ..= pos`.
    SlidingAttention,
    /// Attends to every earlier key.
    FullAttention,
}

/// YaRN RoPE settings (spec section 3).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RopeConfig {
    pub theta: f64,
    pub factor: f64,
    pub beta_fast: f64,
    pub beta_slow: f64,
    pub original_max_position_embeddings: usize,
    pub truncate: bool,
    /// Multiplies cos and sin; `0.1 ln(factor) + 1` when the config gives none.
    pub attention_factor: Option<f64>,
}

/// The quantization block of config.json, as far as ossterm reads it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct QuantizationConfig {
    pub quant_method: String,
    #[serde(default)]
    pub bits: Option<u32>,
    #[serde(default)]
    pub group_size: Option<usize>,
    #[serde(default)]
    pub sym: Option<bool>,
    #[serde(default)]
    pub packing_format: Option<String>,
    /// Per-layer overrides: a layer named here with `bits: 16` stays 16-bit.
    #[serde(default)]
    pub extra_config: BTreeMap<String, LayerQuantOverride>,
}

/// One entry of `extra_config`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct LayerQuantOverride {
    #[serde(default)]
    pub bits: Option<u32>,
}

/// The model's shape and settings, validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub num_local_experts: usize,
    pub num_experts_per_tok: usize,
    pub sliding_window: usize,
    pub layer_types: Vec<LayerKind>,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub swiglu_alpha: f64,
    pub swiglu_limit: f64,
    pub rope: RopeConfig,
    /// Token ids that end generation, as config.json lists them (the tokenizer may add more).
    pub eos_token_ids: Vec<u32>,
    /// The stored dtype as config.json names it (`dtype`, or `torch_dtype` from older
    /// writers); informational: each tensor's own dtype is what the loader reads.
    pub dtype: Option<String>,
    pub quantization: Option<QuantizationConfig>,
}

/// config.json as written, before validation. Settings with two spellings are two optional
/// fields (a serde alias would make a file carrying both a "duplicate field" error).
#[derive(Debug, Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default)]
    num_local_experts: Option<usize>,
    /// OpenAI's name for `num_local_experts`.
    #[serde(default)]
    num_experts: Option<usize>,
    #[serde(default)]
    num_experts_per_tok: Option<usize>,
    /// OpenAI's name for `num_experts_per_tok`.
    #[serde(default)]
    experts_per_token: Option<usize>,
    sliding_window: usize,
    #[serde(default)]
    layer_types: Option<Vec<LayerKind>>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    /// OpenAI's name for the RoPE's `original_max_position_embeddings`.
    #[serde(default)]
    initial_context_length: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_alpha")]
    swiglu_alpha: f64,
    #[serde(default = "default_limit")]
    swiglu_limit: f64,
    #[serde(default)]
    dtype: Option<String>,
    /// Older transformers' name for `dtype`.
    #[serde(default)]
    torch_dtype: Option<String>,
    #[serde(default)]
    rope_parameters: Option<RawRope>,
    /// transformers 4.x's name for `rope_parameters` (with `rope_theta` at the top level).
    #[serde(default)]
    rope_scaling: Option<RawRope>,
    #[serde(default)]
    rope_theta: Option<f64>,
    /// A token id or a list of them.
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    quantization_config: Option<QuantizationConfig>,
}

/// One RoPE block (`rope_parameters` or `rope_scaling`) as written; defaults are applied only
/// after both blocks and the top-level keys are reconciled.
#[derive(Debug, Deserialize)]
struct RawRope {
    #[serde(default)]
    rope_type: Option<String>,
    /// The older name of `rope_type`.
    #[serde(default, rename = "type")]
    legacy_type: Option<String>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    factor: Option<f64>,
    #[serde(default)]
    beta_fast: Option<f64>,
    #[serde(default)]
    beta_slow: Option<f64>,
    #[serde(default)]
    original_max_position_embeddings: Option<usize>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    attention_factor: Option<f64>,
}

fn default_max_positions() -> usize {
    131_072
}
fn default_eps() -> f64 {
    1e-5
}
fn default_alpha() -> f64 {
    1.702
}
fn default_limit() -> f64 {
    7.0
}
const DEFAULT_ROPE_FACTOR: f64 = 32.0;
const DEFAULT_BETA_FAST: f64 = 32.0;
const DEFAULT_BETA_SLOW: f64 = 1.0;

/// A value and the key it was read from (for error messages).
#[derive(Debug, Clone)]
struct Keyed<T> {
    key: String,
    value: T,
}

fn keyed<T>(key: impl Into<String>, value: Option<T>) -> Option<Keyed<T>> {
    value.map(|value| Keyed {
        key: key.into(),
        value,
    })
}

/// One setting from two spellings: either alone, or both when they agree.
fn agree<T: PartialEq + Debug>(
    path: &Path,
    first: Option<Keyed<T>>,
    second: Option<Keyed<T>>,
) -> Result<Option<Keyed<T>>, ConfigError> {
    match (first, second) {
        (Some(a), Some(b)) if a.value != b.value => Err(ConfigError::Conflict {
            path: path.to_path_buf(),
            first: format!("{} is {:?}", a.key, a.value),
            second: format!("{} is {:?}", b.key, b.value),
        }),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// The settings of one RoPE block, keyed by where they were written.
struct RopeKeys {
    kind: Option<Keyed<String>>,
    theta: Option<Keyed<f64>>,
    factor: Option<Keyed<f64>>,
    beta_fast: Option<Keyed<f64>>,
    beta_slow: Option<Keyed<f64>>,
    original_max: Option<Keyed<usize>>,
    truncate: Option<Keyed<bool>>,
    attention_factor: Option<Keyed<f64>>,
}

impl RopeKeys {
    fn from_block(path: &Path, block: &str, raw: Option<RawRope>) -> Result<Self, ConfigError> {
        let Some(r) = raw else {
            return Ok(Self::empty());
        };
        let key = |name: &str| format!("{block}.{name}");
        Ok(Self {
            kind: agree(
                path,
                keyed(key("rope_type"), r.rope_type),
                keyed(key("type"), r.legacy_type),
            )?,
            theta: keyed(key("rope_theta"), r.rope_theta),
            factor: keyed(key("factor"), r.factor),
            beta_fast: keyed(key("beta_fast"), r.beta_fast),
            beta_slow: keyed(key("beta_slow"), r.beta_slow),
            original_max: keyed(
                key("original_max_position_embeddings"),
                r.original_max_position_embeddings,
            ),
            truncate: keyed(key("truncate"), r.truncate),
            attention_factor: keyed(key("attention_factor"), r.attention_factor),
        })
    }

    fn empty() -> Self {
        Self {
            kind: None,
            theta: None,
            factor: None,
            beta_fast: None,
            beta_slow: None,
            original_max: None,
            truncate: None,
            attention_factor: None,
        }
    }

    /// Both blocks as one, every setting present in both agreeing.
    fn merge(self, path: &Path, other: Self) -> Result<Self, ConfigError> {
        Ok(Self {
            kind: agree(path, self.kind, other.kind)?,
            theta: agree(path, self.theta, other.theta)?,
            factor: agree(path, self.factor, other.factor)?,
            beta_fast: agree(path, self.beta_fast, other.beta_fast)?,
            beta_slow: agree(path, self.beta_slow, other.beta_slow)?,
            original_max: agree(path, self.original_max, other.original_max)?,
            truncate: agree(path, self.truncate, other.truncate)?,
            attention_factor: agree(path, self.attention_factor, other.attention_factor)?,
        })
    }
}

/// The token ids of an `eos_token_id` value: one id or a list of them.
fn eos_ids(path: &Path, value: Option<&serde_json::Value>) -> Result<Vec<u32>, ConfigError> {
    let id = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let ids = match value {
        None | Some(serde_json::Value::Null) => Some(Vec::new()),
        Some(serde_json::Value::Array(list)) => list.iter().map(id).collect(),
        Some(one) => id(one).map(|n| vec![n]),
    };
    ids.ok_or_else(|| ConfigError::Invalid {
        path: path.to_path_buf(),
        field: "eos_token_id".into(),
        problem: format!(
            "is {}; expected a token id or a list of token ids",
            value.map(ToString::to_string).unwrap_or_default()
        ),
    })
}

/// The `eos_token_id` of a `generation_config.json` (one id or a list; none when absent).
pub fn generation_eos_token_ids(path: &Path) -> Result<Vec<u32>, ConfigError> {
    let text = super::model_file::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    eos_ids(path, json.get("eos_token_id"))
}

/// Fails naming `key`, its value and the file unless `value` is finite and above `floor`.
fn finite_above(path: &Path, key: &str, value: f64, floor: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > floor {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        path: path.to_path_buf(),
        field: key.to_string(),
        problem: format!("is {value}; it must be a finite number greater than {floor}"),
    })
}

impl Config {
    /// Reads and validates `config.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = super::model_file::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates config.json text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut raw: RawConfig =
            serde_json::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        // A required count under either of its two spellings.
        let required = |(key, value): (&str, Option<usize>),
                        (other, alias): (&str, Option<usize>)| {
            agree(path, keyed(key, value), keyed(other, alias))?
                .map(|s| s.value)
                .ok_or_else(|| invalid(key, format!("is missing (nor is {other} given)")))
        };
        let num_local_experts = required(
            ("num_local_experts", raw.num_local_experts),
            ("num_experts", raw.num_experts),
        )?;
        let num_experts_per_tok = required(
            ("num_experts_per_tok", raw.num_experts_per_tok),
            ("experts_per_token", raw.experts_per_token),
        )?;
        let dtype = agree(
            path,
            keyed("dtype", raw.dtype.take()),
            keyed("torch_dtype", raw.torch_dtype.take()),
        )?
        .map(|s| s.value);
        if raw.rope_parameters.is_none() && raw.rope_scaling.is_none() {
            return Err(invalid(
                "rope_parameters",
                "is missing, nor is rope_scaling given (gpt-oss needs YaRN settings)".into(),
            ));
        }
        let rope_keys = RopeKeys::from_block(path, "rope_parameters", raw.rope_parameters.take())?
            .merge(
                path,
                RopeKeys::from_block(path, "rope_scaling", raw.rope_scaling.take())?,
            )?;
        let rope = Self::rope(path, rope_keys, &raw)?;
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1));
        if raw.num_hidden_layers > MAX_LAYERS {
            // Refused before the layer list below is built from it.
            return Err(invalid(
                "num_hidden_layers",
                format!(
                    "is {}; more than {MAX_LAYERS} layers is refused as absurd (gpt-oss-20b has 24)",
                    raw.num_hidden_layers
                ),
            ));
        }
        let layer_types = match raw.layer_types {
            Some(list) => list,
            // Older configs omit the list; gpt-oss alternates starting with a sliding layer.
            None => alternating_layers(raw.num_hidden_layers),
        };
        finite_above(path, "rms_norm_eps", raw.rms_norm_eps, 0.0)?;
        let config = Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads,
            head_dim,
            num_local_experts,
            num_experts_per_tok,
            sliding_window: raw.sliding_window,
            layer_types,
            max_position_embeddings: raw.max_position_embeddings,
            rms_norm_eps: raw.rms_norm_eps,
            swiglu_alpha: raw.swiglu_alpha,
            swiglu_limit: raw.swiglu_limit,
            rope,
            eos_token_ids: eos_ids(path, raw.eos_token_id.as_ref())?,
            dtype,
            quantization: raw.quantization_config,
        };
        config
            .validate()
            .map_err(|(field, problem)| invalid(field, problem))?;
        config
            .check_implied_bytes()
            .map_err(|(field, problem)| invalid(&field, problem))?;
        Ok(config)
    }

    /// The YaRN settings from the reconciled RoPE block and the top-level `rope_theta` and
    /// `initial_context_length`, with transformers' defaults, validated.
    fn rope(path: &Path, keys: RopeKeys, raw: &RawConfig) -> Result<RopeConfig, ConfigError> {
        if let Some(kind) = &keys.kind
            && kind.value != "yarn"
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: kind.key.clone(),
                problem: format!("is '{}'; gpt-oss uses 'yarn'", kind.value),
            });
        }
        let theta =
            agree(path, keys.theta, keyed("rope_theta", raw.rope_theta))?.ok_or_else(|| {
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: "rope_theta".into(),
                    problem: "is missing (neither in the RoPE block nor at the top level)".into(),
                }
            })?;
        // YaRN divides by ln(theta): 1 and below cannot work.
        finite_above(path, &theta.key, theta.value, 1.0)?;
        let or_default = |setting: Option<Keyed<f64>>, name: &str, default: f64| {
            setting.unwrap_or(Keyed {
                key: format!("rope_parameters.{name}"),
                value: default,
            })
        };
        let factor = or_default(keys.factor, "factor", DEFAULT_ROPE_FACTOR);
        finite_above(path, &factor.key, factor.value, 0.0)?;
        let beta_fast = or_default(keys.beta_fast, "beta_fast", DEFAULT_BETA_FAST);
        let beta_slow = or_default(keys.beta_slow, "beta_slow", DEFAULT_BETA_SLOW);
        finite_above(path, &beta_slow.key, beta_slow.value, 0.0)?;
        finite_above(path, &beta_fast.key, beta_fast.value, 0.0)?;
        if beta_fast.value < beta_slow.value {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: beta_fast.key,
                problem: format!(
                    "is {} but {} is {}: reversed (beta_fast must be at least beta_slow)",
                    beta_fast.value, beta_slow.key, beta_slow.value
                ),
            });
        }
        if let Some(attention_factor) = &keys.attention_factor {
            finite_above(path, &attention_factor.key, attention_factor.value, 0.0)?;
        }
        // transformers defaults a missing original length to max_position_embeddings.
        let original_max = agree(
            path,
            keys.original_max,
            keyed("initial_context_length", raw.initial_context_length),
        )?;
        if let Some(original) = &original_max
            && original.value == 0
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: original.key.clone(),
                problem: "is 0; YaRN scales from the original context, which must be at least 1"
                    .into(),
            });
        }
        let original_max = original_max.map_or(raw.max_position_embeddings, |s| s.value);
        Ok(RopeConfig {
            theta: theta.value,
            factor: factor.value,
            beta_fast: beta_fast.value,
            beta_slow: beta_slow.value,
            original_max_position_embeddings: original_max,
            truncate: keys.truncate.is_some_and(|s| s.value),
            attention_factor: keys.attention_factor.map(|s| s.value),
        })
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("num_local_experts", self.num_local_experts),
            ("num_experts_per_tok", self.num_experts_per_tok),
            ("sliding_window", self.sliding_window),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err((field, "is 0; it must be greater than 0".into()));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err((
                "num_key_value_heads",
                format!(
                    "({}) must divide num_attention_heads ({})",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err((
                "head_dim",
                format!("({}) must be even for RoPE", self.head_dim),
            ));
        }
        if self.num_experts_per_tok > self.num_local_experts {
            return Err((
                "num_experts_per_tok",
                format!(
                    "({}) exceeds num_local_experts ({})",
                    self.num_experts_per_tok, self.num_local_experts
                ),
            ));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return Err((
                "layer_types",
                format!(
                    "lists {} layers but num_hidden_layers is {}",
                    self.layer_types.len(),
                    self.num_hidden_layers
                ),
            ));
        }
        Ok(())
    }

    /// Refuses sizes whose byte counts (f32, the widest the model stores) overflow or pass
    /// [`MAX_IMPLIED_BYTES`]: each weight matrix, and what the planner
    /// (`memory/planner.rs`) multiplies out at `max_position_embeddings`: the KV cache,
    /// attention scores (a chunk can be the whole context) and the activations; the sliding
    /// rings the planner caps at `max_position_embeddings`, so the KV bound covers them.
    fn check_implied_bytes(&self) -> Result<(), (String, String)> {
        let f32_bytes = 4u128;
        let n = self.max_position_embeddings as u128;
        let (vocab, hidden, inter) = (
            self.vocab_size as u128,
            self.hidden_size as u128,
            self.intermediate_size as u128,
        );
        let (heads, kv, d) = (
            self.num_attention_heads as u128,
            self.num_key_value_heads as u128,
            self.head_dim as u128,
        );
        let (experts, k) = (
            self.num_local_experts as u128,
            self.num_experts_per_tok as u128,
        );
        let layers = self.num_hidden_layers as u128;
        // Per token: the activation widths the planner's scratch formula adds up (u128 sums
        // of usize products cannot overflow).
        let activation_width =
            4 * hidden + 2 * heads * d + 2 * kv * d + experts + k * (3 * inter + hidden);
        // (what, culprit key, factors as "key (value)" for the message, values)
        let implied: [ImpliedBytes; 6] = [
            (
                "the embedding table",
                "vocab_size",
                &[("vocab_size", vocab), ("hidden_size", hidden)],
            ),
            (
                "the attention projections",
                "num_attention_heads",
                &[
                    (
                        "(num_attention_heads + 2 num_key_value_heads)",
                        heads + 2 * kv,
                    ),
                    ("head_dim", d),
                    ("hidden_size", hidden),
                ],
            ),
            (
                "one layer's experts",
                "num_local_experts",
                &[
                    ("num_local_experts", experts),
                    ("2 intermediate_size", 2 * inter),
                    ("hidden_size", hidden),
                ],
            ),
            (
                "the KV cache at max_position_embeddings",
                "max_position_embeddings",
                &[
                    ("num_hidden_layers", layers),
                    ("2 num_key_value_heads", 2 * kv),
                    ("head_dim", d),
                    ("max_position_embeddings", n),
                ],
            ),
            (
                "a prefill's attention scores at max_position_embeddings",
                "max_position_embeddings",
                &[
                    ("2 num_attention_heads", 2 * heads),
                    ("max_position_embeddings", n),
                    ("max_position_embeddings", n),
                ],
            ),
            (
                "a prefill's activations at max_position_embeddings",
                "max_position_embeddings",
                &[
                    ("max_position_embeddings", n),
                    ("the activation width", activation_width),
                ],
            ),
        ];
        for (what, culprit, factors) in implied {
            let bytes = factors
                .iter()
                .try_fold(f32_bytes, |acc, (_, v)| acc.checked_mul(*v));
            if bytes.is_none_or(|b| b > MAX_IMPLIED_BYTES) {
                let product = factors
                    .iter()
                    .map(|(key, v)| format!("{key} {v}"))
                    .collect::<Vec<_>>()
                    .join(" x ");
                return Err((
                    culprit.to_string(),
                    format!(
                        "is too large: {what} would take {product} x 4 bytes, past 2^56 bytes (64 PiB), which no machine holds and the memory planner cannot count"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Query heads that share one key/value head.
    pub fn heads_per_kv_head(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Layers of each kind: (full, sliding).
    pub fn layer_counts(&self) -> (usize, usize) {
        let full = self
            .layer_types
            .iter()
            .filter(|k| **k == LayerKind::FullAttention)
            .count();
        (full, self.layer_types.len() - full)
    }

    /// The real gpt-oss-20b shape (spec section 1), for synthetic models and planning.
    pub fn gpt_oss_20b() -> Self {
        let layers = 24;
        Self {
            vocab_size: 201_088,
            hidden_size: 2880,
            intermediate_size: 2880,
            num_hidden_layers: layers,
            num_attention_heads: 64,
            num_key_value_heads: 8,
            head_dim: 64,
            num_local_experts: 32,
            num_experts_per_tok: 4,
            sliding_window: 128,
            layer_types: alternating_layers(layers),
            max_position_embeddings: 131_072,
            rms_norm_eps: 1e-5,
            swiglu_alpha: 1.702,
            swiglu_limit: 7.0,
            rope: RopeConfig {
                theta: 150_000.0,
                factor: 32.0,
                beta_fast: 32.0,
                beta_slow: 1.0,
                original_max_position_embeddings: 4096,
                truncate: false,
                attention_factor: None,
            },
            eos_token_ids: vec![200_002, 200_012, 199_999],
            dtype: Some("bfloat16".into()),
            quantization: None,
        }
    }

    /// The same shape with `layers` layers (alternating sliding/full, starting sliding).
    pub fn with_layers(mut self, layers: usize) -> Self {
        self.num_hidden_layers = layers;
        self.layer_types = alternating_layers(layers);
        self
    }
}

/// A byte count the config implies: what it is, the key to blame, and its factors as
/// (key, value), multiplied by 4 bytes.
type ImpliedBytes<'a> = (&'a str, &'a str, &'a [(&'a str, u128)]);

/// gpt-oss's layer pattern: sliding, full, sliding, ... (`layers` long).
fn alternating_layers(layers: usize) -> Vec<LayerKind> {
    (0..layers)
        .map(|i| {
            if i % 2 == 0 {
                LayerKind::SlidingAttention
            } else {
                LayerKind::FullAttention
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
            .join("config.json")
    }

    #[test]
    fn reads_the_tiny_fixture() {
        let config = Config::from_file(&fixture("tiny-a-int4")).expect("fixture config loads");
        assert_eq!(config.hidden_size, 128);
        assert_eq!(config.head_dim, 32);
        assert_eq!(config.layer_counts(), (2, 2));
        assert_eq!(config.rope.theta, 150_000.0);
        assert_eq!(config.eos_token_ids, vec![526]);
        let quant = config
            .quantization
            .expect("int4 fixture has quantization_config");
        assert_eq!(quant.quant_method, "auto-round");
        assert_eq!(
            quant.extra_config["model.layers.0.self_attn.q_proj"].bits,
            Some(16)
        );
    }

    #[test]
    fn accepts_the_older_rope_spelling() {
        let text = std::fs::read_to_string(fixture("tiny-a-bf16")).expect("fixture readable");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("fixture is json");
        let rope = json["rope_parameters"].take();
        let object = json.as_object_mut().expect("config is an object");
        object.remove("rope_parameters");
        object.insert("rope_theta".into(), rope["rope_theta"].clone());
        let mut scaling = rope.clone();
        scaling
            .as_object_mut()
            .expect("rope is an object")
            .remove("rope_theta");
        object.insert("rope_scaling".into(), scaling);
        let old = Config::from_json(&json.to_string(), Path::new("old.json"))
            .expect("old spelling loads");
        let new = Config::from_file(&fixture("tiny-a-bf16")).expect("new spelling loads");
        assert_eq!(old.rope, new.rope);
    }

    #[test]
    fn names_the_file_and_field_on_bad_values() {
        let text = std::fs::read_to_string(fixture("tiny-a-bf16")).expect("fixture readable");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("fixture is json");
        json["num_key_value_heads"] = 3.into();
        let err = Config::from_json(&json.to_string(), Path::new("/m/config.json")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/m/config.json"), "{message}");
        assert!(message.contains("num_key_value_heads"), "{message}");

        let err =
            Config::from_json("{\"vocab_size\": 5}", Path::new("/m/config.json")).unwrap_err();
        assert!(err.to_string().contains("hidden_size"), "{err}");
    }

    #[test]
    fn loads_the_published_config_with_both_expert_count_keys() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/published/openai-gpt-oss-20b.config.json");
        let config = Config::from_file(&path).expect("the config.json the hub serves loads");
        assert_eq!(config.num_experts_per_tok, 4);
        assert_eq!(config.num_local_experts, 32);
        assert_eq!(config.num_hidden_layers, 24);
        assert_eq!(config.rope.theta, 150_000.0);

        let text = std::fs::read_to_string(&path).expect("published config readable");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("config is json");
        json["experts_per_token"] = 2.into();
        let err = Config::from_json(&json.to_string(), &path).unwrap_err();
        let message = err.to_string();
        for part in ["num_experts_per_tok", "experts_per_token", "is 4", "is 2"] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
    }
}

#[cfg(test)]
mod spelling_tests {
    //! config.json as the hub publishes it: two spellings of a setting, refused values.

    use super::*;
    use serde_json::{Value, json};

    const PATH: &str = "/models/m/config.json";

    fn published() -> Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/published/openai-gpt-oss-20b.config.json");
        let text = std::fs::read_to_string(path).expect("published config readable");
        serde_json::from_str(&text).expect("published config is json")
    }

    fn load(json: &Value) -> Result<Config, ConfigError> {
        Config::from_json(&json.to_string(), Path::new(PATH))
    }

    /// Fails unless `json` is refused with a message naming the file and every part.
    fn assert_refused(json: &Value, parts: &[&str]) {
        let message = load(json).expect_err("must be refused").to_string();
        assert!(message.contains(PATH), "{message} lacks the file");
        for part in parts {
            assert!(message.contains(part), "{message} lacks {part}");
        }
    }

    fn remove(json: &mut Value, key: &str) {
        json.as_object_mut().expect("object").remove(key);
    }

    #[test]
    fn either_spelling_of_the_expert_count_loads_alone() {
        let mut json = published();
        remove(&mut json, "num_local_experts");
        json["num_experts"] = 16.into();
        assert_eq!(
            load(&json).expect("num_experts alone").num_local_experts,
            16
        );
        json["num_local_experts"] = 16.into();
        assert_eq!(load(&json).expect("both agree").num_local_experts, 16);
        json["num_local_experts"] = 32.into();
        assert_refused(
            &json,
            &["num_local_experts is 32", "num_experts is 16", "must agree"],
        );
        remove(&mut json, "num_experts");
        remove(&mut json, "num_local_experts");
        assert_refused(&json, &["num_local_experts is missing", "num_experts"]);

        let mut json = published();
        remove(&mut json, "num_experts_per_tok");
        assert_eq!(load(&json).expect("OpenAI's alone").num_experts_per_tok, 4);
    }

    #[test]
    fn initial_context_length_is_the_original_rope_length() {
        let mut json = published();
        remove(&mut json, "rope_scaling");
        json["rope_parameters"] = json!({"rope_type": "yarn", "factor": 32.0});
        let config = load(&json).expect("initial_context_length alone");
        assert_eq!(config.rope.original_max_position_embeddings, 4096);
        json["initial_context_length"] = 8192.into();
        assert_eq!(
            load(&json)
                .expect("alone")
                .rope
                .original_max_position_embeddings,
            8192
        );

        let mut json = published();
        json["initial_context_length"] = 8192.into();
        assert_refused(
            &json,
            &[
                "rope_scaling.original_max_position_embeddings is 4096",
                "initial_context_length is 8192",
            ],
        );
    }

    #[test]
    fn dtype_and_torch_dtype_must_agree() {
        let mut json = published();
        json["torch_dtype"] = "bfloat16".into();
        assert_eq!(
            load(&json).expect("alone").dtype.as_deref(),
            Some("bfloat16")
        );
        json["dtype"] = "bfloat16".into();
        assert_eq!(
            load(&json).expect("agree").dtype.as_deref(),
            Some("bfloat16")
        );
        json["dtype"] = "float16".into();
        assert_refused(
            &json,
            &["dtype is \"float16\"", "torch_dtype is \"bfloat16\""],
        );
    }

    #[test]
    fn rope_parameters_and_rope_scaling_reconcile_key_by_key() {
        let mut json = published();
        let scaling = json["rope_scaling"].clone();
        let mut parameters = scaling.clone();
        parameters["rope_theta"] = 150_000.0.into();
        json["rope_parameters"] = parameters;
        let config = load(&json).expect("both blocks agree");
        assert_eq!(config.rope, load(&published()).expect("published").rope);

        json["rope_parameters"]["factor"] = 16.0.into();
        assert_refused(
            &json,
            &[
                "rope_parameters.factor is 16.0",
                "rope_scaling.factor is 32.0",
            ],
        );

        // rope_theta inside the block and at the top level.
        let mut json = published();
        json["rope_scaling"]["rope_theta"] = 150_000.0.into();
        assert_eq!(load(&json).expect("theta agrees").rope.theta, 150_000.0);
        remove(&mut json, "rope_theta");
        assert_eq!(load(&json).expect("theta inside").rope.theta, 150_000.0);
        json["rope_theta"] = 10_000.0.into();
        assert_refused(
            &json,
            &[
                "rope_scaling.rope_theta is 150000.0",
                "rope_theta is 10000.0",
            ],
        );
    }

    #[test]
    fn type_is_the_old_spelling_of_rope_type() {
        let mut json = published();
        let scaling = json["rope_scaling"].as_object_mut().expect("object");
        scaling.remove("rope_type");
        scaling.insert("type".into(), "yarn".into());
        load(&json).expect("type alone");
        json["rope_scaling"]["rope_type"] = "yarn".into();
        load(&json).expect("both agree");
        json["rope_scaling"]["type"] = "linear".into();
        assert_refused(
            &json,
            &[
                "rope_scaling.rope_type is \"yarn\"",
                "rope_scaling.type is \"linear\"",
            ],
        );
        remove(&mut json["rope_scaling"], "rope_type");
        assert_refused(&json, &["rope_scaling.type", "'linear'", "'yarn'"]);
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let mut json = published();
        json["a_key_from_a_future_writer"] = json!({"nested": [1, 2]});
        json["rope_scaling"]["mscale"] = 1.0.into();
        let config = load(&json).expect("extras ignored");
        assert_eq!(config.num_hidden_layers, 24);
    }

    #[test]
    fn eos_token_id_is_a_number_or_a_list() {
        let mut json = published();
        assert_eq!(load(&json).expect("one").eos_token_ids, vec![200_002]);
        json["eos_token_id"] = json!([200_002, 199_999, 200_012]);
        assert_eq!(
            load(&json).expect("list").eos_token_ids,
            vec![200_002, 199_999, 200_012]
        );
        json["eos_token_id"] = "<|return|>".into();
        assert_refused(
            &json,
            &["eos_token_id", "\"<|return|>\"", "a list of token ids"],
        );
        json["eos_token_id"] = json!([1, -2]);
        assert_refused(&json, &["eos_token_id", "[1,-2]"]);
    }

    #[test]
    fn generation_config_eos_is_a_number_or_a_list() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("generation_config.json");
        for (text, want) in [
            (r#"{"eos_token_id": 200002}"#, vec![200_002]),
            (
                r#"{"eos_token_id": [200002, 199999, 200012]}"#,
                vec![200_002, 199_999, 200_012],
            ),
            (r#"{"bos_token_id": 1}"#, vec![]),
        ] {
            std::fs::write(&path, text).expect("write");
            assert_eq!(generation_eos_token_ids(&path).expect(text), want);
        }
        std::fs::write(&path, r#"{"eos_token_id": 1.5}"#).expect("write");
        let message = generation_eos_token_ids(&path)
            .expect_err("not an id")
            .to_string();
        for part in [path.to_str().expect("utf8"), "eos_token_id", "is 1.5"] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
    }

    #[test]
    fn layer_counts_of_zero_or_past_the_bound_are_refused() {
        let mut json = published();
        json["num_hidden_layers"] = 0.into();
        assert_refused(&json, &["num_hidden_layers is 0"]);
        json["num_hidden_layers"] = 1_000_000_000_000u64.into();
        assert_refused(
            &json,
            &["num_hidden_layers is 1000000000000", "more than 1024"],
        );
    }

    #[test]
    fn rms_norm_eps_must_be_positive() {
        for eps in [0.0, -1e-5] {
            let mut json = published();
            json["rms_norm_eps"] = eps.into();
            assert_refused(
                &json,
                &[&format!("rms_norm_eps is {eps}"), "greater than 0"],
            );
        }
    }

    #[test]
    fn rope_factor_and_theta_must_be_positive() {
        for factor in [0.0, -32.0] {
            let mut json = published();
            json["rope_scaling"]["factor"] = factor.into();
            assert_refused(&json, &[&format!("rope_scaling.factor is {factor}")]);
        }
        for theta in [0.0, -150_000.0, 1.0] {
            let mut json = published();
            json["rope_theta"] = theta.into();
            assert_refused(
                &json,
                &[&format!("rope_theta is {theta}"), "greater than 1"],
            );
        }
        let mut json = published();
        json["rope_scaling"]["attention_factor"] = (-1.0).into();
        assert_refused(&json, &["rope_scaling.attention_factor is -1"]);
        let mut json = published();
        json["initial_context_length"] = 0.into();
        remove(
            &mut json["rope_scaling"],
            "original_max_position_embeddings",
        );
        assert_refused(&json, &["initial_context_length is 0"]);
    }

    #[test]
    fn reversed_betas_are_refused() {
        let mut json = published();
        json["rope_scaling"]["beta_fast"] = 1.0.into();
        json["rope_scaling"]["beta_slow"] = 32.0.into();
        assert_refused(
            &json,
            &[
                "rope_scaling.beta_fast is 1",
                "rope_scaling.beta_slow is 32",
                "reversed",
            ],
        );
        json["rope_scaling"]["beta_slow"] = 0.0.into();
        assert_refused(&json, &["rope_scaling.beta_slow is 0"]);
    }

    #[test]
    fn max_position_embeddings_is_bounded_by_what_the_planner_can_count() {
        let mut json = published();
        json["max_position_embeddings"] = 0.into();
        assert_refused(&json, &["max_position_embeddings is 0"]);
        // 2^40 positions: the KV cache alone would be 2^40 x 24 x 16 x 64 x 4 bytes.
        json["max_position_embeddings"] = (1u64 << 40).into();
        assert_refused(
            &json,
            &["max_position_embeddings", "1099511627776", "64 PiB"],
        );
        json["max_position_embeddings"] = u64::MAX.into();
        assert_refused(&json, &["max_position_embeddings", &u64::MAX.to_string()]);
        // Ten times the published context still loads.
        json["max_position_embeddings"] = 1_310_720.into();
        load(&json).expect("a long but countable context");
    }

    #[test]
    fn sizes_whose_byte_counts_overflow_are_refused() {
        let mut json = published();
        json["hidden_size"] = (1u64 << 50).into();
        json["head_dim"] = 64.into();
        assert_refused(&json, &["hidden_size 1125899906842624", "embedding table"]);
        let mut json = published();
        json["num_local_experts"] = u64::MAX.into();
        json["num_experts"] = u64::MAX.into();
        assert_refused(&json, &["num_local_experts", &u64::MAX.to_string()]);
    }

    #[test]
    fn too_many_experts_per_token_and_uneven_heads_are_refused() {
        let mut json = published();
        json["num_experts_per_tok"] = 33.into();
        json["experts_per_token"] = 33.into();
        assert_refused(
            &json,
            &["num_experts_per_tok (33)", "num_local_experts (32)"],
        );
        let mut json = published();
        json["num_key_value_heads"] = 7.into();
        assert_refused(
            &json,
            &["num_key_value_heads (7)", "num_attention_heads (64)"],
        );
    }
}
