//! `ossterm` (no subcommand): the chat app. A tokio current-thread loop selects over terminal
//! events, engine events and a frame tick; the screen is redrawn at most ~30 times a second
//! and only when something changed. The tick runs only while a redraw is due, so an idle app
//! sleeps until the next event. The engine runs in its own thread, so the UI never waits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{Event as TermEvent, EventStream};
use futures::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::cli::AppArgs;
use crate::config::{self, Settings};
use crate::engine::{self, EngineOptions, ModelSource};
use crate::store::{ChatLock, ChatStore, StoreError, new_chat_id};
use crate::structured::TurnConstraint;
use crate::tools::{ApprovalPolicy, ToolCommand, ToolEvent, ToolHostHandle};
use crate::tui::app::{App, AppOptions, Effect, Input, ModelState, Overlay, tools};
use crate::tui::terminal;
use crate::tui::theme::Theme;
use crate::tui::ui;

/// The shortest time between two frames (~30 fps).
const FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// How long quitting waits for the engine thread to stop before leaving without it.
const ENGINE_EXIT_WAIT: Duration = Duration::from_secs(2);

/// `--remote`'s server, with the effort and sampling the settings give; `None` for the local
/// engine. The app and `ask` both start from it.
pub(crate) fn remote_options(
    args: &AppArgs,
    settings: &Settings,
) -> anyhow::Result<Option<crate::remote::RemoteOptions>> {
    let Some(url) = &args.remote else {
        return Ok(None);
    };
    let options = crate::remote::RemoteOptions::from_flags(
        url,
        args.api_key_env.as_deref(),
        args.remote_model.clone(),
    )?;
    Ok(Some(
        options
            .with_effort(settings.effort)
            .with_sampling(settings.sampling),
    ))
}

/// Runs the app until the user quits.
pub fn run(args: &AppArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(args.config.as_deref())?;
    settings.apply_args(args)?;
    let options = app_options(&settings)?;
    let remote = remote_options(args, &settings)?;
    let engine_options = engine_options(args, &settings)?;
    let store = ChatStore::new(&config::data_dir()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the event loop")?;
    // Before the terminal changes: from here on a signal quits through the event loop.
    let signals = quit_signals()?;
    let mut guard =
        terminal::setup().context("cannot set up the terminal (is this a terminal?)")?;
    let engine = match remote {
        Some(remote) => crate::remote::spawn(remote),
        None => engine::spawn(engine_options),
    };
    if args.remote.is_none() && settings.kv_disk_budget_bytes > 0 {
        let _ = engine.commands.send(engine::Command::EnableKvSnapshots {
            dir: config::cache_dir()?.join("kv"),
            budget_bytes: settings.kv_disk_budget_bytes,
        });
    }
    let mut app = App::new(options);
    app.shift_enter_works = guard.keyboard_enhanced;
    app.max_new_tokens = settings.max_tokens;
    app.tools.policy = ApprovalPolicy {
        auto_approve_read_only: settings.tools.auto_approve_read_only,
        interactive: true,
        ..ApprovalPolicy::default()
    }
    .with_allowlist(&settings.tools.allow)
    .context("in [tools] allow")?;
    // Tools are optional: a host that cannot start leaves the chat working without them.
    let host = match crate::tools::host::spawn(&settings.tools) {
        Ok(host) => Some(host),
        Err(e) => {
            app.notice = Some(format!("tools are off: {e}"));
            None
        }
    };
    let tool_link = ToolLink::new(host)?;
    let result = runtime.block_on(event_loop(
        &mut guard.terminal,
        app,
        engine,
        tool_link,
        &store,
        signals,
    ));
    drop(guard);
    result
}

/// SIGTERM, SIGINT and SIGHUP as they arrive, so the loop saves the chat and restores the
/// terminal instead of the process dying with the terminal in raw mode.
#[cfg(unix)]
fn quit_signals() -> anyhow::Result<UnboundedReceiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot handle SIGTERM, SIGINT and SIGHUP")?;
    let (tx, rx) = unbounded_channel();
    std::thread::Builder::new()
        .name("ossterm-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(signal).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(rx)
}

/// No Unix signals here: a channel that never delivers.
#[cfg(not(unix))]
fn quit_signals() -> anyhow::Result<UnboundedReceiver<i32>> {
    let (tx, rx) = unbounded_channel();
    std::mem::forget(tx);
    Ok(rx)
}

fn app_options(settings: &Settings) -> anyhow::Result<AppOptions> {
    let themes_dir = config::config_dir().ok().map(|d| d.join("themes"));
    let theme = Theme::load(&settings.theme, themes_dir.as_deref())?;
    let keymap = settings.keymap()?;
    Ok(AppOptions {
        theme,
        keymap,
        effort: settings.effort,
        sampling: settings.sampling,
        developer_instructions: settings.developer_instructions.clone().unwrap_or_default(),
        chat_id: new_chat_id(),
        today: chrono::Local::now().format("%Y-%m-%d").to_string(),
    })
}

/// Where the demo model lives: `assets/demo` next to the executable (or above it), else in the
/// source tree it was built from, else the copy compiled into the binary, written once to the
/// data dir (so an installed binary runs `--demo` too).
pub fn demo_model_dir() -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .take(4)
                .map(|d| d.join("assets/demo")),
        );
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo"));
    if let Some(dir) = candidates.iter().find(|d| d.join("config.json").is_file()) {
        return Ok(dir.clone());
    }
    let data_dir = config::data_dir()?;
    crate::demo::materialize(&data_dir)
        .with_context(|| format!("cannot write the demo model under {}", data_dir.display()))
}

pub(crate) fn engine_options(args: &AppArgs, settings: &Settings) -> anyhow::Result<EngineOptions> {
    let source = if args.demo {
        ModelSource::Local(demo_model_dir()?)
    } else if Path::new(&settings.model).is_dir() {
        ModelSource::Local(PathBuf::from(&settings.model))
    } else {
        ModelSource::Hub {
            id: settings.model.clone(),
            revision: settings.revision.clone(),
        }
    };
    Ok(EngineOptions {
        source,
        device: settings.device,
        dtype: settings.dtype,
        kernels: args.model.kernels.into(),
        context_limit: settings.context,
        effort: settings.effort,
        sampling: settings.sampling,
    })
}

/// The event loop's end of the tool host: its events arrive on a tokio channel (a thread
/// forwards them), so the loop selects over them like engine events.
struct ToolLink {
    /// `None` without a tool host.
    commands: Option<std::sync::mpsc::Sender<ToolCommand>>,
    /// Also takes the answers made here when no host runs a call.
    events_in: tokio::sync::mpsc::UnboundedSender<ToolEvent>,
    events: UnboundedReceiver<ToolEvent>,
}

impl ToolLink {
    fn new(host: Option<ToolHostHandle>) -> anyhow::Result<Self> {
        let (events_in, events) = unbounded_channel();
        let commands = match host {
            Some(host) => {
                let forward = events_in.clone();
                std::thread::Builder::new()
                    .name("ossterm-tool-events".into())
                    .spawn(move || {
                        while let Ok(event) = host.events.recv() {
                            if forward.send(event).is_err() {
                                break;
                            }
                        }
                    })
                    .context("cannot start the tool event thread")?;
                Some(host.commands)
            }
            None => None,
        };
        Ok(Self {
            commands,
            events_in,
            events,
        })
    }

    /// Sends `command` to the host; without one (or when it has gone) a call is answered
    /// here so the model is told and the chat goes on.
    fn send(&self, command: ToolCommand) {
        let command = match &self.commands {
            Some(commands) => match commands.send(command) {
                Ok(()) => return,
                Err(unsent) => unsent.0,
            },
            None => command,
        };
        if let ToolCommand::Run { call, .. } = command {
            let result = tools::local_result(&call, tools::NO_HOST_TEXT);
            let _ = self.events_in.send(ToolEvent::Finished(result));
        }
    }
}

async fn event_loop(
    terminal: &mut terminal::Tui,
    mut app: App,
    mut engine: engine::EngineHandle,
    mut tool_link: ToolLink,
    store: &ChatStore,
    mut signals: UnboundedReceiver<i32>,
) -> anyhow::Result<()> {
    // Continue the most recent chat, as it was left (after recovering interrupted saves).
    let resumed = store.resume_newest();
    let mut chat_lock = None;
    if let Some((chat, lock)) = resumed.chat {
        app.open_chat(chat);
        chat_lock = Some(lock);
    }
    // The trash keeps deleted chats for TRASH_KEEP_DAYS; older ones go now.
    let mut notes = resumed.notes;
    if let Err(e) = store.purge_trash(std::time::SystemTime::now()) {
        notes.push(format!("cannot empty old chats from the trash: {e}"));
    }
    if !notes.is_empty() {
        app.notice = Some(notes.join("; "));
    }
    let mut engine_chat = None;
    follow_open_chat(&app, &engine, &mut engine_chat);
    let mut terminal_error = None;
    let mut terminal_events = EventStream::new();
    let mut frame_tick = tokio::time::interval(FRAME_INTERVAL);
    frame_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut engine_alive = true;
    loop {
        let input = tokio::select! {
            event = terminal_events.next() => match event {
                Some(Ok(TermEvent::Key(key))) => Some(Input::Key(key)),
                Some(Ok(TermEvent::Paste(text))) => Some(Input::Paste(text)),
                Some(Ok(TermEvent::Mouse(mouse))) => Some(Input::Mouse(mouse)),
                Some(Ok(TermEvent::Resize(..))) => Some(Input::Resize),
                Some(Ok(_)) => None,
                // The terminal is gone (hangup): save and leave as on quit.
                Some(Err(e)) => {
                    terminal_error = Some(e);
                    Some(Input::Terminate)
                }
                None => Some(Input::Terminate),
            },
            Some(_) = signals.recv() => Some(Input::Terminate),
            event = engine.events.recv(), if engine_alive => match event {
                Some(event) => Some(Input::Engine(event)),
                None => {
                    engine_alive = false;
                    // The thread ended without saying why (a panic in the engine).
                    (!matches!(app.model, ModelState::Failed)).then(|| {
                        let why = terminal::take_background_panic().unwrap_or_default();
                        Input::Engine(engine::Event::Error {
                            message: format!("the engine stopped unexpectedly; your chat is saved. Restart ossterm, and please report this with the steps that led to it.\n{why}"),
                            fatal: true,
                        })
                    })
                }
            },
            Some(event) = tool_link.events.recv() => Some(Input::Tool(event)),
            // Only polled while a redraw is due: an idle app does not wake up 30 times a second.
            // After a quiet spell the first tick is immediate, so a key shows at once.
            _ = frame_tick.tick(), if dirty => {
                if dirty {
                    terminal.draw(|frame| ui::draw(frame, &app)).context("drawing the screen")?;
                    dirty = false;
                }
                None
            }
        };
        let Some(input) = input else { continue };
        dirty = true;
        let mut effects = app.update(input);
        // Tokens arrive faster than frames: take everything queued before the next draw.
        while let Ok(event) = engine.events.try_recv() {
            effects.extend(app.update(Input::Engine(event)));
        }
        let mut quit = false;
        for effect in effects {
            if let Effect::Tool(command) = effect {
                tool_link.send(command);
                continue;
            }
            match perform(effect, &mut app, &engine, store, &mut chat_lock) {
                Ok(true) => quit = true,
                Ok(false) => {}
                // A failed save or export must not go unnoticed: show it as a popup.
                Err(e) => {
                    app.overlay = Overlay::Error {
                        message: format!("{e:#}"),
                        fatal: false,
                    }
                }
            }
        }
        follow_open_chat(&app, &engine, &mut engine_chat);
        if quit {
            break;
        }
    }
    // The engine may be deep in a download, a load or a long prefill: quitting does not wait.
    engine.shutdown_within(ENGINE_EXIT_WAIT);
    tool_link.send(ToolCommand::Shutdown);
    if let Some(e) = terminal_error {
        return Err(e).context("reading terminal events");
    }
    exit_status(&app)
}

/// Tells the engine when the open chat changed (reopened, or a new one), so that it saves
/// this chat's KV cache after each turn and restores the one saved with it.
fn follow_open_chat(app: &App, engine: &engine::EngineHandle, engine_chat: &mut Option<String>) {
    if engine_chat.as_deref() == Some(app.chat_id.as_str()) {
        return;
    }
    *engine_chat = Some(app.chat_id.clone());
    // A closed channel means the engine stopped; its Error event already says why.
    let _ = engine.commands.send(engine::Command::OpenChat {
        chat_id: app.chat_id.clone(),
        conversation: app.conversation(),
    });
}

/// Takes the lock of chat `id` for this copy (keeping it when already held); false when
/// another copy of the app has that chat open.
fn hold_lock(
    store: &ChatStore,
    chat_lock: &mut Option<ChatLock>,
    id: &str,
) -> anyhow::Result<bool> {
    if chat_lock.as_ref().is_some_and(|lock| lock.id() == id) {
        return Ok(true);
    }
    match store.try_lock(id)? {
        Some(lock) => {
            *chat_lock = Some(lock);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// A run whose model failed (to load, or later) ends in an error carrying the message the
/// app showed, so scripts and shells see a non-zero exit status.
fn exit_status(app: &App) -> anyhow::Result<()> {
    if !matches!(app.model, ModelState::Failed) {
        return Ok(());
    }
    match &app.overlay {
        Overlay::Error { message, .. } => anyhow::bail!("{message}"),
        _ => anyhow::bail!("the engine failed"),
    }
}

/// Where `/export` writes: `~` or `~/…` in the home folder, a relative path in the working
/// folder, and no path `default_name` in the working folder; always absolute, so the notice
/// says exactly where the file went.
fn export_path(
    asked: Option<&Path>,
    home: Option<&Path>,
    cwd: &Path,
    default_name: &str,
) -> PathBuf {
    match asked {
        Some(asked) => expand_user_path(asked, home, cwd),
        None => cwd.join(default_name),
    }
}

/// A path the user typed in a slash command: `~` is the home folder, relative paths start at
/// the working folder.
fn expand_user_path(asked: &Path, home: Option<&Path>, cwd: &Path) -> PathBuf {
    let mut parts = asked.components();
    let expanded = match (parts.next(), home) {
        (Some(std::path::Component::Normal(first)), Some(home)) if first == "~" => {
            home.join(parts.as_path())
        }
        _ => asked.to_path_buf(),
    };
    cwd.join(expanded)
}

/// Does one effect; true means quit.
fn perform(
    effect: Effect,
    app: &mut App,
    engine: &engine::EngineHandle,
    store: &ChatStore,
    chat_lock: &mut Option<ChatLock>,
) -> anyhow::Result<bool> {
    match effect {
        Effect::Engine(command) => {
            // A closed channel means the engine stopped; its Error event already says why.
            let _ = engine.commands.send(app.engine_command(command));
        }
        Effect::Save(chat) => {
            if !hold_lock(store, chat_lock, &chat.id)? {
                return Err(StoreError::Locked { id: chat.id }).context("saving the chat");
            }
            store.save(&chat).context("saving the chat")?
        }
        Effect::Copy(text) => terminal::copy_osc52(&text).context("copying")?,
        Effect::LoadAnswerFormat(asked) => {
            let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
            let cwd = std::env::current_dir().context("/json: cannot read the working folder")?;
            let path = expand_user_path(&asked, home.as_deref(), &cwd);
            let loaded = TurnConstraint::from_schema_file(&path).map_err(|e| e.to_string());
            app.set_answer_format(path, loaded);
        }
        Effect::Export(request) => {
            let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
            let cwd =
                std::env::current_dir().context("exporting: cannot read the working folder")?;
            let default_name =
                format!("ossterm-{}.{}", request.chat.id, request.format.extension());
            let path = export_path(
                request.path.as_deref(),
                home.as_deref(),
                &cwd,
                &default_name,
            );
            store.export(
                &request.chat,
                &path,
                request.format,
                request.model.as_deref(),
            )?;
            app.notice = Some(format!("exported to {}", path.display()));
        }
        Effect::Import(asked) => {
            let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
            let cwd =
                std::env::current_dir().context("importing: cannot read the working folder")?;
            let path = expand_user_path(&asked, home.as_deref(), &cwd);
            let imported = crate::store::import_file(&path)?;
            let chat = imported.chat;
            if !hold_lock(store, chat_lock, &chat.id)? {
                return Err(StoreError::Locked { id: chat.id }).context("importing");
            }
            store.save(&chat).context("saving the imported chat")?;
            let mut notice = format!("imported {} as '{}'", path.display(), chat.meta.title);
            for note in imported.notes {
                notice.push_str(&format!("; {note}"));
            }
            app.open_chat(chat);
            app.notice = Some(notice);
        }
        Effect::ListChats => app.show_chat_list(store.list()?),
        Effect::OpenChat(id) => {
            // Held already when it is the chat left by a new chat that was never saved.
            if !hold_lock(store, chat_lock, &id)? {
                app.notice = Some(format!(
                    "chat {id} is open in another copy of ossterm: close it there to open it here"
                ));
                return Ok(false);
            }
            let chat = store.load(&id)?;
            app.open_chat(chat);
        }
        Effect::DeleteChat(id) => {
            // Still held when a new chat has not been saved yet.
            if chat_lock.as_ref().is_some_and(|lock| lock.id() == id) {
                *chat_lock = None;
            }
            let trashed = store.move_to_trash(&id)?;
            app.show_chat_list(store.list()?);
            app.chat_trashed(trashed);
        }
        Effect::RenameChat { id, title } => {
            let title = store.rename(&id, &title)?;
            app.show_chat_list(store.list()?);
            app.notice = Some(format!("renamed to '{title}'"));
        }
        Effect::ListTrash => app.show_trash(store.list_trash()?),
        Effect::RestoreChat(entry) => {
            let id = store.restore_from_trash(&entry)?;
            app.chat_restored(&id, store.list()?);
        }
        Effect::Quit => return Ok(true),
        // Sent by the event loop, which holds the tool host.
        Effect::Tool(_) => {}
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolCall;

    fn call() -> ToolCall {
        ToolCall {
            id: 3,
            recipient: "python".into(),
            channel: "analysis".into(),
            content_type: None,
            arguments: "print(1)".into(),
        }
    }

    #[test]
    fn the_engine_runs_the_kernels_the_command_line_names() {
        use clap::Parser;
        let options = |extra: &[&str]| {
            let cli =
                crate::cli::Cli::try_parse_from(["ossterm"].iter().chain(extra)).expect("parses");
            let settings = Settings::defaults(PathBuf::from("/no/config.toml"));
            engine_options(&cli.app, &settings).expect("options")
        };
        assert_eq!(options(&[]).kernels, crate::model::Kernels::Auto);
        assert_eq!(
            options(&["--kernels", "exact"]).kernels,
            crate::model::Kernels::Exact
        );
    }

    #[test]
    fn without_a_tool_host_a_call_is_answered_that_no_tool_runs() {
        let mut link = ToolLink::new(None).expect("a link");
        link.send(ToolCommand::Run {
            chat_id: "c".into(),
            call: call(),
        });
        match link.events.try_recv() {
            Ok(ToolEvent::Finished(result)) => {
                assert_eq!(result.call_id, 3);
                assert!(result.is_error);
                assert_eq!(result.text, tools::NO_HOST_TEXT);
            }
            other => panic!("no answer: {other:?}"),
        }
        // Nothing to answer for the others.
        link.send(ToolCommand::Cancel { call_id: 3 });
        assert!(link.events.try_recv().is_err());
    }

    #[test]
    fn a_tool_hosts_commands_and_events_pass_through_the_link() {
        let (commands, host_commands) = std::sync::mpsc::channel();
        let (host_events, events) = std::sync::mpsc::channel();
        let mut link = ToolLink::new(Some(ToolHostHandle { commands, events })).expect("a link");
        link.send(ToolCommand::Cancel { call_id: 9 });
        assert_eq!(
            host_commands.recv().expect("sent"),
            ToolCommand::Cancel { call_id: 9 }
        );
        host_events
            .send(ToolEvent::Started { call_id: 9 })
            .expect("the link listens");
        match link.events.blocking_recv() {
            Some(ToolEvent::Started { call_id }) => assert_eq!(call_id, 9),
            other => panic!("not forwarded: {other:?}"),
        }
        // A host that has gone: the call is answered here instead of hanging.
        drop(host_commands);
        link.send(ToolCommand::Run {
            chat_id: "c".into(),
            call: call(),
        });
        match link.events.blocking_recv() {
            Some(ToolEvent::Finished(result)) => assert_eq!(result.text, tools::NO_HOST_TEXT),
            other => panic!("no answer: {other:?}"),
        }
    }

    #[test]
    fn export_paths_expand_the_home_folder_and_are_absolute() {
        let home = Path::new("/home/ann");
        let cwd = Path::new("/work/here");
        let path = |asked: Option<&str>| {
            export_path(asked.map(Path::new), Some(home), cwd, "ossterm-c1.md")
        };
        assert_eq!(path(Some("~/x.md")), Path::new("/home/ann/x.md"));
        assert_eq!(path(Some("~")), Path::new("/home/ann"));
        assert_eq!(path(Some("notes/x.md")), Path::new("/work/here/notes/x.md"));
        assert_eq!(path(Some("/tmp/x.md")), Path::new("/tmp/x.md"));
        // "~user" is not this user's home: kept as a name.
        assert_eq!(path(Some("~bob/x.md")), Path::new("/work/here/~bob/x.md"));
        assert_eq!(path(None), Path::new("/work/here/ossterm-c1.md"));
    }
}
