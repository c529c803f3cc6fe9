//! A bounded load test of `ossterm serve --demo` on 127.0.0.1: 8 concurrent clients, each
//! asking its own question (so a mixed-up answer shows), some dropping their stream after the
//! first chunk. Every request is answered with its own answer or refused with 429 and
//! Retry-After; none is lost; afterwards the engine is free (nothing running or waiting) and
//! answers again.
//!
//! CI runs 8 x 5 with a short queue (so 429s happen); the full figure for the README is
//! `cargo test --test serve_load -- --ignored --nocapture` (8 x 50).

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::serve::Server;

const CLIENTS: usize = 8;

/// Client `c`'s question: distinct sums, so every client expects its own answer.
fn question(client: usize) -> String {
    format!("What is {} + {}?", client + 2, client + 5)
}

fn body(client: usize, stream: bool) -> String {
    json!({
        "messages": [{"role": "user", "content": question(client)}],
        "temperature": 0,
        "max_tokens": 48,
        "stream": stream,
    })
    .to_string()
}

/// How one request ended.
enum Outcome {
    Answered { content: String, latency: Duration },
    Refused,
    Abandoned,
}

/// One request from `client`; every tenth is streamed and dropped after its first chunk.
fn request(base: &str, client: usize, index: usize) -> Outcome {
    let url = format!("{base}/v1/chat/completions");
    let abandon = index % 10 == 9;
    let started = Instant::now();
    let result = ureq::post(&url)
        .set("Content-Type", "application/json")
        .timeout(Duration::from_secs(300))
        .send_string(&body(client, abandon));
    match result {
        Ok(response) if abandon => {
            let mut first = [0u8; 64];
            let read = response
                .into_reader()
                .read(&mut first)
                .expect("a first chunk");
            assert!(read > 0, "client {client} request {index}: an empty stream");
            // Dropping the reader closes the connection mid-answer.
            Outcome::Abandoned
        }
        Ok(response) => {
            let text = response.into_string().expect("a body");
            let value: Value = serde_json::from_str(&text).expect("JSON");
            Outcome::Answered {
                content: value["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no content: {text}"))
                    .to_string(),
                latency: started.elapsed(),
            }
        }
        Err(ureq::Error::Status(429, response)) => {
            let retry_after = response.header("Retry-After").map(str::to_string);
            assert_eq!(retry_after.as_deref(), Some("1"), "429 says when to retry");
            Outcome::Refused
        }
        Err(other) => panic!("client {client} request {index} was lost: {other}"),
    }
}

/// What a run measured.
struct Report {
    answered: usize,
    refused: usize,
    abandoned: usize,
    latencies: Vec<Duration>,
    wall: Duration,
}

fn run(per_client: usize, queue: &str) -> Report {
    let server = Arc::new(Server::start(&["--queue", queue]));
    // Each question's answer, asked alone first.
    let expected: Vec<String> = (0..CLIENTS)
        .map(|client| {
            let (status, text) = server.post("/v1/chat/completions", &body(client, false));
            assert_eq!(status, 200, "{text}");
            let value: Value = serde_json::from_str(&text).expect("JSON");
            value["choices"][0]["message"]["content"]
                .as_str()
                .expect("content")
                .to_string()
        })
        .collect();
    let distinct: std::collections::HashSet<_> = expected.iter().collect();
    assert!(
        distinct.len() > 1,
        "the questions need different answers: {expected:?}"
    );
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let base = server.base.clone();
            std::thread::spawn(move || {
                (0..per_client)
                    .map(|index| request(&base, client, index))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut report = Report {
        answered: 0,
        refused: 0,
        abandoned: 0,
        latencies: Vec::new(),
        wall: Duration::ZERO,
    };
    for (client, worker) in workers.into_iter().enumerate() {
        for outcome in worker.join().expect("a client thread") {
            match outcome {
                Outcome::Answered { content, latency } => {
                    assert_eq!(
                        content, expected[client],
                        "client {client} got another answer"
                    );
                    report.answered += 1;
                    report.latencies.push(latency);
                }
                Outcome::Refused => report.refused += 1,
                Outcome::Abandoned => report.abandoned += 1,
            }
        }
    }
    report.wall = started.elapsed();
    assert_eq!(
        report.answered + report.refused + report.abandoned,
        CLIENTS * per_client,
        "none lost"
    );
    // Dropped streams freed the engine: nothing runs or waits, and it answers again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = server.get("/metrics");
        if metrics.contains("ossterm_requests_running 0\n")
            && metrics.contains("ossterm_requests_waiting 0\n")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the engine stays busy:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, text) = server.post("/v1/chat/completions", &body(0, false));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&serde_json::to_string(&expected[0]).expect("JSON")));
    report.latencies.sort();
    report
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn print(report: &Report) {
    eprintln!(
        "{} answered, {} refused (429), {} abandoned in {:.1} s: p50 {} ms, p95 {} ms, {:.1} answers/s",
        report.answered,
        report.refused,
        report.abandoned,
        report.wall.as_secs_f64(),
        percentile(&report.latencies, 0.5).as_millis(),
        percentile(&report.latencies, 0.95).as_millis(),
        report.answered as f64 / report.wall.as_secs_f64()
    );
}

#[test]
fn eight_clients_get_their_own_answers_or_a_429_and_none_is_lost() {
    let report = run(5, "2");
    print(&report);
    assert!(report.answered > 0);
    assert_eq!(report.abandoned, 0, "5 requests each: none is the tenth");
}

/// The README's figure: 8 clients x 50 requests, the default queue.
#[test]
#[ignore = "about 25 s; run with --ignored for the README's figure"]
fn eight_clients_fifty_requests_each() {
    let report = run(50, "16");
    print(&report);
    assert_eq!(report.refused, 0, "the default queue holds 8 clients");
    assert_eq!(report.abandoned, CLIENTS * 5);
}
