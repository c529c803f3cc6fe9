//! The headless commands under bad input, through the binary: closed pipes, sizes beyond the
//! model or the machine, sampling values the sampler cannot honour, unknown ids, non-finite
//! logits, fixtures with nothing to check, and `--logits-out` paths that are not regular files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::cli::ossterm;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs ossterm expecting a failure (not a panic) whose message contains `message`.
fn refused_saying(args: &[&str], message: &str) {
    let (ok, stdout, stderr) = ossterm(args);
    assert!(!ok, "ossterm {args:?} succeeded:\n{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(message), "ossterm {args:?}: {stderr}");
}

/// A copy of a fixture model folder, to change.
fn model_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(fixture(name)).expect("fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn ids(n: usize) -> String {
    (0..n)
        .map(|i| (i % 500).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_closed_pipe_ends_render_quietly_with_success() {
    let case = std::fs::read_to_string(fixture("o200k_harmony/harmony_render.jsonl")).unwrap();
    let case: serde_json::Value = serde_json::from_str(case.lines().next().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conversation = dir.path().join("conversation.json");
    std::fs::write(&conversation, case["conversation"].to_string()).unwrap();
    for json in [false, true] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        // Nobody will read: every write to the pipe fails with EPIPE.
        drop(reader);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ossterm"));
        command.args([
            "render",
            "--tokenizer",
            text(&fixture("o200k_harmony/tokenizer.json")),
            "--conversation",
            text(&conversation),
        ]);
        if json {
            command.arg("--json");
        }
        let out = command
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}: {stderr}", out.status);
        assert_eq!(stderr, "", "nothing is said about the closed pipe");
    }
}

#[test]
fn parse_names_an_id_the_tokenizer_does_not_have() {
    refused_saying(
        &[
            "parse",
            "--tokenizer",
            text(&fixture("o200k_harmony/tokenizer.json")),
            "--ids",
            "200006,1428,250000,3",
        ],
        "id 250000 (position 2) is not a token of this tokenizer (its ids run to 200018)",
    );
}

#[test]
fn generate_refuses_sampling_values_the_app_refuses() {
    let model = fixture("tiny-a-bf16");
    for (flag, value, message) in [
        ("--min-p", "2", "--min-p is 2: must be a number in [0, 1]"),
        (
            "--temperature",
            "NaN",
            "--temperature is NaN: must be a number >= 0",
        ),
        (
            "--temperature",
            "inf",
            "--temperature is inf: must be a number >= 0",
        ),
        ("--top-p", "0", "--top-p is 0: must be a number in (0, 1]"),
        ("--top-p", "5", "--top-p is 5: must be a number in (0, 1]"),
    ] {
        refused_saying(
            &[
                "generate",
                "--model",
                text(&model),
                "--ids",
                "1,2,3",
                flag,
                value,
            ],
            message,
        );
    }
}

#[test]
fn ids_beyond_the_models_positions_are_refused_before_running() {
    let model = model_copy("tiny-a-bf16");
    let config_path = model.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["max_position_embeddings"] = 16.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let dir = text(model.path());
    refused_saying(
        &["score", "--model", dir, "--ids", &ids(40)],
        "--ids (40) need 40 positions, but the model has 16",
    );
    refused_saying(
        &[
            "generate",
            "--model",
            dir,
            "--ids",
            &ids(10),
            "--max-new-tokens",
            "7",
        ],
        "--ids (10) and --max-new-tokens (7) need 17 positions",
    );
    refused_saying(
        &[
            "generate",
            "--model",
            dir,
            "--ids",
            "1",
            "--max-new-tokens",
            &usize::MAX.to_string(),
        ],
        "add up to more tokens than can be counted",
    );
}

#[test]
fn bench_refuses_thread_depth_and_layer_counts_beyond_reason() {
    let synthetic = ["bench", "--synthetic", "gpt-oss-20b", "--layers", "1"];
    refused_saying(
        &[&synthetic[..], &["--threads", "100000"]].concat(),
        "--threads 100000: use 1 to ",
    );
    refused_saying(
        &[&synthetic[..], &["--threads", "0"]].concat(),
        "--threads 0: use 1 to ",
    );
    refused_saying(
        &[&synthetic[..], &["--depth", "0,1000000000"]].concat(),
        "--depth 1000000000 + --pp 512 + --tg 128 + 1 need 1000000641 positions, but the model has 131072",
    );
    let huge = usize::MAX.to_string();
    refused_saying(
        &[&synthetic[..], &["--depth", &huge]].concat(),
        "add up to more tokens than can be counted",
    );
    refused_saying(
        &[
            "bench",
            "--synthetic",
            "gpt-oss-20b",
            "--layers",
            "10000000",
        ],
        "--layers 10000000: gpt-oss-20b has 1 to 24 layers",
    );
}

#[test]
fn fit_refuses_a_layer_count_beyond_the_preset() {
    refused_saying(
        &["fit", "--synthetic", "gpt-oss-20b", "--layers", "10000000"],
        "--layers 10000000: gpt-oss-20b has 1 to 24 layers",
    );
}

#[test]
fn score_reports_non_finite_logits_instead_of_a_null_nll() {
    let model = model_copy("tiny-a-bf16");
    let weights = model.path().join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let norm = &header["model.norm.weight"];
    assert_eq!(norm["dtype"], "BF16");
    let start = 8 + header_len + norm["data_offsets"][0].as_u64().unwrap() as usize;
    // bf16 NaN in the final norm's first weight: every position's logits become NaN.
    bytes[start..start + 2].copy_from_slice(&0x7fc0u16.to_le_bytes());
    std::fs::write(&weights, bytes).unwrap();
    refused_saying(
        &[
            "score",
            "--model",
            text(model.path()),
            "--ids",
            "1,2,3,4",
            "--json",
        ],
        "the logits at position 0 (after id 1) are not finite: NaN",
    );
}

#[test]
fn verify_on_fixtures_without_prompts_is_an_error() {
    let model = model_copy("tiny-a-bf16");
    std::fs::write(model.path().join("golden.json"), "{}").unwrap();
    refused_saying(
        &[
            "verify",
            "--fixtures",
            text(model.path()),
            "--device",
            "cpu",
        ],
        "golden.json: holds no prompts",
    );
}

#[test]
fn score_writes_logits_only_to_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious.txt");
    std::fs::write(&target, "keep me").unwrap();
    let link = dir.path().join("link.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = dir.path().join("fifo.safetensors");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let model = fixture("tiny-a-bf16");
    let score_to = |path: &Path| {
        [
            "score",
            "--model",
            text(&model),
            "--ids",
            "1,2,3",
            "--logits-out",
            text(path),
        ]
        .map(String::from)
    };
    for (path, kind) in [
        (&link, "symbolic link"),
        (&fifo, "FIFO"),
        (&dir.path().to_path_buf(), "directory"),
    ] {
        let args = score_to(path);
        refused_saying(
            &args.each_ref().map(String::as_str),
            &format!("--logits-out {} is a {kind}", path.display()),
        );
    }
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }
    // A regular file is replaced whole.
    let args = score_to(&target);
    let (ok, _, stderr) = ossterm(&args.each_ref().map(String::as_str));
    assert!(ok, "{stderr}");
    let tensors = candle_core::safetensors::load(&target, &candle_core::Device::Cpu).unwrap();
    assert_eq!(tensors["logits"].dims(), &[3, 533]);
}

#[test]
fn every_model_command_exits_non_zero_when_the_model_does_not_load() {
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("config.json"), "{ not json").unwrap();
    let dir = text(broken.path());
    for args in [
        vec!["score", "--model", dir, "--ids", "1,2"],
        vec!["generate", "--model", dir, "--ids", "1,2"],
        vec!["bench", "--model", dir, "--pp", "1", "--tg", "1"],
        vec!["fit", "--model", dir],
        vec!["verify", "--fixtures", dir],
    ] {
        refused_saying(&args, "config.json");
    }
}
