//! `ossterm serve`: an OpenAI-compatible HTTP server over the same engine thread the app uses.
//!
//! routes (handlers), request (body to harmony), response (OpenAI shapes, SSE), scheduler
//! (one generation at a time, a bounded queue, cancel on disconnect), metrics (Prometheus),
//! error (the JSON error body).

pub mod error;
pub mod metrics;
pub mod request;
pub mod response;
pub mod routes;
pub mod scheduler;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};

use error::ApiError;
use metrics::ServerMetrics;
use request::RequestDefaults;
use scheduler::Scheduler;

/// Request bodies larger than this are refused (413): a long chat is far smaller.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 4 * 1024 * 1024;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The name `/v1/models` and every response give.
    pub model_name: String,
    /// Requests that may wait besides the one running; more get 429.
    pub queue_limit: usize,
    /// The Bearer key every route but `/health` requires, when set.
    pub api_key: Option<String>,
    /// Sampling and effort a request may override.
    pub defaults: RequestDefaults,
    /// The largest request body accepted.
    pub body_limit_bytes: usize,
}

/// What the handlers share.
pub struct ServerState {
    /// The server's settings.
    pub options: ServeOptions,
    /// The queue in front of the engine.
    pub scheduler: Scheduler,
    /// Counters for `/metrics`.
    pub metrics: Arc<ServerMetrics>,
    /// The next response id's number.
    pub next_id: AtomicU64,
}

impl ServerState {
    /// Checks the Bearer key, when the server has one.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.options.api_key else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match given {
            Some(given) if same_secret(given.as_bytes(), key.as_bytes()) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "invalid_api_key",
                "missing or wrong API key: send the server's key as 'Authorization: Bearer KEY'"
                    .into(),
            )),
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the key.
fn same_secret(given: &[u8], key: &[u8]) -> bool {
    given.len() == key.len() && given.iter().zip(key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The routes over `state`.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/models", get(routes::models))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
}

/// Builds the shared state and starts the scheduler over the engine's channels (on the
/// current tokio runtime).
pub fn state(
    options: ServeOptions,
    commands: std::sync::mpsc::Sender<crate::engine::Command>,
    events: tokio::sync::mpsc::UnboundedReceiver<crate::engine::Event>,
) -> Arc<ServerState> {
    let metrics = Arc::new(ServerMetrics::default());
    let scheduler = Scheduler::start(options.queue_limit, commands, events, metrics.clone());
    Arc::new(ServerState {
        options,
        scheduler,
        metrics,
        next_id: AtomicU64::new(1),
    })
}

/// Whether every address `host` names is a loopback one (only those may go without a key).
pub fn is_loopback(addresses: &[IpAddr]) -> bool {
    !addresses.is_empty() && addresses.iter().all(IpAddr::is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn chat_request(body: &str) -> String {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn send(address: std::net::SocketAddr, request: &str) -> TcpStream {
        let mut socket = TcpStream::connect(address).expect("connects");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("sets a timeout");
        socket.write_all(request.as_bytes()).expect("sends");
        socket
    }

    /// Over HTTP on 127.0.0.1, against an engine that decodes until stopped: the second
    /// request waits, the third gets 429, and closing the first stream stops its generation.
    #[test]
    fn a_full_queue_gets_429_and_a_closed_stream_stops_its_generation() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let (commands, events, seen) = scheduler::tests::fake_engine();
                let options = ServeOptions {
                    model_name: "fake".into(),
                    queue_limit: 1,
                    api_key: None,
                    defaults: RequestDefaults {
                        sampling: crate::engine::SamplingParams::default(),
                        effort: crate::harmony::ReasoningEffort::Low,
                    },
                    body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
                };
                let state = state(options, commands, events);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("binds");
                let address = listener.local_addr().expect("address");
                let _ = ready_tx.send((address, state.clone(), seen));
                let _ = axum::serve(listener, router(state)).await;
            });
        });
        let (address, state, mut seen) = ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the server starts");
        let body = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#;

        let mut running = send(address, &chat_request(body));
        let mut received = String::new();
        let mut buffer = [0u8; 4096];
        while !received.contains("\"content\":\"x\"") {
            let read = running.read(&mut buffer).expect("streams");
            assert!(read > 0, "closed early: {received}");
            received.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
        let waiting = send(address, &chat_request(body));
        for _ in 0..500 {
            if state.scheduler.queue_length() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(state.scheduler.queue_length(), 1);

        let mut refused = send(address, &chat_request(body));
        let mut answer = String::new();
        refused.read_to_string(&mut answer).expect("answers");
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1\r\n"),
            "{answer}"
        );
        assert!(answer.contains("\"code\":\"queue_full\""), "{answer}");

        drop(running);
        let mut got = Vec::new();
        for _ in 0..500 {
            while let Ok(step) = seen.try_recv() {
                got.push(step);
            }
            if got.len() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got, ["submit", "stop", "submit"]);
        drop(waiting);
    }

    #[test]
    fn only_all_loopback_addresses_count_as_local() {
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        let v6: IpAddr = "::1".parse().expect("ip");
        let any: IpAddr = "0.0.0.0".parse().expect("ip");
        assert!(is_loopback(&[local, v6]));
        assert!(!is_loopback(&[local, any]));
        assert!(!is_loopback(&[]));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
    }
}
