//! Importing a chat from a file: harmony Conversation JSON (`{"messages": [...]}`, what
//! `/export FILE.json` and the chat files hold) or ossterm's own Markdown export. The file is
//! untrusted: its size is capped, and anything wrong is named by file and field (or line).

use std::fs;
use std::path::{Path, PathBuf};

use super::rename::clean_title;
use super::{ChatMeta, ChatSnapshot, first_user_text, new_chat_id};
use crate::harmony::{Conversation, Message, Role};

/// The largest file imported (a chat's text; far above any context the model reads).
pub const IMPORT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {bytes} bytes: chats over {limit} bytes are not imported")]
    TooLarge {
        path: PathBuf,
        bytes: u64,
        limit: u64,
    },
    #[error("{path} is not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {field}: {why}")]
    Field {
        path: PathBuf,
        field: String,
        why: String,
    },
    #[error("{path}, line {line}: {why}")]
    Markdown {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{path} has no user message: nothing to import")]
    NoUserMessage { path: PathBuf },
}

/// A chat read from a file, with what could not be carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// A new chat (new id, created now), not saved yet.
    pub chat: ChatSnapshot,
    /// What was left out, for the user.
    pub notes: Vec<String>,
}

/// Reads and checks a chat file; JSON when it starts with `{`, else ossterm Markdown.
pub fn import_file(path: &Path) -> Result<Imported, ImportError> {
    let read = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = fs::metadata(path).map_err(read)?.len();
    if bytes > IMPORT_MAX_BYTES {
        return Err(ImportError::TooLarge {
            path: path.to_path_buf(),
            bytes,
            limit: IMPORT_MAX_BYTES,
        });
    }
    let raw = fs::read(path).map_err(read)?;
    // The file may have grown since the size check.
    if raw.len() as u64 > IMPORT_MAX_BYTES {
        return Err(ImportError::TooLarge {
            path: path.to_path_buf(),
            bytes: raw.len() as u64,
            limit: IMPORT_MAX_BYTES,
        });
    }
    let text = String::from_utf8(raw).map_err(|_| ImportError::NotText {
        path: path.to_path_buf(),
    })?;
    let (conversation, title, notes) = if text.trim_start().starts_with('{') {
        (from_harmony_json(path, &text)?, None, Vec::new())
    } else {
        let (conversation, title, notes) = from_markdown(path, &text)?;
        (conversation, Some(title), notes)
    };
    let Some(first) = first_user_text(&conversation) else {
        return Err(ImportError::NoUserMessage {
            path: path.to_path_buf(),
        });
    };
    let title = title
        .and_then(|t| clean_title(&t))
        .or_else(|| clean_title(&first))
        .unwrap_or_else(|| "imported chat".into());
    let now = chrono::Utc::now().to_rfc3339();
    Ok(Imported {
        chat: ChatSnapshot {
            id: new_chat_id(),
            meta: ChatMeta {
                title,
                created: now.clone(),
                updated: now,
                ..ChatMeta::default()
            },
            conversation,
        },
        notes,
    })
}

/// A harmony Conversation; each message is checked on its own so an error names it.
fn from_harmony_json(path: &Path, text: &str) -> Result<Conversation, ImportError> {
    let field = |field: &str, why: String| ImportError::Field {
        path: path.to_path_buf(),
        field: field.to_string(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| ImportError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let Some(object) = value.as_object() else {
        return Err(field("(top level)", "expected an object".into()));
    };
    let Some(messages) = object.get("messages") else {
        return Err(field(
            "messages",
            "missing (a harmony conversation is {\"messages\": [...]})".into(),
        ));
    };
    let Some(messages) = messages.as_array() else {
        return Err(field("messages", "expected a list of messages".into()));
    };
    for (i, message) in messages.iter().enumerate() {
        serde_json::from_value::<Message>(message.clone())
            .map_err(|e| field(&format!("messages[{i}]"), e.to_string()))?;
    }
    serde_json::from_value(value).map_err(|e| field("(top level)", e.to_string()))
}

/// What a Markdown section holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Section {
    Instructions,
    User,
    Answer,
    Reasoning,
}

/// ossterm's Markdown export read back: title, instructions, user messages, reasoning and
/// answers. Tool calls and results were written as text only: they are left out (noted).
fn from_markdown(
    path: &Path,
    text: &str,
) -> Result<(Conversation, String, Vec<String>), ImportError> {
    let mut lines = text.lines().enumerate();
    let title = lines
        .next()
        .and_then(|(_, l)| l.strip_prefix("# "))
        .ok_or_else(|| ImportError::Markdown {
            path: path.to_path_buf(),
            line: 1,
            why: "expected '# TITLE': not an ossterm Markdown export or harmony JSON".into(),
        })?
        .to_string();
    let mut messages = Vec::new();
    let mut section: Option<(Section, Vec<&str>)> = None;
    let mut tool_lines = 0;
    let finish = |section: Option<(Section, Vec<&str>)>, messages: &mut Vec<Message>| {
        if let Some((kind, body)) = section {
            let body = body.join("\n").trim_matches('\n').to_string();
            messages.push(match kind {
                Section::Instructions => Message::from_role_and_content(
                    Role::Developer,
                    crate::harmony::Content::text(body),
                ),
                Section::User => Message::user(body),
                Section::Answer => Message::assistant("final", body),
                Section::Reasoning => Message::assistant("analysis", body),
            });
        }
    };
    for (index, line) in lines {
        let next = match line {
            "## You" => Some(Section::User),
            "## gpt-oss" => Some(Section::Answer),
            "**Instructions:**" => Some(Section::Instructions),
            "<details><summary>Reasoning</summary>" => Some(Section::Reasoning),
            _ => None,
        };
        if let Some(next) = next {
            finish(section.take(), &mut messages);
            section = Some((next, Vec::new()));
            continue;
        }
        let is_meta = line.starts_with("<sub>") && line.ends_with("</sub>");
        if is_meta {
            continue;
        }
        if line.starts_with("> tool call: ") || line.starts_with("> tool result: ") {
            tool_lines += 1;
            finish(section.take(), &mut messages);
            continue;
        }
        match &mut section {
            Some((Section::Reasoning, _)) if line == "</details>" => {
                finish(section.take(), &mut messages);
            }
            Some((_, body)) => body.push(line),
            None if line.trim().is_empty() => {}
            None => {
                return Err(ImportError::Markdown {
                    path: path.to_path_buf(),
                    line: index + 1,
                    why: "text outside a message (expected '## You' or '## gpt-oss')".into(),
                });
            }
        }
    }
    if let Some((Section::Reasoning, _)) = &section {
        return Err(ImportError::Markdown {
            path: path.to_path_buf(),
            line: text.lines().count(),
            why: "a reasoning block is not closed with </details>".into(),
        });
    }
    finish(section.take(), &mut messages);
    let notes = if tool_lines > 0 {
        vec![format!(
            "{tool_lines} tool calls/results left out (Markdown keeps them as text only)"
        )]
    } else {
        Vec::new()
    };
    Ok((Conversation::from_messages(messages), title, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::chat;
    use crate::store::{ChatStore, ExportFormat};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    fn err(path: &Path) -> String {
        import_file(path).unwrap_err().to_string()
    }

    #[test]
    fn both_export_formats_import_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        let original = chat("a", "2026-01-01T00:00:00Z");
        for (name, format) in [
            ("x.json", ExportFormat::HarmonyJson),
            ("x.md", ExportFormat::Markdown),
        ] {
            let path = dir.path().join(name);
            store.export(&original, &path, format, Some("m")).unwrap();
            let imported = import_file(&path).unwrap();
            assert_eq!(imported.chat.conversation, original.conversation, "{name}");
            assert_ne!(imported.chat.id, original.id);
            assert!(imported.notes.is_empty());
        }
        // The Markdown keeps the title; JSON has none, so the first message names it.
        let md = import_file(&dir.path().join("x.md")).unwrap();
        assert_eq!(md.chat.meta.title, "chat a");
        let json = import_file(&dir.path().join("x.json")).unwrap();
        assert_eq!(json.chat.meta.title, "hi");
    }

    #[test]
    fn the_harmony_goldens_import() {
        // Each render case of the tokenizer fixtures is a harmony conversation.
        let cases = include_str!("../../tests/fixtures/o200k_harmony/harmony_render_cases.jsonl");
        let dir = tempfile::tempdir().unwrap();
        let mut imported = 0;
        for (i, line) in cases.lines().enumerate() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(conversation) = case.get("conversation") else {
                continue;
            };
            let path = write(dir.path(), &format!("{i}.json"), &conversation.to_string());
            match import_file(&path) {
                Ok(_) => imported += 1,
                Err(ImportError::NoUserMessage { .. }) => {}
                Err(e) => panic!("case {i}: {e}"),
            }
        }
        assert!(imported > 0);
    }

    #[test]
    fn bad_files_are_named_with_the_field_or_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let p = write(
            d,
            "a.json",
            "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"}]}, {\"role\": \"robot\", \"content\": []}]}",
        );
        let e = err(&p);
        assert!(
            e.starts_with(&format!(
                "{}: messages[1]: unknown variant `robot`",
                p.display()
            )),
            "{e}"
        );
        let p = write(d, "b.json", "{\"msgs\": []}");
        assert!(err(&p).contains("b.json: messages: missing"), "{}", err(&p));
        let p = write(d, "c.json", "{\"messages\": 3}");
        assert!(err(&p).ends_with("c.json: messages: expected a list of messages"));
        let p = write(d, "d.json", "{\"messages\": [");
        assert!(
            err(&p).contains("d.json is not valid JSON: EOF while parsing"),
            "{}",
            err(&p)
        );
        let p = write(d, "e.json", "{\"messages\": []}");
        assert!(err(&p).ends_with("e.json has no user message: nothing to import"));
        let p = write(d, "f.md", "hello there");
        assert!(
            err(&p).contains("f.md, line 1: expected '# TITLE'"),
            "{}",
            err(&p)
        );
        let p = write(d, "g.md", "# t\n\nstray\n## You\nhi\n");
        assert!(
            err(&p).ends_with(
                "g.md, line 3: text outside a message (expected '## You' or '## gpt-oss')"
            ),
            "{}",
            err(&p)
        );
        let p = write(
            d,
            "h.md",
            "# t\n## You\nhi\n<details><summary>Reasoning</summary>\nx\n",
        );
        assert!(
            err(&p).contains("h.md, line 5: a reasoning block is not closed"),
            "{}",
            err(&p)
        );
        let p = d.join("i.bin");
        fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
        assert!(err(&p).ends_with("i.bin is not UTF-8 text"));
        assert!(err(&d.join("missing.json")).starts_with("cannot read "));
    }

    #[test]
    fn a_file_over_the_cap_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        let file = fs::File::create(&path).unwrap();
        file.set_len(IMPORT_MAX_BYTES + 1).unwrap();
        assert_eq!(
            err(&path),
            format!(
                "{} is {} bytes: chats over {IMPORT_MAX_BYTES} bytes are not imported",
                path.display(),
                IMPORT_MAX_BYTES + 1
            )
        );
    }

    #[test]
    fn tool_lines_in_markdown_are_left_out_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.md",
            "# t\n\n## You\n\nhi\n\n> tool call: {}\n\n> tool result: 3\n\n## gpt-oss\n\n3\n",
        );
        let imported = import_file(&p).unwrap();
        assert_eq!(imported.chat.conversation.messages.len(), 2);
        assert_eq!(
            imported.notes,
            vec!["2 tool calls/results left out (Markdown keeps them as text only)"]
        );
    }
}
