//! The tool host thread: owns the runners, answers [`ToolCommand`]s with [`ToolEvent`]s.
//!
//! Each call runs on its own thread, so the host keeps answering (cancels, other calls)
//! while a tool works; every runner has its own time limit; a cancelled call is answered at
//! once and whatever its thread produces later is dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::tools::error::ToolError;
use crate::tools::python::{self, PythonTool};
use crate::tools::settings::ToolSettings;
use crate::tools::{
    CatalogEntry, ToolCall, ToolCatalog, ToolCommand, ToolEvent, ToolHostHandle, ToolResult,
    ToolWhere,
};

/// No result is longer than this, whatever a runner's own cap says.
pub const RESULT_LIMIT_BYTES: usize = 64 * 1024;

/// A tool's answer before the host wraps it into a [`ToolResult`].
#[derive(Debug, Clone, PartialEq)]
pub struct ToolAnswer {
    /// What the model reads.
    pub text: String,
    /// Failed, timed out or stopped.
    pub is_error: bool,
}

impl ToolAnswer {
    /// A failure the model reads as `[ERROR] …`.
    pub fn error(message: impl std::fmt::Display) -> Self {
        Self {
            text: format!("[ERROR] {message}"),
            is_error: true,
        }
    }
}

type CancelHook = Box<dyn FnOnce() + Send>;

/// One running call: how to stop it, and whether it has been answered.
pub struct CallControl {
    call: ToolCall,
    started: Instant,
    answered: AtomicBool,
    cancelled: AtomicBool,
    hooks: Mutex<Vec<CancelHook>>,
}

impl std::fmt::Debug for CallControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallControl")
            .field("call_id", &self.call.id)
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

impl CallControl {
    fn new(call: ToolCall) -> Self {
        Self {
            call,
            started: Instant::now(),
            answered: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            hooks: Mutex::new(Vec::new()),
        }
    }

    /// A control for a call run outside the host (tests, direct use of a runner).
    pub fn detached(call: ToolCall) -> Self {
        Self::new(call)
    }

    /// Runs `hook` when the call is cancelled (at once if it already was).
    pub fn on_cancel(&self, hook: CancelHook) {
        if self.cancelled.load(Ordering::SeqCst) {
            hook();
            return;
        }
        match self.hooks.lock() {
            Ok(mut hooks) => hooks.push(hook),
            Err(poisoned) => poisoned.into_inner().push(hook),
        }
    }

    /// True once the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let hooks = match self.hooks.lock() {
            Ok(mut hooks) => std::mem::take(&mut *hooks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for hook in hooks {
            hook();
        }
    }

    /// Sends the call's result unless it was already answered (first answer wins).
    fn answer(&self, events: &Sender<ToolEvent>, answer: ToolAnswer) {
        if self.answered.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = events.send(ToolEvent::Finished(ToolResult {
            call_id: self.call.id,
            author: self.call.recipient.clone(),
            channel: self.call.channel.clone(),
            text: cap_text(&answer.text, RESULT_LIMIT_BYTES),
            is_error: answer.is_error,
            duration: self.started.elapsed(),
        }));
    }
}

/// Cuts `text` to at most `limit_bytes` (on a character boundary) with a note saying so.
pub fn cap_text(text: &str, limit_bytes: usize) -> String {
    if text.len() <= limit_bytes {
        return text.to_string();
    }
    let mut end = limit_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[cut: {} more bytes; the limit is {limit_bytes} bytes]",
        &text[..end],
        text.len() - end
    )
}

/// Starts the tool host thread for these settings.
pub fn spawn(settings: &ToolSettings) -> Result<ToolHostHandle, ToolError> {
    let (command_sender, commands) = mpsc::channel();
    let (events, event_receiver) = mpsc::channel();
    let work_dir = settings
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("ossterm-tools"));
    let host = Host::new(settings, work_dir, events)?;
    std::thread::Builder::new()
        .name("tool-host".into())
        .spawn(move || host.serve(commands))
        .map_err(|source| ToolError::Spawn {
            what: "the tool host thread".into(),
            source,
        })?;
    Ok(ToolHostHandle {
        commands: command_sender,
        events: event_receiver,
    })
}

/// Which runner answers a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Python,
    Unknown,
}

struct Host {
    python: Option<Arc<PythonTool>>,
    events: Sender<ToolEvent>,
    running: Arc<Mutex<HashMap<u64, Arc<CallControl>>>>,
    catalog: ToolCatalog,
}

impl Host {
    fn new(
        settings: &ToolSettings,
        work_dir: PathBuf,
        events: Sender<ToolEvent>,
    ) -> Result<Self, ToolError> {
        let python = settings
            .python
            .enabled
            .then(|| Arc::new(PythonTool::new(settings.python.clone(), &work_dir)));
        let mut host = Self {
            python,
            events,
            running: Arc::new(Mutex::new(HashMap::new())),
            catalog: ToolCatalog::default(),
        };
        host.catalog = host.build_catalog();
        let _ = host.events.send(ToolEvent::Tools(host.catalog.clone()));
        if let Some(why) = host.python.as_ref().and_then(|p| p.network_problem()) {
            let _ = host.events.send(ToolEvent::Problem {
                source: "python".into(),
                message: format!("the model's python code can reach the network: {why}"),
            });
        }
        Ok(host)
    }

    fn build_catalog(&self) -> ToolCatalog {
        let mut catalog = ToolCatalog::default();
        if let Some(python) = &self.python {
            catalog.builtin.push(python.namespace());
            catalog.entries.insert(
                python::RECIPIENT.to_string(),
                CatalogEntry {
                    where_runs: ToolWhere::Python {
                        runner: python.runner_label(),
                    },
                    read_only: false,
                },
            );
        }
        catalog
    }

    fn route(&self, recipient: &str) -> Route {
        // The reference routes every `python…` recipient to the python tool.
        if self.python.is_some() && recipient.starts_with(python::RECIPIENT) {
            return Route::Python;
        }
        Route::Unknown
    }

    fn serve(self, commands: Receiver<ToolCommand>) {
        while let Ok(command) = commands.recv() {
            match command {
                ToolCommand::Run { chat_id, call } => self.run(chat_id, call),
                ToolCommand::Cancel { call_id } => self.cancel(call_id),
                ToolCommand::ResetChat { chat_id } => {
                    if let Some(python) = &self.python {
                        python.reset(&chat_id);
                    }
                }
                ToolCommand::Shutdown => break,
            }
        }
        let running: Vec<_> = self.lock_running().drain().map(|(_, c)| c).collect();
        for control in running {
            control.cancel();
        }
        if let Some(python) = &self.python {
            python.shutdown();
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<CallControl>>> {
        match self.running.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn run(&self, chat_id: String, call: ToolCall) {
        let control = Arc::new(CallControl::new(call));
        let _ = self.events.send(ToolEvent::Started {
            call_id: control.call.id,
        });
        let route = self.route(&control.call.recipient);
        if route == Route::Unknown {
            control.answer(&self.events, self.unknown(&control.call.recipient));
            return;
        }
        self.lock_running()
            .insert(control.call.id, Arc::clone(&control));
        let python = self.python.clone();
        let events = self.events.clone();
        let running = Arc::clone(&self.running);
        let thread_control = Arc::clone(&control);
        let spawned = std::thread::Builder::new()
            .name(format!("tool-call-{}", control.call.id))
            .spawn(move || {
                let control = thread_control;
                let answer = match (route, python) {
                    (Route::Python, Some(python)) => {
                        python.run(&chat_id, &control.call.arguments, &control)
                    }
                    _ => ToolAnswer::error("no runner for this tool"),
                };
                control.answer(&events, answer);
                if let Ok(mut running) = running.lock() {
                    running.remove(&control.call.id);
                }
            });
        if let Err(error) = spawned {
            self.lock_running().remove(&control.call.id);
            control.answer(
                &self.events,
                ToolAnswer::error(format!("cannot start a thread for the call: {error}")),
            );
        }
    }

    fn cancel(&self, call_id: u64) {
        let control = self.lock_running().remove(&call_id);
        if let Some(control) = control {
            control.cancel();
            control.answer(&self.events, ToolAnswer::error("stopped by the user"));
        }
    }

    fn unknown(&self, recipient: &str) -> ToolAnswer {
        let known: Vec<&str> = self.catalog.entries.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "none are configured".to_string()
        } else {
            format!("the tools are: {}", known.join(", "))
        };
        ToolAnswer::error(format!("unknown tool `{recipient}`; {known}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_with_a_note() {
        let text = "ééééé";
        assert_eq!(cap_text(text, 10), text);
        assert_eq!(
            cap_text(text, 5),
            "éé\n[cut: 6 more bytes; the limit is 5 bytes]"
        );
    }
}
