//! Streaming UTF-8 decoding: token bytes in, complete text out, never half a character.

/// Turns a stream of byte chunks into text. A character split across chunks is held back until
/// it is complete; invalid bytes become U+FFFD exactly as `String::from_utf8_lossy` would
/// replace them, so the pieces returned (plus `finish`) always concatenate to the lossy
/// decoding of all the bytes.
#[derive(Debug, Clone, Default)]
pub struct Utf8StreamDecoder {
    pending: Vec<u8>,
}

impl Utf8StreamDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut consumed = 0;
        loop {
            let rest = &self.pending[consumed..];
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    consumed = self.pending.len();
                    break;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    // The prefix up to `valid_up_to` is valid UTF-8 by definition.
                    out.push_str(&String::from_utf8_lossy(&rest[..valid]));
                    consumed += valid;
                    match error.error_len() {
                        Some(invalid_len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            consumed += invalid_len;
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        out
    }

    /// Whether bytes of an incomplete character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_chunks(bytes: &[u8], chunk: usize) -> String {
        let mut decoder = Utf8StreamDecoder::new();
        let mut out = String::new();
        for piece in bytes.chunks(chunk) {
            out.push_str(&decoder.push(piece));
        }
        out + &decoder.finish()
    }

    #[test]
    fn split_characters_are_held_back_until_complete() {
        let mut decoder = Utf8StreamDecoder::new();
        let emoji = "😀".as_bytes();
        assert_eq!(decoder.push(&emoji[..1]), "");
        assert_eq!(decoder.push(&emoji[1..3]), "");
        assert!(decoder.has_pending());
        assert_eq!(decoder.push(&emoji[3..]), "😀");
        assert!(!decoder.has_pending());
    }

    #[test]
    fn pieces_concatenate_to_the_lossy_decoding() {
        let cases: [&[u8]; 5] = [
            "café 😀 東京".as_bytes(),
            b"ok \xe2",
            b"\xff\xfeab\xc3",
            b"\xe2\x82x\xf0\x9f\x98",
            b"\xed\xa0\x80 surrogate",
        ];
        for bytes in cases {
            for chunk in 1..=4 {
                assert_eq!(
                    decode_in_chunks(bytes, chunk),
                    String::from_utf8_lossy(bytes),
                    "{bytes:?} in chunks of {chunk}"
                );
            }
        }
    }
}
