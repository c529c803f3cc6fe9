//! Settings config.json may spell two ways (OpenAI's and transformers' names; the RoPE block
//! of transformers 4.x and 5.x): each value is kept with the key it was read from, and
//! [`agree`] reconciles a pair, so every error can name the keys and values involved.

use std::fmt::Debug;
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, RopeConfig};

const DEFAULT_ROPE_FACTOR: f64 = 32.0;
const DEFAULT_BETA_FAST: f64 = 32.0;
const DEFAULT_BETA_SLOW: f64 = 1.0;

/// One RoPE block (`rope_parameters` or `rope_scaling`) as written; defaults are applied only
/// after both blocks and the top-level keys are reconciled.
#[derive(Debug, Deserialize)]
pub(super) struct RawRope {
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

/// A value and the key it was read from (for error messages).
#[derive(Debug, Clone)]
pub(super) struct Keyed<T> {
    pub(super) key: String,
    pub(super) value: T,
}

/// `value` read from `key`, if present.
pub(super) fn keyed<T>(key: impl Into<String>, value: Option<T>) -> Option<Keyed<T>> {
    value.map(|value| Keyed {
        key: key.into(),
        value,
    })
}

/// One setting from two spellings: either alone, or both when they agree.
pub(super) fn agree<T: PartialEq + Debug>(
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
pub(super) struct RopeKeys {
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
    /// The settings of `block` (`rope_parameters` or `rope_scaling`), if present.
    pub(super) fn from_block(
        path: &Path,
        block: &str,
        raw: Option<RawRope>,
    ) -> Result<Self, ConfigError> {
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
    pub(super) fn merge(self, path: &Path, other: Self) -> Result<Self, ConfigError> {
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

    /// The YaRN settings from the reconciled RoPE block and the top-level `rope_theta` and
    /// `initial_context_length`, with transformers' defaults, validated.
    pub(super) fn yarn(
        self,
        path: &Path,
        top_level_theta: Option<f64>,
        initial_context_length: Option<usize>,
        max_position_embeddings: usize,
    ) -> Result<RopeConfig, ConfigError> {
        if let Some(kind) = &self.kind
            && kind.value != "yarn"
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: kind.key.clone(),
                problem: format!("is '{}'; gpt-oss uses 'yarn'", kind.value),
            });
        }
        let theta =
            agree(path, self.theta, keyed("rope_theta", top_level_theta))?.ok_or_else(|| {
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
        let factor = or_default(self.factor, "factor", DEFAULT_ROPE_FACTOR);
        finite_above(path, &factor.key, factor.value, 0.0)?;
        let beta_fast = or_default(self.beta_fast, "beta_fast", DEFAULT_BETA_FAST);
        let beta_slow = or_default(self.beta_slow, "beta_slow", DEFAULT_BETA_SLOW);
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
        if let Some(attention_factor) = &self.attention_factor {
            finite_above(path, &attention_factor.key, attention_factor.value, 0.0)?;
        }
        // transformers defaults a missing original length to max_position_embeddings.
        let original_max = agree(
            path,
            self.original_max,
            keyed("initial_context_length", initial_context_length),
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
        let original_max = original_max.map_or(max_position_embeddings, |s| s.value);
        Ok(RopeConfig {
            theta: theta.value,
            factor: factor.value,
            beta_fast: beta_fast.value,
            beta_slow: beta_slow.value,
            original_max_position_embeddings: original_max,
            truncate: self.truncate.is_some_and(|s| s.value),
            attention_factor: self.attention_factor.map(|s| s.value),
        })
    }
}

/// Fails naming `key`, its value and the file unless `value` is finite and above `floor`.
pub(super) fn finite_above(
    path: &Path,
    key: &str,
    value: f64,
    floor: f64,
) -> Result<(), ConfigError> {
    if value.is_finite() && value > floor {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        path: path.to_path_buf(),
        field: key.to_string(),
        problem: format!("is {value}; it must be a finite number greater than {floor}"),
    })
}
