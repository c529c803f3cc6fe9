//! One turn's constraint over harmony output: reasoning and other messages stay free; the
//! grammar is switched on when a header opens a constrained message and off at its end token.

use std::collections::BTreeMap;
use std::sync::Arc;

use llguidance::Matcher;
use toktrie::SimpleVob;

use super::forced::RequiredCall;
use super::{GrammarVocab, JsonGrammar, StructuredError, TurnConstraint};
use crate::harmony::{Role, StreamParser, Tokenizer};

/// Where the turn is, as far as the constraint goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Outside a constrained message (reasoning, headers, free messages).
    Free,
    /// Inside a constrained message; `end_token` closes it once the JSON is complete.
    Json {
        /// `<|return|>` for the final answer, `<|call|>` for tool arguments.
        end_token: u32,
    },
}

/// The grammar of the open constrained message.
struct Active {
    matcher: Matcher,
    end_token: u32,
}

/// Follows one assistant turn token by token: [`mask_logits`](Self::mask_logits) before each
/// draw, [`accept`](Self::accept) after it.
pub struct HarmonyConstraint {
    vocab: Arc<GrammarVocab>,
    tokenizer: Arc<Tokenizer>,
    final_grammar: Option<JsonGrammar>,
    tool_grammars: BTreeMap<String, JsonGrammar>,
    /// Forces the next non-analysis header to a call, when one is required.
    required: Option<RequiredCall>,
    /// Reads headers, to know which message is open.
    parser: StreamParser,
    active: Option<Active>,
    /// The prompt's last message from its `<|start|>` (replayed on rollback).
    prompt_tail: Vec<u32>,
    /// Generated tokens accepted so far.
    generated: Vec<u32>,
}

impl HarmonyConstraint {
    /// A constraint for a turn whose output starts after `<|start|>assistant` (call
    /// [`observe_prompt`](Self::observe_prompt) when the prompt ends elsewhere). Every schema
    /// is compiled now, so an unsupported one fails before generation.
    pub fn new(
        vocab: Arc<GrammarVocab>,
        tokenizer: Arc<Tokenizer>,
        constraint: &TurnConstraint,
    ) -> Result<Self, StructuredError> {
        let final_grammar = constraint
            .final_format
            .as_ref()
            .map(|format| JsonGrammar::new(&format.schema(), format.source_name()))
            .transpose()?;
        let tool_grammars = constraint
            .tool_arguments
            .iter()
            .map(|(recipient, schema)| {
                let grammar = JsonGrammar::new(schema, &format!("of tool {recipient}"))?;
                Ok((recipient.clone(), grammar))
            })
            .collect::<Result<BTreeMap<_, _>, StructuredError>>()?;
        for grammar in final_grammar.iter().chain(tool_grammars.values()) {
            grammar.matcher(&vocab)?;
        }
        if let Some(missing) = constraint
            .required_call
            .iter()
            .find(|recipient| !tool_grammars.contains_key(*recipient))
        {
            return Err(StructuredError::Unsupported {
                source_name: format!("of tool {missing}"),
                reason: "a required call needs the tool's argument schema".to_owned(),
            });
        }
        let required = match constraint.required_call.is_empty() {
            true => None,
            false => Some(RequiredCall::new(&tokenizer, &constraint.required_call)?),
        };
        let parser = StreamParser::new(Arc::clone(&tokenizer), Some(Role::Assistant));
        Ok(Self {
            vocab,
            tokenizer,
            final_grammar,
            tool_grammars,
            required,
            parser,
            active: None,
            prompt_tail: Vec::new(),
            generated: Vec::new(),
        })
    }

    /// Reads the prompt's last message from its `<|start|>`: when the prompt already opened a
    /// constrained message (`...<|channel|>final<|message|>{"a":`), generation continues it
    /// under the grammar. A prompt with no `<|start|>` leaves the state as it is.
    pub fn observe_prompt(&mut self, prompt: &[u32]) -> Result<(), StructuredError> {
        let start = self.vocab.specials().start;
        let Some(at) = prompt.iter().rposition(|&id| id == start) else {
            return Ok(());
        };
        self.prompt_tail = prompt[at..].to_vec();
        self.replay(0)
    }

    /// Where the turn is.
    pub fn phase(&self) -> Phase {
        match &self.active {
            Some(active) => Phase::Json {
                end_token: active.end_token,
            },
            None => Phase::Free,
        }
    }

    /// Sets the logits of every token the constraint forbids next to -inf, in place. Free
    /// text may not end the turn with `<|return|>` when the answer has a format: the answer
    /// must come through the final channel, under the grammar.
    pub fn mask_logits(&mut self, row: &mut [f32]) -> Result<(), StructuredError> {
        if row.len() != self.vocab.vocab_size() {
            return Err(StructuredError::VocabMismatch {
                logits: row.len(),
                vocab: self.vocab.vocab_size(),
            });
        }
        let position = self.generated.len();
        let Some(active) = &mut self.active else {
            if let Some(required) = &self.required {
                required.mask_logits(row);
            }
            if self.final_grammar.is_some() {
                let return_ = self.vocab.specials().return_ as usize;
                if let Some(logit) = row.get_mut(return_) {
                    *logit = f32::NEG_INFINITY;
                }
            }
            return Ok(());
        };
        let mut allowed = active
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| generation_error(position, e))?;
        // The grammar's end is `<|return|>` in the vocabulary; the message may need another.
        let grammar_end = self.vocab.specials().return_;
        if allowed.is_allowed(grammar_end) && active.end_token != grammar_end {
            allowed.disallow_token(grammar_end);
            allowed.allow_token(active.end_token);
        }
        if allowed.is_zero() {
            return Err(StructuredError::Generation {
                position,
                reason: "the grammar allows no token".to_owned(),
            });
        }
        apply_mask(&allowed, row);
        Ok(())
    }

    /// Advances past a drawn token: the grammar consumes it inside a constrained message; a
    /// header that opens one switches the grammar on.
    pub fn accept(&mut self, token: u32) -> Result<(), StructuredError> {
        self.advance(token)?;
        self.generated.push(token);
        Ok(())
    }

    /// Forgets the last `tokens` generated tokens (as the KV cache does on a rewind within a
    /// turn): the state is rebuilt by replaying what is kept.
    pub fn rollback(&mut self, tokens: usize) -> Result<(), StructuredError> {
        let keep = self.generated.len().saturating_sub(tokens);
        self.replay(keep)
    }

    /// Generated tokens accepted so far.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// Rebuilds the state from the prompt tail and the first `keep` generated tokens.
    fn replay(&mut self, keep: usize) -> Result<(), StructuredError> {
        let generated = std::mem::take(&mut self.generated);
        self.active = None;
        let before_start = !self.prompt_tail.is_empty();
        if let Some(required) = &mut self.required {
            required.restart(before_start);
        }
        self.parser = match self.prompt_tail.is_empty() {
            true => StreamParser::new(Arc::clone(&self.tokenizer), Some(Role::Assistant)),
            false => StreamParser::new(Arc::clone(&self.tokenizer), None),
        };
        for token in std::mem::take(&mut self.prompt_tail) {
            self.advance(token)?;
            self.prompt_tail.push(token);
        }
        for &token in &generated[..keep.min(generated.len())] {
            self.accept(token)?;
        }
        Ok(())
    }

    fn advance(&mut self, token: u32) -> Result<(), StructuredError> {
        if let Some(active) = &mut self.active {
            if token == active.end_token {
                self.active = None;
            } else {
                active
                    .matcher
                    .consume_token(token)
                    .map_err(|e| generation_error(self.generated.len(), e))?;
            }
        }
        if let Some(required) = &mut self.required {
            let end = self.vocab.specials().end;
            required.accept(token, end, self.generated.len())?;
        }
        let step = self.parser.push(token);
        if step.message_started && step.role == Some(Role::Assistant) {
            self.active = self.grammar_for(&step)?;
        }
        Ok(())
    }

    /// The grammar a newly opened message must follow, if any.
    fn grammar_for(
        &self,
        header: &crate::harmony::ParserStep,
    ) -> Result<Option<Active>, StructuredError> {
        let specials = self.vocab.specials();
        let (grammar, end_token) = if header.channel.as_deref() == Some("final") {
            match &self.final_grammar {
                Some(grammar) => (grammar, specials.return_),
                None => return Ok(None),
            }
        } else {
            let constrained_json = header
                .content_type
                .as_deref()
                .and_then(|kind| kind.strip_prefix(CONSTRAIN_MARKER))
                == Some("json");
            let tool = header
                .recipient
                .as_deref()
                .and_then(|recipient| self.tool_grammars.get(recipient));
            match tool {
                Some(grammar) if constrained_json => {
                    (grammar, specials.call.unwrap_or(specials.end))
                }
                _ => return Ok(None),
            }
        };
        Ok(Some(Active {
            matcher: grammar.matcher(&self.vocab)?,
            end_token,
        }))
    }
}

/// How the harmony parser reports a `<|constrain|>json` content type's prefix.
const CONSTRAIN_MARKER: &str = "<|constrain|>";

fn generation_error(position: usize, error: impl std::fmt::Display) -> StructuredError {
    StructuredError::Generation {
        position,
        reason: error.to_string(),
    }
}

/// -inf for every logit whose bit is clear; all-allowed words are skipped, all-forbidden
/// ones filled.
fn apply_mask(allowed: &SimpleVob, row: &mut [f32]) {
    for (row_chunk, &word) in row.chunks_mut(32).zip(allowed.as_slice()) {
        if word == u32::MAX {
            continue;
        }
        // Most words are all-forbidden outside strings: one fill, no bit tests.
        if word == 0 {
            row_chunk.fill(f32::NEG_INFINITY);
            continue;
        }
        for (bit, logit) in row_chunk.iter_mut().enumerate() {
            if (word >> bit) & 1 == 0 {
                *logit = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structured::ResponseFormat;

    fn tiny_tokenizer() -> Arc<Tokenizer> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-a-bf16/tokenizer.json");
        Arc::new(Tokenizer::from_file(&path).expect("tiny tokenizer"))
    }

    fn gate(constraint: &TurnConstraint) -> (HarmonyConstraint, Arc<Tokenizer>) {
        let tokenizer = tiny_tokenizer();
        let vocab = GrammarVocab::new(&tokenizer, tokenizer.vocab_size()).expect("vocab");
        let gate =
            HarmonyConstraint::new(vocab, Arc::clone(&tokenizer), constraint).expect("constraint");
        (gate, tokenizer)
    }

    fn schema_constraint(schema: serde_json::Value) -> TurnConstraint {
        TurnConstraint::from_response_format(ResponseFormat::JsonSchema {
            schema,
            source_name: "test".into(),
        })
        .expect("schema")
    }

    /// The ids the mask leaves.
    fn allowed(gate: &mut HarmonyConstraint) -> Vec<u32> {
        let mut row = vec![0.0f32; gate.vocab.vocab_size()];
        gate.mask_logits(&mut row).expect("mask");
        (0..row.len() as u32)
            .filter(|&id| row[id as usize] == 0.0)
            .collect()
    }

    fn feed(gate: &mut HarmonyConstraint, tokenizer: &Tokenizer, text: &str) {
        for id in tokenizer.encode_with_specials(text).expect("encode") {
            gate.accept(id).expect("accept");
        }
    }

    #[test]
    fn reasoning_is_free_and_the_final_channel_is_held_to_the_schema() {
        let (mut gate, tokenizer) = gate(&schema_constraint(
            serde_json::json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}),
        ));
        let specials = *tokenizer.specials();
        // Reasoning: everything but `<|return|>`.
        let free = allowed(&mut gate);
        assert_eq!(free.len(), tokenizer.vocab_size() - 1);
        assert!(!free.contains(&specials.return_));
        feed(
            &mut gate,
            &tokenizer,
            "<|channel|>analysis<|message|>thinking<|end|><|start|>assistant<|channel|>final<|message|>",
        );
        assert_eq!(
            gate.phase(),
            Phase::Json {
                end_token: specials.return_
            }
        );
        // Only `{` may open the answer; no special token at all.
        let first: Vec<String> = allowed(&mut gate)
            .iter()
            .map(|&id| tokenizer.decode(&[id]))
            .collect();
        assert!(first.iter().all(|text| text.starts_with('{')), "{first:?}");
        assert!(!first.iter().any(|text| text.contains("<|")), "{first:?}");
        feed(&mut gate, &tokenizer, "{\"ok\":true");
        assert!(!allowed(&mut gate).contains(&specials.return_));
        feed(&mut gate, &tokenizer, "}");
        // Complete: the end token the final channel needs, and nothing else.
        assert_eq!(allowed(&mut gate), vec![specials.return_]);
        gate.accept(specials.return_).expect("accept the end");
        assert_eq!(gate.phase(), Phase::Free);
    }

    #[test]
    fn a_token_the_grammar_refuses_is_an_error_at_its_position() {
        let (mut gate, tokenizer) =
            gate(&schema_constraint(serde_json::json!({"type": "integer"})));
        feed(&mut gate, &tokenizer, "<|channel|>final<|message|>");
        let position = gate.generated().len();
        let letter = tokenizer.encode_ordinary("x").expect("encode")[0];
        let error = gate.accept(letter).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "the output constraint failed at generated token {position}:"
            )),
            "{error}"
        );
    }

    #[test]
    fn tool_arguments_are_constrained_after_constrain_json_and_end_with_call() {
        let constraint = TurnConstraint::default()
            .with_tool_arguments(
                "functions.get_weather",
                serde_json::json!({"type": "object", "properties": {"city": {"enum": ["Paris"]}}, "required": ["city"], "additionalProperties": false}),
            )
            .expect("tool schema");
        let (mut gate, tokenizer) = gate(&constraint);
        let call = tokenizer
            .specials()
            .call
            .expect("tiny tokenizer has <|call|>");
        // A final answer and other tools stay free (and may return).
        feed(
            &mut gate,
            &tokenizer,
            "<|channel|>commentary to=functions.other <|constrain|>json<|message|>",
        );
        assert_eq!(gate.phase(), Phase::Free);
        feed(
            &mut gate,
            &tokenizer,
            "x<|call|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
        );
        assert_eq!(gate.phase(), Phase::Json { end_token: call });
        feed(&mut gate, &tokenizer, "{\"city\":\"Paris\"}");
        assert_eq!(allowed(&mut gate), vec![call]);
    }

    #[test]
    fn a_required_call_forces_the_header_then_holds_the_arguments_to_the_schema() {
        let constraint = TurnConstraint::default()
            .with_tool_arguments(
                "functions.get_weather",
                serde_json::json!({"type": "object", "properties": {"city": {"enum": ["Paris"]}}, "required": ["city"], "additionalProperties": false}),
            )
            .expect("tool schema")
            .with_required_call(&["functions.get_weather".to_owned()])
            .expect("required");
        let (mut gate, tokenizer) = gate(&constraint);
        let specials = *tokenizer.specials();
        let call = specials.call.expect("tiny tokenizer has <|call|>");
        // The prompt ends with `<|start|>assistant`, replayed: the header comes next.
        let prompt = tokenizer
            .encode_with_specials("<|start|>user<|message|>hi<|end|><|start|>assistant")
            .expect("encode");
        gate.observe_prompt(&prompt).expect("observe");
        assert_eq!(allowed(&mut gate), vec![specials.channel]);
        feed(
            &mut gate,
            &tokenizer,
            "<|channel|>analysis<|message|>hmm<|end|><|start|>assistant<|channel|>commentary",
        );
        // Drawing only the allowed token each step writes the rest of the call header.
        while gate.phase() == Phase::Free {
            let next = allowed(&mut gate);
            assert_eq!(next.len(), 1, "{next:?}");
            gate.accept(next[0]).expect("the forced token");
        }
        assert_eq!(gate.phase(), Phase::Json { end_token: call });
        let written = tokenizer.decode(gate.generated());
        assert!(
            written.ends_with(
                "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
            ),
            "{written}"
        );
        feed(&mut gate, &tokenizer, "{\"city\":\"Paris\"}");
        assert_eq!(allowed(&mut gate), vec![call]);
    }

    #[test]
    fn a_required_call_names_a_tool_without_a_schema_in_its_error() {
        let constraint = TurnConstraint {
            required_call: vec!["functions.nowhere".to_owned()],
            ..TurnConstraint::default()
        };
        let tokenizer = tiny_tokenizer();
        let vocab = GrammarVocab::new(&tokenizer, tokenizer.vocab_size()).expect("vocab");
        let error = HarmonyConstraint::new(vocab, Arc::clone(&tokenizer), &constraint)
            .err()
            .expect("refused");
        assert_eq!(
            error.to_string(),
            "cannot constrain output to the JSON schema of tool functions.nowhere: a required call needs the tool's argument schema"
        );
    }

    #[test]
    fn a_prompt_that_opened_the_answer_is_continued_under_the_grammar() {
        let (mut gate, tokenizer) = gate(&schema_constraint(
            serde_json::json!({"type": "array", "items": {"type": "integer"}, "maxItems": 1}),
        ));
        let prompt = tokenizer
            .encode_with_specials(
                "<|start|>user<|message|>hi<|end|><|start|>assistant<|channel|>final<|message|>[7",
            )
            .expect("encode");
        gate.observe_prompt(&prompt).expect("observe");
        assert!(matches!(gate.phase(), Phase::Json { .. }));
        let next: Vec<String> = allowed(&mut gate)
            .iter()
            .map(|&id| tokenizer.decode(&[id]))
            .collect();
        // One item at most: more digits or the closing bracket.
        assert!(next.contains(&"]".to_owned()), "{next:?}");
        assert!(!next.iter().any(|t| t.starts_with(',')), "{next:?}");
    }

    #[test]
    fn rollback_returns_to_the_state_before_the_dropped_tokens() {
        let (mut gate, tokenizer) = gate(&schema_constraint(
            serde_json::json!({"enum": ["yes", "no"]}),
        ));
        feed(&mut gate, &tokenizer, "<|channel|>final<|message|>");
        let at_answer = allowed(&mut gate);
        let before = gate.generated().len();
        feed(&mut gate, &tokenizer, "\"yes\"");
        let added = gate.generated().len() - before;
        assert_eq!(allowed(&mut gate), vec![tokenizer.specials().return_]);
        gate.rollback(added).expect("rollback");
        assert_eq!(gate.generated().len(), before);
        assert_eq!(allowed(&mut gate), at_answer);
        // Back past the header: free again.
        gate.rollback(gate.generated().len()).expect("rollback");
        assert_eq!(gate.phase(), Phase::Free);
    }

    #[test]
    fn a_logits_row_of_the_wrong_size_is_refused() {
        let (mut gate, _) = gate(&schema_constraint(serde_json::json!({"type": "object"})));
        let mut row = vec![0.0; 3];
        assert_eq!(
            gate.mask_logits(&mut row).unwrap_err().to_string(),
            format!(
                "the model's logits have 3 entries but the grammar vocabulary has {}",
                gate.vocab.vocab_size()
            )
        );
    }

    #[test]
    fn the_mask_is_applied_word_by_word() {
        let mut allowed = SimpleVob::alloc(70);
        allowed.allow_token(0);
        allowed.allow_token(33);
        allowed.allow_token(69);
        let mut row = vec![1.0f32; 70];
        apply_mask(&allowed, &mut row);
        let kept: Vec<usize> = (0..70).filter(|&i| row[i] == 1.0).collect();
        assert_eq!(kept, vec![0, 33, 69]);
        assert!(row.iter().all(|&l| l == 1.0 || l == f32::NEG_INFINITY));
    }
}
