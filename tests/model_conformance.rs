//! A model folder whose `config.json` is written the way the hub publishes gpt-oss (OpenAI's
//! and transformers' keys side by side, `rope_scaling` + `rope_theta`, `initial_context_length`,
//! `torch_dtype`, training-only extras) with auto-round's quantization block, at the tiny
//! fixture's shapes: `ossterm fit` and `ossterm score` run on it through the binary and score
//! gives exactly the plain fixture's logits.

mod common;

use common::cli::ossterm;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is json")
}

/// The published config.json with the tiny fixture's shapes and auto-round's block.
fn published_config_at_tiny_shapes() -> Value {
    let tiny = read_json(&fixtures().join("tiny-a-int4/config.json"));
    let mut config = read_json(&fixtures().join("published/openai-gpt-oss-20b.config.json"));
    for key in [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "num_local_experts",
        "num_experts_per_tok",
        "sliding_window",
        "layer_types",
        "eos_token_id",
        "pad_token_id",
        "quantization_config",
    ] {
        config[key] = tiny[key].clone();
    }
    // OpenAI's spellings beside transformers', as in the published file.
    config["experts_per_token"] = tiny["num_experts_per_tok"].clone();
    config["num_experts"] = tiny["num_local_experts"].clone();
    config["torch_dtype"] = "bfloat16".into();
    config
}

fn model_folder(config: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = fixtures().join("tiny-a-int4");
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
        "quantization_config.json",
    ] {
        std::fs::copy(source.join(file), dir.path().join(file)).expect("copy fixture file");
    }
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string_pretty(config).expect("json"),
    )
    .expect("write config");
    dir
}

/// `ossterm score --dtype f32` logits of `ids` for the model in `dir`.
fn score_logits(dir: &Path, ids: &str) -> Vec<f32> {
    let out = tempfile::NamedTempFile::new().expect("temp");
    let (ok, _, stderr) = ossterm(&[
        "score",
        "--model",
        dir.to_str().expect("utf8"),
        "--ids",
        ids,
        "--dtype",
        "f32",
        "--logits-out",
        out.path().to_str().expect("utf8"),
    ]);
    assert!(ok, "score on {} failed: {stderr}", dir.display());
    let tensors =
        candle_core::safetensors::load(out.path(), &candle_core::Device::Cpu).expect("logits file");
    tensors["logits"]
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 logits")
}

fn fit_json(dir: &Path) -> Value {
    let (ok, stdout, stderr) = ossterm(&[
        "fit",
        "--model",
        dir.to_str().expect("utf8"),
        "--device",
        "cpu",
        "--memory",
        "8000000000",
        "--json",
    ]);
    assert!(ok, "fit on {} failed: {stderr}", dir.display());
    let mut plan: Value = serde_json::from_str(stdout.trim()).expect("fit prints json");
    // The folder's own path, the one thing that differs between two copies of a model.
    plan.as_object_mut().expect("object").remove("model");
    plan
}

#[test]
fn the_published_keys_load_and_score_like_the_fixture() {
    let config = published_config_at_tiny_shapes();
    // The shape of the file as published: both expert-count spellings, the 4.x RoPE spelling.
    for key in [
        "experts_per_token",
        "num_experts_per_tok",
        "rope_scaling",
        "rope_theta",
        "initial_context_length",
        "torch_dtype",
        "router_aux_loss_coef",
    ] {
        assert!(
            config.get(key).is_some(),
            "{key} missing from the test config"
        );
    }
    assert!(config.get("rope_parameters").is_none());
    assert_eq!(config["quantization_config"]["quant_method"], "auto-round");
    let dir = model_folder(&config);

    let plain = fixtures().join("tiny-a-int4");
    assert_eq!(fit_json(dir.path()), fit_json(&plain));

    let ids = "529,247,268,531,395,498,18,75,431,497,130,163";
    let published = score_logits(dir.path(), ids);
    assert_eq!(published.len(), 12 * 533);
    assert_eq!(published, score_logits(&plain, ids));
}

#[test]
fn disagreeing_spellings_are_refused_by_both_commands() {
    let mut config = published_config_at_tiny_shapes();
    config["experts_per_token"] = json!(3);
    let dir = model_folder(&config);
    let path = dir.path().to_str().expect("utf8");
    let (ok, _, fit_err) = ossterm(&["fit", "--model", path, "--memory", "8000000000"]);
    assert!(!ok, "fit must refuse");
    let (ok, _, score_err) = ossterm(&["score", "--model", path, "--ids", "1,2"]);
    assert!(!ok, "score must refuse");
    for stderr in [fit_err, score_err] {
        for part in [
            "config.json",
            "num_experts_per_tok is 2",
            "experts_per_token is 3",
        ] {
            assert!(stderr.contains(part), "{stderr} lacks {part}");
        }
    }
}
