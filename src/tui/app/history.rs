//! Sent messages and slash commands, recalled with ↑/↓ in the input box like a shell's
//! history; the draft being typed is kept while browsing and comes back past the newest.

/// How many sent lines are kept (oldest dropped first).
const HISTORY_LIMIT: usize = 500;

/// The recall list and where browsing is.
#[derive(Debug, Clone, Default)]
pub struct InputHistory {
    /// Oldest first; no two neighbours equal.
    sent: Vec<String>,
    /// The index shown now, while browsing.
    browsing: Option<usize>,
    /// What was in the box when browsing started.
    draft: String,
}

impl InputHistory {
    /// Remembers a sent line and stops browsing.
    pub fn push(&mut self, text: &str) {
        self.browsing = None;
        self.draft.clear();
        if text.trim().is_empty() || self.sent.last().is_some_and(|last| last == text) {
            return;
        }
        self.sent.push(text.to_string());
        if self.sent.len() > HISTORY_LIMIT {
            self.sent.remove(0);
        }
    }

    /// True while a recalled line is in the box.
    pub fn is_browsing(&self) -> bool {
        self.browsing.is_some()
    }

    /// Stops browsing (the user edited the recalled line: it is a new draft now).
    pub fn stop_browsing(&mut self) {
        self.browsing = None;
    }

    /// The line before the one shown (the newest when not browsing, saving `current` as the
    /// draft); `None` at the oldest or with no history.
    pub fn older(&mut self, current: &str) -> Option<&str> {
        let index = match self.browsing {
            None => {
                let newest = self.sent.len().checked_sub(1)?;
                self.draft = current.to_string();
                newest
            }
            Some(0) => return None,
            Some(i) => i - 1,
        };
        self.browsing = Some(index);
        self.sent.get(index).map(String::as_str)
    }

    /// The line after the one shown, or the saved draft past the newest; `None` when not
    /// browsing.
    pub fn newer(&mut self) -> Option<String> {
        let index = self.browsing?;
        if index + 1 < self.sent.len() {
            self.browsing = Some(index + 1);
            return self.sent.get(index + 1).cloned();
        }
        self.browsing = None;
        Some(std::mem::take(&mut self.draft))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_walks_back_down_walks_forward_and_returns_the_draft() {
        let mut history = InputHistory::default();
        assert_eq!(history.older("draft"), None, "nothing sent yet");
        history.push("one");
        history.push("two");
        history.push("two");
        history.push("  ");
        assert_eq!(history.older("half typed"), Some("two"));
        assert_eq!(history.older("two"), Some("one"), "duplicates kept once");
        assert_eq!(history.older("one"), None, "stops at the oldest");
        assert_eq!(history.newer().as_deref(), Some("two"));
        assert_eq!(history.newer().as_deref(), Some("half typed"));
        assert!(!history.is_browsing());
        assert_eq!(history.newer(), None);
    }

    #[test]
    fn the_oldest_lines_go_first_past_the_limit() {
        let mut history = InputHistory::default();
        for i in 0..HISTORY_LIMIT + 3 {
            history.push(&format!("line {i}"));
        }
        let mut oldest = String::new();
        while let Some(line) = history.older("") {
            oldest = line.to_string();
        }
        assert_eq!(oldest, "line 3");
    }
}
