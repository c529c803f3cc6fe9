//! Exporting a chat: Markdown to read (title, model, dates, each message, reasoning folded,
//! each answer's stats) or harmony JSON to feed back to tools (`{"messages": [...]}`, exactly
//! the chat file: openai_harmony's `Conversation.to_json()`).

use std::path::Path;

use super::{ChatSnapshot, ChatStore, StoreError, write_atomic};
use crate::engine::TurnStats;
use crate::harmony::{Content, Role};

/// What `/export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Markdown,
    /// openai_harmony's Conversation JSON.
    HarmonyJson,
}

impl ExportFormat {
    /// The format a file name asks for: `.json` is harmony JSON, anything else Markdown.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::HarmonyJson,
            _ => Self::Markdown,
        }
    }

    /// A format by name (`md`, `markdown`, `json`, `harmony`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(Self::Markdown),
            "json" | "harmony" => Some(Self::HarmonyJson),
            _ => None,
        }
    }

    /// The file extension written when no path is given.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Markdown => "md",
            Self::HarmonyJson => "json",
        }
    }
}

impl ChatStore {
    /// Writes the chat to `path` (atomically) in `format`; `model` names the model in Markdown.
    pub fn export(
        &self,
        chat: &ChatSnapshot,
        path: &Path,
        format: ExportFormat,
        model: Option<&str>,
    ) -> Result<(), StoreError> {
        let bytes =
            match format {
                ExportFormat::Markdown => to_markdown(chat, model).into_bytes(),
                ExportFormat::HarmonyJson => serde_json::to_vec_pretty(&chat.conversation)
                    .map_err(|source| StoreError::Encode {
                        id: chat.id.clone(),
                        source,
                    })?,
            };
        write_atomic(path, &bytes)
    }
}

/// "2026-12-03 19:40 UTC" from RFC 3339 (as written when it does not parse).
fn readable_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or_else(
        |_| rfc3339.to_string(),
        |t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        },
    )
}

/// One answer's stats line.
fn stats_line(stats: &TurnStats, stop: crate::engine::StopReason) -> String {
    format!(
        "<sub>{} tokens at {:.1} tok/s · prompt {} tokens ({} cached) at {:.1} tok/s · first token {:.2} s · stop: {stop:?}</sub>\n\n",
        stats.decode_tokens,
        stats.decode_tok_s(),
        stats.prefill_tokens + stats.cached_tokens,
        stats.cached_tokens,
        stats.prefill_tok_s(),
        stats.time_to_first_token_ms / 1000.0,
    )
}

/// The chat as Markdown: title; model, dates and message count; each user message and answer
/// (reasoning in a collapsible `<details>` block), each answer followed by its stats.
pub fn to_markdown(chat: &ChatSnapshot, model: Option<&str>) -> String {
    let mut out = format!("# {}\n\n", chat.meta.title);
    let mut about = Vec::new();
    if let Some(model) = model {
        about.push(format!("model {model}"));
    }
    if !chat.meta.created.is_empty() {
        about.push(format!("created {}", readable_time(&chat.meta.created)));
    }
    if !chat.meta.updated.is_empty() {
        about.push(format!("updated {}", readable_time(&chat.meta.updated)));
    }
    if !about.is_empty() {
        out.push_str(&format!("<sub>{}</sub>\n\n", about.join(" · ")));
    }
    // Turn records count the messages after system and developer ones.
    let mut counted = 0;
    let mut records = chat.meta.turns.iter().peekable();
    for message in &chat.conversation.messages {
        let text = message.text();
        match (message.role, message.channel.as_deref()) {
            (Role::System, _) => continue,
            (Role::Developer, _) => {
                let instructions = message.content.iter().find_map(|c| match c {
                    Content::DeveloperContent(d) => d.instructions.clone(),
                    _ => None,
                });
                let instructions = instructions.unwrap_or(text);
                out.push_str(&format!("**Instructions:**\n\n{instructions}\n\n"));
                continue;
            }
            (Role::User, _) => out.push_str(&format!("## You\n\n{text}\n\n")),
            (Role::Assistant, Some("analysis")) => out.push_str(&format!(
                "<details><summary>Reasoning</summary>\n\n{text}\n\n</details>\n\n"
            )),
            (Role::Assistant, Some("commentary")) => {
                out.push_str(&format!("> tool call: {text}\n\n"));
            }
            (Role::Assistant, _) => out.push_str(&format!("## gpt-oss\n\n{text}\n\n")),
            (Role::Tool, _) => out.push_str(&format!("> tool result: {text}\n\n")),
        }
        counted += 1;
        while let Some(record) = records.next_if(|r| r.messages_after <= counted) {
            out.push_str(&stats_line(&record.stats, record.stop));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StopReason;
    use crate::harmony::Conversation;
    use crate::store::TurnRecord;
    use crate::store::tests::chat;

    fn with_stats() -> ChatSnapshot {
        let mut chat = chat("a", "2026-12-03T19:40:00Z");
        chat.meta.turns = vec![TurnRecord {
            messages_after: 3,
            stop: StopReason::Return,
            stats: TurnStats {
                prefill_tokens: 80,
                cached_tokens: 20,
                prefill_ms: 400.0,
                decode_tokens: 50,
                decode_ms: 2000.0,
                time_to_first_token_ms: 450.0,
            },
        }];
        chat
    }

    #[test]
    fn markdown_has_model_dates_roles_reasoning_and_stats() {
        let md = to_markdown(&with_stats(), Some("gpt-oss-20b"));
        assert!(md.starts_with("# chat a\n\n<sub>model gpt-oss-20b · created 2026-12-03 19:40 UTC · updated 2026-12-03 19:40 UTC</sub>\n\n"), "{md}");
        assert!(md.contains("## You\n\nhi"));
        assert!(md.contains("<summary>Reasoning</summary>\n\nthink"));
        assert!(md.ends_with("## gpt-oss\n\nhello\n\n<sub>50 tokens at 25.0 tok/s · prompt 100 tokens (20 cached) at 200.0 tok/s · first token 0.45 s · stop: Return</sub>\n\n"), "{md}");
    }

    #[test]
    fn the_format_follows_the_file_name_or_its_name() {
        assert_eq!(
            ExportFormat::from_path(Path::new("a/b.JSON")),
            ExportFormat::HarmonyJson
        );
        assert_eq!(
            ExportFormat::from_path(Path::new("b.md")),
            ExportFormat::Markdown
        );
        assert_eq!(
            ExportFormat::from_path(Path::new("b")),
            ExportFormat::Markdown
        );
        assert_eq!(
            ExportFormat::parse("harmony"),
            Some(ExportFormat::HarmonyJson)
        );
        assert_eq!(ExportFormat::parse("MD"), Some(ExportFormat::Markdown));
        assert_eq!(ExportFormat::parse("pdf"), None);
    }

    #[test]
    fn harmony_json_export_is_the_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        let path = dir.path().join("out.json");
        let chat = with_stats();
        store
            .export(&chat, &path, ExportFormat::HarmonyJson, None)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["messages"][0]["role"], "user");
        let back: Conversation = serde_json::from_str(&text).unwrap();
        assert_eq!(back, chat.conversation);
    }
}
