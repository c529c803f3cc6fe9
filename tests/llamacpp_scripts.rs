//! The side-by-side with llama.cpp (scripts/bench-vs-llamacpp.sh and scripts/llamacpp/): its
//! Python tests, and the shell script's refusals before it starts anything.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_python_tests_of_the_gguf_writer_and_the_table_pass() {
    // write_gguf.py's tests skip themselves without llama.cpp's gguf-py; the table's always run.
    let out = Command::new("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "scripts/llamacpp",
            "-p",
            "test_*.py",
        ])
        .current_dir(repo())
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("OK"), "{stderr}");
}

/// Runs the script with `env` set and returns (success, stderr).
fn script(env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new("bash")
        .arg("scripts/bench-vs-llamacpp.sh")
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .expect("bash runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_side_by_side_script_refuses_bad_settings_before_running_anything() {
    let (ok, stderr) = script(&[("REPEAT", "0")]);
    assert!(!ok);
    assert!(
        stderr.contains("REPEAT=0: expected a whole number >= 1"),
        "{stderr}"
    );
    let (ok, stderr) = script(&[("DEPTH", "4k")]);
    assert!(!ok);
    assert!(
        stderr.contains("DEPTH=4k: expected a whole number"),
        "{stderr}"
    );
    let (ok, stderr) = script(&[("LLAMA_BENCH", "/nonexistent/llama-bench")]);
    assert!(!ok);
    assert!(
        stderr.contains("LLAMA_BENCH=/nonexistent/llama-bench: not an executable"),
        "{stderr}"
    );
    let (ok, stderr) = script(&[
        ("LLAMA_BENCH", "/bin/true"),
        ("GGUF", "/nonexistent/model.gguf"),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("GGUF=/nonexistent/model.gguf: no such file"),
        "{stderr}"
    );
}
