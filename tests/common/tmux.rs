//! The real binary in tmux: a session of the test's own, typed into and read back.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long `wait_for` waits (the demo model loads in seconds; CI machines are slow).
pub const WAIT: Duration = Duration::from_secs(120);

/// A tmux server of the test's own (its socket named after the test and the process),
/// killed when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A 140x45 session running a bare bash with the app's data and config folders set.
    pub fn start(name: &str, data: &Path, config: &Path) -> Self {
        let tmux = Self {
            socket: format!("ossterm-e2e-{name}-{}", std::process::id()),
        };
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "140",
            "-y",
            "45",
            "-e",
            &format!("OSSTERM_DATA_DIR={}", data.display()),
            "-e",
            &format!("OSSTERM_CONFIG_DIR={}", config.display()),
            "-e",
            "PS1=$ ",
            "-e",
            "TERM=xterm-256color",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        tmux
    }

    /// Runs a tmux command on this server; panics with its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends tmux key names (`Enter`, `C-q`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "e2e", "-l", text]);
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "e2e"])
    }

    /// Polls the screen until `ready` holds; panics with the screen after `WAIT`.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The app's process (the shell's child).
    pub fn app_pid(&self) -> Option<u32> {
        let shell = self.run(&["display", "-p", "-t", "e2e", "#{pane_pid}"]);
        let out = Command::new("pgrep")
            .args(["-P", shell.trim()])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
