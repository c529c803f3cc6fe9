//! `ossterm score`, `generate`, `verify` and `bench` through the binary, against the fixtures.

mod common;

use common::cli::{json_lines, ossterm};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn golden(dir: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(dir).join("golden.json")).expect("read"))
        .expect("json")
}

fn ids_arg(v: &serde_json::Value) -> String {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn score_prints_nll_and_argmax_and_writes_logits() {
    let g = golden("tiny-a-int4");
    let dir = fixture("tiny-a-int4");
    let out_file = tempfile::NamedTempFile::new().expect("temp");
    let ids = ids_arg(&g["mid"]["ids"]);
    let (ok, stdout, stderr) = ossterm(&[
        "score",
        "--model",
        dir.to_str().expect("utf8"),
        "--ids",
        &ids,
        "--dtype",
        "f32",
        "--logits-out",
        out_file.path().to_str().expect("utf8"),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json output");
    let n = g["mid"]["ids"].as_array().expect("ids").len();
    assert_eq!(json["n"], n);
    let nll = json["nll_mean"].as_f64().expect("nll");
    let want = g["mid"]["nll_mean"].as_f64().expect("nll");
    assert!((nll - want).abs() < 1e-2, "{nll} vs {want}");
    assert_eq!(json["argmax"].as_array().expect("argmax").len(), n);
    let tensors = candle_core::safetensors::load(out_file.path(), &candle_core::Device::Cpu)
        .expect("logits file");
    assert_eq!(tensors["logits"].dims(), &[n, 533]);
}

#[test]
fn generate_greedy_follows_the_reference_and_uses_the_cache() {
    let g = golden("tiny-a-bf16");
    let dir = fixture("tiny-a-bf16");
    let prompt = &g["long"];
    let (ok, stdout, stderr) = ossterm(&[
        "generate",
        "--model",
        dir.to_str().expect("utf8"),
        "--ids",
        &ids_arg(&prompt["ids"]),
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
        "--dtype",
        "f32",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json output");
    let got: Vec<u64> = json["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect();
    let want: Vec<u64> = prompt["greedy"]
        .as_array()
        .expect("greedy")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect();
    let margins = prompt["greedy_margin"].as_array().expect("margins");
    let comparable = margins
        .iter()
        .position(|m| m.as_f64().expect("margin") < 0.1)
        .unwrap_or(want.len())
        .min(got.len());
    assert!(comparable > 0);
    assert_eq!(got[..comparable], want[..comparable]);
    // Stops early on the config's eos id (526), else runs to the limit.
    let eos_at = got.iter().position(|&id| id == 526);
    assert_eq!(got.len(), eos_at.map_or(12, |i| i + 1));
    assert!(json["prefill_tok_s"].as_f64().expect("rate") > 0.0);
}

#[test]
fn a_missing_model_folder_is_a_clear_error() {
    let (ok, _, stderr) = ossterm(&["score", "--model", "/no/such/model", "--ids", "1,2"]);
    assert!(!ok);
    assert!(stderr.contains("/no/such/model"), "{stderr}");
}

#[test]
fn verify_passes_on_the_fixtures_and_names_the_device() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (ok, stdout, stderr) = ossterm(&[
        "verify",
        "--fixtures",
        root.to_str().expect("utf8"),
        "--device",
        "cpu",
        "--dtype",
        "auto",
        "--kernels",
        "fused",
        "--json",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json output");
    assert!(json["device"].as_str().expect("device").starts_with("cpu"));
    assert_eq!(json["failures"], serde_json::json!([]));
    // Both fixtures with golden data, in the one mode asked for.
    assert_eq!(json["reports"].as_array().expect("reports").len(), 2);
}

/// The CPU's default kernels (8-bit expert activations) are held to the q8 tier, `--kernels
/// exact` to the default mode's own; both pass, and the text names the tier.
#[test]
fn verify_holds_the_default_kernels_to_the_q8_tier_and_exact_ones_to_the_default_tier() {
    let dir = fixture("tiny-a-int4");
    for (kernels, tier) in [("auto", "q8"), ("exact", "default")] {
        let args = [
            "verify",
            "--fixtures",
            dir.to_str().expect("utf8"),
            "--device",
            "cpu",
            "--dtype",
            "auto",
            "--kernels",
            kernels,
        ];
        let (ok, stdout, stderr) = ossterm(&[&args[..], &["--json"]].concat());
        assert!(ok, "{kernels}: {stdout}\n{stderr}");
        let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json output");
        assert_eq!(json["reports"][0]["tier"], tier, "{kernels}");
        assert_eq!(json["failures"], serde_json::json!([]));
        let (ok, stdout, _) = ossterm(&args);
        assert!(ok);
        assert_eq!(
            stdout.contains("default (q8)"),
            kernels == "auto",
            "{kernels}: {stdout}"
        );
    }
}

#[test]
fn verify_on_a_folder_without_fixtures_says_what_it_expected() {
    let empty = tempfile::tempdir().expect("temp dir");
    let (ok, _, stderr) = ossterm(&["verify", "--fixtures", empty.path().to_str().expect("utf8")]);
    assert!(!ok);
    assert!(stderr.contains("golden.json"), "{stderr}");
}

/// `--dtype q8-dense`: the attention and output weights in 8 bits, 1.125 bytes a weight where
/// bf16 has 2 (on a CPU with AVX-512 VNNI; elsewhere they stay 16-bit and the bench says so).
#[test]
fn bench_reports_8_bit_dense_weights_and_their_bytes() {
    let run = |dtype: &str| {
        let (ok, stdout, stderr) = ossterm(&[
            "bench",
            "--synthetic",
            "gpt-oss-20b",
            "--layers",
            "1",
            "--pp",
            "0",
            "--tg",
            "2",
            "--dtype",
            dtype,
            "--json",
        ]);
        assert!(ok, "{stderr}");
        json_lines(&stdout).remove(0)
    };
    let (auto, q8) = (run("auto"), run("q8-dense"));
    let bytes = |row: &serde_json::Value| row["weight_bytes"].as_u64().expect("weight bytes");
    if !ossterm::model::q8_0_x16::Q8_0x16::supported() {
        assert_eq!(q8["dense_weights"], "16-bit");
        assert_eq!(bytes(&q8), bytes(&auto));
        return;
    }
    assert_eq!(q8["dense_weights"], "8-bit");
    assert!(q8["tg_tok_s"].as_f64().expect("tg") > 0.0);
    // One layer's projections and the output head, 0.875 bytes a weight fewer.
    let (h, v) = (2880u64, 201_088u64);
    let projections = 4096 * h + 2 * 512 * h + h * 4096 + v * h;
    assert_eq!(bytes(&auto) - bytes(&q8), projections * 7 / 8);
}

#[test]
fn bench_measures_each_depth_on_one_model() {
    let (ok, stdout, stderr) = ossterm(&[
        "bench",
        "--synthetic",
        "gpt-oss-20b",
        "--layers",
        "1",
        "--pp",
        "4",
        "--tg",
        "2",
        "--depth",
        "0,8",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let rows = json_lines(&stdout);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["depth"], 0);
    assert_eq!(rows[1]["depth"], 8);
    for row in &rows {
        assert!(row["tg_tok_s"].as_f64().expect("tg") > 0.0);
        // Which kernels ran: the default's experts multiply 8-bit activations.
        assert_eq!(row["kernels"], "auto");
        assert_eq!(row["expert_activations"], "8-bit");
        assert_eq!(row["dense_weights"], "16-bit");
        assert!(
            row["peak_device_bytes"].is_null(),
            "no device memory on the CPU"
        );
    }
}
