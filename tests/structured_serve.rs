//! `response_format` on `ossterm serve --demo`: a `json_schema` answer parses and validates,
//! `json_object` gives an object, and a schema the grammar cannot follow is a 400 naming the
//! field and the feature. A forced `tool_choice` gets a call whose arguments validate.
//! `ask --remote --json-schema` sends the schema as `response_format`, which serve enforces.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod common;
use common::serve::Server;

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

#[test]
fn a_forced_tool_choice_gets_a_call_with_valid_arguments() {
    let booking = json!({"type": "function", "function": {"name": "book",
        "description": "Books a table",
        "parameters": {"type": "object", "properties": {
            "city": {"enum": ["Oslo", "Paris", "Rome"]},
            "guests": {"type": "integer", "minimum": 1, "maximum": 12}},
            "required": ["city", "guests"], "additionalProperties": false}}});
    let weather = json!({"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"unit": {"enum": ["C", "F"]}},
            "required": ["unit"], "additionalProperties": false}}});
    let body = |prompt: &str, choice: Value| {
        json!({
            "model": "demo",
            "messages": [{"role": "user", "content": prompt}],
            "tools": [booking, weather],
            "tool_choice": choice,
            "temperature": 0,
            "max_tokens": 400
        })
    };
    let named = json!({"type": "function", "function": {"name": "book"}});
    let replies = serve_and_post(&[
        body("Book a table in Oslo for four.", named.clone()),
        body("What is 17 + 25?", named),
        body("hello", json!("required")),
        body("hello", json!("auto")),
    ]);
    for (status, body) in &replies[..3] {
        assert_eq!(*status, 200, "{body}");
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
        let call = &choice["message"]["tool_calls"][0]["function"];
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().expect("arguments"))
            .expect("the arguments parse");
        if call["name"] == "book" {
            let object = arguments.as_object().expect("an object");
            assert_eq!(object.len(), 2, "{arguments}");
            assert!(["Oslo", "Paris", "Rome"].contains(&object["city"].as_str().unwrap_or("")));
            assert!(
                object["guests"]
                    .as_u64()
                    .is_some_and(|n| (1..=12).contains(&n))
            );
        } else {
            assert_eq!(call["name"], "weather", "{body}");
            assert!(
                arguments == json!({"unit": "C"}) || arguments == json!({"unit": "F"}),
                "{arguments}"
            );
        }
    }
    // `auto`: the demo model answers instead of calling (calling is the model's choice).
    let (status, body) = &replies[3];
    assert_eq!(*status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
}

#[test]
fn ask_remote_sends_the_schema_as_response_format_and_the_answer_validates() {
    let serve = Server::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = dir.path().join("verdict.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"verdict":{"enum":["yes","no"]},"score":{"type":"integer","minimum":0,"maximum":9}},"required":["verdict","score"],"additionalProperties":false}"#,
    )
    .expect("write");
    let url = format!("{}/v1", serve.base);
    let out = Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .args(["ask", "--remote", &url, "--json-schema"])
        .arg(&schema)
        .arg("hello")
        .env("OSSTERM_CONFIG_DIR", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The demo greets in prose unless the server holds it to the schema.
    let answer: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the answer is JSON ({e}): {stdout:?}"));
    assert!(
        answer["verdict"] == "yes" || answer["verdict"] == "no",
        "{answer}"
    );
    assert!(
        answer["score"]
            .as_i64()
            .is_some_and(|n| (0..=9).contains(&n)),
        "{answer}"
    );
    assert_eq!(answer.as_object().map(|o| o.len()), Some(2), "{answer}");
}
