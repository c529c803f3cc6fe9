//! `ossterm ask` through the binary on the demo model: the answer on stdout, reasoning on
//! stderr only when asked, the prompt from stdin, `--json`'s transcript and stats, the tools
//! offered in the system message, and clear errors with exit status 1.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::serve::Server;

/// Runs `ossterm ask ARGS` with `stdin` piped in and a config folder of its own (so the
/// user's config is never read): (success, stdout, stderr).
fn ask(config_dir: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ossterm"))
        .arg("ask")
        .args(args)
        .env("OSSTERM_CONFIG_DIR", config_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.as_bytes()).expect("writes stdin");
    drop(input);
    let out = child.wait_with_output().expect("finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The demo's canned greeting starts like this (tests/demo_model.rs pins the rest).
const GREETING: &str = "Hello! I'm the ossterm demo model";
/// The demo's reasoning for a greeting.
const GREETING_REASONING: &str = "The user greets me.";

#[test]
fn the_answer_streams_to_stdout_and_reasoning_only_with_show_reasoning() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = ask(dir.path(), &["--demo", "hello"], "");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(GREETING), "{stdout}");
    assert!(
        stdout.ends_with("?\n"),
        "one answer, one newline: {stdout:?}"
    );
    assert!(!stderr.contains(GREETING_REASONING), "{stderr}");

    let (ok, stdout, stderr) = ask(dir.path(), &["--demo", "--show-reasoning", "hello"], "");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(GREETING), "{stdout}");
    assert!(!stdout.contains(GREETING_REASONING), "{stdout}");
    assert!(stderr.contains(GREETING_REASONING), "{stderr}");
}

#[test]
fn the_prompt_comes_from_stdin_when_no_argument_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = ask(dir.path(), &["--demo"], "hello\n");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(GREETING), "{stdout}");
}

#[test]
fn json_prints_the_transcript_and_the_stats() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = ask(dir.path(), &["--demo", "--json", "hello"], "");
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert_eq!(report["stop"], "Return");
    let messages = report["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "assistant"]);
    assert_eq!(messages[1]["content"][0]["text"], "hello");
    assert_eq!(messages[2]["channel"], "analysis");
    assert_eq!(messages[3]["channel"], "final");
    assert_eq!(report["answer"], messages[3]["content"][0]["text"]);
    assert!(report["answer"].as_str().unwrap().starts_with(GREETING));
    assert_eq!(report["tool_calls"], serde_json::json!([]));
    let stats = &report["stats"];
    assert_eq!(stats["generations"].as_array().unwrap().len(), 1);
    assert!(stats["prefill_tokens"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["decode_tokens"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["tool_ms"], 0.0);
    // Without --tools no tool is offered.
    assert!(messages[0]["content"][0].get("tools").is_none());
}

#[test]
fn json_stats_carry_the_metrics_panes_memory_context_and_speeds() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = ask(dir.path(), &["--demo", "--json", "hello"], "");
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    let stats = &report["stats"];
    let memory = &stats["memory"];
    let bytes = |key: &str| {
        memory[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} missing: {stats}"))
    };
    assert!(bytes("weights_bytes") > 0, "{memory}");
    assert!(
        bytes("kv_in_use_bytes") > 0,
        "the prompt is cached: {memory}"
    );
    assert!(bytes("kv_reserved_bytes") > 0, "{memory}");
    assert!(bytes("scratch_bytes") > 0, "{memory}");
    assert!(bytes("free_bytes") > 0, "{memory}");
    let parts: u64 = [
        "weights_bytes",
        "kv_in_use_bytes",
        "kv_reserved_bytes",
        "scratch_bytes",
        "other_bytes",
        "free_bytes",
    ]
    .iter()
    .map(|key| bytes(key))
    .sum();
    assert!(parts >= bytes("total_bytes"), "{memory}");
    let context = &stats["context"];
    let used = context["used_tokens"].as_u64().unwrap();
    let generations = stats["generations"].as_array().unwrap();
    let prompt_and_answer = generations[0]["prefill_tokens"].as_u64().unwrap()
        + generations[0]["cached_tokens"].as_u64().unwrap()
        + generations[0]["decode_tokens"].as_u64().unwrap();
    assert!(
        used + 1 >= prompt_and_answer && used <= prompt_and_answer,
        "{context} vs {generations:?}"
    );
    let limit = context["limit_tokens"].as_u64().unwrap();
    assert!(
        used < limit && limit <= context["model_max_tokens"].as_u64().unwrap(),
        "{context}"
    );
    assert_eq!(
        stats["decode_tok_s"].as_array().unwrap().len(),
        1,
        "{stats}"
    );
    assert!(stats["decode_tok_s"][0].as_f64().unwrap() > 0.0, "{stats}");
    assert!(stats["prefill_tok_s"][0].as_f64().unwrap() > 0.0, "{stats}");
}

#[test]
fn tools_from_the_config_are_offered_in_the_system_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[python]\nenabled = true\n[tools]\nallow = [\"python\"]\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = ask(dir.path(), &["--demo", "--tools", "--json", "hello"], "");
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let system = &report["messages"][0]["content"][0];
    assert_eq!(system["tools"]["python"]["name"], "python", "{system}");
    assert!(report["answer"].as_str().unwrap().starts_with(GREETING));
}

#[test]
fn bad_input_is_refused_with_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = ask(dir.path(), &["--demo", "   "], "");
    assert!(!ok);
    assert!(stderr.contains("the prompt is empty"), "{stderr}");

    let (ok, _, stderr) = ask(dir.path(), &["--demo"], "");
    assert!(!ok);
    assert!(stderr.contains("the prompt is empty"), "{stderr}");

    let (ok, _, stderr) = ask(dir.path(), &["--demo", "--allow", "python", "hi"], "");
    assert!(!ok);
    assert!(
        stderr.contains("--tools"),
        "--allow needs --tools: {stderr}"
    );

    let (ok, _, stderr) = ask(
        dir.path(),
        &["--demo", "--tools", "--allow", "rm -rf", "hi"],
        "",
    );
    assert!(!ok);
    assert!(stderr.contains("\"rm -rf\""), "{stderr}");
    assert!(stderr.contains("--allow"), "{stderr}");

    let (ok, stdout, stderr) = ask(
        dir.path(),
        &["--demo", "--max-new-tokens", "3", "hello"],
        "",
    );
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("no final answer (stopped at --max-new-tokens 3)"),
        "{stderr}"
    );

    let (ok, _, stderr) = ask(dir.path(), &["--demo", "--effort", "extreme", "hello"], "");
    assert!(!ok);
    assert!(stderr.contains("effort"), "{stderr}");
}

#[test]
fn an_allow_that_matches_no_offered_tool_is_refused_naming_what_is_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = ask(
        dir.path(),
        &["--demo", "--tools", "--allow", "python", "hi"],
        "",
    );
    assert!(!ok);
    assert!(
        stderr.contains("--allow python: no offered tool matches it (offered: none:"),
        "{stderr}"
    );
    assert!(stderr.contains("sets up no tools"), "{stderr}");

    std::fs::write(dir.path().join("config.toml"), "[python]\nenabled = true\n").unwrap();
    let (ok, _, stderr) = ask(
        dir.path(),
        &["--demo", "--tools", "--allow", "pyhton", "hi"],
        "",
    );
    assert!(!ok);
    assert!(
        stderr.contains("--allow pyhton: no offered tool matches it (offered: python)"),
        "{stderr}"
    );
}

#[test]
fn a_prompt_over_the_context_names_the_flag_to_raise() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = ask(dir.path(), &["--demo", "--context", "64", "hello"], "");
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("but the context limit is 64: raise --context or ask something shorter"),
        "{stderr}"
    );
    assert!(!stderr.contains("Ctrl+N"), "the app's advice: {stderr}");
}

/// `ask --demo --json` with the python tool offered: (the report, stderr). The demo was
/// fine-tuned to answer arithmetic through a python call when the tool is offered
/// (scripts/demo/train.py --finetune-from).
fn ask_demo_with_python(extra: &[&str], prompt: &str) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[python]\nenabled = true\n").unwrap();
    let mut args = vec!["--demo", "--tools", "--json"];
    args.extend_from_slice(extra);
    args.push(prompt);
    let (ok, stdout, stderr) = ask(dir.path(), &args, "");
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    (report, stderr)
}

/// The message the model read back from python (the tool message after the call).
fn tool_message_text(report: &Value) -> String {
    let messages = report["messages"].as_array().unwrap();
    let tool = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap_or_else(|| panic!("no tool message: {report}"));
    assert_eq!(tool["name"], "python", "{tool}");
    tool["content"][0]["text"].as_str().unwrap().to_owned()
}

#[test]
fn the_demo_computes_with_the_real_python_tool_and_answers_from_the_result() {
    let (report, stderr) = ask_demo_with_python(&["--allow", "python"], "what is 6 x 7");
    let calls = report["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{report}");
    let call = &calls[0]["call"];
    assert_eq!(call["recipient"], "python", "{call}");
    assert_eq!(call["channel"], "analysis", "{call}");
    let code = call["arguments"].as_str().unwrap();
    assert!(code.contains('6') && code.contains('7'), "{code}");
    assert_eq!(calls[0]["ran"], "allowlist", "{}", calls[0]);
    assert!(calls[0]["denied"].is_null());
    assert_eq!(calls[0]["is_error"], false, "{stderr}");
    assert_eq!(calls[0]["result_text"].as_str().unwrap().trim(), "42");
    assert_eq!(tool_message_text(&report).trim(), "42");
    assert_eq!(report["stop"], "Return");
    let answer = report["answer"].as_str().unwrap();
    assert!(answer.contains("42"), "{answer}");
    // One generation up to the call, one after the result.
    let generations = report["stats"]["generations"].as_array().unwrap();
    assert_eq!(generations.len(), 2, "{report}");
    assert!(report["stats"]["tool_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn without_allow_and_a_terminal_the_demo_call_is_denied_and_the_model_told() {
    let (report, _) = ask_demo_with_python(&[], "what is 6 x 7");
    let calls = report["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{report}");
    assert_eq!(calls[0]["call"]["recipient"], "python");
    assert!(calls[0]["ran"].is_null(), "{}", calls[0]);
    assert_eq!(calls[0]["denied"], "no_terminal");
    let told = tool_message_text(&report);
    assert!(
        told.starts_with("[ERROR] the call to python was denied"),
        "{told}"
    );
    assert_eq!(report["stop"], "Return");
    let answer = report["answer"].as_str().unwrap();
    assert!(answer.contains("denied"), "{answer}");
}

#[test]
fn without_the_tool_offered_the_demo_answers_arithmetic_without_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = ask(dir.path(), &["--demo", "--json", "what is 6 x 7"], "");
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["tool_calls"], serde_json::json!([]));
    assert_eq!(report["stop"], "Return");
    assert!(report["answer"].as_str().unwrap().contains('6'), "{report}");
}

#[test]
fn ask_remote_answers_through_an_openai_compatible_server() {
    // `ossterm serve --demo` stands in for vLLM/llama-server: the same agent loop and output,
    // with the model on the other end of HTTP.
    let serve = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/v1", serve.base);
    let (ok, stdout, stderr) = ask(
        dir.path(),
        &["--remote", &url, "--show-reasoning", "--json", "hello"],
        "",
    );
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    let answer = report["answer"].as_str().unwrap_or_default();
    assert!(answer.starts_with(GREETING), "{report}");
    assert_eq!(report["stop"], "Return", "{report}");
    // The reasoning came over the wire too (as `reasoning_content`) and is in the transcript.
    assert!(stdout.contains(GREETING_REASONING), "{report}");

    let (ok, _, stderr) = ask(
        dir.path(),
        &["--remote", "http://127.0.0.1:9/v1", "hello"],
        "",
    );
    assert!(!ok, "an unreachable server is an error");
    assert!(stderr.contains("127.0.0.1:9"), "names the server: {stderr}");
}

#[test]
fn json_schema_holds_the_answer_to_the_schema_and_a_bad_one_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("verdict.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"verdict":{"enum":["yes","no"]},"score":{"type":"integer","minimum":0,"maximum":9}},"required":["verdict","score"],"additionalProperties":false}"#,
    )
    .unwrap();
    let path = schema.to_str().unwrap();
    // The demo would greet in prose; held to the schema, it must write this object.
    let (ok, stdout, stderr) = ask(dir.path(), &["--demo", "--json-schema", path, "hello"], "");
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the answer is JSON ({e}): {stdout:?}"));
    assert!(
        answer["verdict"] == "yes" || answer["verdict"] == "no",
        "{answer}"
    );
    let score = answer["score"].as_i64().expect("an integer score");
    assert!((0..=9).contains(&score), "{answer}");
    assert_eq!(answer.as_object().map(|o| o.len()), Some(2), "{answer}");

    let unsupported = dir.path().join("unsupported.json");
    std::fs::write(
        &unsupported,
        r#"{"type":"object","dependentSchemas":{"a":{"required":["b"]}}}"#,
    )
    .unwrap();
    let (ok, stdout, stderr) = ask(
        dir.path(),
        &[
            "--demo",
            "--json-schema",
            unsupported.to_str().unwrap(),
            "hello",
        ],
        "",
    );
    assert!(!ok);
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    assert!(
        stderr.contains("unsupported.json") && stderr.contains("dependentSchemas"),
        "names the file and the keyword: {stderr}"
    );
}
