//! The tokenizer: a `tokenizers` BPE loaded from the model folder's `tokenizer.json`, with the
//! harmony special tokens looked up by their text (never by hard-coded ids, so the tiny fixture
//! tokenizers, which carry them under other ids, work too).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokenizers::{NormalizedString, OffsetType, PreTokenizedString};

use super::HarmonyError;
use super::text_chunks;

/// Starts a message header.
pub const START: &str = "<|start|>";
/// Ends the header, starts the content.
pub const MESSAGE: &str = "<|message|>";
/// Ends a message.
pub const END: &str = "<|end|>";
/// Introduces the channel in a header.
pub const CHANNEL: &str = "<|channel|>";
/// Ends the model's turn with an answer.
pub const RETURN: &str = "<|return|>";
/// Ends the model's turn with a tool call.
pub const CALL: &str = "<|call|>";
/// Marks a constrained content type (`<|constrain|>json`).
pub const CONSTRAIN: &str = "<|constrain|>";
/// End of text; the model may emit it to stop.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The ids of the specials the renderer and the parser use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// `<|start|>`.
    pub start: u32,
    /// `<|message|>`.
    pub message: u32,
    /// `<|end|>`.
    pub end: u32,
    /// `<|channel|>`.
    pub channel: u32,
    /// `<|return|>`.
    pub return_: u32,
    /// `<|call|>`, when the tokenizer has it.
    pub call: Option<u32>,
    /// `<|constrain|>`, when the tokenizer has it.
    pub constrain: Option<u32>,
    /// `<|endoftext|>`, when the tokenizer has it.
    pub end_of_text: Option<u32>,
}

/// A loaded tokenizer: encoding (with or without specials), byte-exact decoding, specials.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// Every token's bytes by id (byte-level BPE tokens mapped back to bytes; added tokens as
    /// their text); empty for ids the file does not define.
    token_bytes: Vec<Vec<u8>>,
    added_ids: HashMap<String, u32>,
    specials: SpecialIds,
    /// The pre-tokenizer's split regex when the pipeline is gpt-oss's (no normalizer; regex
    /// split, then byte-level mapping): `encode_ordinary` then runs it directly, about 4x
    /// faster than the generic path, which tracks alignments it does not need.
    plain_split: Option<onig::Regex>,
    /// The byte-level alphabet: each byte's stand-in char.
    char_of_byte: [char; 256],
    /// The longest added token's text in bytes: chunk cuts keep clear of that much after a `<`.
    special_bytes: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("specials", &self.specials)
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`; fails naming the file when it cannot be read, is not a byte-level
    /// BPE, or lacks one of the essential harmony specials.
    pub fn from_file(path: &Path) -> Result<Self, HarmonyError> {
        let load_error = |reason: String| HarmonyError::TokenizerLoad {
            path: path.to_owned(),
            reason,
        };
        // Through the model folder's checked open: a FIFO or device is an error, not a hang.
        let text = crate::model::model_file::read_to_string(path)
            .map_err(|e| load_error(e.to_string()))?;
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e| load_error(format!("{e}")))?;
        Self::from_tokenizers(inner, path)
    }

    /// Wraps an already loaded `tokenizers` tokenizer; `path` names it in errors.
    pub fn from_tokenizers(
        inner: tokenizers::Tokenizer,
        path: &Path,
    ) -> Result<Self, HarmonyError> {
        let load_error = |reason: String| HarmonyError::TokenizerLoad {
            path: path.to_owned(),
            reason,
        };
        match inner.get_decoder() {
            Some(tokenizers::DecoderWrapper::ByteLevel(_)) => {}
            _ => {
                return Err(load_error(
                    "its decoder is not ByteLevel; ossterm needs a byte-level BPE tokenizer \
                     like gpt-oss's"
                        .to_owned(),
                ));
            }
        }
        let byte_of_char = byte_level_char_to_byte();
        let mut char_of_byte = ['\0'; 256];
        for (c, byte) in &byte_of_char {
            char_of_byte[usize::from(*byte)] = *c;
        }
        let added = inner.get_added_tokens_decoder();
        let vocab = inner.get_vocab(false);
        let max_id = vocab
            .values()
            .chain(added.keys())
            .copied()
            .max()
            .ok_or_else(|| load_error("it has an empty vocabulary".to_owned()))?;
        let mut token_bytes = vec![Vec::new(); max_id as usize + 1];
        for (text, id) in &vocab {
            let bytes: Option<Vec<u8>> = text
                .chars()
                .map(|c| byte_of_char.get(&c).copied())
                .collect();
            token_bytes[*id as usize] = bytes.ok_or_else(|| {
                load_error(format!(
                    "vocabulary entry {text:?} (id {id}) is not byte-level text"
                ))
            })?;
        }
        let mut added_ids = HashMap::with_capacity(added.len());
        for (id, token) in &added {
            token_bytes[*id as usize] = token.content.as_bytes().to_vec();
            added_ids.insert(token.content.clone(), *id);
        }
        let required = |text: &str| {
            added_ids
                .get(text)
                .copied()
                .ok_or_else(|| HarmonyError::MissingSpecial {
                    path: path.to_owned(),
                    token: text.to_owned(),
                })
        };
        let specials = SpecialIds {
            start: required(START)?,
            message: required(MESSAGE)?,
            end: required(END)?,
            channel: required(CHANNEL)?,
            return_: required(RETURN)?,
            call: added_ids.get(CALL).copied(),
            constrain: added_ids.get(CONSTRAIN).copied(),
            end_of_text: added_ids.get(END_OF_TEXT).copied(),
        };
        let plain_split = plain_split_regex(&inner);
        let special_bytes = added_ids.keys().map(String::len).max().unwrap_or(0);
        Ok(Self {
            inner,
            path: path.to_owned(),
            token_bytes,
            added_ids,
            specials,
            plain_split,
            char_of_byte,
            special_bytes,
        })
    }

    /// The file this tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of an added/special token by its text (`<|start|>`), if the tokenizer has it.
    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.added_ids.get(text).copied()
    }

    /// The ids of the harmony specials.
    pub fn specials(&self) -> &SpecialIds {
        &self.specials
    }

    /// The ids that end the model's turn: `<|return|>`, `<|call|>`, `<|endoftext|>`, those
    /// this tokenizer has.
    pub fn stop_ids(&self) -> Vec<u32> {
        std::iter::once(self.specials.return_)
            .chain(self.specials.call)
            .chain(self.specials.end_of_text)
            .collect()
    }

    /// One more than the largest id the file defines (the model's embedding may have more rows).
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Encodes text as plain text: special-token text such as `<|start|>` is encoded like any
    /// other text (tiktoken's `encode_ordinary`). Runs the normalizer, pre-tokenizer and BPE
    /// model directly, skipping the added-vocabulary split that would match specials.
    /// Any text is accepted: long input is encoded in chunks (see `text_chunks`).
    pub fn encode_ordinary(&self, text: &str) -> Result<Vec<u32>, HarmonyError> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        for chunk in text_chunks::chunks(text, self.special_bytes) {
            ids.extend(match &self.plain_split {
                Some(split) => self.encode_ordinary_fast(split, chunk)?,
                None => self.encode_ordinary_generic(chunk)?,
            });
        }
        Ok(ids)
    }

    /// `encode_ordinary` for gpt-oss's pipeline: split with the pre-tokenizer's regex
    /// (matches and the gaps between them, as `Split` with `Isolated` does), map each piece's
    /// bytes to the byte-level alphabet, run the BPE model on it.
    fn encode_ordinary_fast(
        &self,
        split: &onig::Regex,
        text: &str,
    ) -> Result<Vec<u32>, HarmonyError> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut piece = String::new();
        let model = self.inner.get_model();
        let mut encode_piece = |bytes: &str, ids: &mut Vec<u32>| {
            piece.clear();
            piece.extend(bytes.bytes().map(|b| self.char_of_byte[usize::from(b)]));
            let tokens =
                tokenizers::Model::tokenize(model, &piece).map_err(|e| HarmonyError::Encode {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
            ids.extend(tokens.iter().map(|t| t.id));
            Ok::<(), HarmonyError>(())
        };
        // `find_iter`'s walk (an empty match right after the previous one is skipped), with
        // the search's error returned: `find_iter` panics on it.
        let mut gap_start = 0;
        let mut search_from = 0;
        let mut last_match_end = None;
        let mut region = onig::Region::new();
        while search_from <= text.len() {
            region.clear();
            let found = split
                .search_with_param(
                    text,
                    search_from,
                    text.len(),
                    onig::SearchOptions::SEARCH_OPTION_NONE,
                    Some(&mut region),
                    onig::MatchParam::default(),
                )
                .map_err(|e| HarmonyError::Encode {
                    path: self.path.clone(),
                    reason: format!(
                        "the pre-tokenizer's regex failed at byte {search_from}: {}",
                        e.description()
                    ),
                })?;
            let Some((start, end)) = found.and_then(|_| region.pos(0)) else {
                break;
            };
            if start == end && last_match_end == Some(end) {
                search_from += text[search_from..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
            if start > gap_start {
                encode_piece(&text[gap_start..start], &mut ids)?;
            }
            if end > start {
                encode_piece(&text[start..end], &mut ids)?;
            }
            gap_start = end;
            search_from = end;
            last_match_end = Some(end);
        }
        if gap_start < text.len() {
            encode_piece(&text[gap_start..], &mut ids)?;
        }
        Ok(ids)
    }

    fn encode_ordinary_generic(&self, text: &str) -> Result<Vec<u32>, HarmonyError> {
        let encode_error = |reason: String| HarmonyError::Encode {
            path: self.path.clone(),
            reason,
        };
        let mut normalized = NormalizedString::from(text);
        if let Some(normalizer) = self.inner.get_normalizer() {
            tokenizers::Normalizer::normalize(normalizer, &mut normalized)
                .map_err(|e| encode_error(e.to_string()))?;
        }
        let mut pretokenized = PreTokenizedString::from(normalized);
        if let Some(pre_tokenizer) = self.inner.get_pre_tokenizer() {
            tokenizers::PreTokenizer::pre_tokenize(pre_tokenizer, &mut pretokenized)
                .map_err(|e| encode_error(e.to_string()))?;
        }
        let model = self.inner.get_model();
        pretokenized
            .tokenize(|piece| tokenizers::Model::tokenize(model, piece.get()))
            .map_err(|e| encode_error(e.to_string()))?;
        let encoding = pretokenized
            .into_encoding(None, 0, OffsetType::None)
            .map_err(|e| encode_error(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes text with special-token text recognised (`<|start|>` becomes its id), as
    /// tiktoken's `encode(..., allowed_special="all")`. Any text is accepted: long input is
    /// encoded in chunks (see `text_chunks`), never cutting special-token text.
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>, HarmonyError> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        for chunk in text_chunks::chunks(text, self.special_bytes) {
            let encoding = self
                .inner
                .encode(chunk, false)
                .map_err(|e| HarmonyError::Encode {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
            ids.extend_from_slice(encoding.get_ids());
        }
        Ok(ids)
    }

    /// The bytes of one token (a special's text for specials); empty for an unknown id.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Whether the file defines this id (as a vocabulary entry or an added token).
    pub fn defines(&self, id: u32) -> bool {
        !self.token_bytes(id).is_empty()
    }

    /// Whether the id is an added (special) token.
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .get_added_vocabulary()
            .simple_id_to_token(id)
            .is_some()
    }

    /// The bytes of these tokens, concatenated (unknown ids contribute nothing).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        out
    }

    /// Decodes ids to text with specials written out; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }
}

/// The split regex of a `[Split(regex, Isolated), ByteLevel(no regex)]` pre-tokenizer with no
/// normalizer (gpt-oss's pipeline); `None` for any other pipeline.
fn plain_split_regex(inner: &tokenizers::Tokenizer) -> Option<onig::Regex> {
    if inner.get_normalizer().is_some() {
        return None;
    }
    let pipeline = serde_json::to_value(inner.get_pre_tokenizer()?).ok()?;
    let steps = pipeline.get("pretokenizers")?.as_array()?;
    let [split, byte_level] = steps.as_slice() else {
        return None;
    };
    let is_plain_split =
        split["type"] == "Split" && split["behavior"] == "Isolated" && split["invert"] == false;
    let is_plain_byte_level = byte_level["type"] == "ByteLevel"
        && byte_level["use_regex"] == false
        && byte_level["add_prefix_space"] == false;
    if pipeline["type"] != "Sequence" || !is_plain_split || !is_plain_byte_level {
        return None;
    }
    onig::Regex::new(split["pattern"]["Regex"].as_str()?).ok()
}

/// GPT-2's byte-level alphabet reversed: each printable stand-in char to its byte.
fn byte_level_char_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next_stand_in = 256u32;
    for byte in 0..=255u8 {
        let code = if printable(byte) {
            u32::from(byte)
        } else {
            let code = next_stand_in;
            next_stand_in += 1;
            code
        };
        // Codes are below 0x144, all valid scalar values.
        if let Some(c) = char::from_u32(code) {
            map.insert(c, byte);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_and_generic_plain_encoding_agree() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/o200k_harmony/tokenizer.json"
        );
        let tokenizer = Tokenizer::from_file(Path::new(path)).unwrap();
        let split = tokenizer
            .plain_split
            .as_ref()
            .expect("gpt-oss pipeline detected");
        for text in [
            "",
            "Hello, world!  \n\n  tabs\tand <|start|> specials <|end|>",
            "café 東京 😀 123456 don't I'LL \r\n x",
        ] {
            assert_eq!(
                tokenizer.encode_ordinary_fast(split, text).unwrap(),
                tokenizer.encode_ordinary_generic(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn long_text_encodes_in_chunks_to_the_ids_of_the_whole_text() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/o200k_harmony");
        let tokenizer = Tokenizer::from_file(&Path::new(dir).join("tokenizer.json")).unwrap();
        let split = tokenizer.plain_split.as_ref().expect("gpt-oss pipeline");
        let goldens =
            std::fs::read_to_string(Path::new(dir).join("tokenizer_golden.jsonl")).unwrap();
        let mut text = String::new();
        while text.len() < 4 * text_chunks::MAX_CHUNK_BYTES {
            for line in goldens.lines() {
                let case: serde_json::Value = serde_json::from_str(line).unwrap();
                text.push_str(case["text"].as_str().unwrap());
            }
        }
        // Base64-like text has no spaces: it is cut between letters and digits.
        let blob: String = (0..3 * text_chunks::MAX_CHUNK_BYTES)
            .map(|i| {
                let k = (i * 7919 + i / 13) % 64;
                char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[k])
            })
            .collect();
        for text in [&text, &blob] {
            assert!(text_chunks::chunks(text, tokenizer.special_bytes).len() > 3);
            let whole = tokenizer.encode_ordinary_fast(split, text).unwrap();
            assert!(tokenizer.encode_ordinary(text).unwrap() == whole);
            let whole = tokenizer.inner.encode(text.as_str(), false).unwrap();
            assert!(tokenizer.encode_with_specials(text).unwrap() == whole.get_ids());
        }
    }

    #[test]
    fn byte_level_alphabet_covers_every_byte_once() {
        let map = byte_level_char_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
    }
}
