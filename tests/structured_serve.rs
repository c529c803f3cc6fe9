//! `response_format` on `ossterm serve --demo`: a `json_schema` answer parses and validates,
//! `json_object` gives an object, and a schema the grammar cannot follow is a 400 naming the
//! field and the feature.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// POSTs each body to a fresh `serve --demo` on 127.0.0.1; returns status and parsed body.
fn serve_and_post(bodies: &[Value]) -> Vec<(u16, Value)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .args(["serve", "--demo", "--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts ossterm serve");
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut first_line)
        .expect("the address line");
    let base = first_line.trim().replace("listening on ", "");
    let replies = bodies
        .iter()
        .map(|body| {
            let reply = ureq::post(&format!("{base}/v1/chat/completions"))
                .timeout(std::time::Duration::from_secs(120))
                .send_json(body.clone());
            let (status, response) = match reply {
                Ok(response) => (response.status(), response),
                Err(ureq::Error::Status(status, response)) => (status, response),
                Err(other) => panic!("transport error: {other}"),
            };
            (status, response.into_json().expect("a JSON body"))
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    replies
}

fn ask(response_format: Value) -> Value {
    json!({
        "model": "demo",
        "messages": [{"role": "user", "content": "What is 17 + 25?"}],
        "temperature": 0,
        "max_tokens": 400,
        "response_format": response_format
    })
}

#[test]
fn response_format_holds_the_answer_and_refuses_what_it_cannot_follow() {
    let schema = json!({
        "type": "object",
        "properties": {"sum": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["sum"],
        "additionalProperties": false
    });
    let replies = serve_and_post(&[
        ask(json!({"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}})),
        ask(json!({"type": "json_object"})),
        ask(
            json!({"type": "json_schema", "json_schema": {"schema": {"type": "object", "dependentSchemas": {}}}}),
        ),
    ]);

    let (status, body) = &replies[0];
    assert_eq!(*status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "stop", "{body}");
    let content = choice["message"]["content"].as_str().expect("content");
    let answer: Value = serde_json::from_str(content).expect("the answer parses");
    assert_eq!(answer.as_object().map(|o| o.len()), Some(1), "{answer}");
    assert!(answer["sum"].as_u64().is_some_and(|n| n <= 100), "{answer}");

    let (status, body) = &replies[1];
    assert_eq!(*status, 200, "{body}");
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    let object: Value = serde_json::from_str(content).expect("the answer parses");
    assert!(object.is_object(), "{object}");

    let (status, body) = &replies[2];
    assert_eq!(*status, 400, "{body}");
    assert_eq!(body["error"]["param"], "response_format.json_schema.schema");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("dependentSchemas"), "{message}");
}
