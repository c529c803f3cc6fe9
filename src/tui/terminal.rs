//! Terminal setup and restore: raw mode, alternate screen, mouse and bracketed paste on the way
//! in; all undone on the way out — on quit, on error (the guard's `Drop`) and on panic (a hook
//! that restores before the panic message prints).

use std::io::{self, Stdout, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    KeyboardEnhancementFlags, PopKeyboardEnhancementFlags, PushKeyboardEnhancementFlags,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The ratatui terminal on stdout.
pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// Restores the terminal when dropped (normal exit or an early `?` return).
pub struct TerminalGuard {
    pub terminal: Tui,
    /// True when the terminal reports modified keys (kitty keyboard protocol), so Shift+Enter
    /// arrives as itself instead of as Enter.
    pub keyboard_enhanced: bool,
}

/// Set while the keyboard enhancement flags are pushed, so restoring pops them exactly once.
static KEYBOARD_ENHANCED: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back: leaves the alternate screen, raw mode, mouse capture and paste
/// mode, and shows the cursor. Safe to call more than once.
pub fn restore() {
    if KEYBOARD_ENHANCED.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), PopKeyboardEnhancementFlags);
    }
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = io::stdout().flush();
}

/// Enters the app's terminal mode and installs the panic hook.
pub fn setup() -> io::Result<TerminalGuard> {
    install_panic_hook();
    enable_raw_mode()?;
    let mut stdout = io::stdout();
    if let Err(e) = execute!(
        stdout,
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    ) {
        restore();
        return Err(e);
    }
    // Only where the terminal says it understands them (it answers the query; others would
    // print the sequence or ignore it).
    let keyboard_enhanced = matches!(
        crossterm::terminal::supports_keyboard_enhancement(),
        Ok(true)
    ) && execute!(
        stdout,
        PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES)
    )
    .is_ok();
    KEYBOARD_ENHANCED.store(keyboard_enhanced, Ordering::SeqCst);
    match Terminal::new(CrosstermBackend::new(stdout)) {
        Ok(terminal) => Ok(TerminalGuard {
            terminal,
            keyboard_enhanced,
        }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

/// The last panic message of a thread other than the UI's (shown by the UI, since printing it
/// would scribble over the screen).
static BACKGROUND_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    let ui_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui_thread {
            restore();
            previous(info);
        } else if let Ok(mut slot) = BACKGROUND_PANIC.lock() {
            let thread = std::thread::current()
                .name()
                .unwrap_or("a background thread")
                .to_string();
            *slot = Some(format!("{thread} panicked: {info}"));
        }
    }));
}

/// Takes the message of a panic in a background thread (the engine), if one happened.
pub fn take_background_panic() -> Option<String> {
    BACKGROUND_PANIC
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// The OSC 52 escape that puts `text` on the clipboard: ESC ] 52 ; c ; base64 BEL.
pub fn osc52_sequence(text: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    format!("\x1b]52;c;{encoded}\x07")
}

/// Copies text to the clipboard with OSC 52 (works over SSH and in tmux with
/// `set-clipboard on`), written to the terminal between frames, never into a drawn one.
pub fn copy_osc52(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout();
    stdout.write_all(osc52_sequence(text).as_bytes())?;
    stdout.flush()
}
