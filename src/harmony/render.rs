//! Conversation -> token ids, with openai_harmony's rules: each header piece and each content
//! item is encoded on its own as plain text (special-token text inside messages stays text),
//! system/developer content laid out as the library does, and earlier `analysis` messages left
//! out the way `render_conversation_for_completion` leaves them out.

use super::HarmonyError;
use super::conversation::{Content, Conversation, DeveloperContent, Message, Role, SystemContent};
use super::schema_typescript::tools_section;
use super::tokenizer::{CONSTRAIN, Tokenizer};

/// How to render a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// When the conversation's last assistant message is on `final`, leave out the `analysis`
    /// messages before the conversation's first `final` message (the library's default; the
    /// model was trained without earlier turns' reasoning).
    pub auto_drop_analysis: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            auto_drop_analysis: true,
        }
    }
}

/// Renders the conversation followed by `<|start|>assistant`: the prompt for the model's next
/// turn.
pub fn render_for_completion(
    conversation: &Conversation,
    tokenizer: &Tokenizer,
    options: &RenderOptions,
) -> Result<Vec<u32>, HarmonyError> {
    render_for_completion_with_role(conversation, Role::Assistant, tokenizer, options)
}

/// Renders the conversation followed by `<|start|>{next_role}`.
pub fn render_for_completion_with_role(
    conversation: &Conversation,
    next_role: Role,
    tokenizer: &Tokenizer,
    options: &RenderOptions,
) -> Result<Vec<u32>, HarmonyError> {
    let mut ids = render_conversation(conversation, tokenizer, options)?;
    ids.push(tokenizer.specials().start);
    ids.extend(tokenizer.encode_ordinary(next_role.as_str())?);
    Ok(ids)
}

/// Renders the conversation's messages only.
pub fn render_conversation(
    conversation: &Conversation,
    tokenizer: &Tokenizer,
    options: &RenderOptions,
) -> Result<Vec<u32>, HarmonyError> {
    render_counted(conversation, tokenizer, options).map(|(ids, _)| ids)
}

/// As [`render_for_completion`], with the tokens each message took, in the conversation's
/// order (0 for a message the renderer leaves out, such as an earlier turn's reasoning).
pub fn render_for_completion_counted(
    conversation: &Conversation,
    tokenizer: &Tokenizer,
    options: &RenderOptions,
) -> Result<(Vec<u32>, Vec<usize>), HarmonyError> {
    let (mut ids, counts) = render_counted(conversation, tokenizer, options)?;
    ids.push(tokenizer.specials().start);
    ids.extend(tokenizer.encode_ordinary(Role::Assistant.as_str())?);
    Ok((ids, counts))
}

/// The conversation's messages and the tokens each took.
fn render_counted(
    conversation: &Conversation,
    tokenizer: &Tokenizer,
    options: &RenderOptions,
) -> Result<(Vec<u32>, Vec<usize>), HarmonyError> {
    let messages = &conversation.messages;
    let has_function_tools = messages.iter().any(|message| {
        message.content.iter().any(|content| match content {
            Content::DeveloperContent(DeveloperContent {
                tools: Some(namespaces),
                ..
            }) => namespaces
                .get("functions")
                .is_some_and(|functions| !functions.tools.is_empty()),
            _ => false,
        })
    });
    let last_assistant_is_final = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .is_some_and(|m| m.channel.as_deref() == Some("final"));
    let first_final = messages
        .iter()
        .position(|m| m.channel.as_deref() == Some("final"));
    let drop_before = match first_final {
        Some(index) if options.auto_drop_analysis && last_assistant_is_final => index,
        _ => 0,
    };
    let mut ids = Vec::new();
    let mut counts = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let before = ids.len();
        if index >= drop_before || message.channel.as_deref() != Some("analysis") {
            render_message(message, index, tokenizer, has_function_tools, &mut ids)?;
        }
        counts.push(ids.len() - before);
    }
    Ok((ids, counts))
}

/// Renders for training: as `render_conversation`, and when the last message is the assistant's
/// `final` answer its closing `<|end|>` becomes `<|return|>`.
pub fn render_conversation_for_training(
    conversation: &Conversation,
    tokenizer: &Tokenizer,
    options: &RenderOptions,
) -> Result<Vec<u32>, HarmonyError> {
    let mut ids = render_conversation(conversation, tokenizer, options)?;
    if let Some(last) = conversation.messages.last()
        && last.role == Role::Assistant
        && last.channel.as_deref() == Some("final")
        && let Some(closing) = ids.last_mut()
    {
        *closing = tokenizer.specials().return_;
    }
    Ok(ids)
}

fn render_message(
    message: &Message,
    index: usize,
    tokenizer: &Tokenizer,
    has_function_tools: bool,
    ids: &mut Vec<u32>,
) -> Result<(), HarmonyError> {
    let invalid = |reason: &str| HarmonyError::InvalidMessage {
        index,
        reason: reason.to_owned(),
    };
    let specials = tokenizer.specials();
    ids.push(specials.start);
    if message.role == Role::Tool {
        let name = message
            .name
            .as_deref()
            .ok_or_else(|| invalid("a tool message needs the tool's name"))?;
        ids.extend(tokenizer.encode_ordinary(name)?);
    } else {
        ids.extend(tokenizer.encode_ordinary(message.role.as_str())?);
        if let Some(name) = &message.name {
            ids.extend(tokenizer.encode_ordinary(&format!(":{name}"))?);
        }
    }
    if let Some(recipient) = message.recipient.as_deref().filter(|r| *r != "all") {
        ids.extend(tokenizer.encode_ordinary(&format!(" to={recipient}"))?);
    }
    if let Some(channel) = &message.channel {
        ids.push(specials.channel);
        ids.extend(tokenizer.encode_ordinary(channel)?);
    }
    if let Some(content_type) = &message.content_type {
        match (content_type.strip_prefix(CONSTRAIN), specials.constrain) {
            (Some(rest), Some(constrain)) => {
                ids.extend(tokenizer.encode_ordinary(" ")?);
                ids.push(constrain);
                if !rest.is_empty() {
                    ids.extend(tokenizer.encode_ordinary(rest)?);
                }
            }
            _ => ids.extend(tokenizer.encode_ordinary(&format!(" {content_type}"))?),
        }
    }
    ids.push(specials.message);
    for content in &message.content {
        let text = match content {
            Content::Text { text } => text.clone(),
            Content::SystemContent(system) => {
                if message.role != Role::System {
                    return Err(invalid("system content outside a system message"));
                }
                system_text(system, has_function_tools)
            }
            Content::DeveloperContent(developer) => {
                if message.role != Role::Developer {
                    return Err(invalid("developer content outside a developer message"));
                }
                developer_text(developer)
            }
        };
        ids.extend(tokenizer.encode_ordinary(&text)?);
    }
    // The library closes every assistant message that has a recipient (even `all`) with
    // `<|call|>`.
    let closing = match (message.role, &message.recipient, specials.call) {
        (Role::Assistant, Some(_), Some(call)) => call,
        _ => specials.end,
    };
    ids.push(closing);
    Ok(())
}

/// The system message's text.
fn system_text(system: &SystemContent, has_function_tools: bool) -> String {
    let mut sections = Vec::new();
    let top: Vec<String> = [
        system.model_identity.clone(),
        system
            .knowledge_cutoff
            .as_ref()
            .map(|cutoff| format!("Knowledge cutoff: {cutoff}")),
        system
            .conversation_start_date
            .as_ref()
            .map(|date| format!("Current date: {date}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !top.is_empty() {
        sections.push(top.join("\n"));
    }
    if let Some(effort) = system.reasoning_effort {
        sections.push(format!("Reasoning: {}", effort.as_str()));
    }
    if let Some(namespaces) = system.tools.as_ref().filter(|n| !n.is_empty()) {
        sections.push(tools_section(namespaces));
    }
    if let Some(config) = system
        .channel_config
        .as_ref()
        .filter(|c| !c.valid_channels.is_empty())
    {
        let mut header = format!("# Valid channels: {}.", config.valid_channels.join(", "));
        if config.channel_required {
            header.push_str(" Channel must be included for every message.");
        }
        if has_function_tools {
            header
                .push_str("\nCalls to these tools must go to the commentary channel: 'functions'.");
        }
        sections.push(header);
    }
    sections.join("\n\n")
}

/// The developer message's text.
fn developer_text(developer: &DeveloperContent) -> String {
    let mut sections = Vec::new();
    if let Some(instructions) = &developer.instructions {
        sections.push("# Instructions".to_owned());
        sections.push(instructions.clone());
    }
    if let Some(namespaces) = developer.tools.as_ref().filter(|n| !n.is_empty()) {
        sections.push(tools_section(namespaces));
    }
    sections.join("\n\n")
}
