//! The Intel repo's layout at the real shape, reduced to 2 layers (one sliding, one full):
//! written by the hidden `replica` command, then planned by `fit`, scored by `score` (both
//! through the binary, as a user runs them) and loaded in-process with per-shard progress.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;
use ossterm::cli::DtypeChoice;
use ossterm::memory::allocator;
use ossterm::memory::planner::{DeviceKind, Plan};
use ossterm::model::{GptOss, Kernels, Precision, ShardProgress};

/// This process's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("VmHWM in kB")
        * 1024
}

fn ossterm(args: &[&str], cwd: &Path) -> Output {
    let config_dir = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .args(args)
        .current_dir(cwd)
        .env("OSSTERM_CONFIG_DIR", config_dir.path())
        .output()
        .expect("ossterm runs")
}

fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a 2-layer replica from the checkout (the default tokenizer path is relative to it).
fn two_layer_replica(root: &Path) -> PathBuf {
    let dir = root.join("intel-replica");
    let dir_text = dir.to_str().expect("temp paths are UTF-8");
    let stdout = succeeded(&ossterm(
        &["replica", dir_text, "--layers", "2", "--seed", "5"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ));
    assert!(stdout.contains("2-layer replica"), "{stdout}");
    dir
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "reads peak memory from /proc/self/status"
)]
fn two_layer_replica_fits_scores_and_loads_shard_by_shard() {
    // Under the build folder, on disk: a tmpfs /tmp would fill the holes it is read through.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let dir = two_layer_replica(root.path());
    let dir_text = dir.to_str().expect("temp paths are UTF-8");

    // The published keys as the hub serves them, with auto-round's block.
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config.json")).expect("config.json"),
    )
    .expect("config JSON");
    assert_eq!(config["experts_per_token"], config["num_experts_per_tok"]);
    assert_eq!(config["torch_dtype"], "bfloat16");
    assert_eq!(config["quantization_config"]["quant_method"], "auto-round");
    assert_eq!(config["rope_scaling"]["rope_type"], "yarn");

    let fit = succeeded(&ossterm(
        &[
            "fit",
            "--model",
            dir_text,
            "--device",
            "cpu",
            "--memory",
            "68719476736",
            "--json",
        ],
        root.path(),
    ));
    let fit: serde_json::Value = serde_json::from_str(&fit).expect("fit JSON");
    // One full layer: 2 x 8 kv heads x 64 x 2 B per token on the CPU.
    assert_eq!(fit["kv_bytes_per_token"], 2 * 8 * 64 * 2);
    assert_eq!(fit["max_context"], 131072);

    let score = succeeded(&ossterm(
        &[
            "score", "--model", dir_text, "--device", "cpu", "--ids", "1,2,3,4", "--json",
        ],
        root.path(),
    ));
    let score: serde_json::Value = serde_json::from_str(&score).expect("score JSON");
    let nll = score["nll_mean"].as_f64().expect("a finite mean NLL");
    assert!(nll.is_finite() && nll > 0.0, "{score}");
    assert_eq!(score["argmax"].as_array().map(Vec::len), Some(4));

    // In-process, the loader reports each shard it reaches, in order, ending on a full shard,
    // and resident memory never holds more than the planned weights (+10%): no second copy in
    // mapped file pages.
    allocator::map_large_blocks();
    let planned = Plan::for_dir(&dir, DeviceKind::Cpu, DtypeChoice::Auto)
        .expect("plan")
        .weight_bytes();
    let before = peak_rss_bytes();
    let mut seen: Vec<ShardProgress> = Vec::new();
    let model = GptOss::load_with_progress(
        &dir,
        &Device::Cpu,
        Precision::Default,
        Kernels::Auto,
        &mut |at| seen.push(at.clone()),
    )
    .expect("the replica loads");
    assert_eq!(model.config().num_hidden_layers, 2);
    let grown = peak_rss_bytes().saturating_sub(before);
    eprintln!("peak RSS grew {grown} B while loading; planned weights {planned} B");
    assert!(
        grown as f64 <= planned as f64 * 1.10,
        "peak RSS grew {grown} B, planned weights {planned} B"
    );
    let shards = seen.first().expect("progress was reported").shards;
    assert!(shards >= 2, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].shard <= w[1].shard),
        "{seen:?}"
    );
    let last = seen.last().expect("progress was reported");
    assert_eq!(last.shard, shards);
    assert_eq!(
        last.file,
        format!("model-{shards:05}-of-{shards:05}.safetensors")
    );
    assert_eq!(last.done_bytes, last.total_bytes, "{last:?}");
}

#[test]
fn replica_is_hidden_and_needs_a_tokenizer() {
    let root = tempfile::tempdir().expect("temp dir");
    let help = succeeded(&ossterm(&["--help"], root.path()));
    assert!(!help.contains("replica"), "{help}");
    // Outside the checkout the default tokenizer is not there: a clear error, nothing written.
    let out = ossterm(&["replica", "out", "--layers", "1"], root.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tests/fixtures/o200k_harmony/tokenizer.json: does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("--tokenizer FILE"), "{stderr}");
    assert!(!root.path().join("out").exists());
}
