//! `ossterm fit` through the binary: the acceptance numbers for gpt-oss-20b.

use std::process::Command;

fn fit_json(extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .args(["fit", "--json"])
        .args(extra)
        .env("OSSTERM_CONFIG_DIR", dir.path())
        .output()
        .expect("ossterm runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

fn u64_of(value: &serde_json::Value) -> u64 {
    value.as_u64().expect("a byte count")
}

/// The repacked tensors of the Intel build, summed independently of the planner: experts Q4_0
/// (18 bytes per 32 weights), attention projections and lm_head in `projection_elt` (the CPU
/// keeps them bf16), every other tensor in the activation dtype, the embedding bf16.
fn repacked_sum(elt: u64, projection_elt: u64) -> u64 {
    let (l, e, h, i, v, q, kv) = (24u64, 32u64, 2880u64, 2880u64, 201_088u64, 4096u64, 512u64);
    let experts_q4 = l * e * 3 * h * i / 32 * 18;
    let expert_biases = l * e * (2 * i + h) * elt;
    let attention =
        l * (q * h + 2 * kv * h + h * q) * projection_elt + l * (q + 2 * kv + h + 64) * elt;
    let norms_router = l * (2 * h + e * h + e) * elt + h * elt;
    let lm_head = v * h * projection_elt;
    let embedding = v * h * 2;
    experts_q4 + expert_biases + attention + norms_router + lm_head + embedding
}

#[test]
fn gpt_oss_20b_on_the_cpu_keeps_a_16_bit_kv_cache() {
    let json = fit_json(&["--synthetic", "gpt-oss-20b", "--device", "cpu"]);
    assert_eq!(json["kv_bytes_per_element"], 2);
    assert_eq!(u64_of(&json["kv_bytes_per_token"]), 24_576);
    let exact = fit_json(&[
        "--synthetic",
        "gpt-oss-20b",
        "--device",
        "cpu",
        "--dtype",
        "f32",
    ]);
    assert_eq!(u64_of(&exact["kv_bytes_per_token"]), 49_152);
}

#[test]
fn gpt_oss_20b_on_cuda_bf16() {
    let json = fit_json(&[
        "--synthetic",
        "gpt-oss-20b",
        "--device",
        "cuda",
        "--memory",
        "19327352832",
    ]);
    assert_eq!(json["kv_bytes_per_element"], 2);
    assert_eq!(u64_of(&json["kv_bytes_per_token"]), 12 * 2 * 8 * 64 * 2);
    assert_eq!(u64_of(&json["kv_bytes_per_token"]), 24_576);
    let weights = u64_of(&json["device_weight_bytes"]) + u64_of(&json["host_weight_bytes"]);
    let expected = repacked_sum(2, 2);
    let error = (weights as f64 - expected as f64).abs() / expected as f64;
    assert!(error < 0.02, "weights {weights} vs {expected}");
    check_table(&json);
    let max = json["max_context"].as_u64().expect("max_context");
    assert!(max > 4096 && max < 131072, "{max}");
}

#[test]
fn gpt_oss_20b_on_cpu_f32_activations() {
    let json = fit_json(&["--synthetic", "gpt-oss-20b", "--memory", "68719476736"]);
    assert_eq!(json["device"], "cpu");
    // f32 activations over a bf16 cache.
    assert_eq!(u64_of(&json["kv_bytes_per_token"]), 12 * 2 * 8 * 64 * 2);
    // On the CPU the host embedding is in the same pool.
    let expected = repacked_sum(4, 2);
    let weights = u64_of(&json["weight_bytes"]);
    let error = (weights as f64 - expected as f64).abs() / expected as f64;
    assert!(error < 0.02, "weights {weights} vs {expected}");
    check_table(&json);
    assert_eq!(json["max_context"], 131072);
}

/// Rows 4k..131k; total = fixed + kv_per_token * context + scratch, so the sliding layers'
/// share does not grow with the context.
fn check_table(json: &serde_json::Value) {
    let rows = json["rows"].as_array().expect("rows");
    let contexts: Vec<u64> = rows.iter().map(|r| u64_of(&r["context"])).collect();
    assert_eq!(contexts, [4096, 8192, 16384, 32768, 65536, 131072]);
    let per_token = u64_of(&json["kv_bytes_per_token"]);
    let fixed = u64_of(&json["weight_bytes"])
        + u64_of(&json["sliding_bytes"])
        + u64_of(&json["overhead_bytes"]);
    for row in rows {
        let context = u64_of(&row["context"]);
        assert_eq!(u64_of(&row["kv_bytes"]), per_token * context);
        assert_eq!(
            u64_of(&row["total_bytes"]),
            fixed + per_token * context + u64_of(&row["scratch_bytes"])
        );
        let fits = row["fits"].as_bool().expect("fits");
        let available = u64_of(&json["available_bytes"]);
        assert_eq!(
            fits,
            u64_of(&row["total_bytes"]) + u64_of(&json["margin_bytes"]) <= available
        );
    }
    // 12 sliding layers x ring of 128 x (1 + 8 snapshots).
    let elt = u64_of(&json["kv_bytes_per_element"]);
    assert_eq!(
        u64_of(&json["sliding_bytes"]),
        12 * 2 * 8 * 64 * elt * 128 * 9
    );
}

#[test]
fn local_fixture_folder_and_layer_override() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-a-int4");
    let json = fit_json(&["--model", fixture, "--memory", "1073741824"]);
    // tiny-a: 2 full layers, 2 kv heads, head_dim 32, bf16 cache on CPU.
    assert_eq!(u64_of(&json["kv_bytes_per_token"]), 2 * 2 * 2 * 32 * 2);
    assert!(u64_of(&json["max_context"]) > 0);

    let two = fit_json(&[
        "--synthetic",
        "gpt-oss-20b",
        "--layers",
        "2",
        "--memory",
        "1",
    ]);
    assert_eq!(u64_of(&two["kv_bytes_per_token"]), 2 * 8 * 64 * 2);
    assert_eq!(two["max_context"], 0);
}
