//! Sizes from the command line, checked before anything is allocated for them: token counts
//! against the model's positions and the memory for logits, thread and layer counts against
//! the machine, and every sum of them without overflow.

use anyhow::bail;

use crate::memory::planner::format_bytes;
use crate::model::Config;

/// At most this many CPU threads per core the machine reports: more only adds switching, and
/// a typo (`--threads 100000`) once spawned threads until memory ran out.
pub const THREADS_PER_CORE: usize = 4;

/// `score` holds the logits three times at once: the forward pass's output, its log-softmax
/// and the host copy of that.
const SCORE_LOGITS_COPIES: u64 = 3;

/// The sum of the named counts (`("--ids", 40), ("--max-new-tokens", 8)`), or an error naming
/// them when it does not fit in a `usize`.
pub fn total_tokens(parts: &[(&str, usize)]) -> anyhow::Result<usize> {
    parts
        .iter()
        .try_fold(0usize, |total, (_, n)| total.checked_add(*n))
        .ok_or_else(|| {
            let named: Vec<String> = parts
                .iter()
                .map(|(flag, n)| format!("{flag} {n}"))
                .collect();
            anyhow::anyhow!(
                "{} add up to more tokens than can be counted",
                named.join(" + ")
            )
        })
}

/// Fails unless `positions` tokens fit in the model's `max_position_embeddings`; `what` says
/// where the count comes from (`"--ids (40) + --max-new-tokens (8)"`).
pub fn check_positions(config: &Config, positions: usize, what: &str) -> anyhow::Result<()> {
    let limit = config.max_position_embeddings;
    if positions > limit {
        bail!(
            "{what} need {positions} positions, but the model has {limit} (max_position_embeddings in its config.json)"
        );
    }
    Ok(())
}

/// Fails unless `score`'s logits for `tokens` ids over `vocab` entries (f32, held
/// [`SCORE_LOGITS_COPIES`] times) fit in `available_bytes`.
pub fn check_score_logits(tokens: usize, vocab: usize, available_bytes: u64) -> anyhow::Result<()> {
    let need = (tokens as u64)
        .checked_mul(vocab as u64)
        .and_then(|n| n.checked_mul(4 * SCORE_LOGITS_COPIES));
    match need {
        Some(need) if need <= available_bytes => Ok(()),
        _ => {
            let per_token = vocab as u64 * 4 * SCORE_LOGITS_COPIES;
            let most = available_bytes / per_token.max(1);
            bail!(
                "--ids: scoring {tokens} ids needs {} for their logits ({tokens} x {vocab} vocabulary x 4 bytes, {SCORE_LOGITS_COPIES} copies) but {} is available: score at most {most} ids at a time",
                need.map_or_else(
                    || "more bytes than can be counted".to_string(),
                    format_bytes
                ),
                format_bytes(available_bytes)
            )
        }
    }
}

/// The `--threads` value if it is between 1 and [`THREADS_PER_CORE`] x `cores`.
pub fn check_threads(requested: usize, cores: usize) -> anyhow::Result<usize> {
    let most = cores.max(1).saturating_mul(THREADS_PER_CORE);
    if requested == 0 || requested > most {
        bail!(
            "--threads {requested}: use 1 to {most} ({THREADS_PER_CORE} x the {cores} cores this machine reports)"
        );
    }
    Ok(requested)
}

/// The `--layers` value if it is between 1 and the preset's own layer count.
pub fn check_layers(requested: usize, preset: &str, preset_layers: usize) -> anyhow::Result<usize> {
    if requested == 0 || requested > preset_layers {
        bail!("--layers {requested}: {preset} has 1 to {preset_layers} layers");
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_sum_names_its_parts() {
        assert_eq!(
            total_tokens(&[("--ids", 3), ("--max-new-tokens", 4)]).unwrap(),
            7
        );
        let error = total_tokens(&[("--ids", 3), ("--max-new-tokens", usize::MAX)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("--ids 3 + --max-new-tokens {}", usize::MAX)),
            "{error}"
        );
    }

    #[test]
    fn positions_beyond_the_model_name_count_and_limit() {
        let mut config = Config::gpt_oss_20b();
        config.max_position_embeddings = 16;
        assert!(check_positions(&config, 16, "--ids").is_ok());
        let error = check_positions(&config, 40, "--ids")
            .unwrap_err()
            .to_string();
        assert!(error.contains("40 positions"), "{error}");
        assert!(error.contains("has 16 (max_position_embeddings"), "{error}");
    }

    #[test]
    fn score_logits_must_fit_in_memory() {
        // gpt-oss's vocabulary: 2.4 MB of logits per id, three times over.
        assert!(check_score_logits(1000, 201_088, 16 << 30).is_ok());
        let error = check_score_logits(378_000, 201_088, 16 << 30)
            .unwrap_err()
            .to_string();
        assert!(error.contains("scoring 378000 ids"), "{error}");
        assert!(error.contains("at most 7119 ids"), "{error}");
        let error = check_score_logits(usize::MAX, 201_088, 16 << 30)
            .unwrap_err()
            .to_string();
        assert!(error.contains("more bytes than can be counted"), "{error}");
    }

    #[test]
    fn thread_counts_stay_within_four_per_core() {
        assert_eq!(check_threads(64, 16).unwrap(), 64);
        let error = check_threads(100_000, 16).unwrap_err().to_string();
        assert_eq!(
            error,
            "--threads 100000: use 1 to 64 (4 x the 16 cores this machine reports)"
        );
        assert!(check_threads(0, 16).is_err());
    }

    #[test]
    fn layer_counts_stay_within_the_preset() {
        assert_eq!(check_layers(2, "gpt-oss-20b", 24).unwrap(), 2);
        let error = check_layers(10_000_000, "gpt-oss-20b", 24)
            .unwrap_err()
            .to_string();
        assert_eq!(error, "--layers 10000000: gpt-oss-20b has 1 to 24 layers");
    }
}
