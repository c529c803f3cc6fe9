//! Runs one user turn of the [`AgentLoop`] to its end over blocking channels: engine events
//! in, tool host events in, what happens out to a [`TurnObserver`]. For front ends without
//! an event loop of their own (`ossterm ask`); the app drives the same `AgentLoop` from its
//! select loop instead.

use std::sync::mpsc;

use tokio::sync::mpsc::UnboundedReceiver;

use super::agent::{AgentError, AgentLoop, AgentStep, ToolExchange};
use super::protocol::{Approval, ToolCall, ToolCatalog, ToolEvent, ToolHostHandle, ToolWhere};
use crate::engine::{Command, Event, MetricsSample, StopReason};

/// What a front end shows (or records) while a turn runs.
pub trait TurnObserver {
    /// A generated token's text (`delta` may be empty), with the message's channel and
    /// recipient so far.
    fn token(&mut self, channel: Option<&str>, recipient: Option<&str>, delta: &str);
    /// A call is about to run (approved or allowlisted).
    fn tool_started(&mut self, call: &ToolCall);
    /// A call ran or was denied; the model reads `exchange.result_text` next.
    fn tool_finished(&mut self, exchange: &ToolExchange);
    /// A tool server or runner reported a problem outside a call.
    fn problem(&mut self, source: &str, message: &str);
    /// Asks the user about a call (only when the policy says someone can be asked).
    fn approve(&mut self, call: &ToolCall, where_runs: &ToolWhere) -> Approval;
    /// A metrics sample from the engine (memory, context, speed); ignored unless wanted.
    fn metrics(&mut self, _sample: &MetricsSample) {}
}

/// Why a turn could not be finished.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The engine reported an error (the text says what).
    #[error("{0}")]
    Engine(String),
    /// The engine thread ended mid-turn.
    #[error("the engine stopped in the middle of the turn")]
    EngineGone,
    /// The tool host thread ended while a call was running.
    #[error("the tool host stopped while {recipient} was running")]
    ToolHostGone {
        /// The call's recipient.
        recipient: String,
    },
    /// The model called a tool but no tool host runs (the policy should have denied it).
    #[error("the model called {recipient} but no tools are enabled")]
    NoToolHost {
        /// The call's recipient.
        recipient: String,
    },
    /// The loop was driven out of order.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// The engine's two ends as a front end holds them.
pub struct EngineLink<'a> {
    /// Commands to the engine thread.
    pub commands: &'a mpsc::Sender<Command>,
    /// Events from it.
    pub events: &'a mut UnboundedReceiver<Event>,
}

/// Runs `first` (usually [`AgentLoop::start_turn`]'s submit) and every step after it until
/// the model ends the turn without a call; returns why it ended.
pub fn drive_turn(
    agent: &mut AgentLoop,
    first: AgentStep,
    engine: &mut EngineLink<'_>,
    mut tools: Option<&mut ToolHostHandle>,
    catalog: &mut ToolCatalog,
    observer: &mut dyn TurnObserver,
) -> Result<StopReason, DriveError> {
    let mut step = first;
    loop {
        step = match step {
            AgentStep::Done { stop } => return Ok(stop),
            AgentStep::Engine(command) => {
                engine
                    .commands
                    .send(command)
                    .map_err(|_| DriveError::EngineGone)?;
                generate(agent, engine, catalog, observer)?
            }
            AgentStep::AskUser { call, where_runs } => {
                let answer = observer.approve(&call, &where_runs);
                let before = agent.exchanges().len();
                let next = agent.approve(answer)?;
                report_denial(agent, before, observer);
                next
            }
            AgentStep::Tool(command) => {
                let super::ToolCommand::Run { call, .. } = &command else {
                    return Err(AgentError::NoCallToApprove.into());
                };
                let call = call.clone();
                let Some(host) = tools.as_deref_mut() else {
                    return Err(DriveError::NoToolHost {
                        recipient: call.recipient,
                    });
                };
                observer.tool_started(&call);
                host.commands
                    .send(command)
                    .map_err(|_| DriveError::ToolHostGone {
                        recipient: call.recipient.clone(),
                    })?;
                let result = wait_for_result(host, &call, catalog, observer)?;
                let next = agent.on_tool_result(result)?;
                if let Some(exchange) = agent.exchanges().last() {
                    observer.tool_finished(exchange);
                }
                next
            }
        };
    }
}

/// Reads engine events until the turn ends; returns the loop's next step.
fn generate(
    agent: &mut AgentLoop,
    engine: &mut EngineLink<'_>,
    catalog: &ToolCatalog,
    observer: &mut dyn TurnObserver,
) -> Result<AgentStep, DriveError> {
    loop {
        match engine.events.blocking_recv() {
            None => return Err(DriveError::EngineGone),
            Some(Event::Token {
                channel,
                recipient,
                delta,
                ..
            }) => observer.token(channel.as_deref(), recipient.as_deref(), &delta),
            Some(Event::MessageDone(message)) => agent.on_message_done(message),
            Some(Event::TurnDone { stop, stats }) => {
                let before = agent.exchanges().len();
                let next = agent.on_turn_done(stop, stats, catalog)?;
                report_denial(agent, before, observer);
                return Ok(next);
            }
            Some(Event::Error { message, .. }) => return Err(DriveError::Engine(message)),
            Some(Event::Metrics(sample)) => observer.metrics(&sample),
            Some(_) => {}
        }
    }
}

/// A call the policy or the user denied never reaches the host; tell the observer here
/// (`before`: the number of exchanges before the step).
fn report_denial(agent: &AgentLoop, before: usize, observer: &mut dyn TurnObserver) {
    if let Some(exchange) = agent.exchanges().get(before)
        && exchange.denied.is_some()
    {
        observer.tool_finished(exchange);
    }
}

/// Reads tool host events until `call`'s result arrives.
fn wait_for_result(
    host: &mut ToolHostHandle,
    call: &ToolCall,
    catalog: &mut ToolCatalog,
    observer: &mut dyn TurnObserver,
) -> Result<super::ToolResult, DriveError> {
    loop {
        match host.events.recv() {
            Err(_) => {
                return Err(DriveError::ToolHostGone {
                    recipient: call.recipient.clone(),
                });
            }
            Ok(ToolEvent::Finished(result)) if result.call_id == call.id => return Ok(result),
            Ok(ToolEvent::Tools(updated)) => *catalog = updated,
            Ok(ToolEvent::Problem { source, message }) => observer.problem(&source, &message),
            Ok(_) => {}
        }
    }
}
