//! The tool loop every front end shares (the app, `ossterm ask`), with no UI and no I/O of its
//! own: it keeps the conversation, turns a turn that ended in `<|call|>` into a [`ToolCall`],
//! applies the [`ApprovalPolicy`], and says what to send next (to the engine, the tool host,
//! or the user). Results and denials go back as tool messages; the reasoning stays in the
//! conversation through the loop (harmony drops it only after a final answer), so each
//! round trip prefills only the new tokens.

use std::collections::BTreeSet;
use std::time::Duration;

use super::policy::{ApprovalPolicy, Decision, DenyReason, RunReason};
use super::protocol::{Approval, ToolCall, ToolCatalog, ToolCommand, ToolResult, ToolWhere};
use crate::engine::{Command, StopReason, TurnStats};
use crate::harmony::{Content, Conversation, Message};

/// More calls than this in one user turn are denied (a model stuck calling a tool).
pub const DEFAULT_MAX_CALLS_PER_TURN: usize = 16;

/// What the front end does next.
#[derive(Debug, Clone)]
pub enum AgentStep {
    /// Send this to the engine (a `Submit` of the conversation so far).
    Engine(Command),
    /// Ask the user about this call, then call [`AgentLoop::approve`].
    AskUser {
        /// The call, arguments as the model wrote them.
        call: ToolCall,
        /// Where it would run (shown in the prompt).
        where_runs: ToolWhere,
    },
    /// Send this to the tool host (a `Run`), then call [`AgentLoop::on_tool_result`].
    Tool(ToolCommand),
    /// The turn is over: the model answered (or stopped) without calling a tool.
    Done {
        /// Why the last generation ended.
        stop: StopReason,
    },
}

/// One call of the turn and what became of it (for transcripts and `--json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolExchange {
    /// The call (arguments as run, after an edit).
    pub call: ToolCall,
    /// Why it ran, when it ran.
    pub ran: Option<RunReason>,
    /// Why it did not run, when it did not.
    pub denied: Option<DenyReason>,
    /// The text the model read back.
    pub result_text: String,
    /// True when the tool failed or the call was denied.
    pub is_error: bool,
    /// Wall time the tool ran, in milliseconds.
    pub duration_ms: f64,
}

/// Something the front end did out of order (a bug in the front end, reported, not panicked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// `approve` with no call waiting for approval.
    #[error("no tool call is waiting for approval")]
    NoCallToApprove,
    /// A result for a call that is not running.
    #[error("tool result for call {got}, but {}", match .expected {
        Some(id) => format!("call {id} is the one running"),
        None => "no call is running".to_owned(),
    })]
    UnexpectedResult {
        /// The result's call id.
        got: u64,
        /// The running call, if any.
        expected: Option<u64>,
    },
    /// The engine said the turn ended in `<|call|>` but the last message names no recipient.
    #[error(
        "the model ended its turn with <|call|> but its last message names no tool (recipient)"
    )]
    CallWithoutRecipient,
}

/// The state of one chat's tool loop.
#[derive(Debug, Clone)]
pub struct AgentLoop {
    conversation: Conversation,
    policy: ApprovalPolicy,
    chat_id: String,
    max_new_tokens: usize,
    max_calls_per_turn: usize,
    allowed_for_chat: BTreeSet<String>,
    next_call_id: u64,
    /// The call waiting for the user, and the index of its message.
    awaiting_approval: Option<(ToolCall, usize, ToolWhere)>,
    /// The call the tool host is running, and why it runs.
    running: Option<(ToolCall, RunReason)>,
    calls_this_turn: usize,
    exchanges: Vec<ToolExchange>,
    engine_turns: Vec<TurnStats>,
    /// Sent with every submit: the final answer's format and tool argument schemas.
    constraint: Option<crate::structured::TurnConstraint>,
}

impl AgentLoop {
    /// A loop over `conversation` (system and developer messages with the offered tools
    /// already in it) for chat `chat_id` (the tool host keeps python state per chat).
    pub fn new(
        conversation: Conversation,
        policy: ApprovalPolicy,
        chat_id: impl Into<String>,
        max_new_tokens: usize,
    ) -> Self {
        Self {
            conversation,
            policy,
            chat_id: chat_id.into(),
            max_new_tokens,
            max_calls_per_turn: DEFAULT_MAX_CALLS_PER_TURN,
            allowed_for_chat: BTreeSet::new(),
            next_call_id: 1,
            awaiting_approval: None,
            running: None,
            calls_this_turn: 0,
            exchanges: Vec::new(),
            engine_turns: Vec::new(),
            constraint: None,
        }
    }

    /// Holds every generation of this loop to `constraint` (`ask --json-schema`, tool
    /// argument schemas); an empty one is dropped. A required call (`ask --tool-choice`)
    /// holds only a user turn's first generation: once a call is made the model may answer.
    pub fn with_constraint(mut self, constraint: crate::structured::TurnConstraint) -> Self {
        self.constraint = (!constraint.is_empty()).then_some(constraint);
        self
    }

    /// Caps the calls one user turn may make (later ones are denied and the model told).
    pub fn with_max_calls_per_turn(mut self, calls: usize) -> Self {
        self.max_calls_per_turn = calls;
        self
    }

    /// The conversation so far (every message, tool calls and results included).
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// Every call so far and what became of it.
    pub fn exchanges(&self) -> &[ToolExchange] {
        &self.exchanges
    }

    /// The stats of each generation (one per engine turn; a tool round trip adds one).
    pub fn engine_turns(&self) -> &[TurnStats] {
        &self.engine_turns
    }

    /// Total wall time tools ran.
    pub fn tool_time(&self) -> Duration {
        Duration::from_secs_f64(
            self.exchanges
                .iter()
                .map(|e| e.duration_ms / 1000.0)
                .sum::<f64>(),
        )
    }

    /// Tools the user allowed for this chat.
    pub fn allowed_for_chat(&self) -> &BTreeSet<String> {
        &self.allowed_for_chat
    }

    /// Appends the user's message and asks the engine for the answer.
    pub fn start_turn(&mut self, user_text: impl Into<String>) -> AgentStep {
        self.conversation.messages.push(Message::user(user_text));
        self.calls_this_turn = 0;
        self.submit()
    }

    /// A message of the assistant's turn is complete (the engine's `MessageDone`).
    pub fn on_message_done(&mut self, message: Message) {
        self.conversation.messages.push(message);
    }

    /// The engine's `TurnDone`: a call goes to the policy; anything else ends the turn.
    pub fn on_turn_done(
        &mut self,
        stop: StopReason,
        stats: TurnStats,
        catalog: &ToolCatalog,
    ) -> Result<AgentStep, AgentError> {
        self.engine_turns.push(stats);
        if stop != StopReason::Call {
            return Ok(AgentStep::Done { stop });
        }
        let index = self.conversation.messages.len().saturating_sub(1);
        let call = self
            .conversation
            .messages
            .last()
            .and_then(|message| ToolCall::from_message(self.next_call_id, message))
            .ok_or(AgentError::CallWithoutRecipient)?;
        self.next_call_id += 1;
        self.calls_this_turn += 1;
        let entry = catalog.entries.get(&call.recipient);
        let decision = if self.calls_this_turn > self.max_calls_per_turn {
            Decision::Deny(DenyReason::CallLimit)
        } else {
            self.policy.decide(&call, entry, &self.allowed_for_chat)
        };
        Ok(match decision {
            Decision::Run(reason) => self.run(call, reason),
            Decision::Deny(reason) => self.deny(call, reason),
            Decision::Ask => {
                let where_runs = entry.map_or(ToolWhere::Unknown, |e| e.where_runs.clone());
                self.awaiting_approval = Some((call.clone(), index, where_runs.clone()));
                AgentStep::AskUser { call, where_runs }
            }
        })
    }

    /// The user's answer to the call [`AgentStep::AskUser`] showed.
    pub fn approve(&mut self, approval: Approval) -> Result<AgentStep, AgentError> {
        let (mut call, index, _) = self
            .awaiting_approval
            .take()
            .ok_or(AgentError::NoCallToApprove)?;
        Ok(match approval {
            Approval::AllowOnce => self.run(call, RunReason::UserAllowedOnce),
            Approval::AllowForChat => {
                self.allowed_for_chat.insert(call.recipient.clone());
                self.run(call, RunReason::AllowedForChat)
            }
            Approval::Deny => self.deny(call, DenyReason::User),
            Approval::Edited(arguments) => {
                // The transcript shows the call as it ran, so the model reasons about the
                // arguments that produced the result.
                if let Some(message) = self.conversation.messages.get_mut(index) {
                    message.content = vec![Content::text(arguments.clone())];
                }
                call.arguments = arguments;
                self.run(call, RunReason::UserEdited)
            }
        })
    }

    /// The tool host's `Finished` result for the running call: it goes back to the model.
    pub fn on_tool_result(&mut self, result: ToolResult) -> Result<AgentStep, AgentError> {
        let expected = self.running.as_ref().map(|(call, _)| call.id);
        if expected != Some(result.call_id) {
            return Err(AgentError::UnexpectedResult {
                got: result.call_id,
                expected,
            });
        }
        let Some((call, reason)) = self.running.take() else {
            return Err(AgentError::UnexpectedResult {
                got: result.call_id,
                expected,
            });
        };
        self.exchanges.push(ToolExchange {
            call,
            ran: Some(reason),
            denied: None,
            result_text: result.text.clone(),
            is_error: result.is_error,
            duration_ms: result.duration.as_secs_f64() * 1000.0,
        });
        self.conversation.messages.push(result.to_message());
        Ok(self.submit())
    }

    fn run(&mut self, call: ToolCall, reason: RunReason) -> AgentStep {
        self.running = Some((call.clone(), reason));
        AgentStep::Tool(ToolCommand::Run {
            chat_id: self.chat_id.clone(),
            call,
        })
    }

    fn deny(&mut self, call: ToolCall, reason: DenyReason) -> AgentStep {
        let result = ToolResult {
            call_id: call.id,
            author: call.recipient.clone(),
            channel: call.channel.clone(),
            text: error_text(&call.recipient, &reason.explain(&call.recipient)),
            is_error: true,
            duration: Duration::ZERO,
        };
        self.exchanges.push(ToolExchange {
            call,
            ran: None,
            denied: Some(reason),
            result_text: result.text.clone(),
            is_error: true,
            duration_ms: 0.0,
        });
        self.conversation.messages.push(result.to_message());
        self.submit()
    }

    fn submit(&self) -> AgentStep {
        let constraint = match self.calls_this_turn {
            0 => self.constraint.clone(),
            _ => self.constraint.clone().map(|c| c.without_required_call()),
        };
        AgentStep::Engine(Command::Submit {
            conversation: self.conversation.clone(),
            max_new_tokens: self.max_new_tokens,
            constraint,
        })
    }
}

/// An error as the tool's own errors read: python prints `[ERROR] …` (the reference tool's
/// form), function and browser tools answer `{"error": …}`.
pub fn error_text(recipient: &str, message: &str) -> String {
    if recipient == "python" || recipient.starts_with("python.") {
        format!("[ERROR] {message}")
    } else {
        serde_json::json!({ "error": message }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harmony::{Role, SystemContent};
    use crate::tools::CatalogEntry;

    fn catalog() -> ToolCatalog {
        let mut catalog = ToolCatalog::default();
        catalog.entries.insert(
            "python".into(),
            CatalogEntry {
                where_runs: ToolWhere::Python {
                    runner: "local".into(),
                },
                read_only: false,
            },
        );
        catalog
    }

    fn start(policy: ApprovalPolicy) -> (AgentLoop, AgentStep) {
        let conversation =
            Conversation::from_messages([Message::system(SystemContent::new().with_python_tool())]);
        let mut agent = AgentLoop::new(conversation, policy, "chat-1", 64);
        let step = agent.start_turn("what is 6 x 7");
        (agent, step)
    }

    fn model_calls_python(agent: &mut AgentLoop) -> Result<AgentStep, AgentError> {
        agent.on_message_done(Message::assistant("analysis", "Use python."));
        agent.on_message_done(
            Message::assistant("analysis", "print(6 * 7)")
                .with_recipient("python")
                .with_content_type("code"),
        );
        agent.on_turn_done(StopReason::Call, TurnStats::default(), &catalog())
    }

    fn submitted(step: &AgentStep) -> &Conversation {
        match step {
            AgentStep::Engine(Command::Submit { conversation, .. }) => conversation,
            other => panic!("expected a submit, got {other:?}"),
        }
    }

    fn result(call_id: u64, text: &str) -> ToolResult {
        ToolResult {
            call_id,
            author: "python".into(),
            channel: "analysis".into(),
            text: text.into(),
            is_error: false,
            duration: Duration::from_millis(30),
        }
    }

    #[test]
    fn an_allowlisted_call_runs_and_its_result_is_submitted_after_the_kept_reasoning() {
        let policy = ApprovalPolicy::default()
            .with_allowlist(["python"])
            .unwrap();
        let (mut agent, first) = start(policy);
        assert_eq!(submitted(&first).messages.len(), 2);
        let step = model_calls_python(&mut agent).unwrap();
        let AgentStep::Tool(ToolCommand::Run { chat_id, call }) = step else {
            panic!("expected a run, got {step:?}");
        };
        assert_eq!(chat_id, "chat-1");
        assert_eq!(
            (call.recipient.as_str(), call.arguments.as_str()),
            ("python", "print(6 * 7)")
        );
        let next = agent.on_tool_result(result(call.id, "42\n")).unwrap();
        let conversation = submitted(&next);
        let last = conversation.messages.last().unwrap();
        assert_eq!(last.role, Role::Tool);
        assert_eq!(last.name.as_deref(), Some("python"));
        assert_eq!(last.channel.as_deref(), Some("analysis"));
        assert_eq!(last.text(), "42\n");
        // The analysis before the call is still there.
        assert_eq!(conversation.messages[2].text(), "Use python.");
        assert_eq!(agent.exchanges()[0].ran, Some(RunReason::Allowlist));
        assert_eq!(agent.tool_time(), Duration::from_millis(30));
        let done = agent
            .on_turn_done(StopReason::Return, TurnStats::default(), &catalog())
            .unwrap();
        assert!(matches!(
            done,
            AgentStep::Done {
                stop: StopReason::Return
            }
        ));
        assert_eq!(agent.engine_turns().len(), 2);
    }

    #[test]
    fn a_required_call_holds_only_the_first_generation_of_a_user_turn() {
        let required = crate::structured::TurnConstraint::default()
            .with_required_call(&["functions.now".to_owned()])
            .unwrap();
        let conversation = Conversation::from_messages([Message::system(SystemContent::new())]);
        let mut agent = AgentLoop::new(conversation, ApprovalPolicy::default(), "chat-1", 64)
            .with_constraint(required.clone());
        let sent = |step: &AgentStep| match step {
            AgentStep::Engine(Command::Submit { constraint, .. }) => constraint.clone(),
            other => panic!("expected a submit, got {other:?}"),
        };
        let first = agent.start_turn("what time is it");
        assert_eq!(sent(&first), Some(required.clone()));
        let after_call = model_calls_python(&mut agent).unwrap();
        let free = sent(&after_call).expect("the schemas stay");
        assert!(free.required_call.is_empty());
        assert_eq!(free.tool_arguments, required.tool_arguments);
        // The next user turn is held again.
        agent
            .on_turn_done(StopReason::Return, TurnStats::default(), &catalog())
            .unwrap();
        assert_eq!(sent(&agent.start_turn("and now?")), Some(required));
    }

    #[test]
    fn without_a_terminal_an_unlisted_call_is_denied_and_the_model_told() {
        let (mut agent, _) = start(ApprovalPolicy::default());
        let step = model_calls_python(&mut agent).unwrap();
        let told = submitted(&step).messages.last().unwrap().text();
        assert_eq!(
            told,
            "[ERROR] the call to python was denied: it is not on the allowlist and nobody is at a terminal to approve it"
        );
        assert_eq!(agent.exchanges()[0].denied, Some(DenyReason::NoTerminal));
    }

    #[test]
    fn the_user_denies_edits_or_allows_for_the_chat() {
        let terminal = ApprovalPolicy {
            interactive: true,
            ..ApprovalPolicy::default()
        };
        let (mut agent, _) = start(terminal);
        let step = model_calls_python(&mut agent).unwrap();
        assert!(matches!(step, AgentStep::AskUser { ref call, .. } if call.recipient == "python"));
        let denied = agent.approve(Approval::Deny).unwrap();
        assert_eq!(
            submitted(&denied).messages.last().unwrap().text(),
            "[ERROR] the user denied this call to python"
        );
        assert_eq!(
            agent.approve(Approval::Deny).unwrap_err(),
            AgentError::NoCallToApprove
        );

        // Edited arguments replace the model's in the transcript and in the call.
        model_calls_python(&mut agent).unwrap();
        let step = agent
            .approve(Approval::Edited("print(7 * 6)".into()))
            .unwrap();
        let AgentStep::Tool(ToolCommand::Run { call, .. }) = step else {
            panic!("expected a run, got {step:?}");
        };
        assert_eq!(call.arguments, "print(7 * 6)");
        assert_eq!(
            agent.conversation().messages.last().unwrap().text(),
            "print(7 * 6)"
        );
        agent.on_tool_result(result(call.id, "42\n")).unwrap();

        // Allowed for the chat: the next call runs without asking.
        model_calls_python(&mut agent).unwrap();
        let step = agent.approve(Approval::AllowForChat).unwrap();
        let AgentStep::Tool(ToolCommand::Run { call, .. }) = step else {
            panic!("expected a run, got {step:?}");
        };
        agent.on_tool_result(result(call.id, "42\n")).unwrap();
        let step = model_calls_python(&mut agent).unwrap();
        assert!(matches!(step, AgentStep::Tool(_)), "{step:?}");
    }

    #[test]
    fn out_of_order_results_and_calls_without_recipient_are_errors() {
        let policy = ApprovalPolicy::default()
            .with_allowlist(["python"])
            .unwrap();
        let (mut agent, _) = start(policy);
        let err = agent.on_tool_result(result(9, "x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tool result for call 9, but no call is running"
        );
        let AgentStep::Tool(ToolCommand::Run { call, .. }) =
            model_calls_python(&mut agent).unwrap()
        else {
            panic!("expected a run");
        };
        let err = agent.on_tool_result(result(call.id + 5, "x")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("call {} is the one running", call.id)),
            "{err}"
        );
        agent.on_message_done(Message::assistant("final", "no recipient"));
        let err = agent
            .on_turn_done(StopReason::Call, TurnStats::default(), &catalog())
            .unwrap_err();
        assert_eq!(err, AgentError::CallWithoutRecipient);
    }

    #[test]
    fn a_turn_stuck_calling_tools_is_cut_off() {
        let policy = ApprovalPolicy::default()
            .with_allowlist(["python"])
            .unwrap();
        let (agent, _) = start(policy);
        let mut agent = agent.with_max_calls_per_turn(1);
        let AgentStep::Tool(ToolCommand::Run { call, .. }) =
            model_calls_python(&mut agent).unwrap()
        else {
            panic!("expected a run");
        };
        agent.on_tool_result(result(call.id, "42\n")).unwrap();
        let step = model_calls_python(&mut agent).unwrap();
        assert!(
            submitted(&step)
                .messages
                .last()
                .unwrap()
                .text()
                .contains("too many tool calls in this turn"),
        );
        // A new user turn starts counting again.
        agent.start_turn("again");
        assert!(matches!(
            model_calls_python(&mut agent).unwrap(),
            AgentStep::Tool(_)
        ));
    }

    #[test]
    fn an_unknown_tool_is_reported_as_json_for_functions() {
        assert_eq!(
            error_text(
                "functions.nope",
                "no tool named functions.nope is available"
            ),
            r#"{"error":"no tool named functions.nope is available"}"#
        );
    }
}
