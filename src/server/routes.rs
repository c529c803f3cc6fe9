//! The HTTP handlers: chat completions (whole or streamed), models, health, metrics, 404.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use super::ServerState;
use super::error::ApiError;
use super::request::parse_chat_request;
use super::response::{Piece, Reply, SSE_DONE, json_response, piece, sse_data};
use super::scheduler::Refusal;
use crate::engine::Event;

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match chat(&state, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn chat(state: &ServerState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    state.authorize(headers)?;
    let limit = state.options.body_limit_bytes;
    // Refused before reading, so the client is answered without sending the whole body.
    let declared_bytes = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(declared) = declared_bytes.filter(|&bytes| bytes > limit as u64) {
        return Err(too_large(format!(
            "the request body is {declared} bytes; the limit is {limit} bytes"
        )));
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|err| {
        too_large(format!(
            "the request body could not be read within the {limit}-byte limit: {err}"
        ))
    })?;
    let request = parse_chat_request(&body, &state.options.defaults, rand::random())?;
    let mut events = state.scheduler.submit(request.generation).map_err(|refusal| {
        match refusal {
            Refusal::QueueFull => {
                state.metrics.rejected();
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "queue_full",
                    format!(
                        "the server is busy: {} requests are already waiting (--queue); retry later",
                        state.options.queue_limit
                    ),
                );
                error.retry_after_secs = Some(1);
                error
            }
            Refusal::EngineGone => engine_gone(),
        }
    })?;
    state.metrics.accepted();
    let reply = Reply {
        id: format!("chatcmpl-{}", state.next_id.fetch_add(1, Ordering::Relaxed)),
        created: chrono::Utc::now().timestamp().max(0) as u64,
        model: state.options.model_name.clone(),
    };
    // The first event decides the status: a refused prompt is still an HTTP error.
    let first = loop {
        match events.recv().await {
            Some(Event::Error { message, fatal }) => return Err(engine_error(message, fatal)),
            Some(Event::Metrics(_)) => {}
            Some(event) => break event,
            None => return Err(engine_gone()),
        }
    };
    if request.stream {
        Ok(stream_response(reply, first, events))
    } else {
        whole_response(reply, first, events).await
    }
}

async fn whole_response(
    reply: Reply,
    first: Event,
    mut events: UnboundedReceiver<Event>,
) -> Result<Response, ApiError> {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut next = Some(first);
    loop {
        let event = match next.take() {
            Some(event) => event,
            None => events.recv().await.ok_or_else(engine_gone)?,
        };
        match event {
            Event::Token {
                channel,
                recipient,
                delta,
                ..
            } => match piece(channel.as_deref(), recipient.as_deref(), &delta) {
                Some(Piece::Reasoning(text)) => reasoning.push_str(&text),
                Some(Piece::Content(text)) => content.push_str(&text),
                None => {}
            },
            Event::TurnDone { stop, stats } => {
                let body = reply.completion(&content, &reasoning, stop, &stats);
                return Ok(json_response(StatusCode::OK, &body));
            }
            Event::Error { message, fatal } => return Err(engine_error(message, fatal)),
            _ => {}
        }
    }
}

/// What the stream body still has to send.
struct StreamState {
    reply: Reply,
    events: UnboundedReceiver<Event>,
    pending: Option<Event>,
    started: bool,
    finished: bool,
}

fn stream_response(reply: Reply, first: Event, events: UnboundedReceiver<Event>) -> Response {
    let state = StreamState {
        reply,
        events,
        pending: Some(first),
        started: false,
        finished: false,
    };
    // When the client disconnects the body is dropped with `events`, which the scheduler
    // sees as the cancel signal.
    let stream = futures::stream::unfold(state, |mut state| async move {
        let text = next_sse(&mut state).await?;
        Some((Ok::<_, Infallible>(text), state))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn next_sse(state: &mut StreamState) -> Option<String> {
    if state.finished {
        return None;
    }
    if !state.started {
        state.started = true;
        let delta = json!({"role": "assistant", "content": ""});
        return Some(sse_data(&state.reply.chunk(delta, None, None)));
    }
    loop {
        let event = match state.pending.take() {
            Some(event) => event,
            None => match state.events.recv().await {
                Some(event) => event,
                None => Event::Error {
                    message: engine_gone().message,
                    fatal: true,
                },
            },
        };
        match event {
            Event::Token {
                channel,
                recipient,
                delta,
                ..
            } => {
                if let Some(piece) = piece(channel.as_deref(), recipient.as_deref(), &delta) {
                    return Some(sse_data(&state.reply.piece_chunk(&piece)));
                }
            }
            Event::TurnDone { stop, stats } => {
                state.finished = true;
                let last = state.reply.chunk(
                    json!({}),
                    Some(super::response::finish_reason(stop)),
                    Some(super::response::usage(&stats)),
                );
                return Some(format!("{}{SSE_DONE}", sse_data(&last)));
            }
            Event::Error { message, fatal } => {
                state.finished = true;
                let error = engine_error(message, fatal);
                return Some(format!("{}{SSE_DONE}", sse_data(&error.body())));
            }
            _ => {}
        }
    }
}

/// An engine error as the client sees it: a prompt over the context limit is the client's
/// to fix (400); anything else is the server's (500, or 503 once the engine has stopped).
fn engine_error(message: String, fatal: bool) -> ApiError {
    if fatal {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "engine_stopped",
            message,
        );
    }
    // The engine's PromptTooLong text; its advice is for the app, so it is replaced.
    if let Some(rest) = message.strip_prefix("the conversation is ") {
        let numbers = rest.split(':').next().unwrap_or(rest);
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "context_length_exceeded",
            format!("the conversation is {numbers}: send fewer or shorter messages"),
        );
    }
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "engine_error",
        message,
    )
}

fn too_large(message: String) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "body_too_large",
        message,
    )
}

fn engine_gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "engine_stopped",
        "the engine has stopped; restart ossterm serve".into(),
    )
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if let Err(error) = state.authorize(&headers) {
        return error.into_response();
    }
    let list = json!({
        "object": "list",
        "data": [{"id": state.options.model_name, "object": "model", "created": 0, "owned_by": "ossterm"}],
    });
    json_response(StatusCode::OK, &list)
}

/// `GET /health` (no key needed: load balancers probe it).
pub async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if let Err(error) = state.authorize(&headers) {
        return error.into_response();
    }
    let text = state.metrics.render(state.scheduler.queue_length());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Any other route: 404 with the JSON error body.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        format!(
            "no route {method} {}: this server has POST /v1/chat/completions, GET /v1/models, GET /health and GET /metrics",
            uri.path()
        ),
    )
    .into_response()
}

/// A known route with the wrong method: 405 with the JSON error body.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        format!(
            "{} does not take {method}: chat completions are POST, the others GET",
            uri.path()
        ),
    )
    .into_response()
}
