//! `stop` sequences: the answer ends where one first appears, cut before it.
//!
//! Text that could still become a stop sequence is held back, so a streamed answer never shows
//! half of one. They apply to the answer (`content`), not to the reasoning, as in vLLM's
//! reasoning-parser mode.

use serde_json::{Map, Value};

use super::error::ApiError;

/// OpenAI's limit on the number of stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;

/// Reads `stop`: a string or an array of up to four non-empty strings.
pub fn parse_stop(fields: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let stops = match fields.get("stop") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(stop)) => vec![stop.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(stop) => Ok(stop.clone()),
                other => Err(super::request::wrong_type(
                    &format!("stop[{index}]"),
                    "a string",
                    other,
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(super::request::wrong_type(
                "stop",
                "a string or an array of strings",
                other,
            ));
        }
    };
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "stop has {} sequences: send at most {MAX_STOP_SEQUENCES}",
                stops.len()
            ),
        ));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            "stop has an empty string: every stop sequence needs at least one character",
        ));
    }
    Ok(stops)
}

/// Watches the answer's text for stop sequences.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text seen but not yet released (it may be the start of a stop sequence).
    held: String,
    matched: bool,
}

impl StopMatcher {
    /// A matcher for these sequences (none: every piece passes straight through).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
            matched: false,
        }
    }

    /// Whether a stop sequence has appeared (later text is dropped).
    pub fn matched(&self) -> bool {
        self.matched
    }

    /// Takes the next piece of the answer; returns the text that may go out now.
    pub fn push(&mut self, piece: &str) -> String {
        if self.matched {
            return String::new();
        }
        self.held.push_str(piece);
        let first = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = first {
            self.matched = true;
            let released = self.held[..at].to_string();
            self.held.clear();
            return released;
        }
        let keep = self.longest_partial_suffix();
        let cut = self.held.len() - keep;
        let released = self.held[..cut].to_string();
        self.held.drain(..cut);
        released
    }

    /// The text still held back, once the answer is over with no stop sequence.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Bytes at the end of `held` that begin some stop sequence (on a char boundary).
    fn longest_partial_suffix(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stops {
            for (start, _) in self.held.char_indices() {
                let tail = &self.held[start..];
                if tail.len() > longest && stop.starts_with(tail) {
                    longest = tail.len();
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tools::tests::fields;
    use serde_json::json;

    #[test]
    fn a_stop_split_across_pieces_cuts_the_answer_before_it() {
        let mut matcher = StopMatcher::new(vec!["END".into()]);
        assert_eq!(matcher.push("Hello E"), "Hello ");
        assert_eq!(matcher.push("N"), "");
        assert!(!matcher.matched());
        assert_eq!(matcher.push("D and more"), "");
        assert!(matcher.matched());
        assert_eq!(matcher.push("later"), "");
    }

    #[test]
    fn held_text_is_released_when_it_stops_matching_or_at_the_end() {
        let mut matcher = StopMatcher::new(vec!["\n\n".into(), "ÉTÉ".into()]);
        assert_eq!(matcher.push("a\n"), "a");
        assert_eq!(matcher.push("b É"), "\nb ");
        assert_eq!(matcher.finish(), "É");
        let mut none = StopMatcher::default();
        assert_eq!(none.push("all of it"), "all of it");
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut matcher = StopMatcher::new(vec!["c".into(), "b".into()]);
        assert_eq!(matcher.push("abc"), "a");
    }

    #[test]
    fn stop_is_a_string_or_up_to_four_strings() {
        assert_eq!(
            parse_stop(&fields(json!({"stop": "x"}))).expect("valid"),
            ["x"]
        );
        assert_eq!(
            parse_stop(&fields(json!({"stop": ["a", "b"]}))).expect("valid"),
            ["a", "b"]
        );
        let error =
            parse_stop(&fields(json!({"stop": ["a", "b", "c", "d", "e"]}))).expect_err("too many");
        assert_eq!(error.message, "stop has 5 sequences: send at most 4");
        let error = parse_stop(&fields(json!({"stop": [""]}))).expect_err("empty");
        assert_eq!(error.param.as_deref(), Some("stop"));
        let error = parse_stop(&fields(json!({"stop": [1]}))).expect_err("not text");
        assert_eq!(error.param.as_deref(), Some("stop[0]"));
        assert_eq!(error.message, "stop[0] must be a string, not a number (1)");
    }
}
