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
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use limits::MAX_IMPLIED_BYTES;
use spelling::{RawRope, RopeKeys, agree, finite_above, keyed};

mod limits;
#[cfg(test)]
mod published_tests;
mod spelling;

/// More layers than this is refused: the deepest published transformers have under 200, and
/// the bound keeps per-layer lists and the planner's `layers × ...` products small.
pub const MAX_LAYERS: usize = 1024;

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
    /// Token ids that end generation: config.json's, joined on load by generation_config.json's
    /// (the tokenizer may add more).
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
        let rope = rope_keys.yarn(
            path,
            raw.rope_theta,
            raw.initial_context_length,
            raw.max_position_embeddings,
        )?;
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
