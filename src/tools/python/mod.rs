//! The python tool: the model's code runs in a separate `python3` (or docker) process per
//! chat, a notebook-like REPL with a wall-time limit, a memory limit, a private working
//! folder, capped output and, where the OS lets an unprivileged process drop it, no network.

mod repl;
mod sandbox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::harmony::ToolNamespaceConfig;
use crate::tools::error::ToolError;
use crate::tools::host::{CallControl, ToolAnswer};
use crate::tools::settings::{PythonRunner, PythonSettings};

pub use repl::{CellOutput, DRIVER};
pub use sandbox::network_isolation;

/// The recipient the model calls.
pub const RECIPIENT: &str = "python";

/// What the reference tool answers when a cell printed nothing (gpt-oss was trained on it).
pub const NO_OUTPUT: &str =
    "[WARN] No output available. Use print() to output anything to the console.";

/// A chat's REPL, created on its first call; `None` after it died.
type Session = Arc<Mutex<Option<repl::Repl>>>;

/// Every chat's python process.
#[derive(Debug)]
pub struct PythonTool {
    settings: PythonSettings,
    /// Per-chat working folders live under this.
    base_dir: PathBuf,
    /// `Err(why)` when this machine does not let python drop the network.
    isolation: Result<(), String>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl PythonTool {
    /// The tool for these settings; per-chat folders go under `work_dir/python/`.
    pub fn new(settings: PythonSettings, work_dir: &Path) -> Self {
        let isolation = match settings.runner {
            PythonRunner::Local => network_isolation(),
            // `docker run --network none`.
            PythonRunner::Docker => Ok(()),
        };
        Self {
            settings,
            base_dir: work_dir.join("python"),
            isolation,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// How this tool is described to the model (harmony's stateful python text, with this
    /// host's time limit and network state).
    pub fn namespace(&self) -> ToolNamespaceConfig {
        // harmony's `ToolNamespaceConfig::python()` wording (what gpt-oss was trained on) with
        // three facts made true for this host: the time limit, the working folder instead of
        // `/mnt/data`, and whether the network is reachable instead of "UNKNOWN". OpenAI's own
        // reference python tool also replaces this text with its own. The demo model was
        // fine-tuned on this form; `harmony::PYTHON_TOOL_DESCRIPTION` keeps the exact text.
        let internet = if self.isolation.is_ok() {
            "disabled"
        } else {
            "enabled"
        };
        let seconds = self.settings.timeout.as_secs_f64();
        let description = format!(
            "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. This tool should be used for internal reasoning, but not for code that is intended to be visible to the user (e.g. when creating plots, tables, or files).\n\nWhen you send a message containing Python code to python, it will be executed in a stateful Jupyter notebook environment. python will respond with the output of the execution or time out after {seconds:.1} seconds. The current working directory can be used to save and persist user files. Internet access for this session is {internet}."
        );
        ToolNamespaceConfig {
            name: RECIPIENT.to_string(),
            description: Some(description),
            tools: Vec::new(),
        }
    }

    /// Why the model's code can reach the network, when it can.
    pub fn network_problem(&self) -> Option<&str> {
        self.isolation.as_ref().err().map(String::as_str)
    }

    /// Where the code runs, for the approval prompt.
    pub fn runner_label(&self) -> String {
        match self.settings.runner {
            PythonRunner::Local => match &self.isolation {
                Ok(()) => "local python3 (no network)".to_string(),
                Err(_) => "local python3 (network NOT isolated)".to_string(),
            },
            PythonRunner::Docker => {
                format!("docker {} (--network none)", self.settings.docker_image)
            }
        }
    }

    /// Runs `code` in `chat_id`'s REPL (starting it if needed).
    pub fn run(&self, chat_id: &str, code: &str, control: &CallControl) -> ToolAnswer {
        let session = self.session(chat_id);
        let mut slot = match session.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut header = String::new();
        if slot.is_none() {
            match self.start(chat_id) {
                Ok(repl) => {
                    if let Some(note) = &repl.network_note {
                        header =
                            format!("[python: the network is reachable from this code: {note}]\n");
                    }
                    *slot = Some(repl);
                }
                Err(error) => {
                    return ToolAnswer {
                        text: format!("[ERROR] {error}"),
                        is_error: true,
                    };
                }
            }
        }
        let Some(repl) = slot.as_mut() else {
            return ToolAnswer {
                text: "[ERROR] python did not start".into(),
                is_error: true,
            };
        };
        let pgid = repl.pgid;
        control.on_cancel(Box::new(move || repl::signal_group(pgid, libc::SIGKILL)));
        let output = repl.run(code, self.settings.timeout, self.settings.output_bytes);
        if !output.alive {
            *slot = None;
        }
        answer(header, output)
    }

    /// Forgets `chat_id`'s state (kills its process; its folder stays).
    pub fn reset(&self, chat_id: &str) {
        let removed = self.lock_sessions().remove(chat_id);
        if let Some(session) = removed
            && let Ok(mut slot) = session.try_lock()
        {
            *slot = None;
        }
    }

    /// Kills every REPL.
    pub fn shutdown(&self) {
        for (_, session) in self.lock_sessions().drain() {
            if let Ok(mut slot) = session.try_lock() {
                *slot = None;
            }
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.sessions.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn session(&self, chat_id: &str) -> Session {
        self.lock_sessions()
            .entry(chat_id.to_string())
            .or_default()
            .clone()
    }

    fn start(&self, chat_id: &str) -> Result<repl::Repl, ToolError> {
        let dir = self.base_dir.join(folder_name(chat_id));
        std::fs::create_dir_all(&dir).map_err(|source| ToolError::Io {
            what: format!("creating the python working folder {}", dir.display()),
            source,
        })?;
        let sentinel = format!("__ossterm_cell_end_{:016x}__", rand::random::<u64>());
        match self.settings.runner {
            PythonRunner::Local => {
                let mut command = Command::new("python3");
                command
                    .arg("-u")
                    .arg("-c")
                    .arg(DRIVER)
                    .arg(&sentinel)
                    .current_dir(&dir)
                    .env("PYTHONUNBUFFERED", "1")
                    .env("MPLBACKEND", "Agg");
                sandbox::confine(
                    &mut command,
                    self.settings.memory_mb,
                    self.isolation.is_ok(),
                );
                let mut repl = repl::Repl::start(command, &sentinel)?;
                repl.network_note = sandbox::check_child_network(repl.pgid, &self.isolation);
                Ok(repl)
            }
            PythonRunner::Docker => {
                sandbox::check_docker_image(&self.settings.docker_image)?;
                let mut command = Command::new("docker");
                let mount = format!("{}:/mnt/data", dir.display());
                let container = format!("ossterm-python-{:016x}", rand::random::<u64>());
                command
                    .args(["run", "-i", "--rm", "--name", &container])
                    .args(["--network", "none", "--pids-limit", "256"])
                    .arg(format!("--memory={}m", self.settings.memory_mb))
                    .args(["-v", &mount, "-w", "/mnt/data"])
                    .arg(&self.settings.docker_image)
                    .args(["python3", "-u", "-c", DRIVER])
                    .arg(&sentinel);
                sandbox::confine(&mut command, 0, false);
                let mut repl = repl::Repl::start(command, &sentinel)?;
                repl.container = Some(container);
                Ok(repl)
            }
        }
    }
}

/// A folder name from an untrusted chat id: letters, digits, `-`, `_` only.
fn folder_name(chat_id: &str) -> String {
    let mut name: String = chat_id
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    name
}

fn answer(header: String, output: CellOutput) -> ToolAnswer {
    let mut text = header;
    if let Some(problem) = &output.problem {
        text.push_str(&format!("[ERROR] {problem}\n"));
    }
    if output.text.trim().is_empty() && output.problem.is_none() {
        text.push_str(NO_OUTPUT);
    } else {
        text.push_str(&output.text);
    }
    ToolAnswer {
        text,
        is_error: output.problem.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids_become_safe_folder_names() {
        assert_eq!(folder_name("chat-1_a"), "chat-1_a");
        assert_eq!(folder_name("../../etc"), "______etc");
        assert_eq!(folder_name(""), "_");
    }

    #[test]
    fn an_empty_cell_answers_like_the_reference_tool() {
        let output = CellOutput {
            text: "\n".into(),
            failed: false,
            problem: None,
            alive: true,
        };
        assert_eq!(answer(String::new(), output).text, NO_OUTPUT);
    }
}
