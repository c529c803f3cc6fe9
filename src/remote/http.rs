//! Requests to the server with bounded retries: a refused connection, 429 and 502–504 are
//! tried again after the server's `Retry-After` (capped) or a doubling delay, at most
//! `MAX_ATTEMPTS` times; anything else fails at once with the server's own message.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{RemoteError, RemoteOptions};

/// Tries per request, the first included.
pub const MAX_ATTEMPTS: u32 = 4;
/// The first retry's delay; each later one doubles.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest a server's `Retry-After` makes us wait.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Time to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence inside a response (a long prompt on a busy server).
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Error bodies read at most this far.
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

/// An HTTP client for one server.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    options: RemoteOptions,
}

/// A try that failed, and whether another may succeed.
struct Failure {
    error: RemoteError,
    retry_after: Option<Duration>,
    retryable: bool,
}

impl Client {
    /// A client for `options`' server.
    pub fn new(options: RemoteOptions) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(READ_TIMEOUT)
            .build();
        Self { agent, options }
    }

    /// The server's settings.
    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// POSTs `body` and returns the response to stream; retries as described above unless
    /// `cancel` is set meanwhile (then the last error is returned).
    pub fn post_stream(
        &self,
        body: &serde_json::Value,
        cancel: &AtomicBool,
    ) -> Result<ureq::Response, RemoteError> {
        let url = self.options.chat_url();
        let text = body.to_string();
        self.with_retries(
            cancel,
            || {
                self.authorized(self.agent.post(&url))
                    .set("Content-Type", "application/json")
                    .set("Accept", "text/event-stream")
                    .send_string(&text)
                    .map_err(Box::new)
            },
            &url,
        )
    }

    /// GETs `url` (one of the server's) as text, retrying as above.
    pub fn get_text(&self, url: &str, cancel: &AtomicBool) -> Result<String, RemoteError> {
        let response = self.with_retries(
            cancel,
            || {
                self.authorized(self.agent.get(url))
                    .call()
                    .map_err(Box::new)
            },
            url,
        )?;
        let mut text = String::new();
        response
            .into_reader()
            .take(8 * 1024 * 1024)
            .read_to_string(&mut text)
            .map_err(|err| RemoteError::Network {
                url: url.to_string(),
                reason: err.to_string(),
            })?;
        Ok(text)
    }

    fn authorized(&self, request: ureq::Request) -> ureq::Request {
        match &self.options.api_key {
            Some(key) => request.set("Authorization", &format!("Bearer {key}")),
            None => request,
        }
    }

    fn with_retries(
        &self,
        cancel: &AtomicBool,
        send: impl Fn() -> Result<ureq::Response, Box<ureq::Error>>,
        url: &str,
    ) -> Result<ureq::Response, RemoteError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match send() {
                Ok(response) => return Ok(response),
                Err(error) => failure(url, *error),
            };
            if !failure.retryable || attempt >= MAX_ATTEMPTS || cancel.load(Ordering::Relaxed) {
                return Err(failure.error);
            }
            let delay = failure
                .retry_after
                .unwrap_or(FIRST_RETRY_DELAY * 2u32.pow(attempt - 1))
                .min(MAX_RETRY_DELAY);
            if !sleep_unless_cancelled(delay, cancel) {
                return Err(failure.error);
            }
        }
    }
}

/// Sleeps `delay` in short steps; false when `cancel` was set meanwhile.
fn sleep_unless_cancelled(delay: Duration, cancel: &AtomicBool) -> bool {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < delay {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(step.min(delay - slept));
        slept += step;
    }
    !cancel.load(Ordering::Relaxed)
}

fn failure(url: &str, error: ureq::Error) -> Failure {
    match error {
        ureq::Error::Status(status, response) => {
            let retry_after = response
                .header("Retry-After")
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut body = String::new();
            let _ = response
                .into_reader()
                .take(MAX_ERROR_BODY_BYTES)
                .read_to_string(&mut body);
            Failure {
                error: RemoteError::Status {
                    url: url.to_string(),
                    status,
                    message: error_message(&body),
                },
                retry_after,
                retryable: matches!(status, 429 | 502 | 503 | 504),
            }
        }
        ureq::Error::Transport(transport) => Failure {
            retryable: matches!(
                transport.kind(),
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io
            ),
            error: RemoteError::Network {
                url: url.to_string(),
                reason: transport.to_string(),
            },
            retry_after: None,
        },
    }
}

/// The `error.message` of an OpenAI error body, else the body's start.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|value| {
        value["error"]["message"]
            .as_str()
            .or_else(|| value["error"].as_str())
            .or_else(|| value["message"].as_str())
            .map(str::to_string)
    });
    message.unwrap_or_else(|| super::chunk::shorten(body.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_each_servers_body() {
        assert_eq!(
            error_message(r#"{"error":{"message":"queue full","type":"rate_limit_error"}}"#),
            "queue full"
        );
        // Ollama and some proxies.
        assert_eq!(
            error_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message("Bad Gateway\n"), "Bad Gateway");
    }
}
