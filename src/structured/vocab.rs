//! The model's vocabulary as llguidance sees it: a token trie built from our tokenizer's
//! token bytes (not through `toktrie_hf_tokenizers`, which pins another `tokenizers`).

use std::sync::Arc;

use llguidance::ParserFactory;
use toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

use super::StructuredError;
use crate::harmony::{SpecialIds, Tokenizer};

/// The vocabulary and llguidance's per-vocabulary state (its parser factory), built once per
/// model and shared by every constraint.
pub struct GrammarVocab {
    factory: ParserFactory,
    specials: SpecialIds,
    vocab_size: usize,
}

impl std::fmt::Debug for GrammarVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarVocab")
            .field("vocab_size", &self.vocab_size)
            .field("specials", &self.specials)
            .finish()
    }
}

impl GrammarVocab {
    /// The vocabulary of `tokenizer` over `vocab_size` ids (the model's logits row, which may
    /// be longer than the tokenizer: ids it does not define are never allowed). Specials keep
    /// llguidance's special marker, so no grammar can reach them through text.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize) -> Result<Arc<Self>, StructuredError> {
        let specials = *tokenizer.specials();
        let vocab_ids = u32::try_from(vocab_size).map_err(|_| {
            StructuredError::Vocabulary(format!("{vocab_size} tokens do not fit a u32 id"))
        })?;
        let words: Vec<Vec<u8>> = (0..vocab_ids)
            .map(|id| {
                let bytes = tokenizer.token_bytes(id);
                if bytes.is_empty() || !tokenizer.is_special(id) {
                    bytes.to_vec()
                } else {
                    let mut marked = Vec::with_capacity(bytes.len() + 1);
                    marked.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    marked.extend_from_slice(bytes);
                    marked
                }
            })
            .collect();
        // The grammar's "end" is reported as `<|return|>`; the gate maps it to the end token
        // the open message needs.
        let info = TokRxInfo::new(vocab_ids, specials.return_);
        let trie = catch_panic("building the token trie", || TokTrie::from(&info, &words))?;
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| StructuredError::Vocabulary(e.to_string()))?;
        // Warnings go to the error we return, not to the terminal the app draws on.
        factory.quiet();
        Ok(Arc::new(Self {
            factory,
            specials,
            vocab_size,
        }))
    }

    /// A vocabulary of the 256 single bytes (and a few specials), for checking a schema before
    /// the model is loaded: whether llguidance can compile it does not depend on the tokens.
    pub(super) fn bytes_only() -> Result<ParserFactory, StructuredError> {
        let mut factory = ParserFactory::new_simple(&ApproximateTokEnv::single_byte_env())
            .map_err(|e| StructuredError::Vocabulary(e.to_string()))?;
        factory.quiet();
        Ok(factory)
    }

    /// llguidance's parser factory for this vocabulary.
    pub(super) fn factory(&self) -> &ParserFactory {
        &self.factory
    }

    /// The harmony specials' ids.
    pub fn specials(&self) -> &SpecialIds {
        &self.specials
    }

    /// Ids in the vocabulary (the logits row's length).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

/// Runs library code that asserts on its input, turning a panic into an error.
fn catch_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, StructuredError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a check in the library failed");
        StructuredError::Vocabulary(format!("{what}: {reason}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_tokenizer() -> Tokenizer {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-a-bf16/tokenizer.json");
        Tokenizer::from_file(&path).expect("tiny tokenizer")
    }

    #[test]
    fn specials_are_marked_and_ids_past_the_tokenizer_are_empty() {
        let tokenizer = tiny_tokenizer();
        let vocab = GrammarVocab::new(&tokenizer, tokenizer.vocab_size() + 7).expect("vocab");
        let trie = vocab.factory().tok_env().tok_trie();
        assert_eq!(trie.vocab_size(), tokenizer.vocab_size() + 7);
        let end = tokenizer.specials().end;
        assert!(trie.is_special_token(end));
        assert_eq!(trie.token(end)[0], TokTrie::SPECIAL_TOKEN_MARKER);
        // The text `<|end|>` does not reach the special token.
        assert_ne!(trie.token_id(b"<|end|>"), Some(end));
        assert!(trie.token(tokenizer.vocab_size() as u32 + 3).is_empty());
        let a = tokenizer.encode_ordinary("a").expect("encode")[0];
        assert_eq!(trie.token(a), b"a");
    }
}
