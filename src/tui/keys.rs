//! Key bindings: what each key does, parsed from strings like `ctrl+r` so the config file can
//! remap any action.

use std::collections::HashMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Everything a key can ask the app to do (text editing keys of the input box aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Send,
    Newline,
    Stop,
    FocusNext,
    FocusPrev,
    ScrollUp,
    ScrollDown,
    PageUp,
    PageDown,
    ToggleReasoning,
    ToggleEarlierReasoning,
    CycleEffort,
    NewChat,
    Regenerate,
    CopyAnswer,
    CopyCode,
    ChatList,
    Help,
    Quit,
    GrowChat,
    ShrinkChat,
    GrowMetrics,
    ShrinkMetrics,
    ToggleToolBlock,
    SelectToolBlock,
    SelectMessage,
}

impl Action {
    /// Every action, in the order the help overlay lists them.
    pub const ALL: [Action; 26] = [
        Action::Send,
        Action::Newline,
        Action::Stop,
        Action::FocusNext,
        Action::FocusPrev,
        Action::ScrollUp,
        Action::ScrollDown,
        Action::PageUp,
        Action::PageDown,
        Action::ToggleReasoning,
        Action::ToggleEarlierReasoning,
        Action::CycleEffort,
        Action::NewChat,
        Action::Regenerate,
        Action::CopyAnswer,
        Action::CopyCode,
        Action::ChatList,
        Action::Help,
        Action::Quit,
        Action::GrowChat,
        Action::ShrinkChat,
        Action::GrowMetrics,
        Action::ShrinkMetrics,
        Action::ToggleToolBlock,
        Action::SelectToolBlock,
        Action::SelectMessage,
    ];

    /// The name used in the config file's `[keybindings]` table.
    pub fn config_name(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Newline => "newline",
            Action::Stop => "stop",
            Action::FocusNext => "focus_next",
            Action::FocusPrev => "focus_prev",
            Action::ScrollUp => "scroll_up",
            Action::ScrollDown => "scroll_down",
            Action::PageUp => "page_up",
            Action::PageDown => "page_down",
            Action::ToggleReasoning => "toggle_reasoning",
            Action::ToggleEarlierReasoning => "toggle_earlier_reasoning",
            Action::CycleEffort => "cycle_effort",
            Action::NewChat => "new_chat",
            Action::Regenerate => "regenerate",
            Action::CopyAnswer => "copy_answer",
            Action::CopyCode => "copy_code",
            Action::ChatList => "chat_list",
            Action::Help => "help",
            Action::Quit => "quit",
            Action::GrowChat => "grow_chat",
            Action::ShrinkChat => "shrink_chat",
            Action::GrowMetrics => "grow_metrics",
            Action::ShrinkMetrics => "shrink_metrics",
            Action::ToggleToolBlock => "toggle_tool_block",
            Action::SelectToolBlock => "select_tool_block",
            Action::SelectMessage => "select_message",
        }
    }

    /// What the help overlay says the action does.
    pub fn description(self) -> &'static str {
        match self {
            Action::Send => "send the message (or run a /command)",
            Action::Newline => "new line in the input",
            Action::Stop => "stop generating / close a popup",
            Action::FocusNext => "focus the next pane",
            Action::FocusPrev => "focus the previous pane",
            Action::ScrollUp => "scroll the focused pane up",
            Action::ScrollDown => "scroll the focused pane down",
            Action::PageUp => "scroll a page up",
            Action::PageDown => "scroll a page down",
            Action::ToggleReasoning => "show / hide the reasoning pane",
            Action::ToggleEarlierReasoning => "expand / collapse earlier turns' reasoning",
            Action::CycleEffort => "reasoning effort low -> medium -> high",
            Action::NewChat => "new chat",
            Action::Regenerate => "regenerate the last answer",
            Action::CopyAnswer => "copy the last answer (OSC 52)",
            Action::CopyCode => "copy the last code block (OSC 52)",
            Action::ChatList => "saved chats: search, open, rename, delete",
            Action::Help => "this help",
            Action::Quit => "quit (the chat is saved)",
            Action::GrowChat => "widen the chat pane",
            Action::ShrinkChat => "narrow the chat pane",
            Action::GrowMetrics => "taller metrics pane (under the reasoning)",
            Action::ShrinkMetrics => "shorter metrics pane",
            Action::ToggleToolBlock => "expand / collapse the selected tool call's block",
            Action::SelectToolBlock => "select the previous tool call's block (wraps around)",
            Action::SelectMessage => "select a message: copy, edit & resend, versions",
        }
    }

    fn from_config_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.config_name() == name)
    }
}

/// One key with its modifiers, as written in the config file (`ctrl+shift+left`, `f1`, `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyBinding {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

/// Why a key string or a `[keybindings]` entry was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("unknown key '{0}': use e.g. ctrl+r, alt+enter, shift+tab, f1, pageup")]
    UnknownKey(String),
    #[error(
        "'{key}' for {action} types text, so it could not be typed any more: add ctrl+ or alt+ (e.g. ctrl+{key})"
    )]
    TypesText { key: String, action: &'static str },
    #[error(
        "'{key}' is bound to both {first} and {second}: give one of them another key in [keybindings]"
    )]
    TwoActions {
        key: String,
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "unknown action '{0}' in [keybindings]: use one of send, newline, stop, focus_next, focus_prev, scroll_up, scroll_down, page_up, page_down, toggle_reasoning, toggle_earlier_reasoning, cycle_effort, new_chat, regenerate, copy_answer, copy_code, chat_list, help, quit, grow_chat, shrink_chat, grow_metrics, shrink_metrics, toggle_tool_block, select_tool_block, select_message"
    )]
    UnknownAction(String),
}

impl KeyBinding {
    /// A binding without modifiers.
    pub const fn plain(code: KeyCode) -> Self {
        Self {
            code,
            modifiers: KeyModifiers::NONE,
        }
    }

    /// A binding with modifiers.
    pub const fn with(code: KeyCode, modifiers: KeyModifiers) -> Self {
        Self { code, modifiers }
    }

    /// Parses `ctrl+r`, `alt+enter`, `shift+tab`, `f1`, `pageup`, `?` (case-insensitive names).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let unknown = || KeyError::UnknownKey(text.to_string());
        let mut modifiers = KeyModifiers::NONE;
        let mut parts: Vec<&str> = text.split('+').collect();
        // "ctrl++" means ctrl and the '+' key.
        if text.ends_with("++") {
            parts.truncate(parts.len() - 2);
            parts.push("+");
        }
        let key = parts.pop().filter(|k| !k.is_empty()).ok_or_else(unknown)?;
        for part in parts {
            modifiers |= match part.to_ascii_lowercase().as_str() {
                "ctrl" | "control" => KeyModifiers::CONTROL,
                "alt" | "meta" | "option" => KeyModifiers::ALT,
                "shift" => KeyModifiers::SHIFT,
                _ => return Err(unknown()),
            };
        }
        let lower = key.to_ascii_lowercase();
        let code = match lower.as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" | "pgup" => KeyCode::PageUp,
            "pagedown" | "pgdn" => KeyCode::PageDown,
            "space" => KeyCode::Char(' '),
            f if f.len() > 1 && f.starts_with('f') => {
                KeyCode::F(f[1..].parse().map_err(|_| unknown())?)
            }
            _ => {
                let mut chars = key.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(if modifiers.is_empty() {
                        c
                    } else {
                        c.to_ascii_lowercase()
                    }),
                    _ => return Err(unknown()),
                }
            }
        };
        Ok(Self { code, modifiers }.normalized())
    }

    /// Folds the ways terminals report the same key into one form (shift+tab is BackTab, an
    /// uppercase letter already says shift).
    fn normalized(mut self) -> Self {
        if self.code == KeyCode::Tab && self.modifiers.contains(KeyModifiers::SHIFT) {
            self.code = KeyCode::BackTab;
        }
        if self.code == KeyCode::BackTab {
            self.modifiers.remove(KeyModifiers::SHIFT);
        }
        if let KeyCode::Char(c) = self.code
            && !c.is_ascii_alphabetic()
        {
            // '?' arrives as shift+'?' on some terminals and bare on others.
            self.modifiers.remove(KeyModifiers::SHIFT);
        }
        if let KeyCode::Char(c) = self.code
            && c.is_ascii_uppercase()
        {
            self.modifiers.remove(KeyModifiers::SHIFT);
        }
        self
    }

    /// True when the key types a character (no ctrl or alt): bound to an action, that
    /// character could no longer be typed.
    fn types_text(&self) -> bool {
        matches!(self.code, KeyCode::Char(c) if !c.is_control())
            && !self
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    }

    /// The binding a terminal key event matches.
    pub fn from_event(event: &KeyEvent) -> Self {
        Self {
            code: event.code,
            modifiers: event.modifiers
                & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT),
        }
        .normalized()
    }
}

impl fmt::Display for KeyBinding {
    /// Writes the binding as the help overlay shows it (`Ctrl+R`, `Alt+Enter`, `F1`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            write!(f, "Ctrl+")?;
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            write!(f, "Alt+")?;
        }
        if self.modifiers.contains(KeyModifiers::SHIFT) {
            write!(f, "Shift+")?;
        }
        match self.code {
            KeyCode::Char(' ') => write!(f, "Space"),
            KeyCode::Char(c) if self.modifiers.is_empty() => write!(f, "{c}"),
            KeyCode::Char(c) => write!(f, "{}", c.to_ascii_uppercase()),
            KeyCode::F(n) => write!(f, "F{n}"),
            KeyCode::Enter => write!(f, "Enter"),
            KeyCode::Esc => write!(f, "Esc"),
            KeyCode::Tab => write!(f, "Tab"),
            KeyCode::BackTab => write!(f, "Shift+Tab"),
            KeyCode::Up => write!(f, "↑"),
            KeyCode::Down => write!(f, "↓"),
            KeyCode::Left => write!(f, "←"),
            KeyCode::Right => write!(f, "→"),
            KeyCode::PageUp => write!(f, "PgUp"),
            KeyCode::PageDown => write!(f, "PgDn"),
            KeyCode::Home => write!(f, "Home"),
            KeyCode::End => write!(f, "End"),
            KeyCode::Backspace => write!(f, "Backspace"),
            KeyCode::Delete => write!(f, "Del"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Which action each key triggers; several keys may trigger one action.
#[derive(Debug, Clone)]
pub struct KeyMap {
    bindings: HashMap<KeyBinding, Action>,
}

impl Default for KeyMap {
    fn default() -> Self {
        use KeyCode::*;
        const CTRL: KeyModifiers = KeyModifiers::CONTROL;
        const ALT: KeyModifiers = KeyModifiers::ALT;
        const SHIFT: KeyModifiers = KeyModifiers::SHIFT;
        let defaults = [
            (KeyBinding::plain(Enter), Action::Send),
            (KeyBinding::with(Enter, ALT), Action::Newline),
            (KeyBinding::with(Enter, SHIFT), Action::Newline),
            (KeyBinding::with(Char('j'), CTRL), Action::Newline),
            (KeyBinding::plain(Esc), Action::Stop),
            (KeyBinding::with(Char('c'), CTRL), Action::Stop),
            (KeyBinding::plain(Tab), Action::FocusNext),
            (KeyBinding::plain(BackTab), Action::FocusPrev),
            (KeyBinding::with(Up, ALT), Action::ScrollUp),
            (KeyBinding::with(Down, ALT), Action::ScrollDown),
            (KeyBinding::plain(PageUp), Action::PageUp),
            (KeyBinding::plain(PageDown), Action::PageDown),
            (KeyBinding::with(Char('r'), CTRL), Action::ToggleReasoning),
            (
                KeyBinding::with(Char('t'), CTRL),
                Action::ToggleEarlierReasoning,
            ),
            (KeyBinding::with(Char('e'), CTRL), Action::CycleEffort),
            (KeyBinding::with(Char('n'), CTRL), Action::NewChat),
            (KeyBinding::with(Char('g'), CTRL), Action::Regenerate),
            (KeyBinding::with(Char('y'), CTRL), Action::CopyAnswer),
            (KeyBinding::with(Char('k'), CTRL), Action::CopyCode),
            (KeyBinding::with(Char('l'), CTRL), Action::ChatList),
            (KeyBinding::plain(F(1)), Action::Help),
            (KeyBinding::with(Char('q'), CTRL), Action::Quit),
            (KeyBinding::with(Right, CTRL), Action::GrowChat),
            (KeyBinding::with(Left, CTRL), Action::ShrinkChat),
            (KeyBinding::with(Up, CTRL), Action::GrowMetrics),
            (KeyBinding::with(Down, CTRL), Action::ShrinkMetrics),
            (KeyBinding::with(Char('o'), CTRL), Action::ToggleToolBlock),
            (KeyBinding::with(Char('b'), CTRL), Action::SelectToolBlock),
            (KeyBinding::with(Char('p'), CTRL), Action::SelectMessage),
        ];
        Self {
            bindings: defaults.into_iter().collect(),
        }
    }
}

impl KeyMap {
    /// The defaults with the config file's `action = "key"` (or `["key", "key"]`) entries
    /// replacing each named action's default keys.
    /// Refused: an unknown action or key, a key without ctrl/alt that types text, and one
    /// key for two actions (an override's key that another action keeps by default counts).
    /// This is the one check of `[keybindings]`: the app and `ossterm config` both use it.
    pub fn with_overrides(overrides: &HashMap<String, Vec<String>>) -> Result<Self, KeyError> {
        let mut map = Self::default();
        // Sorted, so the same file always gives the same error.
        let mut parsed = Vec::new();
        let mut names: Vec<&String> = overrides.keys().collect();
        names.sort();
        for name in names {
            let action = Action::from_config_name(name)
                .ok_or_else(|| KeyError::UnknownAction(name.clone()))?;
            for key in &overrides[name] {
                let binding = KeyBinding::parse(key)?;
                if binding.types_text() {
                    return Err(KeyError::TypesText {
                        key: key.clone(),
                        action: action.config_name(),
                    });
                }
                parsed.push((key, binding, action));
            }
            // Every overridden action loses its defaults before any new key goes in, so
            // swapping two actions' keys is not a conflict.
            map.bindings.retain(|_, a| *a != action);
        }
        for (key, binding, action) in parsed {
            if let Some(other) = map.bindings.insert(binding, action)
                && other != action
            {
                let (first, second) = if other.config_name() < action.config_name() {
                    (other.config_name(), action.config_name())
                } else {
                    (action.config_name(), other.config_name())
                };
                return Err(KeyError::TwoActions {
                    key: key.clone(),
                    first,
                    second,
                });
            }
        }
        Ok(map)
    }

    /// The action bound to this key event, if any.
    pub fn action_for(&self, event: &KeyEvent) -> Option<Action> {
        self.bindings.get(&KeyBinding::from_event(event)).copied()
    }

    /// The keys bound to an action, in a stable order (for help and hints).
    pub fn keys_for(&self, action: Action) -> Vec<KeyBinding> {
        let mut keys: Vec<KeyBinding> = self
            .bindings
            .iter()
            .filter(|(_, a)| **a == action)
            .map(|(k, _)| *k)
            .collect();
        keys.sort_by_key(|k| (k.modifiers.bits(), k.to_string()));
        keys
    }

    /// The first key of an action as text ("Ctrl+R"), or "unbound".
    pub fn label(&self, action: Action) -> String {
        self.keys_for(action)
            .first()
            .map_or_else(|| "unbound".to_string(), ToString::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modifiers_and_named_keys() {
        let b = KeyBinding::parse("ctrl+r").unwrap();
        assert_eq!(
            b,
            KeyBinding::with(KeyCode::Char('r'), KeyModifiers::CONTROL)
        );
        assert_eq!(
            KeyBinding::parse("Alt+Enter").unwrap(),
            KeyBinding::with(KeyCode::Enter, KeyModifiers::ALT)
        );
        assert_eq!(
            KeyBinding::parse("f1").unwrap(),
            KeyBinding::plain(KeyCode::F(1))
        );
        assert_eq!(
            KeyBinding::parse("shift+tab").unwrap(),
            KeyBinding::plain(KeyCode::BackTab)
        );
        assert_eq!(
            KeyBinding::parse("?").unwrap(),
            KeyBinding::plain(KeyCode::Char('?'))
        );
        assert!(matches!(
            KeyBinding::parse("hyper+x"),
            Err(KeyError::UnknownKey(_))
        ));
        assert!(matches!(
            KeyBinding::parse("ctrl+"),
            Err(KeyError::UnknownKey(_))
        ));
    }

    #[test]
    fn overrides_replace_an_actions_defaults() {
        let overrides = HashMap::from([("quit".to_string(), vec!["ctrl+x".to_string()])]);
        let map = KeyMap::with_overrides(&overrides).unwrap();
        let ctrl_q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL);
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(map.action_for(&ctrl_q), None);
        assert_eq!(map.action_for(&ctrl_x), Some(Action::Quit));
        let bad = HashMap::from([("fly".to_string(), vec!["f2".to_string()])]);
        assert!(matches!(
            KeyMap::with_overrides(&bad),
            Err(KeyError::UnknownAction(_))
        ));
    }

    #[test]
    fn overrides_that_break_typing_or_share_a_key_are_refused() {
        let map = |pairs: &[(&str, &str)]| {
            let overrides = pairs
                .iter()
                .map(|(a, k)| (a.to_string(), vec![k.to_string()]))
                .collect();
            KeyMap::with_overrides(&overrides).map(|_| ())
        };
        assert_eq!(
            map(&[("help", "?")]).unwrap_err().to_string(),
            "'?' for help types text, so it could not be typed any more: add ctrl+ or alt+ (e.g. ctrl+?)"
        );
        assert!(matches!(
            map(&[("quit", "shift+q")]),
            Err(KeyError::TypesText { .. })
        ));
        assert!(matches!(
            map(&[("send", "space")]),
            Err(KeyError::TypesText { .. })
        ));
        // Two overrides on one key, and an override on another action's default key.
        assert_eq!(
            map(&[("quit", "ctrl+x"), ("help", "ctrl+x")]).unwrap_err(),
            KeyError::TwoActions {
                key: "ctrl+x".into(),
                first: "help",
                second: "quit"
            }
        );
        assert_eq!(
            map(&[("quit", "ctrl+r")]).unwrap_err().to_string(),
            "'ctrl+r' is bound to both quit and toggle_reasoning: give one of them another key in [keybindings]"
        );
        // Swapping two actions' keys is fine; so are F keys and modified letters.
        map(&[("quit", "ctrl+r"), ("toggle_reasoning", "ctrl+q")]).unwrap();
        map(&[("help", "f2"), ("quit", "alt+q")]).unwrap();
    }

    #[test]
    fn every_action_has_a_default_key() {
        let map = KeyMap::default();
        for action in Action::ALL {
            assert!(!map.keys_for(action).is_empty(), "{action:?} has no key");
        }
    }

    #[test]
    fn shift_tab_events_match_backtab() {
        let map = KeyMap::default();
        let event = KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(map.action_for(&event), Some(Action::FocusPrev));
    }
}
