//! The harmony conversation model, serialized exactly as openai_harmony's
//! `Conversation.to_json()` writes it (so conversations can be saved, loaded and exchanged).
//!
//! JSON rules (from the library's goldens): a message carries `role` and `name` flattened (the
//! library's `Author`), `name` is always written (`null` when absent); `channel`, `recipient`
//! and `content_type` are written only when set; content items are tagged by `type`
//! (`text`, `system_content`, `developer_content`); a missing system/developer field means
//! "none" (not the defaults that Python's `from_json` would fill in). Fields this version does
//! not know are kept in `extra` and written back, so a saved chat loses nothing on a round trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The model identity openai_harmony's `SystemContent.new()` uses.
pub const DEFAULT_MODEL_IDENTITY: &str =
    "You are ChatGPT, a large language model trained by OpenAI.";
/// The knowledge cutoff openai_harmony's `SystemContent.new()` uses.
pub const DEFAULT_KNOWLEDGE_CUTOFF: &str = "2024-06";
/// The channels gpt-oss writes on: reasoning, tool calls/preambles, the answer.
pub const DEFAULT_VALID_CHANNELS: [&str; 3] = ["analysis", "commentary", "final"];

/// JSON fields a struct does not know, kept as read and written back after its own fields.
pub type ExtraFields = serde_json::Map<String, serde_json::Value>;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system message: identity, dates, reasoning effort, channels.
    System,
    /// The developer message: instructions and tools.
    Developer,
    /// The person chatting.
    User,
    /// The model.
    Assistant,
    /// A tool's answer; the message's `name` is the tool (`functions.get_weather`).
    Tool,
}

impl Role {
    /// The role as harmony writes it in a header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Developer => "developer",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }

    /// Parses a header's role word; `None` for anything else.
    pub fn from_header_word(word: &str) -> Option<Self> {
        match word {
            "system" => Some(Self::System),
            "developer" => Some(Self::Developer),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "tool" => Some(Self::Tool),
            _ => None,
        }
    }
}

/// How hard the model thinks before answering (`Reasoning: low|medium|high` in the system
/// message). Serialized capitalized, as openai_harmony does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ReasoningEffort {
    /// Short reasoning.
    Low,
    /// The library's default.
    #[default]
    Medium,
    /// Long reasoning.
    High,
}

impl ReasoningEffort {
    /// The word the system message uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// Which channels the model may write on, and whether every message must name one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelConfig {
    /// Channel names, in the order the system message lists them.
    pub valid_channels: Vec<String>,
    /// Adds "Channel must be included for every message." to the system message.
    pub channel_required: bool,
}

impl ChannelConfig {
    /// These channels, each message required to name one.
    pub fn require_channels<S: Into<String>>(channels: impl IntoIterator<Item = S>) -> Self {
        Self {
            valid_channels: channels.into_iter().map(Into::into).collect(),
            channel_required: true,
        }
    }
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self::require_channels(DEFAULT_VALID_CHANNELS)
    }
}

/// One tool: a name, a description and optional JSON-schema parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDescription {
    /// The tool's name inside its namespace (`get_current_weather`).
    pub name: String,
    /// Shown to the model as `// ` comment lines.
    #[serde(default)]
    pub description: String,
    /// JSON schema of the arguments (rendered as a TypeScript type); key order is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

impl ToolDescription {
    /// A tool with a name, description and optional parameter schema.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Option<serde_json::Value>,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }
}

/// A namespace of tools (`functions`, `browser`, `python`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolNamespaceConfig {
    /// The namespace (recipients are `name.tool`).
    pub name: String,
    /// Free text shown before the tools (as comments when the namespace has tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The tools; may be empty (e.g. `python`, described only in text).
    #[serde(default)]
    pub tools: Vec<ToolDescription>,
}

impl ToolNamespaceConfig {
    /// A namespace with a description and tools.
    pub fn new(
        name: impl Into<String>,
        description: Option<String>,
        tools: Vec<ToolDescription>,
    ) -> Self {
        Self {
            name: name.into(),
            description,
            tools,
        }
    }
}

/// Tool namespaces by name; sorted by name as the library renders them.
pub type ToolNamespaces = BTreeMap<String, ToolNamespaceConfig>;

/// The system message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemContent {
    /// First line of the system message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identity: Option<String>,
    /// `Reasoning: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Built-in tools (browser, python) described in the system message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolNamespaces>,
    /// `Current date: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_start_date: Option<String>,
    /// `Knowledge cutoff: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_cutoff: Option<String>,
    /// `# Valid channels: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_config: Option<ChannelConfig>,
    /// Fields this version does not know (kept, not rendered).
    #[serde(flatten, default, skip_serializing_if = "ExtraFields::is_empty")]
    pub extra: ExtraFields,
}

impl Default for SystemContent {
    /// openai_harmony's `SystemContent.new()`: ChatGPT identity, medium effort, cutoff
    /// 2024-06, the three gpt-oss channels required; no date, no tools.
    fn default() -> Self {
        Self {
            model_identity: Some(DEFAULT_MODEL_IDENTITY.to_owned()),
            reasoning_effort: Some(ReasoningEffort::Medium),
            tools: None,
            conversation_start_date: None,
            knowledge_cutoff: Some(DEFAULT_KNOWLEDGE_CUTOFF.to_owned()),
            channel_config: Some(ChannelConfig::default()),
            extra: ExtraFields::new(),
        }
    }
}

impl SystemContent {
    /// The library's defaults (see `Default`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the model identity line.
    pub fn with_model_identity(mut self, identity: impl Into<String>) -> Self {
        self.model_identity = Some(identity.into());
        self
    }

    /// Sets `Reasoning: low|medium|high`.
    pub fn with_reasoning_effort(mut self, effort: ReasoningEffort) -> Self {
        self.reasoning_effort = Some(effort);
        self
    }

    /// Sets `Current date: …` (the library writes whatever text is given, e.g. `2025-06-28`).
    pub fn with_conversation_start_date(mut self, date: impl Into<String>) -> Self {
        self.conversation_start_date = Some(date.into());
        self
    }

    /// Sets `Knowledge cutoff: …`.
    pub fn with_knowledge_cutoff(mut self, cutoff: impl Into<String>) -> Self {
        self.knowledge_cutoff = Some(cutoff.into());
        self
    }

    /// Sets the valid channels and requires each message to name one.
    pub fn with_required_channels<S: Into<String>>(
        mut self,
        channels: impl IntoIterator<Item = S>,
    ) -> Self {
        self.channel_config = Some(ChannelConfig::require_channels(channels));
        self
    }

    /// Sets or clears the channel configuration.
    pub fn with_channel_config(mut self, config: Option<ChannelConfig>) -> Self {
        self.channel_config = config;
        self
    }

    /// Adds a built-in tool namespace (replacing one of the same name).
    pub fn with_tools(mut self, namespace: ToolNamespaceConfig) -> Self {
        self.tools
            .get_or_insert_with(BTreeMap::new)
            .insert(namespace.name.clone(), namespace);
        self
    }
}

/// The developer message's content: instructions and function tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeveloperContent {
    /// Rendered under `# Instructions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Rendered under `# Tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolNamespaces>,
    /// Fields this version does not know (kept, not rendered).
    #[serde(flatten, default, skip_serializing_if = "ExtraFields::is_empty")]
    pub extra: ExtraFields,
}

impl DeveloperContent {
    /// Empty developer content.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the instructions.
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Adds a tool namespace (replacing one of the same name).
    pub fn with_tools(mut self, namespace: ToolNamespaceConfig) -> Self {
        self.tools
            .get_or_insert_with(BTreeMap::new)
            .insert(namespace.name.clone(), namespace);
        self
    }

    /// Sets the `functions` namespace to these tools (the model calls them as
    /// `functions.NAME` on the commentary channel).
    pub fn with_function_tools(self, tools: Vec<ToolDescription>) -> Self {
        self.with_tools(ToolNamespaceConfig::new("functions", None, tools))
    }
}

/// One piece of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// The system message's structured content.
    SystemContent(SystemContent),
    /// The developer message's structured content.
    DeveloperContent(DeveloperContent),
}

impl Content {
    /// Plain text content.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The author's name (`user:alice`); for `Tool` messages the tool (`functions.get_weather`).
    #[serde(default)]
    pub name: Option<String>,
    /// The content pieces, rendered one after another.
    pub content: Vec<Content>,
    /// `analysis`, `commentary`, `final`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Whom the message is for (`functions.get_weather`; `all` is the same as none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The content's type (`<|constrain|>json`, `json`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Fields this version does not know (kept, not rendered).
    #[serde(flatten, default, skip_serializing_if = "ExtraFields::is_empty")]
    pub extra: ExtraFields,
}

impl Message {
    /// A message with this role and content, no name, channel, recipient or content type.
    pub fn from_role_and_content(role: Role, content: Content) -> Self {
        Self {
            role,
            name: None,
            content: vec![content],
            channel: None,
            recipient: None,
            content_type: None,
            extra: ExtraFields::new(),
        }
    }

    /// A system message.
    pub fn system(content: SystemContent) -> Self {
        Self::from_role_and_content(Role::System, Content::SystemContent(content))
    }

    /// A developer message.
    pub fn developer(content: DeveloperContent) -> Self {
        Self::from_role_and_content(Role::Developer, Content::DeveloperContent(content))
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::from_role_and_content(Role::User, Content::text(text))
    }

    /// An assistant message on a channel (`analysis`, `commentary`, `final`).
    pub fn assistant(channel: impl Into<String>, text: impl Into<String>) -> Self {
        Self::from_role_and_content(Role::Assistant, Content::text(text)).with_channel(channel)
    }

    /// A tool's answer; `tool_name` is the full name the model called (`functions.get_weather`).
    pub fn tool(tool_name: impl Into<String>, text: impl Into<String>) -> Self {
        let mut message = Self::from_role_and_content(Role::Tool, Content::text(text));
        message.name = Some(tool_name.into());
        message
    }

    /// Sets the author name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the channel.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Sets the recipient.
    pub fn with_recipient(mut self, recipient: impl Into<String>) -> Self {
        self.recipient = Some(recipient.into());
        self
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// The message's text pieces joined (system/developer content contributes nothing).
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|c| match c {
                Content::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A whole conversation, as openai_harmony's `Conversation.to_json()` writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The messages in order.
    pub messages: Vec<Message>,
    /// Fields this version does not know (kept).
    #[serde(flatten, default, skip_serializing_if = "ExtraFields::is_empty")]
    pub extra: ExtraFields,
}

impl Conversation {
    /// A conversation of these messages.
    pub fn from_messages(messages: impl IntoIterator<Item = Message>) -> Self {
        Self {
            messages: messages.into_iter().collect(),
            extra: ExtraFields::new(),
        }
    }

    /// Parses the library's JSON.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Writes the library's JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and JSON values to a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_write_the_library_json() {
        let conversation = Conversation::from_messages([
            Message::system(
                SystemContent::new()
                    .with_reasoning_effort(ReasoningEffort::High)
                    .with_conversation_start_date("2025-06-28"),
            ),
            Message::developer(DeveloperContent::new().with_instructions("Be brief")),
            Message::user("hi").with_name("alice"),
            Message::assistant("final", "hello"),
        ]);
        let value: serde_json::Value = serde_json::from_str(&conversation.to_json()).unwrap();
        let expected = serde_json::json!({"messages": [
            {"role": "system", "name": null, "content": [{"type": "system_content",
                "model_identity": DEFAULT_MODEL_IDENTITY, "reasoning_effort": "High",
                "conversation_start_date": "2025-06-28", "knowledge_cutoff": "2024-06",
                "channel_config": {"valid_channels": ["analysis", "commentary", "final"],
                    "channel_required": true}}]},
            {"role": "developer", "name": null, "content": [{"type": "developer_content",
                "instructions": "Be brief"}]},
            {"role": "user", "name": "alice", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "name": null, "content": [{"type": "text", "text": "hello"}],
                "channel": "final"},
        ]});
        assert_eq!(value, expected);
        assert_eq!(
            Conversation::from_json(&conversation.to_json()).unwrap(),
            conversation
        );
    }

    #[test]
    fn missing_system_fields_mean_none() {
        let json = r#"{"messages":[{"role":"system","content":[{"type":"system_content"}]}]}"#;
        let conversation = Conversation::from_json(json).unwrap();
        let Content::SystemContent(system) = &conversation.messages[0].content[0] else {
            panic!("not system content");
        };
        assert_eq!(system.model_identity, None);
        assert_eq!(system.reasoning_effort, None);
        assert_eq!(system.channel_config, None);
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let json = r#"{"messages":[
            {"role":"system","name":null,"trace":"s1","content":[{"type":"system_content",
                "model_identity":"You are Pirate.","future_flag":true}]},
            {"role":"developer","name":null,"content":[{"type":"developer_content",
                "instructions":"Talk like a pirate.","x_extra":{"a":[1,2]}}]},
            {"role":"user","name":null,"content":[{"type":"text","text":"hi"}],
                "metadata":{"source":"import"}}],
            "exported_by":"harmony-tool"}"#;
        let conversation = Conversation::from_json(json).unwrap();
        let written = conversation.to_json();
        let original: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&written).unwrap(),
            original
        );
        // The content tag is the enum's, never also an unknown field.
        assert_eq!(written.matches("\"type\"").count(), 3, "{written}");
        assert_eq!(conversation.extra["exported_by"], "harmony-tool");
        assert_eq!(
            conversation.messages[2].extra["metadata"]["source"],
            "import"
        );
    }
}
