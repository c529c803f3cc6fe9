//! `--remote URL`: the app (and `ask`) on an OpenAI-compatible server — vLLM, SGLang,
//! llama-server, Ollama or `ossterm serve` — behind the engine's own Command/Event protocol, so
//! the panes work unchanged.
//!
//! sse (the event framing), chunk (one streamed chunk, whichever server's field names),
//! request (a harmony conversation as a request body), turn (chunks into engine events and
//! client-side stats), prometheus (the server's KV use from `/metrics`), http (requests with
//! bounded retries), front (the thread that ties them together).

pub mod chunk;
pub mod front;
pub mod http;
pub mod prometheus;
pub mod request;
pub mod sse;
pub mod turn;

pub use front::spawn;

use crate::engine::SamplingParams;
use crate::harmony::ReasoningEffort;

/// Where the server is and how to talk to it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteOptions {
    /// The API base, up to and including `/v1` (`http://gpu-box:8000/v1`).
    pub base_url: url::Url,
    /// Sent as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// The model to ask for; `None`: the first one the server lists.
    pub model: Option<String>,
    /// Effort until a `SetEffort`; `None`: the conversation's system message says.
    pub effort: Option<ReasoningEffort>,
    /// Sampling until a `SetSampling` (the app's settings).
    pub sampling: SamplingParams,
}

impl RemoteOptions {
    /// Checks `--remote`'s URL: http or https, with a host.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: Option<String>,
    ) -> Result<Self, RemoteError> {
        let bad = |reason: &str| RemoteError::BadUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let parsed =
            url::Url::parse(base_url.trim_end_matches('/')).map_err(|err| bad(&err.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("use an http:// or https:// URL"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("it has no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("give the API base without ?query or #fragment"));
        }
        Ok(Self {
            base_url: parsed,
            api_key,
            model,
            effort: None,
            sampling: SamplingParams::default(),
        })
    }

    /// Starts with this effort (as the local engine starts with the settings' effort).
    pub fn with_effort(mut self, effort: ReasoningEffort) -> Self {
        self.effort = Some(effort);
        self
    }

    /// Starts with this sampling.
    pub fn with_sampling(mut self, sampling: SamplingParams) -> Self {
        self.sampling = sampling;
        self
    }

    /// From the command-line flags (`--remote URL`, `--api-key-env VAR`, `--remote-model
    /// NAME`), reading the key from the environment. `ossterm ask --remote` uses this too.
    pub fn from_flags(
        url: &str,
        api_key_env: Option<&str>,
        model: Option<String>,
    ) -> Result<Self, RemoteError> {
        let api_key = match api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => Some(key.trim().to_string()),
                _ => {
                    return Err(RemoteError::ApiKeyEnv {
                        var: var.to_string(),
                    });
                }
            },
        };
        Self::new(url, api_key, model)
    }

    /// `BASE/chat/completions`.
    pub fn chat_url(&self) -> String {
        format!("{}/chat/completions", self.base())
    }

    /// `BASE/models`.
    pub fn models_url(&self) -> String {
        format!("{}/models", self.base())
    }

    /// `/metrics` at the server's root (the base without its `/v1`).
    pub fn metrics_url(&self) -> String {
        let base = self.base();
        let root = base.strip_suffix("/v1").unwrap_or(base);
        format!("{root}/metrics")
    }

    /// `host:port`, for the metrics pane.
    pub fn server_name(&self) -> String {
        let host = self.base_url.host_str().unwrap_or_default();
        match self.base_url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    fn base(&self) -> &str {
        self.base_url.as_str().trim_end_matches('/')
    }
}

/// What goes wrong talking to a remote server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    /// `--remote` is not a usable URL.
    #[error("--remote {url}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// `--api-key-env` names a variable that is unset or empty.
    #[error("--api-key-env {var}: the environment variable is not set, is empty or is not UTF-8")]
    ApiKeyEnv {
        /// The variable's name.
        var: String,
    },
    /// The server could not be reached (or the connection broke).
    #[error("cannot reach {url}: {reason}")]
    Network {
        /// The URL.
        url: String,
        /// The transport's error.
        reason: String,
    },
    /// The server answered with an HTTP error.
    #[error("{url} answered HTTP {status}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The error body's message (or the start of the body).
        message: String,
    },
    /// A streamed chunk could not be read.
    #[error("the server sent a bad chunk ({reason}): {data}")]
    BadChunk {
        /// What is wrong.
        reason: String,
        /// The start of the chunk.
        data: String,
    },
    /// The server put an error in the stream.
    #[error("the server reported an error: {message}")]
    ServerSaid {
        /// Its message.
        message: String,
    },
    /// The server lists no models and none was named.
    #[error("{url} lists no models: name one with --remote-model NAME")]
    NoModel {
        /// The models URL.
        url: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_the_base() {
        let options = RemoteOptions::new("http://127.0.0.1:8000/v1/", None, None).expect("valid");
        assert_eq!(
            options.chat_url(),
            "http://127.0.0.1:8000/v1/chat/completions"
        );
        assert_eq!(options.models_url(), "http://127.0.0.1:8000/v1/models");
        assert_eq!(options.metrics_url(), "http://127.0.0.1:8000/metrics");
        assert_eq!(options.server_name(), "127.0.0.1:8000");
        let ollama = RemoteOptions::new("https://box/api/v1", None, None).expect("valid");
        assert_eq!(ollama.server_name(), "box:443");
    }

    #[test]
    fn bad_urls_say_why() {
        let error = RemoteOptions::new("ftp://x/v1", None, None).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "--remote ftp://x/v1: use an http:// or https:// URL"
        );
        let error = RemoteOptions::new("localhost:8000", None, None).expect_err("refused");
        assert!(
            error.to_string().starts_with("--remote localhost:8000:"),
            "{error}"
        );
        let error =
            RemoteOptions::from_flags("http://x/v1", Some("OSSTERM_TEST_UNSET_KEY_VAR"), None)
                .expect_err("refused");
        assert_eq!(
            error.to_string(),
            "--api-key-env OSSTERM_TEST_UNSET_KEY_VAR: the environment variable is not set, is empty or is not UTF-8"
        );
        let error = RemoteOptions::new("not a url", None, None).expect_err("refused");
        assert!(
            error.to_string().contains("relative URL without a base"),
            "{error}"
        );
    }
}
