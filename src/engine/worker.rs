//! The engine thread: owns the model, tokenizer and KV cache; turns `Command`s into `Event`s.
//!
//! Loading happens on this thread and is reported as events, so the UI is drawn from the first
//! frame. During a turn the thread polls its command queue between decode steps (and between
//! between the layers of a prefill chunk), which is what bounds the latency of `Stop` to one
//! decode step or one layer of a prefill.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::kv_key::{SnapshotKey, model_digest};
use super::kv_store::KvSnapshotStore;
use super::protocol::{
    Command, Event, METRICS_INTERVAL, MetricsSample, ModelInfo, SamplingParams, StopReason,
    TurnStats,
};
use super::sampler::Sampler;
use super::session::{PREFILL_CHUNK_TOKENS, Session};
use std::sync::Arc;

use crate::harmony::{self, Content, Conversation, ReasoningEffort, Role, StreamParser, Tokenizer};
use crate::memory::inventory;
use crate::memory::planner::{DEFAULT_CHUNK_TOKENS, Plan};
use crate::memory::probe::{MemoryProbe, device_kind, probe_for};
use crate::model::device::DeviceChoice;
use crate::model::{Config, DtypeChoice, GptOss, Kernels, ModelError, Precision, ShardProgress};
use crate::structured::{GrammarVocab, HarmonyConstraint, TurnConstraint};

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

impl ModelSource {
    /// The name shown in the status line: the hub id or the folder's name.
    pub fn display_name(&self) -> String {
        match self {
            Self::Hub { id, .. } => id.clone(),
            Self::Local(path) => path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
        }
    }
}

/// Everything the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub source: ModelSource,
    pub device: DeviceChoice,
    pub dtype: DtypeChoice,
    /// Whose kernels run the experts and decode attention (`--kernels`).
    pub kernels: Kernels,
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
    /// Stops a model download in progress, so that shutdown does not wait for the network.
    cancel_download: crate::hub::Cancel,
}

impl EngineHandle {
    /// A handle over another thread that speaks the same protocol (the `--remote` front).
    pub fn from_thread(
        commands: mpsc::Sender<Command>,
        events: UnboundedReceiver<Event>,
        thread: Option<JoinHandle<()>>,
    ) -> Self {
        Self {
            commands,
            events,
            thread,
            cancel_download: crate::hub::Cancel::new(),
        }
    }

    /// Sends `Shutdown` and waits for the thread to end.
    pub fn shutdown(mut self) {
        // A send error means the thread already ended, which is what we want.
        let _ = self.commands.send(Command::Shutdown);
        self.cancel_download.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Sends `Shutdown` and waits at most `wait` for the thread to end; true when it ended.
    /// The thread only reads commands between steps, so while it downloads, loads or runs a
    /// long prefill it may not answer for minutes: quitting must not wait for that (the
    /// process ends and takes the thread with it).
    pub fn shutdown_within(mut self, wait: Duration) -> bool {
        let _ = self.commands.send(Command::Shutdown);
        self.cancel_download.cancel();
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + wait;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = thread.join();
        true
    }
}

/// Starts the engine thread; loading happens there and is reported as events.
pub fn spawn(options: EngineOptions) -> EngineHandle {
    let (command_tx, command_rx) = mpsc::channel();
    let (event_tx, event_rx) = unbounded_channel();
    let fallback_tx = event_tx.clone();
    let cancel_download = crate::hub::Cancel::new();
    let cancel = cancel_download.clone();
    let thread = std::thread::Builder::new()
        .name("ossterm-engine".into())
        .spawn(move || run(options, &cancel, command_rx, event_tx));
    let thread = match thread {
        Ok(handle) => Some(handle),
        Err(err) => {
            let _ = fallback_tx.send(Event::Error {
                message: format!("cannot start the engine thread: {err}"),
                fatal: true,
            });
            None
        }
    };
    EngineHandle {
        commands: command_tx,
        events: event_rx,
        thread,
        cancel_download,
    }
}

/// Errors that end a turn or the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Harmony(#[from] crate::harmony::HarmonyError),
    #[error(transparent)]
    Plan(#[from] crate::memory::planner::PlanError),
    #[error(transparent)]
    Sampler(#[from] super::sampler::SamplerError),
    #[error(transparent)]
    Inventory(#[from] crate::memory::inventory::InventoryError),
    #[error(transparent)]
    Structured(#[from] crate::structured::StructuredError),
    /// The planner's refusal, with the numbers and the options.
    #[error("{0}")]
    ContextTooLarge(String),
    #[error(
        "the conversation is {prompt_tokens} tokens but the context limit is {limit}: start a new chat (Ctrl+N) or raise the limit with /ctx"
    )]
    PromptTooLong { prompt_tokens: usize, limit: usize },
}

/// Sends events; a closed channel (the UI has gone) is not an error for the engine.
struct Outbox(UnboundedSender<Event>);

impl Outbox {
    fn send(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

fn run(
    options: EngineOptions,
    cancel_download: &crate::hub::Cancel,
    commands: mpsc::Receiver<Command>,
    events: UnboundedSender<Event>,
) {
    let out = Outbox(events);
    // A bug in the engine must reach the user as a message, not as a silently closed channel.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match Engine::start(&options, cancel_download, &out) {
            Ok(mut engine) => engine.serve(&commands, &out),
            Err(err) => out.send(Event::Error {
                message: err.to_string(),
                fatal: true,
            }),
        }
    }));
    if let Err(panic) = outcome {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown cause");
        out.send(Event::Error {
            message: format!("the engine crashed ({reason}); please report this as a bug"),
            fatal: true,
        });
    }
}

/// The loaded model and everything a turn needs.
struct Engine {
    model: GptOss,
    tokenizer: Arc<Tokenizer>,
    session: Session,
    sampler: Sampler,
    sampling: SamplingParams,
    effort: ReasoningEffort,
    probe: Box<dyn MemoryProbe>,
    plan: Plan,
    info: ModelInfo,
    /// Commands that arrived during a turn and wait for it to end.
    pending: VecDeque<Command>,
    last_turn: TurnStats,
    /// Tests only: how long each prefill layer is made to take (see [`TEST_LAYER_DELAY_ENV`]).
    test_layer_delay: Option<Duration>,
    /// The vocabulary as llguidance sees it, built on the first constrained turn.
    grammar_vocab: Option<Arc<GrammarVocab>>,
    /// The checkpoint's folder and kernels (a KV snapshot's key).
    model_dir: PathBuf,
    kernels: Kernels,
    /// Where chats' KV snapshots go; `None` until [`Command::EnableKvSnapshots`].
    kv_store: Option<KvSnapshotStore>,
    /// The chat the session belongs to ([`Command::OpenChat`]), whose snapshot turns update.
    chat_id: Option<String>,
}

/// What interrupted a turn, if anything.
enum Interrupt {
    None,
    Stop,
    Shutdown,
}

impl Engine {
    fn start(
        options: &EngineOptions,
        cancel_download: &crate::hub::Cancel,
        out: &Outbox,
    ) -> Result<Self, EngineError> {
        let dir = match &options.source {
            ModelSource::Local(dir) => dir.clone(),
            ModelSource::Hub { id, revision } => {
                let hub_options = crate::hub::HubOptions {
                    cancel: cancel_download.clone(),
                    ..crate::hub::HubOptions::from_env()?
                };
                crate::hub::resolve_with(&hub_options, id, revision.as_deref(), &mut |progress| {
                    out.send(Event::LoadProgress {
                        stage: format!("downloading {}", progress.file),
                        done_bytes: progress.done_bytes,
                        total_bytes: progress.total_bytes,
                    })
                })?
            }
        };
        out.send(Event::LoadProgress {
            stage: "planning memory".into(),
            done_bytes: 0,
            total_bytes: 0,
        });
        let (device, _device_description) = crate::model::device::select(options.device)?;
        let config = Config::from_file(&dir.join("config.json")).map_err(ModelError::from)?;
        let tensors = inventory::read_dir(&dir)?;
        let plan = Plan::new(
            &config,
            &tensors,
            device_kind(&device),
            options.dtype,
            DEFAULT_CHUNK_TOKENS,
        )?;
        let mut probe = probe_for(&device);
        // Planned before loading: what is free now is what the model may take.
        let available = probe.sample().device_free_bytes;
        let max_fit = plan.max_context(available);
        let context_limit = match options.context_limit {
            Some(requested) if requested > config.max_position_embeddings => {
                return Err(EngineError::ContextTooLarge(format!(
                    "a context of {requested} tokens is more than this model's maximum of {} tokens: use --context {} or less",
                    config.max_position_embeddings,
                    config.max_position_embeddings.min(max_fit)
                )));
            }
            Some(requested) => match plan.refusal(requested, available) {
                Some(reason) => return Err(EngineError::ContextTooLarge(reason)),
                None => requested.min(config.max_position_embeddings),
            },
            None if max_fit == 0 => {
                return Err(EngineError::ContextTooLarge(
                    plan.refusal(1, available).unwrap_or_default(),
                ));
            }
            None => max_fit,
        };
        out.send(Event::LoadProgress {
            stage: "loading weights".into(),
            done_bytes: 0,
            total_bytes: plan.weight_bytes(),
        });
        let precision = Precision::from(options.dtype);
        let kernels = options.kernels;
        let model = GptOss::load_with_progress(&dir, &device, precision, kernels, &mut |at| {
            out.send(shard_event(at))
        })?;
        let tokenizer = Arc::new(Tokenizer::from_file(&dir.join("tokenizer.json"))?);
        let cache = model.new_cache(context_limit)?;
        let info = ModelInfo {
            name: options.source.display_name(),
            device: device_id(&device, options.device),
            context_limit,
            max_context: config.max_position_embeddings,
        };
        out.send(Event::Ready(info.clone()));
        let mut engine = Self {
            model,
            tokenizer,
            session: Session::new(cache),
            sampler: Sampler::new(options.sampling),
            sampling: options.sampling,
            effort: options.effort,
            probe,
            plan,
            info,
            pending: VecDeque::new(),
            last_turn: TurnStats::default(),
            test_layer_delay: test_layer_delay(),
            grammar_vocab: None,
            model_dir: dir,
            kernels,
            kv_store: None,
            chat_id: None,
        };
        out.send(Event::Metrics(engine.metrics(false, 0.0)));
        Ok(engine)
    }

    /// Handles commands until `Shutdown` or until the UI drops its sender.
    fn serve(&mut self, commands: &mpsc::Receiver<Command>, out: &Outbox) {
        loop {
            let command = match self.pending.pop_front() {
                Some(command) => command,
                None => match commands.recv_timeout(Duration::from_secs(2)) {
                    Ok(command) => command,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        // Idle: keep the memory figures live.
                        out.send(Event::Metrics(self.metrics(false, 0.0)));
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
            };
            match command {
                Command::Submit {
                    conversation,
                    max_new_tokens,
                    constraint,
                } => match self.turn(conversation, max_new_tokens, constraint, commands, out) {
                    Ok(Interrupt::Shutdown) => return,
                    Ok(_) => {}
                    Err(err) => out.send(Event::Error {
                        message: err.to_string(),
                        fatal: false,
                    }),
                },
                // Nothing is generating: there is nothing to stop.
                Command::Stop => {}
                Command::SetEffort(effort) => self.effort = effort,
                Command::SetSampling(sampling) => {
                    self.sampling = sampling;
                    self.sampler = Sampler::new(sampling);
                }
                Command::NewChat => {
                    self.chat_id = None;
                    self.session.reset();
                    out.send(Event::Metrics(self.metrics(false, 0.0)));
                }
                Command::Rewind { keep_tokens } => {
                    self.session.rewind(keep_tokens);
                    out.send(Event::Metrics(self.metrics(false, 0.0)));
                }
                Command::SetContextLimit(tokens) => {
                    if let Err(err) = self.set_context_limit(tokens) {
                        out.send(Event::Error {
                            message: err.to_string(),
                            fatal: false,
                        });
                    }
                    out.send(Event::Ready(self.info.clone()));
                    out.send(Event::Metrics(self.metrics(false, 0.0)));
                }
                Command::EnableKvSnapshots { dir, budget_bytes } => {
                    self.enable_kv_snapshots(dir, budget_bytes, out);
                }
                Command::OpenChat {
                    chat_id,
                    conversation,
                } => self.open_chat(chat_id, conversation, out),
                Command::Shutdown => return,
            }
        }
    }

    /// Turns KV snapshots on; their key digests the checkpoint (once, here).
    fn enable_kv_snapshots(&mut self, dir: PathBuf, budget_bytes: u64, out: &Outbox) {
        let key = model_digest(&self.model_dir)
            .map_err(|e| format!("cannot read {}: {e}", self.model_dir.display()))
            .and_then(|model_digest| {
                let layout = self.session.cache_layout().map_err(|e| e.to_string())?;
                Ok(SnapshotKey {
                    model_digest,
                    cache_dtype: layout.dtype,
                    activation_dtype: self.model.dtype().as_str().to_string(),
                    // 8-bit dense weights compute other keys and values (older keys lack the
                    // suffix, and stay valid for the default weights).
                    kernels: if self.model.dense_q8() {
                        format!("{:?}+q8-dense", self.kernels)
                    } else {
                        format!("{:?}", self.kernels)
                    },
                    device: self.info.device.clone(),
                })
            });
        match key {
            Ok(key) => self.kv_store = Some(KvSnapshotStore::new(dir, budget_bytes, key)),
            Err(e) => out.send(Event::Notice(format!(
                "chats' KV caches are not saved: {e}"
            ))),
        }
    }

    /// Binds the session to `chat_id` and restores the chat's snapshot when it has one that
    /// fits the conversation.
    fn open_chat(&mut self, chat_id: String, conversation: Conversation, out: &Outbox) {
        self.chat_id = Some(chat_id.clone());
        if self.kv_store.is_none() {
            return;
        }
        let started = Instant::now();
        let prompt = match self.render_prompt(conversation) {
            Ok(prompt) => prompt,
            Err(e) => return out.send(Event::Notice(format!("cannot restore the chat: {e}"))),
        };
        let vocab_size = self.model.config().vocab_size;
        let Some(store) = &self.kv_store else { return };
        match store.restore(&chat_id, &mut self.session, &prompt, vocab_size) {
            Ok(Some(restored)) => out.send(Event::ChatRestored {
                restored_tokens: restored.tokens,
                file_bytes: restored.file_bytes,
                restore_ms: ms_since(started),
            }),
            Ok(None) => {}
            Err(e) => out.send(Event::Notice(e.to_string())),
        }
        out.send(Event::Metrics(self.metrics(false, 0.0)));
    }

    /// Writes the session as the open chat's snapshot (after every turn, a stopped one and
    /// one cut short by quitting included).
    fn save_kv_snapshot(&self, out: &Outbox) {
        let (Some(store), Some(chat_id)) = (&self.kv_store, &self.chat_id) else {
            return;
        };
        if self.session.is_empty() {
            return;
        }
        if let Err(e) = store.save(chat_id, &self.session) {
            out.send(Event::Notice(e.to_string()));
        }
    }

    /// The prompt a submit of `conversation` runs: rendered for completion, with the
    /// engine's reasoning effort.
    fn render_prompt(&self, conversation: Conversation) -> Result<Vec<u32>, EngineError> {
        Ok(self.render_prompt_counted(conversation)?.0)
    }

    /// As [`Self::render_prompt`], with each message's rendered token count (for the app's
    /// per-message figures).
    fn render_prompt_counted(
        &self,
        mut conversation: Conversation,
    ) -> Result<(Vec<u32>, Vec<usize>), EngineError> {
        set_reasoning_effort(&mut conversation, self.effort);
        Ok(harmony::render_for_completion_counted(
            &conversation,
            &self.tokenizer,
            &harmony::RenderOptions::default(),
        )?)
    }

    /// Re-plans and re-allocates the KV cache; the conversation is re-processed on next submit.
    fn set_context_limit(&mut self, tokens: usize) -> Result<(), EngineError> {
        // The plan counts the weights and the cache, which already hold memory: the current
        // cache is freed before the new one is allocated, and the weights stay.
        let available = self.probe.sample().device_free_bytes
            + self.session.cache_bytes()
            + self.plan.weight_bytes();
        let tokens = tokens.min(self.info.max_context);
        if let Some(reason) = self.plan.refusal(tokens, available) {
            return Err(EngineError::ContextTooLarge(reason));
        }
        // Drop the old cache before allocating the new one.
        self.session = Session::new(self.model.new_cache(1)?);
        self.session = Session::new(self.model.new_cache(tokens)?);
        self.info.context_limit = tokens;
        Ok(())
    }

    /// One assistant turn: render, prefill what is new, decode until a stop.
    fn turn(
        &mut self,
        conversation: Conversation,
        max_new_tokens: usize,
        constraint: Option<TurnConstraint>,
        commands: &mpsc::Receiver<Command>,
        out: &Outbox,
    ) -> Result<Interrupt, EngineError> {
        let submitted = Instant::now();
        let (prompt, message_tokens) = self.render_prompt_counted(conversation)?;
        out.send(Event::PromptTokens { message_tokens });
        let limit = self.session.capacity();
        if prompt.len() >= limit {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: prompt.len(),
                limit,
            });
        }
        // Built before the prefill: a constraint that cannot work fails the turn up front.
        let mut gate = match constraint.filter(|c| !c.is_empty()) {
            Some(constraint) => {
                let mut gate = HarmonyConstraint::new(
                    self.grammar_vocab()?,
                    Arc::clone(&self.tokenizer),
                    &constraint,
                )?;
                gate.observe_prompt(&prompt)?;
                Some(gate)
            }
            None => None,
        };
        let mut stats = TurnStats::default();
        let plan = self.session.plan_prefill(&prompt);
        stats.cached_tokens = plan.cached_tokens;

        let prefill_started = Instant::now();
        let mut logits = None;
        for chunk in prompt[plan.cached_tokens..].chunks(PREFILL_CHUNK_TOKENS) {
            match self.poll(commands) {
                Interrupt::None => {}
                interrupt => return self.end_turn(interrupt, StopReason::Stopped, stats, out),
            }
            // A chunk of a long prompt takes up to a minute on a CPU: a stop is looked for
            // between layers too, and the interrupted chunk is rolled back.
            let mut interrupt = Interrupt::None;
            let mut arrived = Vec::new();
            let layer_delay = self.test_layer_delay;
            let fed = self.session.feed_unless(&self.model, chunk, &mut || {
                if let Some(delay) = layer_delay {
                    std::thread::sleep(delay);
                }
                interrupt = take_interrupt(commands, &mut arrived);
                !matches!(interrupt, Interrupt::None)
            })?;
            for command in arrived {
                self.apply_during_turn(command);
            }
            let Some(fed) = fed else {
                return self.end_turn(interrupt, StopReason::Stopped, stats, out);
            };
            logits = Some(fed);
            stats.prefill_tokens += chunk.len();
            stats.prefill_ms = ms_since(prefill_started);
            out.send(Event::Metrics(self.metrics_with(true, stats, 0.0)));
        }
        self.session.mark_turn_start();
        out.send(Event::PrefillDone { stats });

        let mut logits = match logits {
            Some(logits) => logits,
            // plan_prefill always leaves one token to run; this is unreachable in practice.
            None => self
                .session
                .feed(&self.model, &prompt[prompt.len() - 1..])?,
        };
        let mut parser = StreamParser::new(Arc::clone(&self.tokenizer), Some(Role::Assistant));
        let decode_started = Instant::now();
        let mut last_metrics = Instant::now();
        let mut recent = RecentRate::default();
        let mut stop = StopReason::Length;
        let mut interrupt = Interrupt::None;
        for _ in 0..max_new_tokens {
            let token = match &mut gate {
                Some(gate) => {
                    let token = self
                        .sampler
                        .sample_masked(&logits, |row| gate.mask_logits(row))?;
                    gate.accept(token)?;
                    token
                }
                None => self.sampler.sample(&logits)?,
            };
            if stats.decode_tokens == 0 {
                stats.time_to_first_token_ms = ms_since(submitted);
            }
            stats.decode_tokens += 1;
            stats.decode_ms = ms_since(decode_started);
            recent.push(Instant::now());

            let step = parser.push(token);
            out.send(Event::Token {
                token_id: token,
                channel: step.channel.clone(),
                recipient: step.recipient.clone(),
                delta: step.delta.clone().unwrap_or_default(),
            });
            if step.message_ended
                && let Some(message) = parser.messages().last()
            {
                out.send(Event::MessageDone(message.clone()));
            }
            if let Some(reason) = step.stop {
                stop = match reason {
                    harmony::StopReason::Return => StopReason::Return,
                    harmony::StopReason::Call => StopReason::Call,
                    harmony::StopReason::EndOfText => StopReason::EndOfText,
                };
                break;
            }
            if self.session.len() + 1 >= limit {
                stop = StopReason::ContextFull;
                break;
            }
            interrupt = self.poll(commands);
            if !matches!(interrupt, Interrupt::None) {
                stop = StopReason::Stopped;
                break;
            }
            // A new message starts: snapshot here, so the next submit (e.g. with a tool
            // result, whose call the renderer may write with the recipient elsewhere in the
            // header than the model did) re-uses every message before it.
            if token == self.tokenizer.specials().start {
                self.session.mark_turn_start();
            }
            logits = self.session.feed(&self.model, &[token])?;
            if last_metrics.elapsed() >= METRICS_INTERVAL {
                last_metrics = Instant::now();
                out.send(Event::Metrics(self.metrics_with(
                    true,
                    stats,
                    recent.rate(),
                )));
            }
        }
        // Keep what arrived, also when stopped mid-message: close the open message.
        let closed_before = parser.messages().len();
        if let Some(tail) = parser.finish() {
            out.send(Event::Token {
                token_id: 0,
                channel: parser.messages().last().and_then(|m| m.channel.clone()),
                recipient: parser.messages().last().and_then(|m| m.recipient.clone()),
                delta: tail,
            });
        }
        if parser.messages().len() > closed_before
            && let Some(message) = parser.messages().last()
        {
            out.send(Event::MessageDone(message.clone()));
        }
        self.end_turn(interrupt, stop, stats, out)
    }

    /// The grammar vocabulary over the model's logits row, built once (a trie of ~200k
    /// tokens takes a moment).
    fn grammar_vocab(&mut self) -> Result<Arc<GrammarVocab>, EngineError> {
        if let Some(vocab) = &self.grammar_vocab {
            return Ok(Arc::clone(vocab));
        }
        let vocab = GrammarVocab::new(&self.tokenizer, self.model.config().vocab_size)?;
        self.grammar_vocab = Some(Arc::clone(&vocab));
        Ok(vocab)
    }

    fn end_turn(
        &mut self,
        interrupt: Interrupt,
        stop: StopReason,
        stats: TurnStats,
        out: &Outbox,
    ) -> Result<Interrupt, EngineError> {
        self.last_turn = stats;
        out.send(Event::TurnDone { stop, stats });
        out.send(Event::Metrics(self.metrics_with(
            false,
            stats,
            stats.decode_tok_s(),
        )));
        self.save_kv_snapshot(out);
        Ok(interrupt)
    }

    /// Takes commands that arrived during a turn: stop/shutdown interrupt it, settings apply
    /// at once, everything else waits for the turn to end.
    fn poll(&mut self, commands: &mpsc::Receiver<Command>) -> Interrupt {
        let mut arrived = Vec::new();
        let interrupt = take_interrupt(commands, &mut arrived);
        for command in arrived {
            self.apply_during_turn(command);
        }
        interrupt
    }

    /// A command that arrived during a turn and does not interrupt it: settings apply at
    /// once, everything else waits for the turn to end.
    fn apply_during_turn(&mut self, command: Command) {
        match command {
            Command::SetEffort(effort) => self.effort = effort,
            Command::SetSampling(sampling) => {
                self.sampling = sampling;
                self.sampler = Sampler::new(sampling);
            }
            other => self.pending.push_back(other),
        }
    }

    fn metrics(&mut self, generating: bool, decode_tok_s_now: f64) -> MetricsSample {
        self.metrics_with(generating, self.last_turn, decode_tok_s_now)
    }

    fn metrics_with(
        &mut self,
        generating: bool,
        turn: TurnStats,
        decode_tok_s_now: f64,
    ) -> MetricsSample {
        let mut memory = self.probe.sample();
        memory.model_bytes = self.model.weight_bytes();
        memory.kv_cache_bytes = self.session.cache_bytes();
        memory.kv_in_use_bytes = self.session.cache_bytes_in_use();
        let limit = self.info.context_limit;
        memory.kv_reserved_bytes = self.plan.kv_bytes(limit) + self.plan.sliding_bytes();
        memory.scratch_bytes = self.plan.scratch_bytes(limit);
        MetricsSample {
            memory,
            context_used: self.session.len(),
            context_limit: self.info.context_limit,
            turn,
            decode_tok_s_now,
            generating,
            remote: None,
        }
    }
}

/// Reads the queued commands up to a stop or shutdown (a closed channel counts as one);
/// the others are put in `arrived`, in order, for the turn to apply.
fn take_interrupt(commands: &mpsc::Receiver<Command>, arrived: &mut Vec<Command>) -> Interrupt {
    loop {
        match commands.try_recv() {
            Ok(Command::Stop) => return Interrupt::Stop,
            Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => {
                return Interrupt::Shutdown;
            }
            Ok(other) => arrived.push(other),
            Err(mpsc::TryRecvError::Empty) => return Interrupt::None,
        }
    }
}

/// The test hook that slows every prefill layer down by this many milliseconds, so a test
/// can stop a prefill half-way (as a long prompt on a slow CPU would let a user).
pub const TEST_LAYER_DELAY_ENV: &str = "OSSTERM_TEST_PREFILL_LAYER_DELAY_MS";

/// The delay [`TEST_LAYER_DELAY_ENV`] asks for; `None` when unset or not a number.
fn test_layer_delay() -> Option<Duration> {
    let ms: u64 = std::env::var(TEST_LAYER_DELAY_ENV)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

/// Decode speed over roughly the last second.
#[derive(Default)]
struct RecentRate {
    stamps: VecDeque<Instant>,
}

impl RecentRate {
    const WINDOW: Duration = Duration::from_secs(1);

    fn push(&mut self, now: Instant) {
        self.stamps.push_back(now);
        while let Some(first) = self.stamps.front() {
            if now.duration_since(*first) > Self::WINDOW && self.stamps.len() > 2 {
                self.stamps.pop_front();
            } else {
                break;
            }
        }
    }

    fn rate(&self) -> f64 {
        match (self.stamps.front(), self.stamps.back()) {
            (Some(first), Some(last)) if self.stamps.len() > 1 => {
                let seconds = last.duration_since(*first).as_secs_f64();
                if seconds > 0.0 {
                    (self.stamps.len() - 1) as f64 / seconds
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }
}

/// The loading screen's line for a shard: "loading shard 2/4 (model-00002-of-00004.safetensors)"
/// with its bytes read so far.
fn shard_event(at: &ShardProgress) -> Event {
    Event::LoadProgress {
        stage: format!("loading shard {}/{} ({})", at.shard, at.shards, at.file),
        done_bytes: at.done_bytes,
        total_bytes: at.total_bytes,
    }
}

/// "cpu", "cuda:N" or "metal": the short name the status line and the metrics pane key on
/// (the probe's sample carries the long one).
fn device_id(device: &candle_core::Device, choice: DeviceChoice) -> String {
    match device {
        candle_core::Device::Cpu => "cpu".into(),
        candle_core::Device::Cuda(_) => match choice {
            DeviceChoice::Cuda(ordinal) => format!("cuda:{ordinal}"),
            _ => "cuda:0".into(),
        },
        candle_core::Device::Metal(_) => "metal".into(),
    }
}

/// Makes the system message ask for `effort` (the conversation may carry another one).
fn set_reasoning_effort(conversation: &mut Conversation, effort: ReasoningEffort) {
    for message in conversation
        .messages
        .iter_mut()
        .filter(|m| m.role == Role::System)
    {
        for content in &mut message.content {
            if let Content::SystemContent(system) = content {
                system.reasoning_effort = Some(effort);
            }
        }
    }
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle on a thread that stands in for the engine.
    fn handle_on(body: impl FnOnce(mpsc::Receiver<Command>) + Send + 'static) -> EngineHandle {
        let (commands, command_rx) = mpsc::channel();
        let (_event_tx, events) = unbounded_channel();
        EngineHandle {
            commands,
            events,
            thread: Some(std::thread::spawn(move || body(command_rx))),
            cancel_download: crate::hub::Cancel::new(),
        }
    }

    #[test]
    fn quitting_does_not_wait_for_an_engine_busy_loading() {
        // Busy for a minute (a download or a long prefill) and not reading commands.
        let engine = handle_on(|_commands| std::thread::sleep(Duration::from_secs(60)));
        let started = Instant::now();
        assert!(!engine.shutdown_within(Duration::from_millis(200)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_idle_engine_is_joined() {
        let engine = handle_on(
            |commands| {
                while !matches!(commands.recv(), Ok(Command::Shutdown) | Err(_)) {}
            },
        );
        assert!(engine.shutdown_within(Duration::from_secs(10)));
    }
}
