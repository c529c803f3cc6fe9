//! Running the ossterm binary from the integration tests.

use std::process::Command;

/// Runs ossterm with `args`; returns (success, stdout, stderr).
pub fn ossterm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
