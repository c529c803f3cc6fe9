//! The python tool through the tool host: limits, capped output, per-chat state, reset.

use std::time::{Duration, Instant};

use ossterm::tools::host;
use ossterm::tools::settings::{PythonRunner, PythonSettings};
use ossterm::tools::{ToolCall, ToolCommand, ToolEvent, ToolHostHandle, ToolResult, ToolSettings};

fn python_settings(work_dir: &std::path::Path) -> ToolSettings {
    ToolSettings {
        work_dir: Some(work_dir.to_path_buf()),
        python: PythonSettings {
            enabled: true,
            runner: PythonRunner::Local,
            timeout: Duration::from_secs(3),
            memory_mb: 300,
            output_bytes: 1000,
            ..PythonSettings::default()
        },
        ..ToolSettings::default()
    }
}

fn call(id: u64, recipient: &str, code: &str) -> ToolCall {
    ToolCall {
        id,
        recipient: recipient.into(),
        channel: "analysis".into(),
        content_type: Some("code".into()),
        arguments: code.into(),
    }
}

/// Runs `code` in `chat` and waits for its result.
fn run(host: &ToolHostHandle, chat: &str, id: u64, code: &str) -> ToolResult {
    submit(host, chat, call(id, "python", code));
    wait_for(host, id)
}

fn submit(host: &ToolHostHandle, chat: &str, call: ToolCall) {
    host.commands
        .send(ToolCommand::Run {
            chat_id: chat.into(),
            call,
        })
        .expect("host is running");
}

fn wait_for(host: &ToolHostHandle, id: u64) -> ToolResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match host.events.recv_timeout(left) {
            Ok(ToolEvent::Finished(result)) if result.call_id == id => return result,
            Ok(_) => {}
            Err(error) => panic!("no result for call {id}: {error}"),
        }
    }
}

fn start(work_dir: &std::path::Path) -> ToolHostHandle {
    host::spawn(&python_settings(work_dir)).expect("tool host starts")
}

#[test]
fn the_catalog_offers_python_and_says_where_it_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    let Ok(ToolEvent::Tools(catalog)) = host.events.recv_timeout(Duration::from_secs(10)) else {
        panic!("the first event is the catalog");
    };
    assert_eq!(catalog.builtin[0].name, "python");
    let description = catalog.builtin[0].description.clone().unwrap_or_default();
    assert!(
        description.contains("stateful Jupyter notebook"),
        "{description}"
    );
    assert!(
        description.contains("time out after 3.0 seconds"),
        "{description}"
    );
    assert!(catalog.entries.contains_key("python"));
}

#[test]
fn the_last_expression_prints_like_a_notebook_and_state_is_kept_per_chat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    let first = run(&host, "a", 1, "x = 6 * 7\nprint('set')");
    assert_eq!(first.text, "set\n");
    assert!(!first.is_error);
    assert_eq!(first.author, "python");
    assert_eq!(first.channel, "analysis");
    let second = run(&host, "a", 2, "x + 1");
    assert_eq!(second.text, "43\n");
    // Another chat has its own state.
    let other = run(&host, "b", 3, "x");
    assert!(
        other.text.contains("NameError: name 'x' is not defined"),
        "{}",
        other.text
    );
    // Nothing printed: the reference tool's warning.
    let quiet = run(&host, "a", 4, "y = 1");
    assert!(
        quiet.text.starts_with("[WARN] No output available"),
        "{}",
        quiet.text
    );
}

#[test]
fn reset_forgets_the_chat_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    run(&host, "a", 1, "x = 1");
    host.commands
        .send(ToolCommand::ResetChat {
            chat_id: "a".into(),
        })
        .expect("host is running");
    let after = run(&host, "a", 2, "x");
    assert!(after.text.contains("NameError"), "{}", after.text);
}

#[test]
fn a_runaway_loop_is_stopped_at_the_time_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    run(&host, "a", 1, "kept = 5");
    let started = Instant::now();
    let result = run(&host, "a", 2, "while True:\n    pass");
    assert!(result.is_error);
    assert!(
        result.text.contains("[ERROR] timed out after 3 s"),
        "{}",
        result.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // A pure-python loop is interrupted, so the notebook keeps its state.
    assert_eq!(run(&host, "a", 3, "kept").text, "5\n");
}

#[test]
fn a_loop_that_ignores_the_interrupt_is_killed_and_the_state_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    run(&host, "a", 1, "kept = 5");
    let code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)";
    let result = run(&host, "a", 2, code);
    assert!(
        result
            .text
            .contains("python was killed and its state is lost"),
        "{}",
        result.text
    );
    let after = run(&host, "a", 3, "kept");
    assert!(after.text.contains("NameError"), "{}", after.text);
}

#[test]
fn a_memory_hog_fails_at_the_memory_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    let result = run(&host, "a", 1, "hog = bytearray(1024 * 1024 * 1024)");
    assert!(result.text.contains("MemoryError"), "{}", result.text);
    // The limit stopped the allocation, not the notebook.
    assert_eq!(run(&host, "a", 2, "1 + 1").text, "2\n");
}

#[test]
fn output_is_capped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    let result = run(&host, "a", 1, "print('x' * 5000)");
    assert!(
        result.text.starts_with(&"x".repeat(1000)),
        "{}",
        result.text
    );
    assert!(
        result
            .text
            .ends_with("[output cut: 4001 more bytes; the limit is 1000 bytes]"),
        "{}",
        result.text
    );
}

#[test]
fn code_runs_in_a_private_folder_per_chat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    let result = run(&host, "chat/../x", 1, "import os\nos.getcwd()");
    let expected = dir.path().join("python").join("chat____x");
    assert_eq!(result.text, format!("'{}'\n", expected.display()));
}

#[test]
fn the_network_is_unreachable_where_the_system_allows_dropping_it() {
    if let Err(why) = ossterm::tools::python::network_isolation() {
        eprintln!("skipped: this system cannot drop the network for a child: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    let code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=2)\nexcept OSError as e:\n    print(type(e).__name__, e.errno)";
    let result = run(&host, "a", 1, code);
    // Errno 101: no network at all (not even loopback) in the new namespace.
    assert!(result.text.contains("101"), "{}", result.text);
}

#[test]
fn cancel_kills_the_running_call_and_answers_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    submit(&host, "a", call(1, "python", "import time\ntime.sleep(60)"));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    host.commands
        .send(ToolCommand::Cancel { call_id: 1 })
        .expect("host is running");
    let result = wait_for(&host, 1);
    assert_eq!(result.text, "[ERROR] stopped by the user");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_unknown_tool_gets_an_error_naming_the_known_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = start(dir.path());
    submit(&host, "a", call(9, "functions.nope", "{}"));
    let result = wait_for(&host, 9);
    assert!(result.is_error);
    assert_eq!(
        result.text,
        "[ERROR] unknown tool `functions.nope`; the tools are: python"
    );
}

#[test]
fn docker_runner_answers_in_the_image_when_docker_can_use_it() {
    let image = "python:3.11";
    let usable = std::process::Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !usable {
        eprintln!(
            "skipped: docker is missing, not running, or has no {image} image (no network to pull it)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = python_settings(dir.path());
    settings.python.runner = PythonRunner::Docker;
    settings.python.timeout = Duration::from_secs(30);
    let host = host::spawn(&settings).expect("tool host starts");
    run(&host, "a", 1, "x = 2");
    assert_eq!(
        run(&host, "a", 2, "import os\n(x, os.getcwd())").text,
        "(2, '/mnt/data')\n"
    );
}
