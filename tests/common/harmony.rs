//! The o200k harmony tokenizer for the harmony tests.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use ossterm::harmony::Tokenizer;

/// The shared reference data beside the checkout.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The o200k tokenizer (28 MB), loaded once per test binary.
pub fn o200k() -> Arc<Tokenizer> {
    static TOKENIZER: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let path = format!("{FIXTURES}/o200k_harmony/tokenizer.json");
            Arc::new(Tokenizer::from_file(Path::new(&path)).expect("o200k tokenizer fixture loads"))
        })
        .clone()
}
