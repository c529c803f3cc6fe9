//! `ossterm download` and `fit` with hub ids through the binary, with the standard HF_*
//! variables pointing at a local fake hub or at nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::fake_hub::{self, FakeHub};

fn ossterm(args: &[&str], hf_home: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ossterm"));
    command
        .args(args)
        .env("HF_HOME", hf_home)
        .env("OSSTERM_CONFIG_DIR", hf_home.join("ossterm-config"))
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("ossterm runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn download_then_use_the_cache_offline() {
    let server = FakeHub::start();
    let home = tempfile::tempdir().expect("temp dir");
    let out = ossterm(
        &["download", fake_hub::REPO],
        home.path(),
        &[("HF_ENDPOINT", &server.endpoint)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = text(&out.stdout).trim().to_string();
    assert!(Path::new(&dir).join("model.safetensors").is_file(), "{dir}");
    let progress = text(&out.stderr);
    assert!(progress.contains("model.safetensors"), "{progress}");
    assert!(progress.contains("/s"), "rate shown: {progress}");

    // Offline with the hub gone: the cached folder is used.
    let dead = fake_hub::closed_port_endpoint();
    let out = ossterm(
        &["download", fake_hub::REPO],
        home.path(),
        &[("HF_ENDPOINT", &dead), ("HF_HUB_OFFLINE", "1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), dir);

    // fit plans from the cached config and headers, offline too.
    let out = ossterm(
        &[
            "fit",
            "--model",
            fake_hub::REPO,
            "--memory",
            "1073741824",
            "--json",
        ],
        home.path(),
        &[("HF_ENDPOINT", &dead), ("HF_HUB_OFFLINE", "1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["kv_bytes_per_token"], 2 * 2 * 2 * 32 * 2);

    // The headless model commands take the downloaded hub id too, offline.
    let out = ossterm(
        &[
            "score",
            "--model",
            fake_hub::REPO,
            "--ids",
            "1,2,3",
            "--json",
        ],
        home.path(),
        &[("HF_ENDPOINT", &dead), ("HF_HUB_OFFLINE", "1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["n"], 3);
}

#[test]
fn a_hub_id_not_downloaded_yet_says_to_download_it() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = ossterm(
        &["generate", "--model", fake_hub::REPO, "--ids", "1,2"],
        home.path(),
        &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("ossterm download {}", fake_hub::REPO)),
        "{stderr}"
    );
}

#[test]
fn unreachable_hub_is_a_fast_clear_error() {
    let home = tempfile::tempdir().expect("temp dir");
    let dead = fake_hub::closed_port_endpoint();
    let started = Instant::now();
    let out = ossterm(
        &["download", fake_hub::REPO],
        home.path(),
        &[("HF_ENDPOINT", &dead)],
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!out.status.success());
    let message = text(&out.stderr);
    assert!(
        message.contains("cannot reach the Hugging Face hub"),
        "{message}"
    );
    assert!(
        message.contains("--model /path/to/a/local/folder"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn offline_and_not_cached_says_what_to_do() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = ossterm(
        &["download", fake_hub::REPO],
        home.path(),
        &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(!out.status.success());
    let message = text(&out.stderr);
    assert!(
        message.contains("not in the Hugging Face cache"),
        "{message}"
    );
    assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
}

#[test]
fn fit_on_a_hub_id_fetches_only_config_json() {
    let server = FakeHub::start();
    let home = tempfile::tempdir().expect("temp dir");
    let out = ossterm(
        &[
            "fit",
            "--model",
            fake_hub::REPO,
            "--memory",
            "1073741824",
            "--json",
        ],
        home.path(),
        &[("HF_ENDPOINT", &server.endpoint)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        json["model"]
            .as_str()
            .is_some_and(|m| m.contains("weights not downloaded")),
        "{json}"
    );
    assert_eq!(json["kv_bytes_per_token"], 2 * 2 * 2 * 32 * 2);
    assert!(server.requests_for("model.safetensors").is_empty());
    assert!(!server.requests_for("config.json").is_empty());

    // The inferred int4 inventory plans the same weights as the real headers.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-a-int4");
    let out = ossterm(
        &[
            "fit",
            "--model",
            fixture,
            "--memory",
            "1073741824",
            "--json",
        ],
        home.path(),
        &[],
    );
    let local: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["weight_bytes"], local["weight_bytes"]);
}

#[test]
fn download_gives_up_on_a_silent_hub_within_the_timeout_set_by_the_variable() {
    let server = FakeHub::start();
    server.arm(|f| &f.stall_info, true);
    let home = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let out = ossterm(
        &["download", fake_hub::REPO],
        home.path(),
        &[
            ("HF_ENDPOINT", &server.endpoint),
            ("OSSTERM_HUB_TIMEOUT_S", "1"),
        ],
    );
    assert!(
        started.elapsed() < fake_hub::STALL / 2,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let message = text(&out.stderr);
    assert!(
        message.contains("no data from the hub for 1 s"),
        "{message}"
    );
    assert!(message.contains("OSSTERM_HUB_TIMEOUT_S"), "{message}");
}

#[test]
fn a_bad_timeout_variable_is_a_clear_error() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = ossterm(
        &["download", fake_hub::REPO],
        home.path(),
        &[
            ("HF_ENDPOINT", &fake_hub::closed_port_endpoint()),
            ("OSSTERM_HUB_TIMEOUT_S", "soon"),
        ],
    );
    assert!(!out.status.success());
    let message = text(&out.stderr);
    assert!(
        message.contains("OSSTERM_HUB_TIMEOUT_S=\"soon\": expected whole seconds from 1 to 3600"),
        "{message}"
    );
}

#[test]
fn fit_works_offline_after_an_interrupted_download() {
    let server = FakeHub::start();
    server.arm(|f| &f.cut_next, true);
    let home = tempfile::tempdir().expect("temp dir");
    let out = ossterm(
        &["download", fake_hub::REPO],
        home.path(),
        &[("HF_ENDPOINT", &server.endpoint)],
    );
    assert!(!out.status.success(), "the weights were cut");
    assert!(text(&out.stderr).contains("run again to resume"));
    let out = ossterm(
        &["fit", "--model", fake_hub::REPO, "--memory", "1073741824"],
        home.path(),
        &[
            ("HF_ENDPOINT", &fake_hub::closed_port_endpoint()),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}
