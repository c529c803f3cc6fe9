//! The server's KV-cache use, read from its Prometheus `/metrics` text. Each engine names it
//! its own way:
//!
//! - vLLM: `vllm:kv_cache_usage_perc` (a fraction, 0 to 1, despite the name; older versions
//!   `vllm:gpu_cache_usage_perc`).
//! - SGLang: `sglang:token_usage` (fraction of the KV pool in use).
//! - llama-server (`--metrics`): `llamacpp:kv_cache_usage_ratio`, or
//!   `llamacpp:kv_cache_tokens` over the context it was started with.
//! - ossterm serve: `ossterm_kv_cache_used_tokens` over `ossterm_kv_cache_limit_tokens`.
//!
//! Several series of one metric (one per model or engine) are averaged.

/// What a server said about its KV cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerKvUse {
    /// Fraction of the KV cache in use, 0 to 1.
    pub used_fraction: f64,
}

/// Gauges that are already a fraction of the cache in use, in order of preference.
const FRACTION_GAUGES: [&str; 4] = [
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
    "llamacpp:kv_cache_usage_ratio",
];

/// Reads the KV use from a `/metrics` body; `None` when it names none we know.
pub fn kv_use(text: &str) -> Option<ServerKvUse> {
    let fraction = FRACTION_GAUGES
        .iter()
        .find_map(|name| mean(text, name))
        .or_else(|| {
            let used = mean(text, "ossterm_kv_cache_used_tokens")?;
            let limit = mean(text, "ossterm_kv_cache_limit_tokens")?;
            (limit > 0.0).then(|| used / limit)
        })?;
    Some(ServerKvUse {
        used_fraction: fraction.clamp(0.0, 1.0),
    })
}

/// The mean of the samples of metric `name` (any labels); `None` when absent or not finite.
fn mean(text: &str, name: &str) -> Option<f64> {
    let mut sum = 0.0;
    let mut count = 0u32;
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name{labels} value [timestamp]` or `name value`; not a longer name.
        let rest = match rest.chars().next() {
            Some('{') => match rest.find('}') {
                Some(end) => &rest[end + 1..],
                None => continue,
            },
            Some(c) if c.is_whitespace() => rest,
            _ => continue,
        };
        if let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
        {
            sum += value;
            count += 1;
        }
    }
    (count > 0).then(|| sum / f64::from(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engines_gauge_is_read() {
        let vllm = "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
                    # TYPE vllm:kv_cache_usage_perc gauge\n\
                    vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"openai/gpt-oss-120b\"} 0.25\n\
                    vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"openai/gpt-oss-120b\"} 0.75\n";
        assert_eq!(kv_use(vllm).map(|k| k.used_fraction), Some(0.5));
        let sglang = "sglang:token_usage{model_name=\"gpt-oss\"} 0.125\n";
        assert_eq!(kv_use(sglang).map(|k| k.used_fraction), Some(0.125));
        let llama = "llamacpp:kv_cache_usage_ratio 0.0625\nllamacpp:kv_cache_tokens 512\n";
        assert_eq!(kv_use(llama).map(|k| k.used_fraction), Some(0.0625));
        let ours = "ossterm_kv_cache_used_tokens 300\nossterm_kv_cache_limit_tokens 1200\n";
        assert_eq!(kv_use(ours).map(|k| k.used_fraction), Some(0.25));
    }

    #[test]
    fn unknown_or_garbled_metrics_are_none() {
        assert_eq!(kv_use("process_cpu_seconds_total 3\n"), None);
        assert_eq!(kv_use("sglang:token_usage_extra 0.5\n"), None);
        assert_eq!(kv_use("sglang:token_usage NaN\n"), None);
        assert_eq!(kv_use("sglang:token_usage{broken 0.5\n"), None);
        assert_eq!(
            kv_use("ossterm_kv_cache_used_tokens 3\nossterm_kv_cache_limit_tokens 0\n"),
            None
        );
    }
}
