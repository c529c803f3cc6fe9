//! The versions a chat keeps where it branched: an edited user message or a regenerated
//! answer starts a new version of the rest of the conversation, and the old rest is kept.
//!
//! The shown path stays what it always was (the chat's messages and per-turn stats, saved as
//! the harmony conversation), so everything that reads a chat sees one plain conversation.
//! Only the versions not shown live here, each with the forks inside it: a tree, stored
//! beside the title in the chat's meta file. Switching a version swaps the conversation's
//! tail from the fork on with the stored one.

use serde::{Deserialize, Serialize};

use super::TurnRecord;
use crate::harmony::Message;

/// The forks on the shown path, by where they start (ascending).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Branches {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forks: Vec<Fork>,
}

/// A point where the conversation has more than one version of what follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fork {
    /// Where the versions start: an index into the conversation's messages (system and
    /// developer messages not counted).
    pub at: usize,
    /// The version shown; its messages are the conversation's from `at` on, so its slot in
    /// `versions` is an empty placeholder.
    pub active: usize,
    /// Every version of the conversation from `at` on, oldest first.
    pub versions: Vec<Tail>,
}

/// One version of a conversation's rest: its messages from the fork on, the stats of its
/// turns, and the forks inside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tail {
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Stats of its turns (`messages_after` counts from the conversation's start).
    #[serde(default)]
    pub turns: Vec<TurnRecord>,
    #[serde(default)]
    pub forks: Vec<Fork>,
}

/// The shown conversation, borrowed: the tree's operations change these together.
pub struct ShownPath<'a> {
    pub messages: &'a mut Vec<Message>,
    pub turns: &'a mut Vec<TurnRecord>,
}

impl ShownPath<'_> {
    /// Takes everything from message `at` on: the messages, the turns that end there and
    /// the forks inside.
    fn take_tail(&mut self, at: usize, forks: &mut Vec<Fork>) -> Tail {
        let at = at.min(self.messages.len());
        let messages = self.messages.split_off(at);
        let (turns, kept): (Vec<_>, Vec<_>) = std::mem::take(self.turns)
            .into_iter()
            .partition(|t| t.messages_after > at);
        *self.turns = kept;
        let (inner, outer): (Vec<_>, Vec<_>) =
            std::mem::take(forks).into_iter().partition(|f| f.at > at);
        *forks = outer;
        Tail {
            messages,
            turns,
            forks: inner,
        }
    }

    /// Puts `tail` back after the messages there are (the forks it holds start after them).
    fn append(&mut self, tail: Tail, forks: &mut Vec<Fork>) {
        self.messages.extend(tail.messages);
        self.turns.extend(tail.turns);
        forks.extend(tail.forks);
    }
}

/// Which version of a fork is shown and how many there are: (1-based, count), as "2/3".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionLabel {
    pub shown: usize,
    pub count: usize,
}

/// Why saved branch data cannot be used with its conversation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BranchError {
    #[error("a fork at message {at} is outside the {len} messages it branches")]
    ForkOutside { at: usize, len: usize },
    #[error("forks at messages {before} and {at} are out of order")]
    Unordered { before: usize, at: usize },
    #[error("the fork at message {at} shows version {active} of {count}")]
    NoSuchVersion {
        at: usize,
        active: usize,
        count: usize,
    },
}

impl Branches {
    /// True when the chat never branched.
    pub fn is_empty(&self) -> bool {
        self.forks.is_empty()
    }

    /// Starts a new, empty version at message `at` (the rest from there is kept as the
    /// version it was) and shows it; the conversation ends at `at` afterwards.
    pub fn fork(&mut self, at: usize, path: &mut ShownPath<'_>) {
        let at = at.min(path.messages.len());
        let tail = path.take_tail(at, &mut self.forks);
        match self.forks.iter_mut().find(|f| f.at == at) {
            Some(fork) => {
                if let Some(slot) = fork.versions.get_mut(fork.active) {
                    *slot = tail;
                }
                fork.versions.push(Tail::default());
                fork.active = fork.versions.len() - 1;
            }
            None => {
                self.forks.push(Fork {
                    at,
                    active: 1,
                    versions: vec![tail, Tail::default()],
                });
                self.forks.sort_by_key(|f| f.at);
            }
        }
    }

    /// Shows version `to` (0-based) of the fork at message `at`; the version shown until
    /// now is kept. Returns false (and changes nothing) when there is no such fork or
    /// version.
    pub fn switch(&mut self, at: usize, to: usize, path: &mut ShownPath<'_>) -> bool {
        let Some(fork) = self.forks.iter().find(|f| f.at == at) else {
            return false;
        };
        if to >= fork.versions.len() || to == fork.active || at > path.messages.len() {
            return false;
        }
        let shown = path.take_tail(at, &mut self.forks);
        // The forks after `at` went with the tail; the fork itself stays.
        let Some(fork) = self.forks.iter_mut().find(|f| f.at == at) else {
            return false;
        };
        if let Some(slot) = fork.versions.get_mut(fork.active) {
            *slot = shown;
        }
        let next = fork
            .versions
            .get_mut(to)
            .map(std::mem::take)
            .unwrap_or_default();
        fork.active = to;
        path.append(next, &mut self.forks);
        true
    }

    /// The version label of the fork at message `at`, if there is one.
    pub fn label_at(&self, at: usize) -> Option<VersionLabel> {
        self.forks
            .iter()
            .find(|f| f.at == at)
            .map(|f| VersionLabel {
                shown: f.active + 1,
                count: f.versions.len(),
            })
    }

    /// Checks saved branch data against the conversation it came with (`len` messages
    /// shown): every fork inside what it branches, in order, showing a version it has.
    pub fn check(&self, len: usize) -> Result<(), BranchError> {
        check_forks(&self.forks, 0, len)
    }
}

fn check_forks(forks: &[Fork], from: usize, len: usize) -> Result<(), BranchError> {
    let mut before: Option<usize> = None;
    for fork in forks {
        if fork.at < from || fork.at > len {
            return Err(BranchError::ForkOutside { at: fork.at, len });
        }
        if let Some(before) = before
            && fork.at <= before
        {
            return Err(BranchError::Unordered {
                before,
                at: fork.at,
            });
        }
        before = Some(fork.at);
        if fork.active >= fork.versions.len() {
            return Err(BranchError::NoSuchVersion {
                at: fork.at,
                active: fork.active + 1,
                count: fork.versions.len(),
            });
        }
        for (i, version) in fork.versions.iter().enumerate() {
            if i != fork.active {
                // Forks inside a stored version start after its fork.
                check_forks(
                    &version.forks,
                    fork.at + 1,
                    fork.at + version.messages.len(),
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{StopReason, TurnStats};
    use crate::harmony::{Content, Role};

    fn msg(role: Role, text: &str) -> Message {
        Message::from_role_and_content(role, Content::text(text))
    }

    fn texts(messages: &[Message]) -> Vec<String> {
        messages.iter().map(|m| m.text()).collect()
    }

    fn turn(after: usize) -> TurnRecord {
        TurnRecord {
            messages_after: after,
            stop: StopReason::Return,
            stats: TurnStats::default(),
        }
    }

    #[test]
    fn a_fork_keeps_the_old_rest_and_switching_brings_it_back() {
        let mut messages = vec![
            msg(Role::User, "q1"),
            msg(Role::Assistant, "a1"),
            msg(Role::User, "q2"),
            msg(Role::Assistant, "a2"),
        ];
        let mut turns = vec![turn(2), turn(4)];
        let mut branches = Branches::default();
        let mut path = ShownPath {
            messages: &mut messages,
            turns: &mut turns,
        };
        branches.fork(2, &mut path);
        assert_eq!(texts(path.messages), ["q1", "a1"]);
        assert_eq!(path.turns, &vec![turn(2)]);
        path.messages.push(msg(Role::User, "q2 edited"));
        path.messages.push(msg(Role::Assistant, "b2"));
        path.turns.push(turn(4));
        assert_eq!(
            branches.label_at(2),
            Some(VersionLabel { shown: 2, count: 2 })
        );
        assert!(branches.switch(2, 0, &mut path));
        assert_eq!(texts(path.messages), ["q1", "a1", "q2", "a2"]);
        assert_eq!(path.turns.len(), 2);
        assert!(branches.switch(2, 1, &mut path));
        assert_eq!(texts(path.messages), ["q1", "a1", "q2 edited", "b2"]);
        assert!(!branches.switch(2, 5, &mut path), "no version 6");
        assert!(!branches.switch(1, 0, &mut path), "no fork at 1");
    }

    #[test]
    fn switching_an_outer_fork_takes_the_inner_forks_with_it() {
        let mut messages = vec![msg(Role::User, "q1"), msg(Role::Assistant, "a1")];
        let mut turns = Vec::new();
        let mut branches = Branches::default();
        let mut path = ShownPath {
            messages: &mut messages,
            turns: &mut turns,
        };
        // Edit q1 (fork at 0), then regenerate its answer (fork at 1).
        branches.fork(0, &mut path);
        path.messages.push(msg(Role::User, "q1b"));
        path.messages.push(msg(Role::Assistant, "b1"));
        branches.fork(1, &mut path);
        path.messages.push(msg(Role::Assistant, "b1 again"));
        assert_eq!(branches.forks.len(), 2);
        assert!(branches.switch(0, 0, &mut path));
        assert_eq!(texts(path.messages), ["q1", "a1"]);
        assert_eq!(
            branches.forks.len(),
            1,
            "the inner fork went with its version"
        );
        assert_eq!(branches.label_at(1), None);
        assert!(branches.switch(0, 1, &mut path));
        assert_eq!(texts(path.messages), ["q1b", "b1 again"]);
        assert_eq!(
            branches.label_at(1),
            Some(VersionLabel { shown: 2, count: 2 })
        );
        assert_eq!(branches.check(path.messages.len()), Ok(()));
    }

    #[test]
    fn a_second_fork_at_the_same_place_adds_a_version() {
        let mut messages = vec![msg(Role::User, "q"), msg(Role::Assistant, "a")];
        let mut turns = Vec::new();
        let mut branches = Branches::default();
        let mut path = ShownPath {
            messages: &mut messages,
            turns: &mut turns,
        };
        branches.fork(1, &mut path);
        path.messages.push(msg(Role::Assistant, "b"));
        branches.fork(1, &mut path);
        path.messages.push(msg(Role::Assistant, "c"));
        assert_eq!(
            branches.label_at(1),
            Some(VersionLabel { shown: 3, count: 3 })
        );
        assert!(branches.switch(1, 1, &mut path));
        assert_eq!(texts(path.messages), ["q", "b"]);
    }

    #[test]
    fn broken_saved_forks_are_named() {
        let fork = |at, active, count| Fork {
            at,
            active,
            versions: vec![Tail::default(); count],
        };
        let outside = Branches {
            forks: vec![fork(9, 1, 2)],
        };
        assert_eq!(
            outside.check(4).unwrap_err().to_string(),
            "a fork at message 9 is outside the 4 messages it branches"
        );
        let unordered = Branches {
            forks: vec![fork(3, 1, 2), fork(1, 1, 2)],
        };
        assert_eq!(
            unordered.check(4).unwrap_err().to_string(),
            "forks at messages 3 and 1 are out of order"
        );
        let no_version = Branches {
            forks: vec![fork(1, 4, 2)],
        };
        assert_eq!(
            no_version.check(4).unwrap_err().to_string(),
            "the fork at message 1 shows version 5 of 2"
        );
    }
}
