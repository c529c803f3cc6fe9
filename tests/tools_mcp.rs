//! MCP function tools through the tool host, against real stdio servers: `mcp-server-time`
//! (PyPI, installed by .ci/run) and tests/fixtures/mcp/test_server.py (the official python
//! SDK, a dependency of mcp-server-time) for sleeps, crashes and images.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ossterm::tools::host;
use ossterm::tools::settings::McpServerSettings;
use ossterm::tools::{
    ToolCall, ToolCatalog, ToolCommand, ToolEvent, ToolHostHandle, ToolResult, ToolSettings,
    ToolWhere,
};

const WAIT: Duration = Duration::from_secs(60);

fn server(command: &str, args: &[&str], timeout_s: u64) -> McpServerSettings {
    McpServerSettings {
        command: command.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: BTreeMap::new(),
        timeout: Duration::from_secs(timeout_s),
    }
}

fn test_server(timeout_s: u64) -> McpServerSettings {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mcp/test_server.py"
    );
    server("python3", &[script], timeout_s)
}

fn start(servers: &[(&str, McpServerSettings)]) -> (ToolHostHandle, ToolCatalog) {
    let settings = ToolSettings {
        mcp: servers
            .iter()
            .map(|(name, s)| (name.to_string(), s.clone()))
            .collect(),
        ..ToolSettings::default()
    };
    let host = host::spawn(&settings).expect("the host starts even when a server fails");
    match host.events.recv_timeout(WAIT) {
        Ok(ToolEvent::Tools(catalog)) => (host, catalog),
        other => panic!("the first event is the catalog, got {other:?}"),
    }
}

fn submit(host: &ToolHostHandle, id: u64, recipient: &str, arguments: &str) {
    let call = ToolCall {
        id,
        recipient: recipient.into(),
        channel: "commentary".into(),
        content_type: Some("<|constrain|>json".into()),
        arguments: arguments.into(),
    };
    host.commands
        .send(ToolCommand::Run {
            chat_id: "chat".into(),
            call,
        })
        .expect("host is running");
}

/// Waits for call `id`'s result, keeping every other event.
fn result_of(host: &ToolHostHandle, id: u64, others: &mut Vec<ToolEvent>) -> ToolResult {
    let deadline = Instant::now() + WAIT;
    loop {
        match host
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(ToolEvent::Finished(result)) if result.call_id == id => return result,
            Ok(event) => others.push(event),
            Err(error) => panic!("no result for call {id}: {error}"),
        }
    }
}

fn call(host: &ToolHostHandle, id: u64, recipient: &str, arguments: &str) -> ToolResult {
    submit(host, id, recipient, arguments);
    result_of(host, id, &mut Vec::new())
}

#[test]
fn mcp_server_time_is_listed_and_called() {
    let (host, catalog) = start(&[("time", server("mcp-server-time", &[], 30))]);
    let names: Vec<&str> = catalog.functions.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"time__get_current_time"),
        "mcp-server-time (pip install mcp-server-time, as .ci/run does) offered {names:?}"
    );
    let entry = &catalog.entries["functions.time__get_current_time"];
    assert_eq!(
        entry.where_runs,
        ToolWhere::McpServer {
            server: "time".into(),
            command: "mcp-server-time".into()
        }
    );
    let result = call(
        &host,
        1,
        "functions.time__get_current_time",
        r#"{"timezone": "Etc/UTC"}"#,
    );
    assert!(!result.is_error, "{}", result.text);
    assert!(
        result.text.contains("\"timezone\": \"Etc/UTC\""),
        "{}",
        result.text
    );
    assert_eq!(result.author, "functions.time__get_current_time");
}

#[test]
fn schemas_are_cleaned_and_read_only_hints_carried() {
    let (host, catalog) = start(&[("test", test_server(30))]);
    let echo = catalog
        .functions
        .iter()
        .find(|f| f.name == "test__echo")
        .expect("echo is listed");
    assert_eq!(echo.description, "Repeats the text.");
    assert_eq!(
        echo.parameters,
        Some(serde_json::json!({
            "properties": {"text": {"type": "string"}, "times": {"default": 1, "type": "integer"}},
            "required": ["text"],
            "type": "object"
        }))
    );
    assert!(catalog.entries["functions.test__echo"].read_only);
    assert!(!catalog.entries["functions.test__sleep"].read_only);
    // No parameters: harmony writes `() => any`.
    let crash = catalog.functions.iter().find(|f| f.name == "test__crash");
    assert_eq!(crash.map(|f| f.parameters.clone()), Some(None));
    let result = call(
        &host,
        1,
        "functions.test__echo",
        r#"{"text": "ab", "times": 2}"#,
    );
    assert_eq!(result.text, "abab");
    let picture = call(&host, 2, "functions.test__picture", "");
    assert_eq!(picture.text, "[image/png, 12 kB]");
    let bad = call(&host, 3, "functions.test__echo", "[1]");
    assert_eq!(
        bad.text,
        "[ERROR] the arguments must be a JSON object, not an array"
    );
}

#[test]
fn a_slow_call_times_out_and_the_server_keeps_working() {
    let (host, _) = start(&[("test", test_server(1))]);
    let started = Instant::now();
    let result = call(&host, 1, "functions.test__sleep", r#"{"seconds": 10}"#);
    assert!(result.is_error);
    assert_eq!(
        result.text,
        "[ERROR] MCP server `test` did not answer `sleep` within 1 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let after = call(
        &host,
        2,
        "functions.test__echo",
        r#"{"text": "still here"}"#,
    );
    assert_eq!(after.text, "still here");
}

#[test]
fn a_crash_mid_call_is_reported_and_the_host_survives() {
    let (host, _) = start(&[("test", test_server(30))]);
    let mut events = Vec::new();
    submit(&host, 1, "functions.test__crash", "{}");
    let result = result_of(&host, 1, &mut events);
    assert!(result.is_error);
    assert!(
        result
            .text
            .starts_with("[ERROR] MCP server `test` stopped during a call of `crash`"),
        "{}",
        result.text
    );
    // The problem and a catalog without the dead server's tools follow.
    let deadline = Instant::now() + WAIT;
    while !events.iter().any(|e| matches!(e, ToolEvent::Tools(_))) && Instant::now() < deadline {
        if let Ok(event) = host.events.recv_timeout(Duration::from_secs(1)) {
            events.push(event);
        }
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ToolEvent::Problem { source, message }
            if source == "mcp.test" && (message == "the server exited"
                || message.starts_with("the server stopped during a call of `crash`")))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ToolEvent::Tools(c) if c.functions.is_empty())),
        "{events:?}"
    );
    let later = call(&host, 2, "functions.test__echo", r#"{"text": "x"}"#);
    assert_eq!(
        later.text,
        "[ERROR] MCP server `test` has stopped; its tools cannot run"
    );
}

#[test]
fn a_server_that_cannot_start_is_a_problem_not_a_failure() {
    let (host, catalog) = start(&[
        ("broken", server("/nonexistent/mcp-server", &[], 5)),
        ("test", test_server(30)),
    ]);
    assert!(catalog.functions.iter().any(|f| f.name == "test__echo"));
    match host.events.recv_timeout(WAIT) {
        Ok(ToolEvent::Problem { source, message }) => {
            assert_eq!(source, "mcp.broken");
            assert!(
                message.starts_with("cannot start `/nonexistent/mcp-server`"),
                "{message}"
            );
        }
        other => panic!("expected a problem event, got {other:?}"),
    }
    let unknown = call(&host, 1, "functions.broken__x", "{}");
    assert!(
        unknown.text.starts_with(
            "[ERROR] unknown tool `functions.broken__x`; the tools are: functions.test__crash"
        ),
        "{}",
        unknown.text
    );
}

#[test]
fn cancel_stops_a_running_mcp_call() {
    let (host, _) = start(&[("test", test_server(30))]);
    submit(&host, 1, "functions.test__sleep", r#"{"seconds": 20}"#);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    host.commands
        .send(ToolCommand::Cancel { call_id: 1 })
        .expect("host is running");
    let result = result_of(&host, 1, &mut Vec::new());
    assert_eq!(result.text, "[ERROR] stopped by the user");
    assert!(started.elapsed() < Duration::from_secs(2));
}
