//! Counters and gauges behind `GET /metrics`, in Prometheus' text format.

use std::fmt::Write as _;
use std::sync::Mutex;

use crate::engine::{Event, MetricsSample, TurnStats};

/// What the server has done so far; updated by the scheduler, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    state: Mutex<Counters>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Counters {
    requests_total: u64,
    requests_rejected_total: u64,
    prompt_tokens_total: u64,
    cached_prompt_tokens_total: u64,
    generated_tokens_total: u64,
    ttft_seconds_sum: f64,
    ttft_count: u64,
    last_decode_tok_s: f64,
    running: bool,
    engine: MetricsSample,
}

impl ServerMetrics {
    fn with<T>(&self, change: impl FnOnce(&mut Counters) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plain numbers: still readable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        change(&mut state)
    }

    /// A request was accepted into the queue.
    pub fn accepted(&self) {
        self.with(|c| c.requests_total += 1);
    }

    /// A request was refused because the queue was full.
    pub fn rejected(&self) {
        self.with(|c| c.requests_rejected_total += 1);
    }

    /// A generation started (true) or ended (false).
    pub fn set_running(&self, running: bool) {
        self.with(|c| c.running = running);
    }

    /// Takes what the engine reports: turn totals and its metrics samples.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Metrics(sample) => self.with(|c| c.engine = sample.clone()),
            Event::TurnDone { stats, .. } => self.with(|c| add_turn(c, stats)),
            _ => {}
        }
    }

    /// The Prometheus text exposition, with `queue_length` requests waiting.
    pub fn render(&self, queue_length: usize) -> String {
        let c = self.with(|c| c.clone());
        let mut text = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            // Writing to a String cannot fail.
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        metric(
            "ossterm_requests_total",
            "counter",
            "Chat requests accepted.",
            c.requests_total as f64,
        );
        metric(
            "ossterm_requests_rejected_total",
            "counter",
            "Chat requests refused with 429 because the queue was full.",
            c.requests_rejected_total as f64,
        );
        metric(
            "ossterm_prompt_tokens_total",
            "counter",
            "Prompt tokens of finished requests, cached ones included.",
            c.prompt_tokens_total as f64,
        );
        metric(
            "ossterm_prompt_tokens_cached_total",
            "counter",
            "Prompt tokens served from the prefix cache.",
            c.cached_prompt_tokens_total as f64,
        );
        metric(
            "ossterm_generation_tokens_total",
            "counter",
            "Generated tokens, reasoning included.",
            c.generated_tokens_total as f64,
        );
        metric(
            "ossterm_decode_tokens_per_second",
            "gauge",
            "Decode speed of the running generation, else of the last one.",
            if c.engine.generating {
                c.engine.decode_tok_s_now
            } else {
                c.last_decode_tok_s
            },
        );
        metric(
            "ossterm_time_to_first_token_seconds_sum",
            "counter",
            "Sum of the time from submit to first token.",
            c.ttft_seconds_sum,
        );
        metric(
            "ossterm_time_to_first_token_seconds_count",
            "counter",
            "Generations timed for time to first token.",
            c.ttft_count as f64,
        );
        metric(
            "ossterm_kv_cache_used_tokens",
            "gauge",
            "Tokens in the KV cache.",
            c.engine.context_used as f64,
        );
        metric(
            "ossterm_kv_cache_limit_tokens",
            "gauge",
            "The KV cache's capacity (the context limit) in tokens.",
            c.engine.context_limit as f64,
        );
        metric(
            "ossterm_kv_cache_usage_ratio",
            "gauge",
            "KV cache used over its limit (0 to 1).",
            if c.engine.context_limit > 0 {
                c.engine.context_used as f64 / c.engine.context_limit as f64
            } else {
                0.0
            },
        );
        metric(
            "ossterm_kv_cache_bytes",
            "gauge",
            "Bytes the KV cache occupies.",
            c.engine.memory.kv_cache_bytes as f64,
        );
        metric(
            "ossterm_requests_running",
            "gauge",
            "Generations running (at most 1).",
            if c.running { 1.0 } else { 0.0 },
        );
        metric(
            "ossterm_requests_waiting",
            "gauge",
            "Requests waiting in the queue.",
            queue_length as f64,
        );
        text
    }
}

fn add_turn(c: &mut Counters, stats: &TurnStats) {
    c.prompt_tokens_total += (stats.prefill_tokens + stats.cached_tokens) as u64;
    c.cached_prompt_tokens_total += stats.cached_tokens as u64;
    c.generated_tokens_total += stats.decode_tokens as u64;
    if stats.decode_tokens > 0 {
        c.ttft_seconds_sum += stats.time_to_first_token_ms / 1000.0;
        c.ttft_count += 1;
    }
    c.last_decode_tok_s = stats.decode_tok_s();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StopReason;

    #[test]
    fn turns_and_samples_show_in_the_text_format() {
        let metrics = ServerMetrics::default();
        metrics.accepted();
        metrics.rejected();
        metrics.observe(&Event::TurnDone {
            stop: StopReason::Return,
            stats: TurnStats {
                prefill_tokens: 10,
                cached_tokens: 5,
                decode_tokens: 20,
                decode_ms: 1000.0,
                time_to_first_token_ms: 250.0,
                ..TurnStats::default()
            },
        });
        metrics.observe(&Event::Metrics(MetricsSample {
            context_used: 35,
            context_limit: 140,
            ..MetricsSample::default()
        }));
        let text = metrics.render(3);
        for line in [
            "ossterm_requests_total 1\n",
            "ossterm_requests_rejected_total 1\n",
            "ossterm_prompt_tokens_total 15\n",
            "ossterm_prompt_tokens_cached_total 5\n",
            "ossterm_generation_tokens_total 20\n",
            "ossterm_decode_tokens_per_second 20\n",
            "ossterm_time_to_first_token_seconds_sum 0.25\n",
            "ossterm_kv_cache_used_tokens 35\n",
            "ossterm_kv_cache_limit_tokens 140\n",
            "ossterm_kv_cache_usage_ratio 0.25\n",
            "ossterm_requests_waiting 3\n",
            "# TYPE ossterm_requests_total counter\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
