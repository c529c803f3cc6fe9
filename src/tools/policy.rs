//! Which tool calls run without asking: the config's allowlist, the chat's "allow this tool",
//! MCP's `readOnlyHint` (only when the config opts in), and "no terminal, nothing else runs".
//!
//! The policy only decides; the front end asks the user (when it can) and the agent loop
//! carries the answer out.

use std::collections::BTreeSet;

use super::protocol::{CatalogEntry, ToolCall};

/// The namespace of developer-defined function tools (MCP tools are offered in it).
const FUNCTIONS_PREFIX: &str = "functions.";

/// What may run without asking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Allowlist entries, as the config or `--allow` give them (see [`AllowEntry`]).
    pub allowlist: Vec<AllowEntry>,
    /// Run calls the MCP server marked read-only (`readOnlyHint`) without asking.
    pub auto_approve_read_only: bool,
    /// Someone is at a terminal to ask; without one, what is not allowed is denied.
    pub interactive: bool,
}

/// One allowlist entry: `python`, `browser` (every `browser.*` call), `functions.NAME` or just
/// `NAME` for a function tool, or a prefix ending in `*` (`functions.time__*`, one MCP
/// server's tools).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AllowEntry(String);

/// Why an allowlist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Empty, or with characters no recipient has.
    #[error(
        "allowlist entry {entry:?} is not a tool name: use python, browser, functions.NAME, NAME or a prefix ending in * (letters, digits, '_', '-', '.')"
    )]
    BadEntry {
        /// The entry as written.
        entry: String,
    },
}

impl AllowEntry {
    /// Checks the entry's spelling (recipients are words joined by dots).
    pub fn parse(entry: &str) -> Result<Self, PolicyError> {
        let trimmed = entry.trim();
        let body = trimmed.strip_suffix('*').unwrap_or(trimmed);
        let valid = !trimmed.is_empty()
            && body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if valid {
            Ok(Self(trimmed.to_owned()))
        } else {
            Err(PolicyError::BadEntry {
                entry: entry.to_owned(),
            })
        }
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the entry covers calls to `recipient`.
    pub fn matches(&self, recipient: &str) -> bool {
        let entry = self.0.as_str();
        if let Some(prefix) = entry.strip_suffix('*') {
            return recipient.starts_with(prefix)
                || recipient
                    .strip_prefix(FUNCTIONS_PREFIX)
                    .is_some_and(|name| name.starts_with(prefix));
        }
        recipient == entry
            || recipient.strip_prefix(FUNCTIONS_PREFIX) == Some(entry)
            // A namespace entry (`browser`) covers its functions (`browser.search`).
            || recipient
                .strip_prefix(entry)
                .is_some_and(|rest| rest.starts_with('.'))
    }
}

/// What to do with a call before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it; the reason is shown and recorded.
    Run(RunReason),
    /// Ask the user (allow once, allow for the chat, deny, edit).
    Ask,
    /// Do not run it; the model is told why.
    Deny(DenyReason),
}

/// Why a call runs without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunReason {
    /// An allowlist entry covers it.
    Allowlist,
    /// The user allowed this tool for the chat.
    AllowedForChat,
    /// The server marked it read-only and the config auto-approves those.
    ReadOnly,
    /// The user allowed this one call.
    UserAllowedOnce,
    /// The user edited the arguments and allowed the call.
    UserEdited,
}

/// Why a call did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No configured tool answers to this recipient.
    UnknownTool,
    /// Nobody is at a terminal to ask, and nothing allows it.
    NoTerminal,
    /// The user said no.
    User,
    /// The turn made more calls than the loop allows.
    CallLimit,
}

impl DenyReason {
    /// The sentence the model reads.
    pub fn explain(self, recipient: &str) -> String {
        match self {
            Self::UnknownTool => format!("no tool named {recipient} is available"),
            Self::NoTerminal => format!(
                "the call to {recipient} was denied: it is not on the allowlist and nobody is at a terminal to approve it"
            ),
            Self::User => format!("the user denied this call to {recipient}"),
            Self::CallLimit => format!(
                "the call to {recipient} was denied: too many tool calls in this turn; answer with what you have"
            ),
        }
    }
}

impl ApprovalPolicy {
    /// Parses allowlist entries (config or `--allow`), naming the bad one.
    pub fn with_allowlist<S: AsRef<str>>(
        mut self,
        entries: impl IntoIterator<Item = S>,
    ) -> Result<Self, PolicyError> {
        for entry in entries {
            self.allowlist.push(AllowEntry::parse(entry.as_ref())?);
        }
        Ok(self)
    }

    /// Decides `call`, given the catalog's entry for it (`None`: no such tool) and the
    /// tools allowed for this chat.
    pub fn decide(
        &self,
        call: &ToolCall,
        entry: Option<&CatalogEntry>,
        allowed_for_chat: &BTreeSet<String>,
    ) -> Decision {
        let Some(entry) = entry else {
            return Decision::Deny(DenyReason::UnknownTool);
        };
        if self.allowlist.iter().any(|a| a.matches(&call.recipient)) {
            Decision::Run(RunReason::Allowlist)
        } else if allowed_for_chat.contains(&call.recipient) {
            Decision::Run(RunReason::AllowedForChat)
        } else if entry.read_only && self.auto_approve_read_only {
            Decision::Run(RunReason::ReadOnly)
        } else if self.interactive {
            Decision::Ask
        } else {
            Decision::Deny(DenyReason::NoTerminal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolWhere;

    fn call(recipient: &str) -> ToolCall {
        ToolCall {
            id: 1,
            recipient: recipient.into(),
            channel: "commentary".into(),
            content_type: None,
            arguments: "{}".into(),
        }
    }

    fn entry(read_only: bool) -> CatalogEntry {
        CatalogEntry {
            where_runs: ToolWhere::McpServer {
                server: "time".into(),
                command: "uvx mcp-server-time".into(),
            },
            read_only,
        }
    }

    fn allows(entry_text: &str, recipient: &str) -> bool {
        AllowEntry::parse(entry_text).unwrap().matches(recipient)
    }

    #[test]
    fn entries_match_exact_names_namespaces_bare_functions_and_prefixes() {
        assert!(allows("python", "python"));
        assert!(!allows("python", "python3"));
        assert!(allows("browser", "browser.search"));
        assert!(!allows("browser", "browsers.search"));
        assert!(allows(
            "functions.time__get_current_time",
            "functions.time__get_current_time"
        ));
        assert!(allows(
            "time__get_current_time",
            "functions.time__get_current_time"
        ));
        assert!(allows("time__*", "functions.time__convert_time"));
        assert!(allows("functions.time__*", "functions.time__convert_time"));
        assert!(!allows("time__*", "functions.everything__echo"));
        assert!(!allows("functions", "python"));
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        for bad in ["", "  ", "rm -rf", "a/b", "*x"] {
            let err = AllowEntry::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn decisions_follow_allowlist_chat_read_only_then_terminal() {
        let none = BTreeSet::new();
        let headless = ApprovalPolicy::default();
        let get_time = call("functions.time__get_current_time");
        assert_eq!(
            headless.decide(&get_time, Some(&entry(false)), &none),
            Decision::Deny(DenyReason::NoTerminal)
        );
        // Read-only alone does not run it: the config must opt in.
        assert_eq!(
            headless.decide(&get_time, Some(&entry(true)), &none),
            Decision::Deny(DenyReason::NoTerminal)
        );
        let opted_in = ApprovalPolicy {
            auto_approve_read_only: true,
            ..ApprovalPolicy::default()
        };
        assert_eq!(
            opted_in.decide(&get_time, Some(&entry(true)), &none),
            Decision::Run(RunReason::ReadOnly)
        );
        let allowed = ApprovalPolicy::default()
            .with_allowlist(["time__*"])
            .unwrap();
        assert_eq!(
            allowed.decide(&get_time, Some(&entry(false)), &none),
            Decision::Run(RunReason::Allowlist)
        );
        let chat = BTreeSet::from([get_time.recipient.clone()]);
        assert_eq!(
            headless.decide(&get_time, Some(&entry(false)), &chat),
            Decision::Run(RunReason::AllowedForChat)
        );
        let terminal = ApprovalPolicy {
            interactive: true,
            ..ApprovalPolicy::default()
        };
        assert_eq!(
            terminal.decide(&get_time, Some(&entry(false)), &none),
            Decision::Ask
        );
        // A tool nobody offers never runs, allowlisted or not.
        assert_eq!(
            allowed.decide(&get_time, None, &none),
            Decision::Deny(DenyReason::UnknownTool)
        );
    }
}
