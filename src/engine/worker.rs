//! The engine thread: owns the model, tokenizer and KV cache; turns `Command`s into `Event`s.
//!
//! (Skeleton: `spawn` and `EngineHandle` are the agreed API; the body lands with the engine.)

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::protocol::{Command, Event, SamplingParams};
use crate::cli::{DeviceChoice, DtypeChoice};
use crate::harmony::ReasoningEffort;

/// Where the engine gets its model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A local folder with config.json, safetensors and tokenizer.json.
    Local(PathBuf),
    /// A hub id, downloaded (or found in the cache) before loading.
    Hub {
        id: String,
        revision: Option<String>,
    },
}

/// Everything the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub source: ModelSource,
    pub device: DeviceChoice,
    pub dtype: DtypeChoice,
    /// Context limit in tokens; `None` picks the largest that fits (planner).
    pub context_limit: Option<usize>,
    pub effort: ReasoningEffort,
    pub sampling: SamplingParams,
}

/// The UI's side of the engine: send commands, receive events.
pub struct EngineHandle {
    /// Commands to the engine thread (never blocks).
    pub commands: mpsc::Sender<Command>,
    /// Events from the engine thread; await them in the UI's select loop.
    pub events: UnboundedReceiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl EngineHandle {
    /// Sends `Shutdown` and waits for the thread to end.
    pub fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the engine thread; loading happens there and is reported as events.
pub fn spawn(options: EngineOptions) -> EngineHandle {
    let (command_tx, command_rx) = mpsc::channel();
    let (event_tx, event_rx) = unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("ossterm-engine".into())
        .spawn(move || run(options, command_rx, event_tx))
        .ok();
    EngineHandle {
        commands: command_tx,
        events: event_rx,
        thread,
    }
}

fn run(
    _options: EngineOptions,
    _commands: mpsc::Receiver<Command>,
    events: UnboundedSender<Event>,
) {
    let _ = events.send(Event::Error {
        message: "the engine is not built yet".into(),
        fatal: true,
    });
}
