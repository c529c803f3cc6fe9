//! The tokenizer on huge inputs: 10 MB runs that made Oniguruma give up (`retry-limit-in-match
//! over`, a panic that killed the engine thread) encode and decode back to the same text.

use std::time::Instant;

mod common;
use common::harmony::o200k;

const TEN_MB: usize = 10 << 20;

/// Encodes `text` both ways and checks that the ids decode back to it.
fn round_trips(name: &str, text: &str) {
    let tokenizer = o200k();
    let started = Instant::now();
    let ordinary = tokenizer
        .encode_ordinary(text)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        tokenizer.decode(&ordinary) == text,
        "{name}: ordinary ids do not decode back"
    );
    let ordinary_took = started.elapsed();
    let with_specials = tokenizer
        .encode_with_specials(text)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        tokenizer.decode(&with_specials) == text,
        "{name}: ids do not decode back"
    );
    eprintln!(
        "{name}: {} ids, encode_ordinary {ordinary_took:?}, both {:?}",
        ordinary.len(),
        started.elapsed()
    );
}

#[test]
fn ten_megabytes_of_one_letter_encode() {
    round_trips("a x 10 MB", &"a".repeat(TEN_MB));
}

#[test]
fn ten_megabytes_of_one_capital_letter_encode() {
    round_trips("A x 10 MB", &"A".repeat(TEN_MB));
}

#[test]
fn ten_megabytes_of_spaces_encode() {
    round_trips("spaces x 10 MB", &" ".repeat(TEN_MB));
}

#[test]
fn ten_megabytes_of_mixed_text_encode() {
    // Letters, digits, spaces, line breaks, slashes, punctuation, accents, CJK, emoji and
    // special-token text, in a seeded order with long and short runs.
    let units = [
        "a",
        "Z",
        "7",
        " ",
        "\n",
        "/",
        "\n/",
        "!",
        "é",
        "東",
        "😀",
        "<|start|>",
        "\t",
        "'s",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut text = String::with_capacity(TEN_MB + 64);
    while text.len() < TEN_MB {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let unit = units[(state % units.len() as u64) as usize];
        let repeat = if state >> 60 == 0 {
            1 + (state >> 32) % 300_000
        } else {
            1 + (state >> 32) % 4
        };
        for _ in 0..repeat {
            text.push_str(unit);
        }
    }
    round_trips("mixed x 10 MB", &text);
}
