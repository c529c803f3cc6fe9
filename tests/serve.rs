//! `ossterm serve --demo` over HTTP on 127.0.0.1: answers, streams, refusals, metrics, keys,
//! and the official `openai` Python client.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

mod common;

use common::serve::Server;

fn kv_question(extra: Value) -> String {
    let mut body = json!({
        "model": "ossterm-demo",
        "messages": [{"role": "user", "content": "What is a KV cache?"}],
        "temperature": 0,
        "max_tokens": 80,
    });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    body.to_string()
}

#[test]
fn a_whole_answer_has_reasoning_content_and_usage() {
    let server = Server::start(&[]);
    let (status, body) = server.post("/v1/chat/completions", &kv_question(json!({})));
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["object"], "chat.completion");
    let message = &body["choices"][0]["message"];
    assert!(
        !message["content"].as_str().expect("content").is_empty(),
        "{body}"
    );
    assert_eq!(message["reasoning_content"], message["reasoning"]);
    assert!(
        !message["reasoning"].as_str().expect("reasoning").is_empty(),
        "{body}"
    );
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().expect("prompt_tokens") > 0);
    let completion = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    assert!((1..=80).contains(&completion), "{usage}");
    assert!(usage["prompt_tokens_details"]["cached_tokens"].is_u64());
    assert!(
        ["stop", "length"].contains(
            &body["choices"][0]["finish_reason"]
                .as_str()
                .expect("reason")
        )
    );

    // A request that continues that conversation reuses the cached prompt.
    let follow_up = json!({
        "messages": [
            {"role": "user", "content": "What is a KV cache?"},
            {"role": "assistant", "content": message["content"]},
            {"role": "user", "content": "Why does it grow?"},
        ],
        "temperature": 0,
        "max_tokens": 8,
    });
    let (status, again) = server.post("/v1/chat/completions", &follow_up.to_string());
    assert_eq!(status, 200, "{again}");
    let again: Value = serde_json::from_str(&again).expect("JSON");
    let cached = again["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64();
    assert_eq!(
        cached,
        usage["prompt_tokens"].as_u64(),
        "the first prompt is reused: {again}"
    );

    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200);
    assert!(models.contains("\"id\":\"ossterm-demo\""), "{models}");
    assert_eq!(
        server.get("/health"),
        (200, "{\"status\":\"ok\"}".to_string())
    );
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "ossterm_requests_total 2\n",
        "ossterm_kv_cache_limit_tokens ",
        "ossterm_generation_tokens_total ",
        "ossterm_requests_waiting 0\n",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
}

#[test]
fn a_stream_sends_reasoning_then_content_then_done() {
    let server = Server::start(&[]);
    let response = ureq::post(&format!("{}/v1/chat/completions", server.base))
        .timeout(Duration::from_secs(120))
        .send_string(&kv_question(json!({"stream": true})))
        .expect("200");
    assert_eq!(response.header("Content-Type"), Some("text/event-stream"));
    let mut text = String::new();
    response
        .into_reader()
        .read_to_string(&mut text)
        .expect("stream");
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not SSE data: {e:?}"))
        })
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk JSON"))
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let first_reasoning = chunks
        .iter()
        .position(|c| c["choices"][0]["delta"]["reasoning"].is_string());
    let first_content = chunks.iter().position(|c| {
        c["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    });
    let (Some(reasoning), Some(content)) = (first_reasoning, first_content) else {
        panic!("no reasoning or no content in\n{text}");
    };
    assert!(reasoning < content, "reasoning comes first:\n{text}");
    let delta = &chunks[reasoning]["choices"][0]["delta"];
    assert_eq!(delta["reasoning_content"], delta["reasoning"]);
    let last = chunks.last().expect("a last chunk");
    assert!(last["choices"][0]["finish_reason"].is_string(), "{last}");
    assert!(
        last["usage"]["completion_tokens"].as_u64() > Some(0),
        "{last}"
    );
}

/// The answer ends before the first stop sequence, whole or streamed, with finish_reason "stop".
#[test]
fn a_stop_sequence_cuts_the_answer_before_it() {
    let server = Server::start(&[]);
    let (status, body) = server.post("/v1/chat/completions", &kv_question(json!({})));
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    let full = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    // A word from the middle of the answer (the demo answers in whole sentences).
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() >= 3, "a longer answer expected: {full:?}");
    let stop = words[words.len() / 2];
    let expected = &full[..full.find(stop).expect("in the answer")];

    let (status, cut) = server.post(
        "/v1/chat/completions",
        &kv_question(json!({"stop": [stop, "never appears"]})),
    );
    assert_eq!(status, 200, "{cut}");
    let cut: Value = serde_json::from_str(&cut).expect("JSON");
    assert_eq!(cut["choices"][0]["message"]["content"], expected, "{cut}");
    assert_eq!(cut["choices"][0]["finish_reason"], "stop", "{cut}");
    assert!(
        cut["usage"]["completion_tokens"].as_u64() < body["usage"]["completion_tokens"].as_u64(),
        "the generation stopped early: {cut}"
    );

    let response = ureq::post(&format!("{}/v1/chat/completions", server.base))
        .timeout(Duration::from_secs(120))
        .send_string(&kv_question(json!({"stop": stop, "stream": true})))
        .expect("200");
    let mut text = String::new();
    response
        .into_reader()
        .read_to_string(&mut text)
        .expect("stream");
    let mut streamed = String::new();
    let mut reasons = Vec::new();
    for event in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if event == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(event).expect("chunk JSON");
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            streamed.push_str(piece);
        }
        if let Some(reason) = chunk["choices"][0]["finish_reason"].as_str() {
            reasons.push(reason.to_string());
        }
    }
    assert_eq!(streamed, expected, "{text}");
    assert_eq!(reasons, ["stop"], "{text}");
}

#[test]
fn bad_requests_get_400_with_an_openai_error_body() {
    let server = Server::start(&[]);
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        ("{\"messages\": [", None, "not valid JSON"),
        (
            r#"{"messages": "hi"}"#,
            Some("messages"),
            "messages must be an array of messages, not a string",
        ),
        (r#"{"messages": []}"#, Some("messages"), "messages is empty"),
        (
            r#"{"messages": [{"role": "robot", "content": "hi"}]}"#,
            Some("messages[0].role"),
            "'robot'",
        ),
        (
            &*json!({"messages": user, "temperature": -1}).to_string(),
            Some("temperature"),
            "temperature is -1",
        ),
        (
            &*json!({"messages": user, "top_p": 0}).to_string(),
            Some("top_p"),
            "top_p is 0",
        ),
        (
            &*json!({"messages": user, "max_tokens": "ten"}).to_string(),
            Some("max_tokens"),
            "max_tokens must be",
        ),
    ];
    for (body, param, needle) in cases {
        let (status, text) = server.post("/v1/chat/completions", body);
        assert_eq!(status, 400, "{body} -> {text}");
        let error: Value = serde_json::from_str(&text).expect("JSON error body");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{text}");
        assert_eq!(error["error"]["param"].as_str(), param, "{text}");
        assert!(
            error["error"]["message"]
                .as_str()
                .expect("message")
                .contains(needle),
            "{text}"
        );
    }
    // Only the headers go out: the server refuses on the declared length, before the body.
    let address = server.base.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).expect("connects");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        5 << 20
    )
    .expect("writes");
    let mut text = String::new();
    let _ = socket.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"body_too_large\""), "{text}");
    assert!(text.contains("the limit is 4194304 bytes"), "{text}");
    let (status, text) = server.get("/v2/nothing");
    assert_eq!(status, 404);
    assert!(text.contains("no route GET /v2/nothing"), "{text}");
    let (status, text) = server.get("/v1/chat/completions");
    assert_eq!(status, 405);
    assert!(text.contains("\"code\":\"method_not_allowed\""), "{text}");
}

#[test]
fn a_key_is_required_when_set_and_off_localhost() {
    let (ok, _, stderr) =
        common::cli::ossterm(&["serve", "--demo", "--host", "0.0.0.0", "--port", "0"]);
    assert!(!ok);
    assert!(
        stderr.contains("needs an API key: add --api-key KEY or --api-key-env VAR"),
        "{stderr}"
    );

    let server = Server::start(&["--api-key", "s3cret"]);
    let (status, text) = server.get("/v1/models");
    assert_eq!(status, 401);
    assert!(text.contains("invalid_api_key"), "{text}");
    let authorized = ureq::get(&format!("{}/v1/models", server.base))
        .set("Authorization", "Bearer s3cret")
        .call()
        .expect("200 with the key");
    assert_eq!(authorized.status(), 200);
    assert_eq!(server.get("/health").0, 200);
}

/// The official client (PyPI `openai`); skipped without python3 and openai, except under CI.
#[test]
fn the_official_openai_python_client_streams_answers_and_sees_a_400() {
    let has_client = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_client {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the openai Python client (.ci/run does)"
        );
        eprintln!("skipped: python3 with the openai package is not installed (pip install openai)");
        return;
    }
    let server = Server::start(&[]);
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/serve_openai_client.py"
        ))
        .arg(format!("{}/v1", server.base))
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "stream: reasoning then content",
        "whole: content and usage",
        "bad request: 400 top_p",
        "tools: a call and its result round trip",
        "forced tool_choice: a call with valid arguments",
    ] {
        assert!(
            stdout.contains(line),
            "{line:?} missing from\n{stdout}\n{stderr}"
        );
    }
}
