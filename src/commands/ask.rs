//! `ossterm ask "PROMPT"`: one question, like `ollama run model "prompt"`. The final answer
//! streams to stdout, reasoning to stderr with `--show-reasoning`, tool calls and results as
//! short lines on stderr; `--json` prints the whole transcript and the stats instead. Tools
//! run only when the config's or `--allow`'s allowlist covers them, or the user says yes at a
//! terminal; without one, every other call is denied and the model told so.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{AppArgs, AskArgs};
use crate::config::Settings;
use crate::engine::protocol::ModelInfo;
use crate::engine::{self, Event, MetricsSample, StopReason, TurnStats};
use crate::harmony::{Conversation, DeveloperContent, Message, SystemContent};
use crate::structured::TurnConstraint;
use crate::tools::agent_driver::{DriveError, EngineLink, TurnObserver, drive_turn};
use crate::tools::{
    AgentLoop, Approval, ApprovalPolicy, ToolCall, ToolCatalog, ToolEvent, ToolExchange,
    ToolHostHandle, ToolWhere, policy::AllowEntry,
};

/// How long the tool host may take to list its tools.
const TOOLS_LIST_WAIT: Duration = Duration::from_secs(30);
/// Tool arguments and results on stderr are cut to this many characters.
const STDERR_PREVIEW_CHARS: usize = 200;

/// Runs the command.
pub fn run(args: &AskArgs) -> anyhow::Result<()> {
    let prompt = read_prompt(args.prompt.as_deref())?;
    let mut settings = Settings::load(args.config.as_deref())?;
    let app_args = AppArgs {
        model: args.model.clone(),
        demo: args.demo,
        context: args.context,
        effort: args.effort.clone(),
        theme: None,
        config: args.config.clone(),
        sampling: args.sampling.clone(),
        remote: args.remote.clone(),
        api_key_env: args.api_key_env.clone(),
        remote_model: args.remote_model.clone(),
    };
    settings.apply_args(&app_args)?;
    let max_new_tokens =
        usize::try_from(args.max_new_tokens).context("--max-new-tokens is too large")?;

    let mut host = if args.tools {
        Some(crate::tools::host::spawn(&settings.tools).context("cannot start the tools")?)
    } else {
        None
    };
    let mut catalog = match host.as_mut() {
        Some(host) => first_catalog(host)?,
        None => ToolCatalog::default(),
    };
    // Someone can be asked only when both ends of the terminal are there and stdin is not
    // the prompt.
    let interactive =
        args.prompt.is_some() && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let policy = ApprovalPolicy {
        auto_approve_read_only: settings.tools.auto_approve_read_only,
        interactive,
        ..ApprovalPolicy::default()
    }
    .with_allowlist(settings.tools.allow.iter().chain(&args.allow))
    .with_context(|| format!("in --allow or [tools] allow of {}", settings.path.display()))?;

    if args.tools {
        check_allow_flags(&args.allow, &catalog, &settings)?;
    }
    let conversation = first_messages(&settings, &catalog);
    let chat_id = format!("ask-{}", std::process::id());
    let constraint = turn_constraint(args, &catalog)?;
    let mut agent =
        AgentLoop::new(conversation, policy, chat_id, max_new_tokens).with_constraint(constraint);

    let mut engine = match super::app::remote_options(&app_args, &settings)? {
        // The same Command/Event protocol: the tool loop below does not know the difference.
        Some(remote) => crate::remote::spawn(remote),
        None => engine::spawn(super::app::engine_options(&app_args, &settings)?),
    };
    let model = wait_ready(&mut engine)?;
    let mut observer = AskOutput::new(args);
    let first = agent.start_turn(prompt);
    let outcome = drive_turn(
        &mut agent,
        first,
        &mut EngineLink {
            commands: &engine.commands,
            events: &mut engine.events,
        },
        host.as_mut(),
        &mut catalog,
        &mut observer,
    );
    if let Some(host) = host {
        let _ = host.commands.send(crate::tools::ToolCommand::Shutdown);
    }
    if args.json && outcome.is_ok() {
        // The engine reports memory and context right after the turn's end.
        if let Some(sample) = sample_after_turn(&mut engine.events) {
            observer.metrics(&sample);
        }
    }
    engine.shutdown();
    let stop = outcome.map_err(for_ask)?;
    observer.finish()?;
    let answer = final_answer(agent.conversation());
    if args.json {
        let mut report = json_report(&model.name, &agent, stop, answer.as_deref());
        report["stats"]
            .as_object_mut()
            .context("the report's stats are an object")?
            .extend(metrics_stats(&model, observer.last_sample.as_ref(), &agent));
        let mut stdout = std::io::stdout();
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    }
    match (answer, stop) {
        (None, _) => bail!(
            "the model wrote no final answer ({}); raise --max-new-tokens or the context",
            stop_text(stop, max_new_tokens)
        ),
        (Some(_), StopReason::Return | StopReason::EndOfText) => Ok(()),
        (Some(_), other) => {
            eprintln!(
                "note: the answer is incomplete ({})",
                stop_text(other, max_new_tokens)
            );
            Ok(())
        }
    }
}

/// The engine's advice for a prompt over the context limit is the app's (Ctrl+N, /ctx);
/// here the flag is what to change.
fn for_ask(error: DriveError) -> anyhow::Error {
    match &error {
        DriveError::Engine(message) if message.starts_with("the conversation is ") => {
            let numbers = message.split(':').next().unwrap_or(message);
            anyhow::anyhow!("{numbers}: raise --context or ask something shorter")
        }
        _ => error.into(),
    }
}

/// The prompt from the argument, else all of stdin; never empty.
fn read_prompt(argument: Option<&str>) -> anyhow::Result<String> {
    let prompt = match argument {
        Some(text) => text.to_owned(),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!(
                    "no prompt: give it as an argument (ossterm ask \"...\") or pipe it on stdin"
                );
            }
            let mut text = String::new();
            stdin
                .lock()
                .read_to_string(&mut text)
                .context("cannot read the prompt from stdin (is it UTF-8 text?)")?;
            text
        }
    };
    if prompt.trim().is_empty() {
        bail!("the prompt is empty: ask something");
    }
    Ok(prompt)
}

/// The tool host's first catalog (it lists its tools as it starts).
fn first_catalog(host: &mut ToolHostHandle) -> anyhow::Result<ToolCatalog> {
    loop {
        match host.events.recv_timeout(TOOLS_LIST_WAIT) {
            Ok(ToolEvent::Tools(catalog)) => return Ok(catalog),
            Ok(ToolEvent::Problem { source, message }) => eprintln!("tools: {source}: {message}"),
            Ok(_) => {}
            Err(_) => bail!(
                "the tools did not list what they offer within {} s",
                TOOLS_LIST_WAIT.as_secs()
            ),
        }
    }
}

/// Fails on an `--allow` that covers none of the offered tools (a typo, or a tool the config
/// does not set up), naming what is offered.
fn check_allow_flags(
    allow: &[String],
    catalog: &ToolCatalog,
    settings: &Settings,
) -> anyhow::Result<()> {
    let offered: Vec<&str> = catalog.entries.keys().map(String::as_str).collect();
    for entry in allow {
        let parsed = AllowEntry::parse(entry)?;
        if !offered.iter().any(|recipient| parsed.matches(recipient)) {
            let offered_text = if offered.is_empty() {
                format!(
                    "none: {} sets up no tools ([python] enabled = true, [mcp.NAME], [browser])",
                    settings.path.display()
                )
            } else {
                offered.join(", ")
            };
            bail!("--allow {entry}: no offered tool matches it (offered: {offered_text})");
        }
    }
    Ok(())
}

/// System message (effort, date, built-in tools) and developer message (instructions,
/// function tools).
/// `--json-schema`'s answer format, and (on the local engine) each function tool's argument
/// schema for calls written after `<|constrain|>json`. A tool schema llguidance cannot follow
/// leaves that tool's arguments free, with a note on stderr; `--json-schema` must hold or
/// nothing runs.
///
/// `--tool-choice` forces the first generation to call a function tool; its schema must hold.
fn turn_constraint(args: &AskArgs, catalog: &ToolCatalog) -> anyhow::Result<TurnConstraint> {
    let constraint = match &args.json_schema {
        Some(path) => TurnConstraint::from_schema_file(path)?,
        None => TurnConstraint::default(),
    };
    if args.remote.is_some() {
        if args.tool_choice.is_some() {
            bail!("--tool-choice needs the local engine: it is enforced with token masks");
        }
        // A remote server samples; it cannot take our token masks for tool arguments.
        return Ok(constraint);
    }
    let required = match &args.tool_choice {
        Some(choice) => required_calls(choice, catalog)?,
        None => Vec::new(),
    };
    let (mut constraint, unenforceable) = constraint.with_function_tools(&catalog.functions);
    for (recipient, e) in unenforceable {
        if required.contains(&recipient) {
            bail!("--tool-choice {recipient}: its arguments cannot be enforced: {e}");
        }
        eprintln!("note: {recipient}'s arguments are not constrained: {e}");
    }
    if !required.is_empty() {
        constraint = constraint.with_required_call(&required)?;
    }
    Ok(constraint)
}

/// The recipients `--tool-choice` (NAME, functions.NAME or `required`) asks to call.
fn required_calls(choice: &str, catalog: &ToolCatalog) -> anyhow::Result<Vec<String>> {
    let offered: Vec<String> = catalog
        .functions
        .iter()
        .map(|tool| format!("functions.{}", tool.name))
        .collect();
    if choice == "required" {
        if offered.is_empty() {
            bail!("--tool-choice required: the tools offer no function tool to call");
        }
        return Ok(offered);
    }
    let recipient = match choice.starts_with("functions.") {
        true => choice.to_owned(),
        false => format!("functions.{choice}"),
    };
    if !offered.contains(&recipient) {
        let list = match offered.is_empty() {
            true => "none".to_owned(),
            false => offered.join(", "),
        };
        bail!("--tool-choice {choice}: no such function tool (offered: {list})");
    }
    Ok(vec![recipient])
}

fn first_messages(settings: &Settings, catalog: &ToolCatalog) -> Conversation {
    let mut system = SystemContent::new()
        .with_reasoning_effort(settings.effort)
        .with_conversation_start_date(chrono::Local::now().format("%Y-%m-%d").to_string());
    for namespace in &catalog.builtin {
        system = system.with_tools(namespace.clone());
    }
    let mut messages = vec![Message::system(system)];
    let instructions = settings
        .developer_instructions
        .as_deref()
        .filter(|text| !text.trim().is_empty());
    if instructions.is_some() || !catalog.functions.is_empty() {
        let mut developer = DeveloperContent::new();
        if let Some(text) = instructions {
            developer = developer.with_instructions(text);
        }
        if !catalog.functions.is_empty() {
            developer = developer.with_function_tools(catalog.functions.clone());
        }
        messages.push(Message::developer(developer));
    }
    Conversation::from_messages(messages)
}

/// Waits for the model to load; returns what it is.
fn wait_ready(engine: &mut engine::EngineHandle) -> anyhow::Result<ModelInfo> {
    loop {
        match engine.events.blocking_recv() {
            Some(Event::Ready(info)) => return Ok(info),
            Some(Event::Error { message, .. }) => bail!("cannot load the model: {message}"),
            None => bail!("the engine stopped while loading the model"),
            Some(_) => {}
        }
    }
}

/// The text of the last assistant message on `final` (no recipient), if the model wrote one.
fn final_answer(conversation: &Conversation) -> Option<String> {
    conversation
        .messages
        .iter()
        .rev()
        .find(|m| {
            m.role == crate::harmony::Role::Assistant
                && m.channel.as_deref() == Some("final")
                && m.recipient.is_none()
        })
        .map(Message::text)
}

fn stop_text(stop: StopReason, max_new_tokens: usize) -> String {
    match stop {
        StopReason::Length => format!("stopped at --max-new-tokens {max_new_tokens}"),
        StopReason::ContextFull => "the context is full".to_owned(),
        StopReason::Stopped => "stopped".to_owned(),
        StopReason::Return | StopReason::EndOfText | StopReason::Call => {
            format!("ended with {stop:?}")
        }
    }
}

/// `--json`: the model, the answer, every message, every tool call, the stats.
fn json_report(
    model: &str,
    agent: &AgentLoop,
    stop: StopReason,
    answer: Option<&str>,
) -> serde_json::Value {
    let turns = agent.engine_turns();
    let total = turns.iter().fold(TurnStats::default(), |mut sum, t| {
        sum.prefill_tokens += t.prefill_tokens;
        sum.cached_tokens += t.cached_tokens;
        sum.prefill_ms += t.prefill_ms;
        sum.decode_tokens += t.decode_tokens;
        sum.decode_ms += t.decode_ms;
        sum
    });
    serde_json::json!({
        "model": model,
        "answer": answer,
        "stop": stop,
        "messages": agent.conversation().messages,
        "tool_calls": agent.exchanges(),
        "stats": {
            "generations": turns,
            "prefill_tokens": total.prefill_tokens,
            "cached_tokens": total.cached_tokens,
            "prefill_ms": total.prefill_ms,
            "decode_tokens": total.decode_tokens,
            "decode_ms": total.decode_ms,
            "time_to_first_token_ms": turns.first().map(|t| t.time_to_first_token_ms),
            "tool_ms": agent.tool_time().as_secs_f64() * 1000.0,
        },
    })
}

/// How long `--json` waits for the engine's report after the turn (it comes at once; the
/// idle engine repeats it every 2 s).
const SAMPLE_AFTER_TURN_WAIT: Duration = Duration::from_secs(3);

/// The engine's first idle metrics sample after the turn ended, if one comes in time.
fn sample_after_turn(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Option<MetricsSample> {
    let deadline = std::time::Instant::now() + SAMPLE_AFTER_TURN_WAIT;
    while std::time::Instant::now() < deadline {
        match events.try_recv() {
            Ok(Event::Metrics(sample)) if !sample.generating => return Some(sample),
            Ok(_) => {}
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return None,
        }
    }
    None
}

/// The metrics pane's figures for `--json`: memory in the bar's parts (local engine only),
/// the context against the fitted limit and the model's maximum, and each generation's
/// prefill and decode speed.
fn metrics_stats(
    model: &ModelInfo,
    sample: Option<&MetricsSample>,
    agent: &AgentLoop,
) -> serde_json::Map<String, serde_json::Value> {
    let memory = sample
        .filter(|s| s.remote.is_none())
        .map(|s| crate::memory::breakdown::MemoryBreakdown::from_sample(&s.memory));
    let turns = agent.engine_turns();
    let speeds = |rate: fn(&TurnStats) -> f64| turns.iter().map(rate).collect::<Vec<f64>>();
    let serde_json::Value::Object(map) = serde_json::json!({
        "memory": memory,
        "context": {
            "used_tokens": sample.map(|s| s.context_used),
            "limit_tokens": sample.map_or(model.context_limit, |s| s.context_limit),
            "model_max_tokens": model.max_context,
        },
        "prefill_tok_s": speeds(TurnStats::prefill_tok_s),
        "decode_tok_s": speeds(TurnStats::decode_tok_s),
    }) else {
        return serde_json::Map::new();
    };
    map
}

/// Streams the turn to stdout/stderr as the flags say.
struct AskOutput {
    json: bool,
    show_reasoning: bool,
    /// Whether anything went to stdout (to end it with a newline).
    wrote_answer: bool,
    /// The last write to stderr ended mid-line (reasoning streaming).
    reasoning_open: bool,
    error: Option<std::io::Error>,
    /// The engine's latest metrics sample (for `--json`).
    last_sample: Option<MetricsSample>,
}

impl AskOutput {
    fn new(args: &AskArgs) -> Self {
        Self {
            json: args.json,
            show_reasoning: args.show_reasoning,
            wrote_answer: false,
            reasoning_open: false,
            error: None,
            last_sample: None,
        }
    }

    fn stdout(&mut self, text: &str) {
        let mut out = std::io::stdout();
        if let Err(err) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            self.error.get_or_insert(err);
        }
    }

    fn stderr_line(&mut self, line: &str) {
        if self.reasoning_open {
            eprintln!();
            self.reasoning_open = false;
        }
        eprintln!("{line}");
    }

    /// Ends stdout's line; reports a write error (a closed pipe ends quietly in main).
    fn finish(&mut self) -> anyhow::Result<()> {
        if self.reasoning_open {
            eprintln!();
        }
        if self.wrote_answer {
            self.stdout("\n");
        }
        match self.error.take() {
            Some(err) => Err(err).context("cannot write the answer to stdout"),
            None => Ok(()),
        }
    }
}

impl TurnObserver for AskOutput {
    fn token(&mut self, channel: Option<&str>, recipient: Option<&str>, delta: &str) {
        if delta.is_empty() || recipient.is_some_and(|r| r != "all") {
            return;
        }
        match channel {
            // The answer, and preambles (user-visible text before tool calls).
            Some("final") | Some("commentary") if !self.json => {
                self.wrote_answer = true;
                self.stdout(delta);
            }
            Some("analysis") if self.show_reasoning => {
                eprint!("{delta}");
                self.reasoning_open = true;
            }
            _ => {}
        }
    }

    fn tool_started(&mut self, call: &ToolCall) {
        let line = format!(
            "→ {}: {}",
            call.recipient,
            preview(&call.arguments, STDERR_PREVIEW_CHARS)
        );
        self.stderr_line(&line);
    }

    fn tool_finished(&mut self, exchange: &ToolExchange) {
        let what = if exchange.denied.is_some() {
            "denied".to_owned()
        } else {
            format!("{:.0} ms", exchange.duration_ms)
        };
        let line = format!(
            "← {} ({what}): {}",
            exchange.call.recipient,
            preview(&exchange.result_text, STDERR_PREVIEW_CHARS)
        );
        self.stderr_line(&line);
    }

    fn problem(&mut self, source: &str, message: &str) {
        self.stderr_line(&format!("tools: {source}: {message}"));
    }

    fn metrics(&mut self, sample: &MetricsSample) {
        self.last_sample = Some(sample.clone());
    }

    fn approve(&mut self, call: &ToolCall, where_runs: &ToolWhere) -> Approval {
        self.stderr_line(&format!(
            "The model wants to call {} ({}) with:\n{}",
            call.recipient,
            where_text(where_runs),
            call.arguments
        ));
        eprint!("Allow? [y] once, [a] for this run, [N] deny: ");
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return Approval::Deny;
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Approval::AllowOnce,
            "a" | "always" => Approval::AllowForChat,
            _ => Approval::Deny,
        }
    }
}

fn where_text(where_runs: &ToolWhere) -> String {
    match where_runs {
        ToolWhere::McpServer { server, command } => format!("MCP server {server}: {command}"),
        ToolWhere::Python { runner } => format!("python, {runner}"),
        ToolWhere::Browser { backend } => format!("browser via {backend}"),
        ToolWhere::Unknown => "no such tool".to_owned(),
    }
}

/// `text` on one line, cut to `chars` characters.
fn preview(text: &str, chars: usize) -> String {
    let one_line = text.trim().replace('\n', "⏎");
    match one_line.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_one_line_and_cut_on_a_character() {
        assert_eq!(preview(" a\nb ", 10), "a⏎b");
        assert_eq!(preview("ééééé", 3), "ééé…");
    }

    #[test]
    fn the_answer_is_the_last_final_message_without_recipient() {
        let conversation = Conversation::from_messages([
            Message::user("q"),
            Message::assistant("final", "first"),
            Message::assistant("analysis", "think"),
            Message::assistant("final", "second"),
        ]);
        assert_eq!(final_answer(&conversation).as_deref(), Some("second"));
        assert_eq!(final_answer(&Conversation::default()), None);
    }
}
