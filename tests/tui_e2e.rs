//! End to end: the real binary in tmux on the demo model. Type a question, see reasoning then
//! an answer and a non-zero decode speed, stop a generation, start a new chat, quit; the
//! terminal is restored and the chat file exists. A second test SIGKILLs the app mid-answer
//! and checks the saved chat is valid JSON. SIGTERM, SIGINT and SIGHUP restore the terminal
//! and save; Ctrl+Q leaves promptly while the model is still loading; a second copy on the
//! same data dir does not take over the first copy's chat. With python enabled, a call asks
//! first; allowed, its result and the answer appear; denied, the model is told.
//!
//! Needs tmux (installed by .ci/run) and the demo model in assets/demo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ossterm::harmony::{Conversation, Role};

mod common;
use common::tmux::{Tmux, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_ossterm");

/// The demo model ships in the repo; without it these tests cannot mean anything.
fn assert_demo_present() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/config.json");
    assert!(
        demo.is_file(),
        "the demo model {} is missing",
        demo.display()
    );
}

/// The decode speeds in per-answer stat lines ("96 tok · 20.0 tok/s · ...").
fn answer_speeds(screen: &str) -> Vec<f64> {
    screen
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(" tok · ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

fn chat_files(data: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(data.join("chats")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p.to_string_lossy().ends_with(".meta.json")
        })
        .collect()
}

/// The shell printed the app's exit status (a line of its own, not the typed command).
fn exited(screen: &str) -> bool {
    screen.lines().any(|l| l.trim().starts_with("EXIT="))
}

/// The app has exited with `status` and left the terminal as it found it: cooked mode
/// (`stty` prints `icanon`) and the main screen (not the alternate one).
fn assert_exited_and_restored(tmux: &Tmux, status: i32) {
    let screen = tmux.wait_for("the shell", exited);
    let exit_line = format!("EXIT={status}");
    assert!(screen.lines().any(|l| l.trim() == exit_line), "{screen}");
    let after = tmux.wait_for("stty output", |s| {
        s.lines()
            .any(|l| l.trim() == "icanon" || l.trim() == "-icanon")
    });
    assert!(
        after.lines().any(|l| l.trim() == "icanon"),
        "the terminal is still raw:\n{after}"
    );
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "e2e", "#{alternate_on}"])
            .trim(),
        "0"
    );
}

/// Types `command` (the app with its arguments), then what prints its exit status and
/// whether the terminal is back in cooked mode.
fn launch(tmux: &Tmux, command: &str) {
    tmux.type_text(&format!(
        "{command}; echo \"EXIT=$?\"; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon"
    ));
    tmux.keys(&["Enter"]);
}

fn start_app(tmux: &Tmux) {
    launch(tmux, &format!("{BIN} --demo --device cpu"));
    let screen = tmux.wait_for("the model to load", |s| {
        s.contains("is ready on") || s.contains("to quit (your chats")
    });
    assert!(
        screen.contains("is ready on"),
        "the demo model did not load:\n{screen}"
    );
}

#[test]
fn chat_stop_new_chat_quit_on_the_demo_model() {
    assert_demo_present();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("chat", data.path(), config.path());
    start_app(&tmux);

    // A question: reasoning shows, then an answer with its stats.
    tmux.type_text("What is the capital of France?");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the question in the chat", |s| {
        s.contains("What is the capital of France?")
    });
    let screen = tmux.wait_for("the answer's stats", |s| !answer_speeds(s).is_empty());
    assert!(
        screen.contains("── turn 1"),
        "reasoning pane has the turn:\n{screen}"
    );
    let speeds = answer_speeds(&screen);
    assert!(speeds[0] > 0.0, "decode tok/s is zero:\n{screen}");
    let decode_line = screen
        .lines()
        .find(|l| l.contains("decode "))
        .unwrap_or_default()
        .to_string();
    assert!(
        decode_line.contains("tok/s"),
        "metrics show decode speed:\n{screen}"
    );

    // Stop a generation. The demo model answers in about a tenth of a second, so Escape goes
    // right behind Enter (retried in case the answer still wins the race).
    let mut stopped = false;
    for attempt in 0..8 {
        let question = format!("Tell me a very long story, number {attempt}.");
        tmux.type_text(&question);
        tmux.keys(&["Enter", "Escape"]);
        // The turn ended when a stats line follows the question on screen.
        let stats_after = |s: &str| -> Option<String> {
            let (_, after) = s.split_once(question.as_str())?;
            after
                .lines()
                .find(|l| l.contains(" tok · "))
                .map(str::to_string)
        };
        let screen = tmux.wait_for("the turn to end", |s| stats_after(s).is_some());
        if stats_after(&screen).is_some_and(|l| l.contains("· stopped")) {
            stopped = true;
            break;
        }
    }
    assert!(
        stopped,
        "no generation could be stopped:\n{}",
        tmux.screen()
    );

    // New chat, then quit.
    tmux.keys(&["C-n"]);
    tmux.wait_for("a fresh chat", |s| s.contains("is ready on"));
    tmux.keys(&["C-q"]);
    assert_exited_and_restored(&tmux, 0);

    let files = chat_files(data.path());
    assert!(!files.is_empty(), "no chat file saved");
    let found = files.iter().any(|path| {
        let conversation: Conversation =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        conversation.messages.iter().any(|m| {
            m.role == Role::User
                && ossterm::tui::app::message_text(m) == "What is the capital of France?"
        }) && conversation
            .messages
            .iter()
            .any(|m| m.role == Role::Assistant)
    });
    assert!(found, "the first chat with its answer is on disk");
}

#[test]
fn sigkill_mid_answer_keeps_a_valid_chat() {
    assert_demo_present();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("kill", data.path(), config.path());
    start_app(&tmux);
    tmux.type_text("Write a long essay about rivers.");
    tmux.keys(&["Enter"]);
    // Kill as soon as the answer streams (the fast demo model may already have finished;
    // the file must be valid either way).
    tmux.wait_for("tokens to stream", |s| {
        s.contains("● generating") || s.contains(" tok · ")
    });
    let pid = tmux.app_pid().expect("the app's pid");
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    tmux.wait_for("the shell", exited);
    let files = chat_files(data.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let conversation: Conversation =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap())
            .expect("the chat file is valid JSON after SIGKILL");
    assert!(
        conversation.messages.iter().any(|m| m.role == Role::User),
        "the question was saved before the answer"
    );
}

#[test]
fn a_fatal_engine_error_is_shown_and_the_terminal_restored() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-model");
    std::fs::create_dir_all(&missing).unwrap();
    let tmux = Tmux::start("error", data.path(), config.path());
    tmux.type_text(&format!(
        "{BIN} --model {} --device cpu; echo \"EXIT=$?\"; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon",
        missing.display()
    ));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the error popup", |s| {
        s.contains("Error") && s.contains("to quit")
    });
    assert!(screen.contains("ossterm"), "{screen}");
    tmux.keys(&["q"]);
    // A model that did not load is a failed run.
    assert_exited_and_restored(&tmux, 1);
}

/// The chat files' conversations that hold a user message with this text.
fn chats_with(data: &Path, question: &str) -> Vec<Conversation> {
    chat_files(data)
        .iter()
        .filter_map(|path| serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok())
        .filter(|c: &Conversation| {
            c.messages
                .iter()
                .any(|m| m.role == Role::User && ossterm::tui::app::message_text(m) == question)
        })
        .collect()
}

/// Asks a question and waits until its answer is saved (the turn ended).
fn ask(tmux: &Tmux, data: &Path, question: &str) {
    tmux.type_text(question);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the answer", |_| {
        chats_with(data, question)
            .iter()
            .any(|c| c.messages.last().is_some_and(|m| m.role == Role::Assistant))
    });
    tmux.wait_for("the turn's stats", |s| !answer_speeds(s).is_empty());
}

#[test]
fn sigterm_sigint_and_sighup_restore_the_terminal_and_save_the_chat() {
    assert_demo_present();
    for signal in ["TERM", "INT", "HUP"] {
        let data = tempfile::tempdir().unwrap();
        let config = tempfile::tempdir().unwrap();
        let tmux = Tmux::start(&format!("sig{signal}"), data.path(), config.path());
        start_app(&tmux);
        let question = format!("Tell me about SIG{signal}.");
        ask(&tmux, data.path(), &question);
        let pid = tmux.app_pid().expect("the app's pid");
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        assert_exited_and_restored(&tmux, 0);
        let chats = chats_with(data.path(), &question);
        assert_eq!(chats.len(), 1, "SIG{signal}: the chat is saved");
        assert_eq!(
            chats[0].messages.last().map(|m| m.role),
            Some(Role::Assistant),
            "SIG{signal}: the answer is saved"
        );
    }
}

#[test]
fn ctrl_q_quits_while_the_model_is_still_downloading() {
    // A hub that accepts connections and never answers: the engine thread waits in the
    // repo-info request and does not read its commands.
    let hub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hub.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hub.incoming().flatten() {
            held.push(stream);
        }
    });
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let hf_home = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("stall", data.path(), config.path());
    launch(
        &tmux,
        &format!(
            "HF_HUB_OFFLINE= HF_ENDPOINT=http://127.0.0.1:{port} HF_HOME={} {BIN} --model stalled/model --device cpu",
            hf_home.path().display()
        ),
    );
    tmux.wait_for("the loading screen", |s| s.contains("Loading the model"));
    // Let the engine reach the stalled request.
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    tmux.keys(&["C-q"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !exited(&tmux.screen()) {
        assert!(
            Instant::now() < deadline,
            "Ctrl+Q did not quit while loading:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_exited_and_restored(&tmux, 0);
}

#[test]
fn a_second_copy_on_the_same_data_dir_leaves_the_first_copys_chat_alone() {
    assert_demo_present();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let first = Tmux::start("lock-a", data.path(), config.path());
    start_app(&first);
    ask(&first, data.path(), "First copy question?");
    // The second copy would continue the newest chat: the first copy's.
    let second = Tmux::start("lock-b", data.path(), config.path());
    start_app(&second);
    second.wait_for("the lock notice", |s| {
        s.contains("is open in another copy of ossterm: this one starts a new chat")
    });
    ask(&second, data.path(), "Second copy question?");
    ask(&first, data.path(), "First copy follow-up?");
    second.keys(&["C-q"]);
    assert_exited_and_restored(&second, 0);
    first.keys(&["C-q"]);
    assert_exited_and_restored(&first, 0);
    // Two chats; the first has both of its turns, the second only its own.
    let firsts = chats_with(data.path(), "First copy follow-up?");
    assert_eq!(firsts.len(), 1);
    let users = |c: &Conversation| {
        c.messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(ossterm::tui::app::message_text)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        users(&firsts[0]),
        vec!["First copy question?", "First copy follow-up?"]
    );
    let seconds = chats_with(data.path(), "Second copy question?");
    assert_eq!(seconds.len(), 1);
    assert_eq!(users(&seconds[0]), vec!["Second copy question?"]);
}

/// Times the app's main thread (the event loop) gave up the CPU to wait.
fn main_thread_wakeups(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the app runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Linux reports context switches")
}

#[test]
fn an_idle_app_sleeps_until_something_happens() {
    assert_demo_present();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("idle", data.path(), config.path());
    start_app(&tmux);
    let pid = tmux.app_pid().expect("the app is running");
    std::thread::sleep(Duration::from_secs(1));
    let before = main_thread_wakeups(pid);
    std::thread::sleep(Duration::from_secs(4));
    let wakeups = main_thread_wakeups(pid) - before;
    // A frame tick would wake it ~30 times a second (120 here); the engine's idle memory
    // report every 2 s wakes it twice.
    assert!(wakeups < 20, "{wakeups} wakeups in 4 s idle");
    tmux.keys(&["C-q"]);
}

/// The chat whose first question is `question`, once its last message is a final answer.
fn answered_chat(data: &Path, question: &str) -> Conversation {
    let mut found = None;
    let deadline = Instant::now() + WAIT;
    while found.is_none() {
        found = chats_with(data, question).into_iter().find(|c| {
            c.messages
                .last()
                .is_some_and(|m| m.role == Role::Assistant && m.channel.as_deref() == Some("final"))
        });
        assert!(
            Instant::now() < deadline,
            "no final answer to {question:?} saved"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    found.unwrap_or_else(|| unreachable!("the loop ends with a chat"))
}

/// The tool messages of a chat, as the model read them.
fn tool_texts(chat: &Conversation) -> Vec<String> {
    chat.messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(ossterm::tui::app::message_text)
        .collect()
}

#[test]
fn a_python_call_asks_first_and_allow_or_deny_reaches_the_model() {
    assert_demo_present();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.toml"),
        "[python]\nenabled = true\ntimeout_s = 30\n",
    )
    .unwrap();
    let tmux = Tmux::start("tools", data.path(), config.path());
    start_app(&tmux);

    // Allow: the call runs, its result shows in the block, and the answer uses it.
    let question = "What is 3 times 5?";
    tmux.type_text(question);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the approval prompt", |s| s.contains("Run this tool call?"));
    assert!(screen.contains("print("), "the code is shown:\n{screen}");
    assert!(screen.contains("y once"), "the keys are shown:\n{screen}");
    // Answer keys count once the prompt has been up for a moment.
    std::thread::sleep(Duration::from_millis(800));
    tmux.keys(&["y"]);
    let chat = answered_chat(data.path(), question);
    // The tiny demo may misread the numbers: what matters is that the runner's output went
    // back to the model and the answer came from it.
    let results = tool_texts(&chat);
    assert_eq!(results.len(), 1, "{chat:?}");
    let result = results[0].trim().to_string();
    assert!(!result.is_empty(), "{chat:?}");
    let answer = chat.messages.last().map(ossterm::tui::app::message_text);
    assert!(
        answer.as_deref().is_some_and(|a| a.contains(&result)),
        "the answer does not use the result {result}: {answer:?}"
    );
    let screen = tmux.wait_for("the result in the block", |s| {
        s.contains(&format!("← {result}"))
    });
    assert!(screen.contains("python · "), "{screen}");

    // Deny: nothing runs and the model is told.
    tmux.keys(&["C-n"]);
    let question = "What is 21 times 2?";
    tmux.type_text(question);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the approval prompt", |s| s.contains("Run this tool call?"));
    std::thread::sleep(Duration::from_millis(800));
    tmux.keys(&["n"]);
    // The denial goes to the model, which answers (what it says is the demo's business).
    let denial = ossterm::tools::DenyReason::User.explain("python");
    tmux.wait_for("the denial sent and answered", |_| {
        chats_with(data.path(), question).iter().any(|c| {
            tool_texts(c) == [denial.clone()]
                && c.messages.last().is_some_and(|m| m.role == Role::Assistant)
        })
    });

    tmux.keys(&["C-q"]);
    assert_exited_and_restored(&tmux, 0);
}
