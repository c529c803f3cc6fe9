//! `ossterm` (no subcommand): the chat app. A tokio current-thread loop selects over terminal
//! events, engine events and a frame tick; the screen is redrawn at most ~30 times a second
//! and only when something changed. The engine runs in its own thread, so the UI never waits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{Event as TermEvent, EventStream};
use futures::StreamExt;

use crate::cli::AppArgs;
use crate::config::{self, Settings};
use crate::engine::{self, EngineOptions, ModelSource};
use crate::store::{ChatStore, new_chat_id};
use crate::tui::app::{App, AppOptions, Effect, Input, ModelState, Overlay};
use crate::tui::keys::KeyMap;
use crate::tui::terminal;
use crate::tui::theme::Theme;
use crate::tui::ui;

/// The shortest time between two frames (~30 fps).
const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// Runs the app until the user quits.
pub fn run(args: &AppArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(args.config.as_deref())?;
    settings.apply_args(args)?;
    let options = app_options(&settings)?;
    let engine_options = engine_options(args, &settings)?;
    let store = ChatStore::new(&config::data_dir()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the event loop")?;
    let mut guard =
        terminal::setup().context("cannot set up the terminal (is this a terminal?)")?;
    let engine = engine::spawn(engine_options);
    let result = runtime.block_on(event_loop(
        &mut guard.terminal,
        App::new(options),
        engine,
        &store,
    ));
    drop(guard);
    result
}

fn app_options(settings: &Settings) -> anyhow::Result<AppOptions> {
    let themes_dir = config::config_dir().ok().map(|d| d.join("themes"));
    let theme = Theme::load(&settings.theme, themes_dir.as_deref())?;
    let overrides = settings
        .keybindings
        .iter()
        .map(|(action, keys)| {
            (
                action.clone(),
                keys.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect();
    let keymap = KeyMap::with_overrides(&overrides)
        .with_context(|| format!("in [keybindings] of {}", settings.path.display()))?;
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

fn engine_options(args: &AppArgs, settings: &Settings) -> anyhow::Result<EngineOptions> {
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
        context_limit: settings.context,
        effort: settings.effort,
        sampling: settings.sampling,
    })
}

async fn event_loop(
    terminal: &mut terminal::Tui,
    mut app: App,
    mut engine: engine::EngineHandle,
    store: &ChatStore,
) -> anyhow::Result<()> {
    // Continue the most recent chat, as it was left.
    if let Some(latest) = store.list().ok().and_then(|chats| chats.into_iter().next())
        && let Ok(chat) = store.load(&latest.id)
    {
        app.open_chat(chat);
    }
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
                Some(Err(e)) => return Err(e).context("reading terminal events"),
                None => break,
            },
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
            _ = frame_tick.tick() => {
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
            match perform(effect, &mut app, &engine, store) {
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
        if quit {
            break;
        }
    }
    engine.shutdown();
    exit_status(&app)
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

/// Does one effect; true means quit.
fn perform(
    effect: Effect,
    app: &mut App,
    engine: &engine::EngineHandle,
    store: &ChatStore,
) -> anyhow::Result<bool> {
    match effect {
        Effect::Engine(command) => {
            // A closed channel means the engine stopped; its Error event already says why.
            let _ = engine.commands.send(command.into_command());
        }
        Effect::Save(chat) => store.save(&chat).context("saving the chat")?,
        Effect::Copy(text) => terminal::copy_osc52(&text).context("copying")?,
        Effect::Export(chat, path) => {
            let path = path.unwrap_or_else(|| {
                std::env::current_dir()
                    .unwrap_or_default()
                    .join(format!("ossterm-{}.md", chat.id))
            });
            store.export_markdown(&chat, &path)?;
            app.notice = Some(format!("exported to {}", path.display()));
        }
        Effect::ListChats => app.show_chat_list(store.list()?),
        Effect::OpenChat(id) => {
            let chat = store.load(&id)?;
            app.open_chat(chat);
        }
        Effect::DeleteChat(id) => {
            store.delete(&id)?;
            app.show_chat_list(store.list()?);
            app.notice = Some("chat deleted".into());
        }
        Effect::Quit => return Ok(true),
    }
    Ok(false)
}
