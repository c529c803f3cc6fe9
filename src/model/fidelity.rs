//! The engine against reference fixtures (golden logits and greedy tokens computed by
//! transformers), with the engine issue's tolerances. The tests run it on the CPU;
//! `ossterm verify` runs it on any device, which is how a GPU build is checked.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::{GptOss, Kernels, Logits, ModelError, Precision};

/// `--dtype f32`: max |logit diff| allowed.
pub const F32_MAX_DIFF: f32 = 0.1;
/// `--dtype f32`: |nll_mean - reference| allowed.
pub const F32_NLL_ABS: f64 = 1e-2;
/// Greedy tokens must agree up to the first step whose reference top-two margin is below this.
pub const GREEDY_MARGIN: f64 = 0.1;
/// Default mode: mean |logit diff| allowed.
pub const DEFAULT_MEAN_DIFF: f32 = 0.25;
/// Default mode: share of positions whose argmax must agree.
pub const DEFAULT_ARGMAX_AGREEMENT: f64 = 0.9;
/// Default mode: relative nll_mean difference allowed.
pub const DEFAULT_NLL_REL: f64 = 0.03;

/// One prompt of a fixture's golden.json with its reference logits.
pub struct GoldenPrompt {
    pub name: String,
    pub ids: Vec<u32>,
    /// Greedy continuation by the reference.
    pub greedy: Vec<u32>,
    /// The reference's top-two logit margin at each greedy step.
    pub margin: Vec<f64>,
    pub nll_mean: f64,
    /// [n, vocab] f32 on the CPU.
    pub logits: Tensor,
}

/// What one prompt measured, and which tolerances it broke.
#[derive(Debug, Clone, Serialize)]
pub struct PromptReport {
    pub prompt: String,
    pub positions: usize,
    pub max_diff: f32,
    pub mean_diff: f32,
    /// Positions whose argmax equals the reference's.
    pub argmax_agree: usize,
    pub nll_mean: f64,
    pub reference_nll_mean: f64,
    /// Greedy steps compared (up to the first near-tie) and whether they all matched.
    pub greedy_compared: usize,
    pub greedy_match: bool,
    pub failures: Vec<String>,
}

/// One fixture in one precision mode on one device.
#[derive(Debug, Clone, Serialize)]
pub struct FixtureReport {
    pub fixture: String,
    pub precision: String,
    pub prompts: Vec<PromptReport>,
}

impl FixtureReport {
    /// Every broken tolerance, "fixture/prompt: what".
    pub fn failures(&self) -> Vec<String> {
        self.prompts
            .iter()
            .flat_map(|p| {
                p.failures.iter().map(move |f| {
                    format!("{}/{} ({}): {f}", self.fixture, p.prompt, self.precision)
                })
            })
            .collect()
    }
}

/// Folders under `root` (or `root` itself) that hold a golden.json, sorted.
pub fn fixture_dirs(root: &Path) -> Result<Vec<PathBuf>, ModelError> {
    if root.join("golden.json").is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let entries = std::fs::read_dir(root).map_err(|source| ModelError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.json").is_file() && p.join("config.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(ModelError::File {
            path: root.to_path_buf(),
            problem: "no fixture here: expected a folder with golden.json, config.json and weights, or a folder of them".into(),
        });
    }
    Ok(dirs)
}

/// Reads golden.json and golden.safetensors of a fixture.
pub fn golden_prompts(dir: &Path) -> Result<Vec<GoldenPrompt>, ModelError> {
    let json_path = dir.join("golden.json");
    let bad = |path: &Path, problem: String| ModelError::File {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(&json_path).map_err(|source| ModelError::Io {
        path: json_path.clone(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(&json_path, format!("not JSON: {e}")))?;
    let tensors_path = dir.join("golden.safetensors");
    let tensors = candle_core::safetensors::load(&tensors_path, &Device::Cpu)
        .map_err(|e| bad(&tensors_path, e.to_string()))?;
    let object = json
        .as_object()
        .ok_or_else(|| bad(&json_path, "expected an object of prompts".into()))?;
    let mut prompts = Vec::with_capacity(object.len());
    for (name, p) in object {
        let field = |key: &str| -> Result<&Vec<serde_json::Value>, ModelError> {
            p[key].as_array().ok_or_else(|| {
                bad(
                    &json_path,
                    format!("prompt '{name}': '{key}' is not an array"),
                )
            })
        };
        let ids = |key: &str| -> Result<Vec<u32>, ModelError> {
            field(key)?
                .iter()
                .map(|v| v.as_u64().map(|x| x as u32))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| bad(&json_path, format!("prompt '{name}': bad id in '{key}'")))
        };
        let margin = field("greedy_margin")?
            .iter()
            .map(serde_json::Value::as_f64)
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| bad(&json_path, format!("prompt '{name}': bad greedy_margin")))?;
        let key = format!("{name}.logits");
        let logits = tensors
            .get(&key)
            .ok_or_else(|| bad(&tensors_path, format!("no tensor '{key}'")))?
            .to_dtype(candle_core::DType::F32)?;
        prompts.push(GoldenPrompt {
            name: name.clone(),
            ids: ids("ids")?,
            greedy: ids("greedy")?,
            margin,
            nll_mean: p["nll_mean"]
                .as_f64()
                .ok_or_else(|| bad(&json_path, format!("prompt '{name}': no nll_mean")))?,
            logits,
        });
    }
    Ok(prompts)
}

/// Loads the fixture in `dir` on `device` and checks every prompt in `precision`'s mode.
pub fn check_fixture(
    dir: &Path,
    device: &Device,
    precision: Precision,
    kernels: Kernels,
) -> Result<FixtureReport, ModelError> {
    let model = GptOss::load_with(dir, device, precision, kernels)?;
    let mut prompts = Vec::new();
    for golden in golden_prompts(dir)? {
        prompts.push(check_prompt(&model, &golden, precision)?);
    }
    Ok(FixtureReport {
        fixture: dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into()),
        precision: match precision {
            Precision::F32 => "f32".into(),
            Precision::Default => "default".into(),
            Precision::Bf16 => "bf16".into(),
        },
        prompts,
    })
}

fn check_prompt(
    model: &GptOss,
    golden: &GoldenPrompt,
    precision: Precision,
) -> Result<PromptReport, ModelError> {
    let mut cache = model.new_cache(golden.ids.len())?;
    let logits = model
        .forward(&golden.ids, &mut cache, Logits::All)?
        .to_device(&Device::Cpu)?;
    let diff = (&logits - &golden.logits)?.abs()?;
    let max_diff = diff.max_all()?.to_scalar::<f32>()?;
    let mean_diff = diff.mean_all()?.to_scalar::<f32>()?;
    let ours = logits.argmax(1)?.to_vec1::<u32>()?;
    let theirs = golden.logits.argmax(1)?.to_vec1::<u32>()?;
    let argmax_agree = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    let nll_mean = nll_mean(&logits, &golden.ids)?;
    let greedy_compared = golden
        .margin
        .iter()
        .position(|&m| m < GREEDY_MARGIN)
        .unwrap_or(golden.greedy.len());
    let got = greedy(model, &golden.ids, greedy_compared)?;
    let greedy_match = got[..] == golden.greedy[..greedy_compared];
    let reference = golden.nll_mean;
    let mut failures = Vec::new();
    match precision {
        Precision::F32 => {
            if max_diff > F32_MAX_DIFF {
                failures.push(format!("max |diff| {max_diff:.4} > {F32_MAX_DIFF}"));
            }
            if !greedy_match {
                failures.push(format!(
                    "greedy tokens {got:?} differ from the reference {:?} within the first {greedy_compared} steps",
                    &golden.greedy[..greedy_compared]
                ));
            }
            if (nll_mean - reference).abs() > F32_NLL_ABS {
                failures.push(format!("nll_mean {nll_mean:.5} vs {reference:.5}"));
            }
        }
        Precision::Default | Precision::Bf16 => {
            if mean_diff > DEFAULT_MEAN_DIFF {
                failures.push(format!("mean |diff| {mean_diff:.4} > {DEFAULT_MEAN_DIFF}"));
            }
            if (argmax_agree as f64) < DEFAULT_ARGMAX_AGREEMENT * ours.len() as f64 {
                failures.push(format!("argmax agrees at {argmax_agree}/{}", ours.len()));
            }
            if (nll_mean - reference).abs() > DEFAULT_NLL_REL * reference {
                failures.push(format!("nll_mean {nll_mean:.5} vs {reference:.5} (> 3%)"));
            }
        }
    }
    Ok(PromptReport {
        prompt: golden.name.clone(),
        positions: ours.len(),
        max_diff,
        mean_diff,
        argmax_agree,
        nll_mean,
        reference_nll_mean: reference,
        greedy_compared,
        greedy_match,
        failures,
    })
}

/// Mean negative log-likelihood of ids[1..] given their prefixes, from logits [n, vocab].
pub fn nll_mean(logits: &Tensor, ids: &[u32]) -> Result<f64, ModelError> {
    if ids.len() < 2 {
        return Ok(0.0);
    }
    let log_probs = candle_nn::ops::log_softmax(logits, 1)?.to_vec2::<f32>()?;
    let total: f64 = (1..ids.len())
        .map(|t| -(log_probs[t - 1][ids[t] as usize] as f64))
        .sum();
    Ok(total / (ids.len() - 1) as f64)
}

/// Greedy decoding with the KV cache, one token per step.
fn greedy(model: &GptOss, ids: &[u32], steps: usize) -> Result<Vec<u32>, ModelError> {
    let mut cache = model.new_cache(ids.len() + steps + 1)?;
    let mut logits = model.forward(ids, &mut cache, Logits::Last)?;
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let next = logits.argmax(1)?.to_vec1::<u32>()?[0];
        out.push(next);
        logits = model.forward(&[next], &mut cache, Logits::Last)?;
    }
    Ok(out)
}
