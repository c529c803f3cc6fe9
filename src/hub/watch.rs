//! Network work runs on a thread of its own that the caller watches: the caller stays
//! responsive to cancellation (the app quitting) and gives up on silence even where no socket
//! timeout applies (a DNS lookup). A given-up thread is left to end on its own read timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::progress::Reporter;
use super::{CONNECT_TIMEOUT, HubError};

/// How often the watcher looks at the cancel flag.
const TICK: Duration = Duration::from_millis(50);

/// A flag that stops a resolve in progress (shared with whoever may cancel it).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not yet raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every resolve holding this flag to stop as soon as it can.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Two options are equal when they share the same flag.
impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What the working thread reports while it downloads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Event {
    /// The body starts: the file's size and the bytes already on disk.
    Started {
        total_bytes: u64,
        resumed_bytes: u64,
    },
    /// More bytes were written.
    Advanced(u64),
    /// The file is complete and checked.
    Finished,
}

enum Message<T> {
    Event(Event),
    Done(Result<T, HubError>),
}

/// Who is asking, for the watcher's own errors.
pub(super) struct Watched<'a> {
    pub model: &'a str,
    pub file: &'a str,
    pub cancel: &'a Cancel,
    /// The per-request read timeout; the watcher waits a connect timeout longer so that the
    /// thread's own, more precise error arrives first.
    pub read_timeout: Duration,
}

/// Runs `work` on a thread, relays its events to `reporter`, and returns its result, or an
/// error when cancelled or silent for too long.
pub(super) fn run<T: Send + 'static>(
    watched: &Watched<'_>,
    mut reporter: Option<&mut Reporter<'_>>,
    work: impl FnOnce(&mut dyn FnMut(Event)) -> Result<T, HubError> + Send + 'static,
) -> Result<T, HubError> {
    let (sender, received) = mpsc::channel();
    let events = sender.clone();
    std::thread::Builder::new()
        .name("hub-download".into())
        .spawn(move || {
            let result = work(&mut |event| {
                let _ = events.send(Message::Event(event));
            });
            let _ = sender.send(Message::Done(result));
        })
        .map_err(|e| HubError::Download {
            model: watched.model.to_string(),
            file: watched.file.to_string(),
            problem: format!("cannot start the download thread: {e}"),
        })?;
    let silence_limit = watched.read_timeout + CONNECT_TIMEOUT;
    let mut last_heard = Instant::now();
    loop {
        match received.recv_timeout(TICK) {
            Ok(Message::Event(event)) => {
                last_heard = Instant::now();
                if let Some(reporter) = reporter.as_deref_mut() {
                    match event {
                        Event::Started {
                            total_bytes,
                            resumed_bytes,
                        } => reporter.start(total_bytes, resumed_bytes),
                        Event::Advanced(bytes) => reporter.advance(bytes),
                        Event::Finished => reporter.report(true),
                    }
                }
            }
            Ok(Message::Done(result)) => return result,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(HubError::Download {
                    model: watched.model.to_string(),
                    file: watched.file.to_string(),
                    problem: "the download thread stopped".into(),
                });
            }
        }
        if watched.cancel.is_cancelled() {
            return Err(HubError::Cancelled {
                model: watched.model.to_string(),
                file: watched.file.to_string(),
            });
        }
        if last_heard.elapsed() >= silence_limit {
            return Err(HubError::Stalled {
                model: watched.model.to_string(),
                file: watched.file.to_string(),
                seconds: silence_limit.as_secs(),
            });
        }
    }
}
