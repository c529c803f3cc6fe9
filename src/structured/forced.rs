//! A required tool call (`tool_choice: "required"` or a named function): the model may first
//! reason in one `analysis` message, as long as it likes; the next message is forced, token
//! by token, to `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>` for one
//! of the required functions. The arguments that follow are the gate's tool grammar.
//!
//! Harmony has no token that asks for a call, so llama.cpp's gpt-oss grammar forces one the
//! same way (an optional analysis message, then the call): the header is all the mask leaves.
//! One analysis message, not any number: a model that wants to answer would otherwise pick
//! `analysis` over the call for each new message and write its answer there, forever.

use super::StructuredError;
use crate::harmony::{SpecialIds, Tokenizer};

/// Where a forced turn is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Writing a header: the token sequences still possible, and how many tokens are written.
    Header {
        candidates: Vec<Vec<u32>>,
        written: usize,
    },
    /// Inside an analysis message: free text up to `<|end|>`.
    Reasoning,
    /// The call's header is written; its arguments and `<|call|>` are the tool grammar's.
    Called,
}

/// The header forcing of one turn.
#[derive(Debug, Clone)]
pub(super) struct RequiredCall {
    /// The headers the turn's first message may open with, from `<|channel|>` (the analysis
    /// one first, then the calls').
    headers: Vec<Vec<u32>>,
    /// `<|start|>assistant`, which must open every message after the first.
    start_assistant: Vec<u32>,
    /// Specials free reasoning may not write (all but `<|end|>`).
    reasoning_forbids: Vec<u32>,
    state: State,
}

/// The header of an analysis message, which stays free.
const ANALYSIS_HEADER: &str = "<|channel|>analysis<|message|>";

impl RequiredCall {
    /// Forces a call to one of `recipients` (`functions.get_weather`), for output that starts
    /// right after `<|start|>assistant`.
    pub(super) fn new(
        tokenizer: &Tokenizer,
        recipients: &[String],
    ) -> Result<Self, StructuredError> {
        let encode = |text: &str| {
            tokenizer
                .encode_with_specials(text)
                .map_err(|e| StructuredError::Vocabulary(format!("cannot encode {text:?}: {e}")))
        };
        let mut headers = vec![encode(ANALYSIS_HEADER)?];
        for recipient in recipients {
            headers.push(encode(&format!(
                "<|channel|>commentary to={recipient} <|constrain|>json<|message|>"
            ))?);
        }
        let specials: &SpecialIds = tokenizer.specials();
        let reasoning_forbids = [
            Some(specials.start),
            Some(specials.message),
            Some(specials.channel),
            Some(specials.return_),
            specials.call,
            specials.constrain,
            specials.end_of_text,
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut required = Self {
            start_assistant: encode("<|start|>assistant")?,
            headers,
            reasoning_forbids,
            state: State::Called,
        };
        required.restart(false);
        Ok(required)
    }

    /// Back to the turn's start: right after `<|start|>assistant`, or before `<|start|>`
    /// when `before_start` (a prompt tail is replayed from its `<|start|>`).
    pub(super) fn restart(&mut self, before_start: bool) {
        let candidates = match before_start {
            true => self.after_start_headers(false),
            false => self.headers.clone(),
        };
        self.state = State::Header {
            candidates,
            written: 0,
        };
    }

    /// `<|start|>assistant` followed by each header (`calls_only`: the call headers).
    fn after_start_headers(&self, calls_only: bool) -> Vec<Vec<u32>> {
        let skip = usize::from(calls_only);
        self.headers[skip..]
            .iter()
            .map(|header| [self.start_assistant.as_slice(), header].concat())
            .collect()
    }

    /// Sets every logit the required call forbids next to -inf.
    pub(super) fn mask_logits(&self, row: &mut [f32]) {
        match &self.state {
            State::Header {
                candidates,
                written,
            } => {
                let allowed: Vec<(usize, f32)> = candidates
                    .iter()
                    .filter_map(|candidate| candidate.get(*written))
                    .filter_map(|&id| row.get(id as usize).map(|&logit| (id as usize, logit)))
                    .collect();
                row.fill(f32::NEG_INFINITY);
                for (id, logit) in allowed {
                    // The draw among several headers (reason or call, which function) stays
                    // the model's; a logit of -inf would leave the sampler nothing to draw.
                    row[id] = if logit.is_finite() { logit } else { 0.0 };
                }
            }
            State::Reasoning => {
                for &id in &self.reasoning_forbids {
                    if let Some(logit) = row.get_mut(id as usize) {
                        *logit = f32::NEG_INFINITY;
                    }
                }
            }
            State::Called => {}
        }
    }

    /// Advances past `token`; one the mask did not allow is an error at `position`.
    pub(super) fn accept(
        &mut self,
        token: u32,
        end: u32,
        position: usize,
    ) -> Result<(), StructuredError> {
        match &mut self.state {
            State::Header {
                candidates,
                written,
            } => {
                let at = *written;
                let expected: Vec<u32> = candidates
                    .iter()
                    .filter_map(|c| c.get(at).copied())
                    .collect();
                candidates.retain(|candidate| candidate.get(at) == Some(&token));
                if candidates.is_empty() {
                    return Err(StructuredError::Generation {
                        position,
                        reason: format!(
                            "a tool call is required: token {token} opens no analysis message \
                             or call header (allowed here: {expected:?})"
                        ),
                    });
                }
                *written += 1;
                let complete = candidates.iter().find(|c| c.len() == *written);
                // Headers end at `<|message|>`, so none is a prefix of another.
                let opens_reasoning = complete.map(|header| header.ends_with(&self.headers[0]));
                match opens_reasoning {
                    Some(true) => self.state = State::Reasoning,
                    Some(false) => self.state = State::Called,
                    None => {}
                }
            }
            State::Reasoning if token == end => {
                self.state = State::Header {
                    candidates: self.after_start_headers(true),
                    written: 0,
                };
            }
            State::Reasoning | State::Called => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tokenizer() -> Arc<Tokenizer> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-a-bf16/tokenizer.json");
        Arc::new(Tokenizer::from_file(&path).expect("tiny tokenizer"))
    }

    /// The ids the mask leaves.
    fn allowed(required: &RequiredCall, vocab: usize) -> Vec<u32> {
        let mut row = vec![1.0f32; vocab];
        required.mask_logits(&mut row);
        (0..vocab as u32)
            .filter(|&id| row[id as usize] == 1.0)
            .collect()
    }

    fn feed(required: &mut RequiredCall, tokenizer: &Tokenizer, text: &str) {
        let end = tokenizer.specials().end;
        for id in tokenizer.encode_with_specials(text).expect("encode") {
            required.accept(id, end, 0).expect("allowed");
        }
    }

    #[test]
    fn one_free_reasoning_message_then_the_next_header_is_a_call() {
        let tokenizer = tokenizer();
        let vocab = tokenizer.vocab_size();
        let specials = *tokenizer.specials();
        let recipients = ["functions.a".to_owned(), "functions.b".to_owned()];
        let mut required = RequiredCall::new(&tokenizer, &recipients).expect("required");
        // Every header starts with `<|channel|>`, and nothing else may come first.
        assert_eq!(allowed(&required, vocab), vec![specials.channel]);
        feed(&mut required, &tokenizer, "<|channel|>analysis<|message|>");
        // Reasoning: text and `<|end|>`, no other special.
        let free = allowed(&required, vocab);
        assert!(free.contains(&specials.end));
        for forbidden in [specials.return_, specials.start, specials.channel] {
            assert!(!free.contains(&forbidden), "{forbidden}");
        }
        feed(&mut required, &tokenizer, "let me think<|end|>");
        assert_eq!(allowed(&required, vocab), vec![specials.start]);
        feed(&mut required, &tokenizer, "<|start|>assistant<|channel|>");
        // After the reasoning, only a call: no `final`, no second analysis message.
        let next: Vec<String> = allowed(&required, vocab)
            .iter()
            .map(|&id| tokenizer.decode(&[id]))
            .collect();
        assert!(
            next.iter().all(|t| "commentary".starts_with(t.as_str())),
            "{next:?}"
        );
        feed(
            &mut required,
            &tokenizer,
            "commentary to=functions.b <|constrain|>json<|message|>",
        );
        assert_eq!(required.state, State::Called);
        assert_eq!(allowed(&required, vocab).len(), vocab);
    }

    #[test]
    fn a_token_off_the_headers_is_an_error_naming_what_was_allowed() {
        let tokenizer = tokenizer();
        let specials = *tokenizer.specials();
        let mut required =
            RequiredCall::new(&tokenizer, &["functions.a".to_owned()]).expect("required");
        let error = required
            .accept(specials.return_, specials.end, 3)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!(
                "the output constraint failed at generated token 3: a tool call is required: \
                 token {} opens no analysis message or call header (allowed here: [{}, {}])",
                specials.return_, specials.channel, specials.channel
            )
        );
    }

    #[test]
    fn a_header_whose_logit_is_minus_infinity_can_still_be_drawn() {
        let tokenizer = tokenizer();
        let required =
            RequiredCall::new(&tokenizer, &["functions.a".to_owned()]).expect("required");
        let mut row = vec![f32::NEG_INFINITY; tokenizer.vocab_size()];
        required.mask_logits(&mut row);
        assert_eq!(row[tokenizer.specials().channel as usize], 0.0);
    }
}
