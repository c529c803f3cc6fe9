//! The numbers a chat runs on: the max-tokens setting (`/max N`, `/max off`, the config's
//! `max_tokens`) that each submit carries, why an answer stopped at it, and the note that a
//! reasoning-effort change makes the next turn re-read the chat.

use super::{App, CommandKind, Effect, MAX_NEW_TOKENS, effort_name};
use crate::engine::{Command, StopReason};
use crate::harmony::ReasoningEffort;

/// The engine's count of a chat's messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageTokens {
    /// The chat they were counted for (a new or reopened chat has other messages).
    chat_id: String,
    /// Tokens of each of the app's `messages`, a prefix: later ones are not counted yet.
    counts: Vec<usize>,
}

impl App {
    /// The engine command for `kind`: a submit carries the max-tokens setting.
    pub fn engine_command(&self, kind: CommandKind) -> Command {
        match kind.into_command() {
            Command::Submit {
                conversation,
                constraint,
                ..
            } => Command::Submit {
                conversation,
                max_new_tokens: self.max_new_tokens.unwrap_or(MAX_NEW_TOKENS),
                constraint,
            },
            other => other,
        }
    }

    /// `/max N`, `/max off`, or `/max` alone to show the setting.
    pub(super) fn max_command(&mut self, rest: &str) -> Vec<Effect> {
        self.notice = Some(match rest {
            "" => match self.max_new_tokens {
                Some(n) => format!("answers stop after {n} tokens (/max off lifts it)"),
                None => "no max tokens: answers end when the model stops or the context is full (/max N sets one)".into(),
            },
            "off" => {
                self.max_new_tokens = None;
                "no max tokens from the next message".into()
            }
            text => match text.parse::<usize>() {
                Ok(n) if n > 0 => {
                    self.max_new_tokens = Some(n);
                    format!("answers stop after {n} tokens from the next message (reasoning counts)")
                }
                _ => format!("/max '{text}': give a whole number of tokens >= 1, or off"),
            },
        });
        Vec::new()
    }

    /// The notice for a reasoning-effort change: with a chat going, the next turn re-reads
    /// all of it, because the effort is written in the system message the cache starts with.
    pub(super) fn effort_notice(&self, effort: ReasoningEffort) -> String {
        if self.messages.is_empty() {
            format!("reasoning effort: {}", effort_name(effort))
        } else {
            format!(
                "effort {}: the next turn re-reads the whole chat (its system message changes)",
                effort_name(effort)
            )
        }
    }

    /// The engine's count of the submitted conversation's messages: the last ones are
    /// `messages` (the system and developer messages come first).
    pub(super) fn set_message_tokens(&mut self, counts: &[usize]) {
        let Some(first) = counts.len().checked_sub(self.messages.len()) else {
            // Not this conversation (it has more messages than were counted).
            return;
        };
        self.message_tokens = MessageTokens {
            chat_id: self.chat_id.clone(),
            counts: counts[first..].to_vec(),
        };
    }

    /// The rendered tokens of each user message, in order; `None` for one not counted yet
    /// (a remote server does not count them).
    pub fn user_message_tokens(&self) -> Vec<Option<usize>> {
        let counted = &self.message_tokens;
        let counts: &[usize] = if counted.chat_id == self.chat_id {
            &counted.counts
        } else {
            &[]
        };
        self.messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == crate::harmony::Role::User)
            .map(|(i, _)| counts.get(i).copied())
            .collect()
    }

    /// Says why a turn stopped at the max-tokens setting.
    pub(super) fn note_length_stop(&mut self, stop: StopReason) {
        if stop == StopReason::Length {
            let limit = self.max_new_tokens.unwrap_or(MAX_NEW_TOKENS);
            self.notice = Some(format!(
                "stopped at the max of {limit} tokens: /max off or a larger /max N to allow more"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyCode;

    use super::super::tests::{app, ctrl, drawn, key, stats, submitted, type_text};
    use super::super::{Entry, Input};
    use super::*;
    use crate::engine::Event;

    fn command(app: &mut super::super::App, line: &str) -> Vec<Effect> {
        type_text(app, line);
        app.update(key(KeyCode::Enter))
    }

    fn submit_max(app: &App, effects: Vec<Effect>) -> Option<usize> {
        effects.into_iter().find_map(|e| match e {
            Effect::Engine(kind @ CommandKind::Submit(..)) => match app.engine_command(kind) {
                Command::Submit { max_new_tokens, .. } => Some(max_new_tokens),
                _ => None,
            },
            _ => None,
        })
    }

    #[test]
    fn max_sets_the_tokens_each_submit_carries_until_off() {
        let mut app = app();
        let effects = command(&mut app, "hello");
        assert_eq!(submit_max(&app, effects), Some(MAX_NEW_TOKENS));
        app.update(Input::Engine(Event::TurnDone {
            stop: StopReason::Return,
            stats: stats(3, 10.0),
        }));

        assert!(command(&mut app, "/max 50").is_empty());
        assert_eq!(app.max_new_tokens, Some(50));
        assert!(
            app.notice
                .as_deref()
                .unwrap_or("")
                .contains("stop after 50 tokens")
        );
        let effects = command(&mut app, "again");
        assert_eq!(submit_max(&app, effects), Some(50));
        app.update(Input::Engine(Event::TurnDone {
            stop: StopReason::Length,
            stats: stats(50, 10.0),
        }));
        assert_eq!(
            app.notice.as_deref(),
            Some("stopped at the max of 50 tokens: /max off or a larger /max N to allow more")
        );

        command(&mut app, "/max lots");
        assert_eq!(
            app.notice.as_deref(),
            Some("/max 'lots': give a whole number of tokens >= 1, or off")
        );
        command(&mut app, "/max 0");
        assert_eq!(app.max_new_tokens, Some(50), "a bad value changes nothing");
        command(&mut app, "/max off");
        assert_eq!(app.max_new_tokens, None);
        let effects = command(&mut app, "once more");
        assert_eq!(submit_max(&app, effects), Some(MAX_NEW_TOKENS));
        assert!(submitted(&[]).is_none());
    }

    #[test]
    fn user_messages_show_the_engines_token_count_and_the_chat_its_total() {
        let mut app = app();
        command(&mut app, "hi");
        // system, developer, the user's "hi".
        app.update(Input::Engine(Event::PromptTokens {
            message_tokens: vec![90, 0, 4],
        }));
        app.update(Input::Engine(Event::TurnDone {
            stop: StopReason::Return,
            stats: stats(3, 10.0),
        }));
        app.update(Input::Engine(Event::Metrics(
            crate::engine::protocol::MetricsSample {
                context_used: 412,
                context_limit: 4096,
                ..Default::default()
            },
        )));
        let screen = drawn(&app, 100, 30);
        assert!(
            screen.iter().any(|row| row.contains("▌ You · 4 tok")),
            "{screen:#?}"
        );
        assert!(screen[1].contains(" 412 tok ╮"), "{}", screen[1]);
        assert_eq!(app.user_message_tokens(), [Some(4)]);

        // The next message is not counted until the engine says; a count of fewer messages
        // than the app has is not this conversation's and changes nothing.
        command(&mut app, "more");
        assert_eq!(app.user_message_tokens(), [Some(4), None]);
        app.update(Input::Engine(Event::PromptTokens {
            message_tokens: vec![7],
        }));
        assert_eq!(app.user_message_tokens(), [Some(4), None]);
        app.update(Input::Engine(Event::PromptTokens {
            message_tokens: vec![90, 4, 6],
        }));
        assert_eq!(app.user_message_tokens(), [Some(4), Some(6)]);

        // A new chat's messages never show the old chat's counts.
        app.update(ctrl('n'));
        command(&mut app, "fresh");
        assert_eq!(app.user_message_tokens(), [None]);
    }

    #[test]
    fn an_effort_change_in_a_chat_says_the_next_turn_re_reads_it() {
        let mut app = app();
        command(&mut app, "/effort high");
        assert_eq!(app.notice.as_deref(), Some("reasoning effort: high"));
        command(&mut app, "hello");
        app.update(Input::Engine(Event::TurnDone {
            stop: StopReason::Return,
            stats: stats(3, 10.0),
        }));
        assert!(matches!(app.entries.last(), Some(Entry::Assistant(_))));
        command(&mut app, "/effort low");
        assert_eq!(
            app.notice.as_deref(),
            Some("effort low: the next turn re-reads the whole chat (its system message changes)")
        );
        // The key that cycles the effort says so too.
        app.update(ctrl('e'));
        assert_eq!(
            app.notice.as_deref(),
            Some(
                "effort medium: the next turn re-reads the whole chat (its system message changes)"
            )
        );
    }
}
