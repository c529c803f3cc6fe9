//! `ossterm config` checks `[keybindings]` with the app's own check (`Settings::keymap`): an
//! unknown action or key, a key that types text, and one key for two actions are refused
//! with the file and the reason, before the app would be started with them.

use std::path::Path;
use std::process::{Command, Output};

fn ossterm_config(dir: &Path, keybindings: &str) -> Output {
    let path = dir.join("config.toml");
    std::fs::write(&path, format!("[keybindings]\n{keybindings}")).expect("write config");
    Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .arg("config")
        .env("OSSTERM_CONFIG_DIR", dir)
        .env("OSSTERM_DATA_DIR", dir.join("data"))
        .output()
        .expect("ossterm runs")
}

#[test]
fn bad_keybindings_are_refused_as_the_app_refuses_them() {
    let cases = [
        ("fly = \"f2\"\n", "unknown action 'fly' in [keybindings]"),
        ("quit = \"hyper+q\"\n", "unknown key 'hyper+q'"),
        (
            "help = \"?\"\n",
            "'?' for help types text, so it could not be typed any more",
        ),
        (
            "quit = \"ctrl+x\"\nhelp = \"ctrl+x\"\n",
            "'ctrl+x' is bound to both help and quit",
        ),
        (
            "quit = \"ctrl+r\"\n",
            "'ctrl+r' is bound to both quit and toggle_reasoning",
        ),
    ];
    for (keybindings, reason) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = ossterm_config(dir.path(), keybindings);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{keybindings:?} accepted");
        assert!(stderr.contains(reason), "{keybindings:?}: {stderr}");
        let file = dir.path().join("config.toml").display().to_string();
        assert!(
            stderr.contains(&format!("config file {file}: [keybindings]: ")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn good_keybindings_are_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ossterm_config(
        dir.path(),
        "quit = \"ctrl+r\"\ntoggle_reasoning = \"ctrl+q f5\"\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
