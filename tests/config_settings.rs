//! Settings through the binary: `ossterm config` with good, bad and unknown values.

use std::path::Path;
use std::process::{Command, Output};

fn ossterm_config(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .arg("config")
        .args(extra)
        .env("OSSTERM_CONFIG_DIR", dir)
        .env("OSSTERM_DATA_DIR", dir.join("data"))
        .output()
        .expect("ossterm runs")
}

fn with_config(text: &str) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.toml"), text).expect("write config");
    let out = ossterm_config(dir.path(), &["--json"]);
    (dir, out)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn missing_file_prints_defaults_and_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ossterm_config(dir.path(), &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    let expected_path = dir.path().join("config.toml");
    assert_eq!(json["path"], expected_path.to_string_lossy().as_ref());
    assert_eq!(json["file_found"], false);
    assert_eq!(
        json["settings"]["model"],
        "Intel/gpt-oss-20b-int4-g64-rtn-AutoRound"
    );
    assert_eq!(json["settings"]["effort"], "medium");
    assert_eq!(json["settings"]["theme"], "dark");
}

#[test]
fn file_values_are_the_effective_values() {
    let (_dir, out) = with_config("effort = \"high\"\n[sampling]\ntemperature = 0.5\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(json["file_found"], true);
    assert_eq!(json["settings"]["effort"], "high");
    assert_eq!(json["settings"]["sampling"]["temperature"], 0.5);
}

#[test]
fn plain_output_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.toml"), "theme = \"light\"\n").expect("write");
    let out = ossterm_config(dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&dir.path().join("config.toml").display().to_string()),
        "{text}"
    );
    assert!(text.contains("theme = \"light\""), "{text}");
}

#[test]
fn unknown_keys_are_refused_with_key_and_file() {
    for (text, key) in [
        ("temprature = 1.0\n", "temprature"),
        ("[sampling]\ntopp = 0.9\n", "sampling.topp"),
    ] {
        let (dir, out) = with_config(text);
        assert!(!out.status.success(), "{text} accepted");
        let message = stderr(&out);
        assert!(
            message.contains(&format!("unknown key `{key}`")),
            "{message}"
        );
        assert!(
            message.contains(&dir.path().join("config.toml").display().to_string()),
            "{message}"
        );
        assert!(!message.contains("panicked"), "{message}");
    }
}

#[test]
fn bad_values_are_refused_with_key_and_file() {
    let cases = [
        ("effort = \"extreme\"\n", "`effort`"),
        ("device = \"gpu\"\n", "`device`"),
        ("dtype = \"f16\"\n", "`dtype`"),
        ("context = 0\n", "`context`"),
        ("context = -5\n", "`context`"),
        ("context = \"big\"\n", "`context`"),
        ("theme = \"\"\n", "`theme`"),
        ("[sampling]\ntemperature = -1\n", "`sampling.temperature`"),
        ("[sampling]\ntop_p = 1.5\n", "`sampling.top_p`"),
        ("[sampling]\nmin_p = \"x\"\n", "`sampling.min_p`"),
        ("[sampling]\ntop_k = 2.5\n", "`sampling.top_k`"),
        ("sampling = 3\n", "`sampling`"),
        ("[keybindings]\nsubmit = 5\n", "`keybindings.submit`"),
        ("[python]\nrunner = \"vm\"\n", "`python.runner`"),
        ("[mcp.time]\nargs = []\n", "`mcp.time.command` is missing"),
        (
            "[browser]\nsearxng_url = \"ftp://x\"\n",
            "`browser.searxng_url`",
        ),
        ("[tools]\nallow = \"python\"\n", "`tools.allow`"),
    ];
    for (text, key) in cases {
        let (dir, out) = with_config(text);
        assert!(!out.status.success(), "{text:?} accepted");
        let message = stderr(&out);
        assert!(message.contains(key), "{text:?}: {message}");
        assert!(
            message.contains(&dir.path().join("config.toml").display().to_string()),
            "{message}"
        );
        assert!(!message.contains("panicked"), "{message}");
    }
}

#[test]
fn broken_toml_names_the_file_and_line() {
    let (dir, out) = with_config("model = \"unterminated\n");
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("not valid TOML"), "{message}");
    assert!(message.contains("line 1"), "{message}");
    assert!(
        message.contains(&dir.path().join("config.toml").display().to_string()),
        "{message}"
    );
}

#[test]
fn explicit_config_file_must_exist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.toml");
    let out = ossterm_config(dir.path(), &["--config", missing.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope.toml"), "{}", stderr(&out));
}
