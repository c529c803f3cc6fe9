//! Killing the process (SIGKILL) in the middle of saving loses nothing that was saved before:
//! a child process saves a growing chat over and over and reports each save; the parent kills
//! it at varying moments and checks the file is valid harmony JSON holding at least everything
//! the child reported saved.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ossterm::harmony::{Content, Conversation, Message, Role};
use ossterm::store::{ChatMeta, ChatSnapshot, ChatStore};

const CHILD_ENV: &str = "OSSTERM_CRASH_TEST_DIR";

fn message(i: usize) -> Message {
    Message {
        role: if i.is_multiple_of(2) {
            Role::User
        } else {
            Role::Assistant
        },
        name: None,
        // Big enough that a write takes a while and a kill can land inside it.
        content: vec![Content::Text {
            text: format!("message {i} ").repeat(2000),
        }],
        channel: (!i.is_multiple_of(2)).then(|| "final".to_string()),
        recipient: None,
        content_type: None,
        extra: Default::default(),
    }
}

/// The child: saves chats of 1, 2, 3, ... messages, printing "saved N" after each save.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only runs when the parent starts this binary as the child.
    };
    let store = ChatStore::new(std::path::Path::new(&dir));
    let mut conversation = Conversation::default();
    let mut stdout = std::io::stdout();
    for i in 0.. {
        conversation.messages.push(message(i));
        let chat = ChatSnapshot {
            id: "crash".into(),
            meta: ChatMeta {
                title: "crash".into(),
                ..ChatMeta::default()
            },
            conversation: conversation.clone(),
        };
        store.save(&chat).unwrap();
        writeln!(stdout, "saved {}", i + 1).unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn sigkill_never_leaves_a_torn_chat_file() {
    for round in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it save a varying number of times, then kill it mid-stream.
        let wanted = 3 + round * 4;
        let mut saved = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while saved < wanted && Instant::now() < deadline {
            let line = lines.next().expect("child output").unwrap();
            if let Some(n) = line.strip_prefix("saved ") {
                saved = n.trim().parse().unwrap();
            }
        }
        assert!(saved >= wanted, "the child saved only {saved} times");
        std::thread::sleep(Duration::from_millis(round * 3));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let store = ChatStore::new(dir.path());
        let text = std::fs::read_to_string(store.chat_path("crash")).unwrap();
        let conversation: Conversation = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}: torn chat file ({e})"));
        assert!(
            conversation.messages.len() as u64 >= saved,
            "round {round}: {} messages on disk, {saved} reported saved",
            conversation.messages.len()
        );
        assert_eq!(conversation.messages[0], message(0));
        assert!(store.load("crash").is_ok());
    }
}
