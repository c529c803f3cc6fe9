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
