//! `config.json` of a gpt-oss checkpoint: the shape, RoPE and quantization settings.
//!
//! Both spellings of RoPE settings are accepted: `rope_parameters` (transformers >= 5) and the
//! older `rope_scaling` + top-level `rope_theta`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
        field: &'static str,
        problem: String,
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
    pub quantization: Option<QuantizationConfig>,
}

/// config.json as written, before validation.
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
    num_local_experts: usize,
    /// transformers' name; OpenAI's own `experts_per_token` may stand beside it (the published
    /// config.json carries both), so they are two fields, not a serde alias ("duplicate field").
    #[serde(default)]
    num_experts_per_tok: Option<usize>,
    #[serde(default)]
    experts_per_token: Option<usize>,
    sliding_window: usize,
    #[serde(default)]
    layer_types: Option<Vec<LayerKind>>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_alpha")]
    swiglu_alpha: f64,
    #[serde(default = "default_limit")]
    swiglu_limit: f64,
    #[serde(default)]
    rope_parameters: Option<RawRope>,
    #[serde(default)]
    rope_scaling: Option<RawRope>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    eos_token_id: Option<EosIds>,
    #[serde(default)]
    quantization_config: Option<QuantizationConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Debug, Deserialize)]
struct RawRope {
    #[serde(default)]
    rope_type: Option<String>,
    #[serde(default, rename = "type")]
    legacy_type: Option<String>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default = "default_factor")]
    factor: f64,
    #[serde(default = "default_beta_fast")]
    beta_fast: f64,
    #[serde(default = "default_beta_slow")]
    beta_slow: f64,
    #[serde(default = "default_original_max")]
    original_max_position_embeddings: usize,
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
fn default_factor() -> f64 {
    32.0
}
fn default_beta_fast() -> f64 {
    32.0
}
fn default_beta_slow() -> f64 {
    1.0
}
fn default_original_max() -> usize {
    4096
}

impl Config {
    /// Reads and validates `config.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates config.json text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |field: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            problem,
        };
        let num_experts_per_tok = match (raw.num_experts_per_tok, raw.experts_per_token) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(
                    "num_experts_per_tok",
                    format!("is {a} but experts_per_token is {b}; they must agree"),
                ));
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(invalid(
                    "num_experts_per_tok",
                    "is missing (nor is experts_per_token given)".into(),
                ));
            }
        };
        let rope_raw = raw.rope_parameters.or(raw.rope_scaling);
        let rope = match rope_raw {
            Some(r) => {
                let kind = r
                    .rope_type
                    .or(r.legacy_type)
                    .unwrap_or_else(|| "yarn".into());
                if kind != "yarn" {
                    return Err(invalid(
                        "rope_parameters.rope_type",
                        format!("is '{kind}'; gpt-oss uses 'yarn'"),
                    ));
                }
                let theta = r.rope_theta.or(raw.rope_theta).ok_or_else(|| {
                    invalid(
                        "rope_theta",
                        "is missing (neither in rope_parameters nor top level)".into(),
                    )
                })?;
                RopeConfig {
                    theta,
                    factor: r.factor,
                    beta_fast: r.beta_fast,
                    beta_slow: r.beta_slow,
                    original_max_position_embeddings: r.original_max_position_embeddings,
                    truncate: r.truncate.unwrap_or(false),
                    attention_factor: r.attention_factor,
                }
            }
            None => {
                return Err(invalid(
                    "rope_parameters",
                    "is missing (gpt-oss needs YaRN settings)".into(),
                ));
            }
        };
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1));
        let layer_types = match raw.layer_types {
            Some(list) => list,
            // Older configs omit the list; gpt-oss alternates starting with a sliding layer.
            None => (0..raw.num_hidden_layers)
                .map(|i| {
                    if i % 2 == 0 {
                        LayerKind::SlidingAttention
                    } else {
                        LayerKind::FullAttention
                    }
                })
                .collect(),
        };
        let eos_token_ids = match raw.eos_token_id {
            Some(EosIds::One(id)) => vec![id],
            Some(EosIds::Many(ids)) => ids,
            None => Vec::new(),
        };
        let config = Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads,
            head_dim,
            num_local_experts: raw.num_local_experts,
            num_experts_per_tok,
            sliding_window: raw.sliding_window,
            layer_types,
            max_position_embeddings: raw.max_position_embeddings,
            rms_norm_eps: raw.rms_norm_eps,
            swiglu_alpha: raw.swiglu_alpha,
            swiglu_limit: raw.swiglu_limit,
            rope,
            eos_token_ids,
            quantization: raw.quantization_config,
        };
        config
            .validate()
            .map_err(|(field, problem)| invalid(field, problem))?;
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
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err((field, "must be greater than 0".into()));
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
            layer_types: (0..layers)
                .map(|i| {
                    if i % 2 == 0 {
                        LayerKind::SlidingAttention
                    } else {
                        LayerKind::FullAttention
                    }
                })
                .collect(),
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
            quantization: None,
        }
    }

    /// The same shape with `layers` layers (alternating sliding/full, starting sliding).
    pub fn with_layers(mut self, layers: usize) -> Self {
        self.num_hidden_layers = layers;
        self.layer_types = (0..layers)
            .map(|i| {
                if i % 2 == 0 {
                    LayerKind::SlidingAttention
                } else {
                    LayerKind::FullAttention
                }
            })
            .collect();
        self
    }
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
