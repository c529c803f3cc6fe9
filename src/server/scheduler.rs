//! One generation at a time on the engine thread; the rest wait in a bounded queue.
//!
//! Each accepted request gets its own event channel. The scheduler forwards the engine's
//! events for that request's turn into it, and when the request's side closes (the client
//! disconnected, so its handler or its stream body was dropped) it sends `Command::Stop`,
//! which the engine honours within one decode step.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, error::TrySendError};

use super::metrics::ServerMetrics;
use super::request::Generation;
use crate::engine::{Command, Event};

/// A request waiting for, or holding, the engine.
struct Job {
    generation: Generation,
    events: UnboundedSender<Event>,
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue holds its limit already.
    QueueFull,
    /// The engine has stopped (it failed); nothing more will run.
    EngineGone,
}

/// The handlers' side: queue a generation, see how many wait.
#[derive(Clone)]
pub struct Scheduler {
    jobs: mpsc::Sender<Job>,
}

impl Scheduler {
    /// Starts the task that drives the engine (on the current tokio runtime). `queue_limit`
    /// requests may wait (at least 1) besides the one running.
    pub fn start(
        queue_limit: usize,
        commands: std_mpsc::Sender<Command>,
        events: UnboundedReceiver<Event>,
        metrics: Arc<ServerMetrics>,
    ) -> Self {
        let (jobs, job_rx) = mpsc::channel(queue_limit.max(1));
        tokio::spawn(drive(job_rx, commands, events, metrics));
        Self { jobs }
    }

    /// Queues `generation`; its engine events (ending with `TurnDone` or `Error`) arrive on the
    /// returned receiver. Dropping the receiver cancels the generation.
    pub fn submit(&self, generation: Generation) -> Result<UnboundedReceiver<Event>, Refusal> {
        let (events, receiver) = mpsc::unbounded_channel();
        match self.jobs.try_send(Job { generation, events }) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(Refusal::QueueFull),
            Err(TrySendError::Closed(_)) => Err(Refusal::EngineGone),
        }
    }

    /// Requests waiting (not counting the one running).
    pub fn queue_length(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }
}

async fn drive(
    mut jobs: mpsc::Receiver<Job>,
    commands: std_mpsc::Sender<Command>,
    mut events: UnboundedReceiver<Event>,
    metrics: Arc<ServerMetrics>,
) {
    loop {
        let job = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
            // Idle: keep the engine's samples (KV use, memory) current for /metrics.
            event = events.recv() => match event {
                Some(event) => {
                    metrics.observe(&event);
                    continue;
                }
                None => return,
            },
        };
        // Its client left while it waited: nothing to run.
        if job.events.is_closed() {
            continue;
        }
        metrics.set_running(true);
        let alive = run_job(&job, &commands, &mut events, &metrics).await;
        metrics.set_running(false);
        if !alive {
            return;
        }
    }
}

/// Runs one job to its end; false when the engine is gone.
async fn run_job(
    job: &Job,
    commands: &std_mpsc::Sender<Command>,
    events: &mut UnboundedReceiver<Event>,
    metrics: &ServerMetrics,
) -> bool {
    let generation = &job.generation;
    let sent = [
        Command::SetEffort(generation.effort),
        Command::SetSampling(generation.sampling),
        Command::Submit {
            conversation: generation.conversation.clone(),
            max_new_tokens: generation.max_new_tokens,
        },
    ]
    .into_iter()
    .all(|command| commands.send(command).is_ok());
    if !sent {
        let _ = job.events.send(engine_gone());
        return false;
    }
    let mut stop_sent = false;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    let _ = job.events.send(engine_gone());
                    return false;
                };
                metrics.observe(&event);
                let (done, fatal) = match &event {
                    Event::TurnDone { .. } => (true, false),
                    Event::Error { fatal, .. } => (true, *fatal),
                    _ => (false, false),
                };
                // The client may have gone; the turn still runs to its Stop.
                let _ = job.events.send(event);
                if done {
                    return !fatal;
                }
            }
            () = job.events.closed(), if !stop_sent => {
                stop_sent = true;
                if commands.send(Command::Stop).is_err() {
                    return false;
                }
            }
        }
    }
}

fn engine_gone() -> Event {
    Event::Error {
        message: "the engine has stopped; restart ossterm serve".into(),
        fatal: true,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::engine::{SamplingParams, StopReason, TurnStats};
    use crate::harmony::{Conversation, Message, ReasoningEffort};
    use std::time::Duration;

    fn generation() -> Generation {
        Generation {
            conversation: Conversation::from_messages([Message::user("hi")]),
            sampling: SamplingParams::default(),
            effort: ReasoningEffort::Low,
            max_new_tokens: 1_000_000,
        }
    }

    /// An engine thread that decodes a token every 5 ms until `Stop`, reporting what it got.
    pub(crate) fn fake_engine() -> (
        std_mpsc::Sender<Command>,
        UnboundedReceiver<Event>,
        UnboundedReceiver<&'static str>,
    ) {
        let (command_tx, command_rx) = std_mpsc::channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            while let Ok(command) = command_rx.recv() {
                if !matches!(command, Command::Submit { .. }) {
                    continue;
                }
                let _ = seen_tx.send("submit");
                // Bounded: 2000 steps of 5 ms.
                for step in 0..2000u32 {
                    if let Ok(Command::Stop) = command_rx.try_recv() {
                        let _ = seen_tx.send("stop");
                        let _ = event_tx.send(Event::TurnDone {
                            stop: StopReason::Stopped,
                            stats: TurnStats::default(),
                        });
                        break;
                    }
                    let _ = event_tx.send(Event::Token {
                        token_id: step,
                        channel: Some("final".into()),
                        recipient: None,
                        delta: "x".into(),
                    });
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        (command_tx, event_rx, seen_rx)
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_dropped_client_stops_its_generation() {
        let (commands, events, mut seen) = fake_engine();
        let scheduler = Scheduler::start(1, commands, events, Arc::default());
        let mut running = scheduler.submit(generation()).expect("runs");
        assert!(matches!(running.recv().await, Some(Event::Token { .. })));
        let waiting = scheduler.submit(generation()).expect("waits");
        assert_eq!(scheduler.queue_length(), 1);
        assert_eq!(
            scheduler.submit(generation()).err(),
            Some(Refusal::QueueFull)
        );
        // The first client leaves: its generation stops and the waiting one starts.
        drop(running);
        for expected in ["submit", "stop", "submit"] {
            let got = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await;
            assert_eq!(got.ok().flatten(), Some(expected));
        }
        let mut waiting = waiting;
        assert!(matches!(waiting.recv().await, Some(Event::Token { .. })));
        assert_eq!(scheduler.queue_length(), 0);
    }
}
