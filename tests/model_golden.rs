//! The engine against the reference fixtures (transformers, f32 math on the stored weights),
//! through the same checks `ossterm verify` runs on a GPU.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use ossterm::model::fidelity::{self, FixtureReport};
use ossterm::model::{Kernels, Precision};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name)
}

fn check(name: &str, precision: Precision, kernels: Kernels) -> FixtureReport {
    let report = fidelity::check_fixture(&fixture(name), &Device::Cpu, precision, kernels)
        .expect("the fixture loads and runs");
    assert!(
        !report.prompts.is_empty(),
        "{name}: no prompts in golden.json"
    );
    let failures = report.failures();
    assert!(failures.is_empty(), "{failures:#?}");
    report
}

#[test]
fn bf16_fixture_matches_the_reference_in_f32() {
    check("tiny-a-bf16", Precision::F32, Kernels::Auto);
}

#[test]
fn int4_fixture_matches_the_reference_in_f32() {
    let report = check("tiny-a-int4", Precision::F32, Kernels::Auto);
    // Far inside the tolerance: the Q4_0 repack is lossless and the math is f32.
    assert!(
        report.prompts.iter().all(|p| p.max_diff < 1e-3),
        "{report:#?}"
    );
}

#[test]
fn bf16_fixture_is_close_in_default_mode() {
    check("tiny-a-bf16", Precision::Default, Kernels::Auto);
}

#[test]
fn int4_fixture_is_close_in_default_mode() {
    check("tiny-a-int4", Precision::Default, Kernels::Auto);
}

/// The form CUDA uses (stacked Q4_0 experts, routing on the device, indexed matvec for decode
/// and grouped dequantized matmuls for prefill) through its CPU reference implementation.
#[test]
fn int4_fixture_is_close_with_the_fused_kernels() {
    let fused = check("tiny-a-int4", Precision::Default, Kernels::Fused);
    let candle = check("tiny-a-int4", Precision::Default, Kernels::Candle);
    for (a, b) in fused.prompts.iter().zip(&candle.prompts) {
        assert!(
            (a.nll_mean - b.nll_mean).abs() < 1e-4,
            "{}: fused nll {} vs candle {}",
            a.prompt,
            a.nll_mean,
            b.nll_mean
        );
        assert_eq!(a.greedy_match, b.greedy_match, "{}", a.prompt);
    }
}

#[test]
fn a_broken_tolerance_is_reported() {
    // The int4 fixture with its golden logits shifted by 0.5: softmax (so the NLL) is unchanged
    // but every logit is 0.5 away, beyond the f32 mode's 0.1.
    let dir = tempfile::tempdir().expect("temp dir");
    let source = fixture("tiny-a-int4");
    for file in std::fs::read_dir(&source).expect("fixture") {
        let path = file.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let golden = source.join("golden.safetensors");
    let shifted: HashMap<String, Tensor> = candle_core::safetensors::load(&golden, &Device::Cpu)
        .expect("golden")
        .into_iter()
        .map(|(name, t)| (name, (t + 0.5).expect("shift")))
        .collect();
    candle_core::safetensors::save(&shifted, dir.path().join("golden.safetensors")).expect("save");
    let report = fidelity::check_fixture(dir.path(), &Device::Cpu, Precision::F32, Kernels::Auto)
        .expect("runs");
    let failures = report.failures();
    assert_eq!(failures.len(), report.prompts.len(), "{failures:#?}");
    assert!(
        failures.iter().all(|f| f.contains("max |diff| 0.5")),
        "{failures:#?}"
    );
}
