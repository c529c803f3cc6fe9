//! What the metrics pane draws from: the engine's latest sample, this turn's prefill and
//! decode speeds as they arrive, and the finished turns' speeds for the sparklines.

use std::collections::VecDeque;

use crate::engine::TurnStats;
use crate::engine::protocol::MetricsSample;

/// Decode-speed points kept for the sparkline (about a minute at two samples a second).
pub const SPEED_HISTORY_LEN: usize = 120;
/// Finished turns whose speeds are kept beside this turn's.
pub const TURN_HISTORY_LEN: usize = 64;

/// One finished turn's average speeds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TurnSpeed {
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
}

/// Live metrics from the engine.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub latest: Option<MetricsSample>,
    /// This turn's decode tok/s samples, oldest first (the last turn's until the next starts).
    pub decode_history: VecDeque<f64>,
    /// This turn's prefill tok/s after each prompt chunk (the last turn's until the next).
    pub prefill_history: Vec<f64>,
    /// Finished turns' average speeds, oldest first.
    pub turns: VecDeque<TurnSpeed>,
    /// True from a turn's first sample to its `TurnDone`.
    in_turn: bool,
}

impl Metrics {
    /// Takes a sample: a generating one starts a new turn's speeds or adds to them.
    pub(super) fn push(&mut self, sample: MetricsSample) {
        if sample.generating {
            if !self.in_turn {
                self.in_turn = true;
                self.decode_history.clear();
                self.prefill_history.clear();
            }
            // Samples sent between prompt chunks have no generated token yet.
            if sample.turn.decode_tokens == 0 {
                if sample.turn.prefill_tokens > 0 {
                    self.prefill_history.push(sample.turn.prefill_tok_s());
                }
            } else {
                if self.decode_history.len() == SPEED_HISTORY_LEN {
                    self.decode_history.pop_front();
                }
                self.decode_history.push_back(sample.decode_tok_s_now);
            }
        }
        self.latest = Some(sample);
    }

    /// A turn ended with `stats`: its averages join the finished turns.
    pub(super) fn turn_done(&mut self, stats: &TurnStats) {
        self.in_turn = false;
        if self.turns.len() == TURN_HISTORY_LEN {
            self.turns.pop_front();
        }
        self.turns.push_back(TurnSpeed {
            prefill_tok_s: stats.prefill_tok_s(),
            decode_tok_s: stats.decode_tok_s(),
        });
        // One slice, so `previous_turns` can lend it (64 entries: cheap).
        self.turns.make_contiguous();
    }

    /// The finished turns to draw beside this turn's live points: all of them during a turn;
    /// after it, all but the last, whose live points are still shown (unless it had none).
    pub fn previous_turns(&self) -> &[TurnSpeed] {
        let turns = self.turns.as_slices().0;
        let live = !self.decode_history.is_empty() || !self.prefill_history.is_empty();
        if self.in_turn || !live {
            return turns;
        }
        &turns[..turns.len().saturating_sub(1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        generating: bool,
        prefill_tokens: usize,
        decode_tokens: usize,
        now: f64,
    ) -> MetricsSample {
        MetricsSample {
            turn: TurnStats {
                prefill_tokens,
                prefill_ms: 100.0,
                decode_tokens,
                decode_ms: 1000.0,
                ..TurnStats::default()
            },
            decode_tok_s_now: now,
            generating,
            ..MetricsSample::default()
        }
    }

    #[test]
    fn a_turn_keeps_its_prefill_and_decode_points_and_the_next_one_starts_afresh() {
        let mut metrics = Metrics::default();
        metrics.push(sample(true, 512, 0, 0.0));
        metrics.push(sample(true, 1024, 0, 0.0));
        metrics.push(sample(true, 1024, 5, 18.0));
        metrics.push(sample(true, 1024, 9, 21.0));
        assert_eq!(metrics.prefill_history, [5120.0, 10240.0]);
        assert_eq!(metrics.decode_history, [18.0, 21.0]);
        let done = TurnStats {
            prefill_tokens: 1024,
            prefill_ms: 100.0,
            decode_tokens: 20,
            decode_ms: 1000.0,
            ..TurnStats::default()
        };
        metrics.turn_done(&done);
        metrics.push(sample(false, 1024, 20, 20.0));
        assert_eq!(
            metrics.decode_history,
            [18.0, 21.0],
            "shown until the next turn"
        );
        assert!(
            metrics.previous_turns().is_empty(),
            "the last turn is the live one"
        );

        metrics.push(sample(true, 30, 0, 0.0));
        assert_eq!(metrics.prefill_history, [300.0]);
        assert!(metrics.decode_history.is_empty());
        assert_eq!(
            metrics.previous_turns(),
            [TurnSpeed {
                prefill_tok_s: 10240.0,
                decode_tok_s: 20.0
            }]
        );
    }

    #[test]
    fn only_the_last_turns_are_kept() {
        let mut metrics = Metrics::default();
        for i in 0..TURN_HISTORY_LEN + 3 {
            metrics.turn_done(&TurnStats {
                decode_tokens: i,
                decode_ms: 1000.0,
                ..TurnStats::default()
            });
        }
        assert_eq!(metrics.previous_turns().len(), TURN_HISTORY_LEN);
        assert_eq!(metrics.previous_turns()[0].decode_tok_s, 3.0);
    }
}
