//! Splits text for the tokenizer into chunks short enough that the pre-tokenizer's regex
//! cannot run out of backtracking budget.
//!
//! Oniguruma gives each match attempt a budget (10 million retries); a run of a few
//! megabytes of one letter, of spaces or of `\n/` exhausts it and the `onig` crate panics
//! (`retry-limit-in-match over`). Like tiktoken's callers (Meta's llama3 wrapper splits runs
//! longer than 25,000 characters), the text is encoded chunk by chunk. Cuts are placed where a
//! GPT-style split regex (o200k, cl100k) starts a new piece anyway, so ordinary text encodes
//! to exactly the ids of the unsplit text; only a run with no such place in
//! [`MAX_CHUNK_BYTES`] is cut where it is, as the llama3 wrapper does.

/// A chunk is cut at the last exact place once it grows past this.
pub(crate) const TARGET_CHUNK_BYTES: usize = 64 << 10;
/// A chunk with no exact place to cut is cut here: a quarter of a MiB keeps a greedy run's
/// backtracking far below Oniguruma's 10 million retries.
pub(crate) const MAX_CHUNK_BYTES: usize = 256 << 10;

/// `text` in consecutive chunks of at most [`MAX_CHUNK_BYTES`] (plus one character).
///
/// A cut is exact when it falls before a space or tab that follows a non-space, or between an
/// ASCII letter and an ASCII digit: no match of a GPT-style split regex spans those places
/// (runs of letters, of digits, of punctuation and of whitespace each end there), and the
/// regex has no look-behind, so both sides split as they would in the whole text. No cut
/// falls within `special_bytes` bytes after a `<`, so special-token text (`<|start|>`, never
/// longer than `special_bytes`) is never cut in two. One pass over the text.
pub(crate) fn chunks(text: &str, special_bytes: usize) -> Vec<&str> {
    let mut out = Vec::with_capacity(text.len() / TARGET_CHUNK_BYTES + 1);
    let mut start = 0;
    let mut last_exact = None;
    let mut last_open: Option<usize> = None;
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        let clear_of_specials = last_open.is_none_or(|open| at - open >= special_bytes);
        if at > start && clear_of_specials && previous.is_some_and(|p| is_exact_cut(p, c)) {
            last_exact = Some(at);
        }
        if at - start >= TARGET_CHUNK_BYTES
            && let Some(cut) = last_exact.take()
        {
            out.push(&text[start..cut]);
            start = cut;
        } else if at - start >= MAX_CHUNK_BYTES {
            // No exact place: cut here, or before a `<` that may open special-token text.
            let cut = match last_open {
                Some(open) if open > start && at - open < special_bytes => open,
                _ => at,
            };
            out.push(&text[start..cut]);
            start = cut;
            last_exact = None;
        }
        if c == '<' {
            last_open = Some(at);
        }
        previous = Some(c);
    }
    if start < text.len() || out.is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// Whether a GPT-style split regex always ends a piece between `before` and `after`.
fn is_exact_cut(before: char, after: char) -> bool {
    let space_after_text = matches!(after, ' ' | '\t') && !before.is_whitespace();
    let letter_digit = (before.is_ascii_alphabetic() && after.is_ascii_digit())
        || (before.is_ascii_digit() && after.is_ascii_alphabetic());
    space_after_text || letter_digit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(chunks("", 19), vec![""]);
        assert_eq!(chunks("hello world", 19), vec!["hello world"]);
    }

    #[test]
    fn long_text_is_cut_before_a_space_and_rejoins() {
        let text = "word ".repeat(100_000);
        let parts = chunks(&text, 19);
        assert!(parts.len() > 1);
        assert_eq!(parts.concat(), text);
        for part in &parts[1..] {
            assert!(part.starts_with(' '), "{:?}", &part[..10]);
        }
        assert!(parts.iter().all(|p| p.len() <= TARGET_CHUNK_BYTES + 5));
    }

    #[test]
    fn a_run_without_exact_places_is_cut_at_the_maximum() {
        for unit in ["a", " ", "\n/", "é"] {
            let text = unit.repeat((3 * MAX_CHUNK_BYTES) / unit.len());
            let parts = chunks(&text, 19);
            assert_eq!(parts.concat(), text, "{unit:?}");
            assert!(parts.len() >= 3, "{unit:?}");
            assert!(
                parts.iter().all(|p| p.len() <= MAX_CHUNK_BYTES + 4),
                "{unit:?}"
            );
        }
    }

    #[test]
    fn special_token_text_is_never_cut() {
        let text = "x<|start|>".repeat(MAX_CHUNK_BYTES / 5);
        let parts = chunks(&text, 19);
        assert!(parts.len() > 1);
        assert_eq!(parts.concat(), text);
        for part in &parts {
            assert!(part.starts_with('x') || part.starts_with('<'), "{part:.12}");
            assert!(part.ends_with('>') || part.ends_with('x'), "{part:.12}");
        }
    }

    #[test]
    fn letters_and_digits_are_cut_between_them() {
        let text = "abc123".repeat(30_000);
        let parts = chunks(&text, 19);
        assert!(parts.len() > 1);
        assert_eq!(parts.concat(), text);
        assert!(
            parts[1..]
                .iter()
                .all(|p| p.starts_with('1') || p.starts_with('a'))
        );
    }
}
