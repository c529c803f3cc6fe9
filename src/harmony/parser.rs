//! Streaming harmony parser: token ids in, per-token steps out (channel, recipient, content
//! type, text delta, message start/end, stop).
//!
//! On well-formed output it reports what openai_harmony's `StreamableParser` reports. It is
//! stricter about text and more lenient about structure than the library: every byte of text
//! reaches a delta (a message's deltas concatenate to exactly its content, invalid UTF-8 shown
//! as U+FFFD), and a malformed or truncated header, stray text between messages, an unknown
//! author or a `user:name` header become messages instead of errors. It never panics.

use std::sync::Arc;

use super::conversation::{Content, Message, Role};
use super::tokenizer::{CHANNEL, CONSTRAIN, Tokenizer};
use super::utf8_stream::Utf8StreamDecoder;

/// Why the model's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `<|return|>`: the answer is complete.
    Return,
    /// `<|call|>`: the model calls a tool and waits for its answer.
    Call,
    /// `<|endoftext|>`.
    EndOfText,
}

/// What one token did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ParserStep {
    /// The token.
    pub token: u32,
    /// Author of the message this step's delta belongs to, or of the message open after it.
    pub role: Option<Role>,
    /// Channel of that message (`None` between messages, as the library reports it).
    pub channel: Option<String>,
    /// Recipient of that message.
    pub recipient: Option<String>,
    /// Content type of that message.
    pub content_type: Option<String>,
    /// Text this token completed (`None` when it completed none, e.g. half a character).
    pub delta: Option<String>,
    /// A message's header was completed: its content starts after this token.
    pub message_started: bool,
    /// A message ended with this token; it is now the last of `messages()`, and this step's
    /// delta, if any, is its last piece.
    pub message_ended: bool,
    /// The token ends the model's turn.
    pub stop: Option<StopReason>,
}

/// A parsed message header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    role: Role,
    name: Option<String>,
    channel: Option<String>,
    recipient: Option<String>,
    content_type: Option<String>,
}

impl Header {
    fn bare(role: Role) -> Self {
        Self {
            role,
            name: None,
            channel: None,
            recipient: None,
            content_type: None,
        }
    }
}

/// Past this many tokens without `<|message|>`, a header is taken to be text.
const MAX_HEADER_TOKENS: usize = 48;

#[derive(Debug, Clone)]
enum State {
    /// Between messages.
    ExpectStart,
    /// After `<|start|>` (or at the beginning when the role is known), before `<|message|>`.
    Header {
        role: Option<Role>,
        tokens: Vec<u32>,
    },
    /// Inside a message's content.
    Content {
        header: Header,
        decoder: Utf8StreamDecoder,
        text: String,
    },
}

/// The streaming parser. Feed it the model's output one token at a time.
#[derive(Debug, Clone)]
pub struct StreamParser {
    tokenizer: Arc<Tokenizer>,
    state: State,
    messages: Vec<Message>,
}

impl StreamParser {
    /// A parser for output that starts after `<|start|>{role}` when `role` is given (the usual
    /// case: the prompt ended with `<|start|>assistant`), or with `<|start|>` when it is not.
    pub fn new(tokenizer: Arc<Tokenizer>, role: Option<Role>) -> Self {
        let state = match role {
            Some(role) => State::Header {
                role: Some(role),
                tokens: Vec::new(),
            },
            None => State::ExpectStart,
        };
        Self {
            tokenizer,
            state,
            messages: Vec::new(),
        }
    }

    /// The messages completed so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The completed messages, consuming the parser.
    pub fn into_messages(self) -> Vec<Message> {
        self.messages
    }

    /// The channel of the message being written, if its header is complete.
    pub fn current_channel(&self) -> Option<&str> {
        match &self.state {
            State::Content { header, .. } => header.channel.as_deref(),
            _ => None,
        }
    }

    /// The text of the message being written so far.
    pub fn current_content(&self) -> &str {
        match &self.state {
            State::Content { text, .. } => text,
            _ => "",
        }
    }

    /// Consumes one token.
    pub fn push(&mut self, token: u32) -> ParserStep {
        let specials = *self.tokenizer.specials();
        let stop = if token == specials.return_ {
            Some(StopReason::Return)
        } else if Some(token) == specials.call {
            Some(StopReason::Call)
        } else if Some(token) == specials.end_of_text {
            Some(StopReason::EndOfText)
        } else {
            None
        };
        let ends_message = stop.is_some() || token == specials.end;
        let mut step = ParserStep {
            token,
            stop,
            ..ParserStep::default()
        };
        let mut ended_header = None;
        match std::mem::replace(&mut self.state, State::ExpectStart) {
            State::ExpectStart => {
                if token == specials.start {
                    self.state = State::Header {
                        role: None,
                        tokens: Vec::new(),
                    };
                } else if ends_message {
                    // Nothing open: a stop or stray `<|end|>` only ends the turn.
                } else if token == specials.channel {
                    // `<|start|>assistant` left out: the header begins right here.
                    self.state = State::Header {
                        role: Some(Role::Assistant),
                        tokens: vec![token],
                    };
                } else if token == specials.message {
                    self.state = self.open_content(Header::bare(Role::Assistant), &mut step);
                } else {
                    // Stray text between messages: keep it as an assistant message.
                    self.state = self.open_content(Header::bare(Role::Assistant), &mut step);
                    self.push_content_token(token, &mut step);
                }
            }
            State::Header { role, mut tokens } => {
                if token == specials.message {
                    let text = self.header_text(&tokens);
                    match parse_header(&text, role) {
                        Some(header) => {
                            self.state = self.open_content(header, &mut step);
                        }
                        None => {
                            let (header, leftover) = recover_header(&text, role);
                            self.state = self.open_content(header, &mut step);
                            self.push_content_text(&leftover, &mut step);
                        }
                    }
                } else if ends_message || token == specials.start {
                    // The header never reached `<|message|>`: what it holds is text.
                    if !tokens.is_empty() {
                        let text = self.header_text(&tokens);
                        let (header, content) = recover_header(&text, role);
                        if !content.is_empty() {
                            step.delta = Some(content.clone());
                            step.message_ended = true;
                            self.messages.push(message(&header, content));
                            ended_header = Some(header);
                        }
                    }
                    if token == specials.start {
                        self.state = State::Header {
                            role: None,
                            tokens: Vec::new(),
                        };
                    }
                } else {
                    tokens.push(token);
                    if tokens.len() > MAX_HEADER_TOKENS {
                        self.state = self.header_overflow_to_content(&tokens, role, &mut step);
                    } else {
                        self.state = State::Header { role, tokens };
                    }
                }
            }
            State::Content {
                header,
                mut decoder,
                mut text,
            } => {
                if ends_message || token == specials.start {
                    let tail = decoder.finish();
                    if !tail.is_empty() {
                        text.push_str(&tail);
                        step.delta = Some(tail);
                    }
                    step.message_ended = true;
                    self.messages.push(message(&header, text));
                    ended_header = Some(header);
                    if token == specials.start {
                        // `<|end|>` left out: a new message starts.
                        self.state = State::Header {
                            role: None,
                            tokens: Vec::new(),
                        };
                    }
                } else {
                    self.state = State::Content {
                        header,
                        decoder,
                        text,
                    };
                    self.push_content_token(token, &mut step);
                }
            }
        }
        let described = match (&ended_header, &self.state) {
            (Some(header), _) if step.delta.is_some() => Some(header),
            (_, State::Content { header, .. }) => Some(header),
            _ => None,
        };
        if let Some(header) = described {
            step.role = Some(header.role);
            step.channel.clone_from(&header.channel);
            step.recipient.clone_from(&header.recipient);
            step.content_type.clone_from(&header.content_type);
        }
        step
    }

    /// Ends the stream (the model stopped or was cut off): closes the open message, keeping a
    /// truncated header as text. Returns the last delta, if any text was still held back.
    pub fn finish(&mut self) -> Option<String> {
        match std::mem::replace(&mut self.state, State::ExpectStart) {
            State::ExpectStart => None,
            State::Header { role, tokens } => {
                if tokens.is_empty() {
                    return None;
                }
                let text = self.header_text(&tokens);
                let (header, content) = recover_header(&text, role);
                if content.is_empty() {
                    return None;
                }
                self.messages.push(message(&header, content.clone()));
                Some(content)
            }
            State::Content {
                header,
                mut decoder,
                mut text,
            } => {
                let tail = decoder.finish();
                text.push_str(&tail);
                self.messages.push(message(&header, text));
                (!tail.is_empty()).then_some(tail)
            }
        }
    }

    /// No header is this long: the model is writing text without one (or lost its
    /// `<|message|>`). Show what it wrote as content now instead of holding it back until the
    /// message ends; a character cut at the boundary is completed by the next token.
    fn header_overflow_to_content(
        &self,
        tokens: &[u32],
        role: Option<Role>,
        step: &mut ParserStep,
    ) -> State {
        let bytes = self.tokenizer.decode_bytes(tokens);
        let complete_len = match std::str::from_utf8(&bytes) {
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            _ => bytes.len(),
        };
        let text = String::from_utf8_lossy(&bytes[..complete_len]);
        let (header, leftover) = recover_header(&text, role);
        let mut decoder = Utf8StreamDecoder::new();
        // Only an incomplete character is left: nothing to show yet.
        let _held_back = decoder.push(&bytes[complete_len..]);
        step.message_started = true;
        if !leftover.is_empty() {
            step.delta = Some(leftover.clone());
        }
        State::Content {
            header,
            decoder,
            text: leftover,
        }
    }

    fn open_content(&self, header: Header, step: &mut ParserStep) -> State {
        step.message_started = true;
        State::Content {
            header,
            decoder: Utf8StreamDecoder::new(),
            text: String::new(),
        }
    }

    fn push_content_token(&mut self, token: u32, step: &mut ParserStep) {
        if let State::Content { decoder, text, .. } = &mut self.state {
            let piece = decoder.push(self.tokenizer.token_bytes(token));
            if !piece.is_empty() {
                text.push_str(&piece);
                step.delta = Some(piece);
            }
        }
    }

    fn push_content_text(&mut self, piece: &str, step: &mut ParserStep) {
        if let State::Content { text, .. } = &mut self.state
            && !piece.is_empty()
        {
            text.push_str(piece);
            step.delta = Some(piece.to_owned());
        }
    }

    fn header_text(&self, tokens: &[u32]) -> String {
        String::from_utf8_lossy(&self.tokenizer.decode_bytes(tokens)).into_owned()
    }
}

fn message(header: &Header, text: String) -> Message {
    Message {
        role: header.role,
        name: header.name.clone(),
        content: vec![Content::Text { text }],
        channel: header.channel.clone(),
        recipient: header.recipient.clone(),
        content_type: header.content_type.clone(),
        extra: Default::default(),
    }
}

/// Takes `<|channel|>NAME` out of a header: the name ends at whitespace or `<`.
/// Returns the header without it and the name (`Some("")` when the marker has no name).
fn take_channel(header: &str) -> (String, Option<String>) {
    let Some(marker_at) = header.find(CHANNEL) else {
        return (header.to_owned(), None);
    };
    let after = &header[marker_at + CHANNEL.len()..];
    let name_len = after
        .find(|c: char| c.is_whitespace() || c == '<')
        .unwrap_or(after.len());
    let rest = format!("{}{}", &header[..marker_at], &after[name_len..]);
    (rest, Some(after[..name_len].to_owned()))
}

/// A header role word: `assistant`, or `user:alice` (a role with an author name).
fn role_word(word: &str) -> Option<(Role, Option<String>)> {
    if let Some(role) = Role::from_header_word(word) {
        return Some((role, None));
    }
    let (role, name) = word.split_once(':')?;
    if name.is_empty() {
        return None;
    }
    Some((Role::from_header_word(role)?, Some(name.to_owned())))
}

/// Parses a complete header (the text between `<|start|>` and `<|message|>`) the way the
/// library does; `None` when it is malformed (empty channel name, words left over).
fn parse_header(text: &str, role: Option<Role>) -> Option<Header> {
    let (rest, channel) = take_channel(text);
    if channel.as_deref() == Some("") {
        return None;
    }
    // `to=x<|constrain|>json` is two words.
    let rest = rest.trim().replace(CONSTRAIN, &format!(" {CONSTRAIN}"));
    let mut words: Vec<&str> = rest.split_ascii_whitespace().collect();
    let mut header = Header::bare(role.unwrap_or(Role::Assistant));
    match role {
        Some(_) => {}
        None => {
            let first = *words.first()?;
            match role_word(first) {
                Some((role, name)) => {
                    header.role = role;
                    header.name = name;
                    if role == Role::Tool {
                        header.name = Some(first.to_owned());
                    }
                    words.remove(0);
                }
                // Any other author is a tool (`functions.get_weather to=assistant`).
                None => {
                    header.role = Role::Tool;
                    header.name = Some(first.to_owned());
                    words.remove(0);
                }
            }
        }
    }
    if words.first() == Some(&header.role.as_str()) {
        words.remove(0);
    }
    header.channel = channel;
    let word_count = words.len();
    if let Some(last) = words.pop() {
        if let Some(recipient) = last.strip_prefix("to=") {
            header.recipient = Some(recipient.to_owned());
        } else if word_count == 1 && !last.starts_with(CONSTRAIN) {
            header.recipient = Some(last.to_owned());
        } else {
            header.content_type = Some(last.to_owned());
            if let Some(recipient) = words.pop() {
                header.recipient = Some(
                    recipient
                        .strip_prefix("to=")
                        .unwrap_or(recipient)
                        .to_owned(),
                );
            }
        }
    }
    words.is_empty().then_some(header)
}

/// A malformed header read as text: the role word and `<|channel|>NAME` are taken out when
/// present, the rest is the message's text.
fn recover_header(text: &str, role: Option<Role>) -> (Header, String) {
    let (rest, channel) = take_channel(text);
    // Only leading whitespace goes: it separated the header words from the text.
    let mut rest = rest.trim_start();
    let mut header = Header::bare(role.unwrap_or(Role::Assistant));
    let first_word = rest.split(char::is_whitespace).next().unwrap_or("");
    let role_from_text = match role {
        None => role_word(first_word),
        Some(role) => (first_word == role.as_str()).then_some((role, None)),
    };
    if let Some((role, name)) = role_from_text {
        header.role = role;
        header.name = name;
        rest = rest[first_word.len()..].trim_start();
    }
    header.channel = channel.filter(|c| !c.is_empty());
    (header, rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_like_the_library() {
        let header = parse_header(
            " to=functions.ping<|channel|>commentary <|constrain|>json",
            Some(Role::Assistant),
        )
        .unwrap();
        assert_eq!(header.channel.as_deref(), Some("commentary"));
        assert_eq!(header.recipient.as_deref(), Some("functions.ping"));
        assert_eq!(header.content_type.as_deref(), Some("<|constrain|>json"));

        let header = parse_header("functions.x to=assistant<|channel|>commentary", None).unwrap();
        assert_eq!(header.role, Role::Tool);
        assert_eq!(header.name.as_deref(), Some("functions.x"));
        assert_eq!(header.recipient.as_deref(), Some("assistant"));

        let header = parse_header("user:alice", None).unwrap();
        assert_eq!(
            (header.role, header.name.as_deref()),
            (Role::User, Some("alice"))
        );

        assert_eq!(parse_header("<|channel|>", Some(Role::Assistant)), None);
        assert_eq!(
            parse_header("<|channel|>analysis a b c", Some(Role::Assistant)),
            None
        );
    }

    #[test]
    fn malformed_headers_become_text() {
        let (header, text) =
            recover_header("<|channel|>analysis I must refuse", Some(Role::Assistant));
        assert_eq!(header.channel.as_deref(), Some("analysis"));
        assert_eq!(text, "I must refuse");
        let (header, text) = recover_header("assistant  two  spaces ", None);
        assert_eq!(header.role, Role::Assistant);
        assert_eq!(text, "two  spaces ");
    }
}
