//! Token sampling: temperature, top-k, top-p, min-p, seeded; greedy when temperature is 0.

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::protocol::SamplingParams;

/// Why no token could be sampled.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The logits tensor could not be read.
    #[error("cannot read logits: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The logits were empty or all NaN.
    #[error("the logits hold no finite value to sample from")]
    NoCandidates,
    /// The token mask (structured outputs) failed.
    #[error(transparent)]
    Mask(#[from] crate::structured::StructuredError),
}

/// A sampling setting outside the range the sampler supports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{setting} {}", self.problem())]
pub struct BadSetting {
    /// The setting's name as the caller spells it (`top_p`, `--top-p`, `/top-p`).
    pub setting: String,
    /// The refused value.
    pub value: f64,
    /// What is accepted, in words.
    pub range: &'static str,
}

impl BadSetting {
    /// What is wrong, without the setting's name: "is 2: must be a number in [0, 1]".
    pub fn problem(&self) -> String {
        format!("is {}: must be {}", self.value, self.range)
    }
}

/// Checks one float setting by name (`temperature`, `top_p`/`top-p`, `min_p`/`min-p`, with or
/// without a leading `--` or `/`): temperature finite and >= 0 (0 = greedy), top-p in (0, 1]
/// (top-p 0 keeps nothing), min-p in [0, 1] (above 1 even the best token is dropped). The one
/// check behind the command line, the config file and the app's slash commands.
pub fn check_setting(setting: &str, value: f64) -> Result<(), BadSetting> {
    let key = setting.trim_start_matches(['-', '/']).replace('_', "-");
    let (ok, range) = match key.as_str() {
        "temp" | "temperature" => (
            value.is_finite() && value >= 0.0,
            "a number >= 0 (0 = greedy)",
        ),
        "top-p" => (value > 0.0 && value <= 1.0, "a number in (0, 1]"),
        "min-p" => ((0.0..=1.0).contains(&value), "a number in [0, 1]"),
        _ => (false, "one of temperature, top-p or min-p"),
    };
    if ok {
        Ok(())
    } else {
        Err(BadSetting {
            setting: setting.to_string(),
            value,
            range,
        })
    }
}

/// Checks every float setting of `params` with [`check_setting`], naming each as
/// `--temperature`, `--top-p`, `--min-p`.
pub fn check_params(params: &SamplingParams) -> Result<(), BadSetting> {
    check_setting("--temperature", params.temperature)?;
    check_setting("--top-p", params.top_p)?;
    check_setting("--min-p", params.min_p)
}

/// Draws tokens from logits; the same seed and logits give the same tokens.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Each token's weight relative to the best, kept between draws to spare an allocation.
    weights: Vec<f32>,
    /// The ids a mask left, and their logits, when it left few (reused between draws).
    sparse_ids: Vec<u32>,
    sparse_logits: Vec<f32>,
}

/// A mask that leaves at most 1/this of the row is drawn from the tokens it left alone.
const SPARSE_MASK_FRACTION: usize = 16;

impl Sampler {
    /// A sampler seeded with `params.seed`.
    pub fn new(params: SamplingParams) -> Self {
        Self {
            rng: StdRng::seed_from_u64(params.seed),
            params,
            weights: Vec::new(),
            sparse_ids: Vec::new(),
            sparse_logits: Vec::new(),
        }
    }

    /// The settings in use.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` [vocab] (or [1, vocab]).
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32, SamplerError> {
        let row = logits
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        self.sample_slice(&row)
    }

    /// Picks the next token from `logits` after `mask` has set the logits of the tokens it
    /// forbids to -inf, in place on the row read from the tensor (no second copy of the
    /// vocabulary per token); forbidden tokens are never drawn.
    pub fn sample_masked(
        &mut self,
        logits: &Tensor,
        mask: impl FnOnce(&mut [f32]) -> Result<(), crate::structured::StructuredError>,
    ) -> Result<u32, SamplerError> {
        let mut row = logits
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        self.sample_masked_slice(&mut row, mask)
    }

    /// [`Sampler::sample_masked`] on a row of logits already on the host.
    pub fn sample_masked_slice(
        &mut self,
        row: &mut [f32],
        mask: impl FnOnce(&mut [f32]) -> Result<(), crate::structured::StructuredError>,
    ) -> Result<u32, SamplerError> {
        mask(row)?;
        // A grammar often leaves a handful of tokens (a key, a digit, a bracket): weigh those
        // alone, not 201k masked ones. The draw is the same: a masked token weighs 0 either
        // way, and the kept tokens stay in vocabulary order.
        let limit = row.len() / SPARSE_MASK_FRACTION;
        let mut ids = std::mem::take(&mut self.sparse_ids);
        ids.clear();
        ids.extend(
            (0u32..)
                .zip(row.iter())
                .filter(|(_, logit)| **logit != f32::NEG_INFINITY)
                .map(|(id, _)| id)
                .take(limit + 1),
        );
        let token = if ids.len() <= limit {
            let mut logits = std::mem::take(&mut self.sparse_logits);
            logits.clear();
            logits.extend(ids.iter().map(|&id| row[id as usize]));
            let drawn = self.sample_slice(&logits);
            self.sparse_logits = logits;
            drawn.and_then(|index| {
                ids.get(index as usize)
                    .copied()
                    .ok_or(SamplerError::NoCandidates)
            })
        } else {
            self.sample_slice(row)
        };
        self.sparse_ids = ids;
        token
    }

    /// Picks the next token from a slice of logits. On gpt-oss's 201k-token vocabulary this
    /// is host work on every decode step, so it makes at most three passes and ranks only
    /// the few tokens a filter keeps (`cargo bench --bench sampler`).
    pub fn sample_slice(&mut self, logits: &[f32]) -> Result<u32, SamplerError> {
        let p = self.params;
        // f32::max skips NaN; the max is NaN only when every logit is.
        let max = logits.iter().copied().fold(f32::NAN, f32::max);
        if max.is_nan() {
            return Err(SamplerError::NoCandidates);
        }
        // Greedy, or nothing to weigh against the best (+inf, or every logit -inf).
        if p.temperature <= 0.0 || max.is_infinite() {
            let best = logits.iter().position(|&l| l == max).unwrap_or(0);
            return Ok(best as u32);
        }
        let scale = (1.0 / p.temperature) as f32;
        let mut weights = std::mem::take(&mut self.weights);
        weights.clear();
        weights.extend(logits.iter().map(|&l| {
            let w = exp_nonpositive((l - max) * scale);
            // -inf is a masked token: weight exactly 0 (the fast exp floors at e^-87).
            if l.is_nan() || l == f32::NEG_INFINITY {
                0.0
            } else {
                w
            }
        }));
        let token = if p.top_k == 0 && p.top_p >= 1.0 && p.min_p <= 0.0 {
            // No filter: a draw straight from the softmax, in vocabulary order.
            let draw = self.rng.random::<f64>() * sum(&weights);
            pick(
                weights.iter().enumerate().map(|(i, &w)| (i as u32, w)),
                draw,
            )
        } else {
            let candidates = self.candidates(weights.iter().copied());
            let total: f64 = candidates.iter().map(|c| c.1 as f64).sum();
            pick(candidates.into_iter(), self.rng.random::<f64>() * total)
        };
        self.weights = weights;
        // Settings that pass `check_params` always keep the best token.
        token.ok_or(SamplerError::NoCandidates)
    }

    /// The tokens that survive top-k, min-p and top-p, most likely first, from their weights
    /// relative to the best token (1.0; 0 for NaN logits).
    fn candidates(&self, weights: impl ExactSizeIterator<Item = f32>) -> Vec<(u32, f32)> {
        let p = &self.params;
        let min_p = p.min_p as f32;
        // A top-k beyond the vocabulary keeps everything (and must not size a buffer).
        let kept_top = p.top_k.min(weights.len().max(1));
        let kept = weights
            .enumerate()
            .map(|(i, w)| (i as u32, w))
            .filter(|c| c.1 > 0.0 && c.1 >= min_p);
        let mut ranked = match kept_top {
            0 => kept.collect(),
            k => top_k(kept, k),
        };
        if p.top_p < 1.0 {
            // Tokens lighter than (1 - top_p) / n of the mass cannot reach the nucleus: those
            // above it hold top_p of it already, and rank first.
            let total: f64 = ranked.iter().map(|c| c.1 as f64).sum();
            let floor = ((1.0 - p.top_p) * total / ranked.len() as f64 * 0.5) as f32;
            ranked.retain(|c| c.1 >= floor);
            ranked.sort_unstable_by(by_rank);
            let mut cumulative = 0.0;
            let reached = ranked.iter().position(|c| {
                cumulative += c.1 as f64 / total;
                cumulative >= p.top_p
            });
            ranked.truncate(reached.map_or(ranked.len(), |i| i + 1));
        } else {
            ranked.sort_unstable_by(by_rank);
        }
        ranked
    }
}

/// The candidate at `draw` into the cumulative weights (the last one with weight where
/// rounding runs past the end).
fn pick(candidates: impl Iterator<Item = (u32, f32)>, mut draw: f64) -> Option<u32> {
    let mut last = None;
    for (id, w) in candidates {
        if w > 0.0 {
            if draw < w as f64 {
                return Some(id);
            }
            draw -= w as f64;
            last = Some(id);
        }
    }
    last
}

/// The sum of `weights`, in sixteen lanes the compiler can vectorize.
fn sum(weights: &[f32]) -> f64 {
    let mut lanes = [0f32; 16];
    let chunks = weights.chunks_exact(16);
    let tail: f64 = chunks.remainder().iter().map(|&w| w as f64).sum();
    for chunk in chunks {
        for (lane, w) in lanes.iter_mut().zip(chunk) {
            *lane += w;
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
}

/// Heavier first, ties to the lower id.
fn by_rank(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` best of `candidates` (in id order), in one pass: a buffer of up to 2k is cut back
/// to the k best whenever it fills, and anything no heavier than the k-th best so far is
/// skipped (ids rise, so a tie with it ranks below it).
fn top_k(candidates: impl Iterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    let mut buffer = Vec::with_capacity(2 * k);
    let mut floor = f32::NEG_INFINITY;
    for c in candidates {
        if c.1 <= floor {
            continue;
        }
        buffer.push(c);
        if buffer.len() == 2 * k {
            buffer.select_nth_unstable_by(k - 1, by_rank);
            buffer.truncate(k);
            floor = buffer[k - 1].1;
        }
    }
    if buffer.len() > k {
        buffer.select_nth_unstable_by(k - 1, by_rank);
        buffer.truncate(k);
    }
    buffer
}

/// e^x for x <= 0 (0 below -87), within ~2e-7 relative, as straight-line arithmetic that
/// the compiler vectorizes: the libm call per logit was most of the sampler's time.
fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let poly = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    poly * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_mask_draws_what_the_full_row_draws() {
        let row: Vec<f32> = (0..4096).map(|i| ((i * 7919) % 97) as f32 / 10.0).collect();
        let keep = |id: usize| id % 97 == 3 || id == 4095;
        let masked = |r: &mut [f32]| {
            for (id, logit) in r.iter_mut().enumerate() {
                if !keep(id) {
                    *logit = f32::NEG_INFINITY;
                }
            }
            Ok(())
        };
        for settings in [
            params(1.0, 0, 1.0, 0.0),
            params(0.7, 5, 0.9, 0.0),
            params(0.0, 0, 1.0, 0.0),
        ] {
            let mut sparse = Sampler::new(settings);
            let mut full = Sampler::new(settings);
            for _ in 0..200 {
                let mut a = row.clone();
                let drawn = sparse.sample_masked_slice(&mut a, masked).expect("draw");
                let mut b = row.clone();
                masked(&mut b).expect("mask");
                assert_eq!(drawn, full.sample_slice(&b).expect("draw"));
                assert!(keep(drawn as usize), "{drawn}");
            }
        }
    }

    fn params(temperature: f64, top_k: usize, top_p: f64, min_p: f64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            min_p,
            seed: 42,
        }
    }

    fn drawn(params: SamplingParams, logits: &[f32], n: usize) -> std::collections::BTreeSet<u32> {
        let mut sampler = Sampler::new(params);
        (0..n)
            .map(|_| sampler.sample_slice(logits).expect("sample"))
            .collect()
    }

    #[test]
    fn temperature_zero_is_argmax() {
        let logits = [0.1, 3.0, 2.9, -1.0];
        assert_eq!(drawn(params(0.0, 0, 1.0, 0.0), &logits, 50), [1].into());
        let t = Tensor::new(&logits, &candle_core::Device::Cpu).expect("tensor");
        assert_eq!(
            Sampler::new(params(0.0, 0, 1.0, 0.0))
                .sample(&t)
                .expect("sample"),
            1
        );
    }

    #[test]
    fn top_k_keeps_the_k_most_likely() {
        let logits = [1.0, 1.1, 1.2, 1.3, 1.4];
        assert_eq!(drawn(params(1.0, 2, 1.0, 0.0), &logits, 300), [3, 4].into());
        assert_eq!(drawn(params(1.0, 0, 1.0, 0.0), &logits, 300).len(), 5);
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // Probabilities ~ 0.64, 0.24, 0.09, 0.03.
        let logits = [3.0, 2.0, 1.0, 0.0];
        assert_eq!(drawn(params(1.0, 0, 0.5, 0.0), &logits, 300), [0].into());
        assert_eq!(drawn(params(1.0, 0, 0.8, 0.0), &logits, 300), [0, 1].into());
    }

    #[test]
    fn min_p_drops_tokens_below_a_fraction_of_the_best() {
        // Relative to the best: 1, e^-1 = 0.37, e^-2 = 0.14, e^-3 = 0.05.
        let logits = [3.0, 2.0, 1.0, 0.0];
        assert_eq!(drawn(params(1.0, 0, 1.0, 0.2), &logits, 400), [0, 1].into());
        assert_eq!(
            drawn(params(1.0, 0, 1.0, 0.1), &logits, 400),
            [0, 1, 2].into()
        );
    }

    #[test]
    fn low_temperature_sharpens_and_seed_repeats() {
        let logits = [1.0, 0.0];
        let mut cold = Sampler::new(params(0.05, 0, 1.0, 0.0));
        assert!((0..100).all(|_| cold.sample_slice(&logits).expect("sample") == 0));
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                ..params(1.0, 0, 1.0, 0.0)
            });
            (0..32)
                .map(|_| s.sample_slice(&[0.0, 0.0, 0.0]).expect("sample"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn settings_outside_their_range_are_refused_by_name() {
        for (setting, value) in [
            ("temperature", 0.0),
            ("--temperature", 2.5),
            ("top_p", 1.0),
            ("/top-p", 0.01),
            ("min-p", 0.0),
            ("min_p", 1.0),
        ] {
            assert_eq!(check_setting(setting, value), Ok(()), "{setting} {value}");
        }
        for (setting, value, range) in [
            ("--temperature", f64::NAN, "a number >= 0 (0 = greedy)"),
            ("temperature", f64::INFINITY, "a number >= 0 (0 = greedy)"),
            ("temperature", -0.5, "a number >= 0 (0 = greedy)"),
            ("--top-p", 0.0, "a number in (0, 1]"),
            ("top_p", 5.0, "a number in (0, 1]"),
            ("--min-p", 2.0, "a number in [0, 1]"),
            ("min_p", -0.1, "a number in [0, 1]"),
        ] {
            let error = check_setting(setting, value).unwrap_err();
            assert_eq!(error.range, range, "{setting} {value}");
            assert_eq!(
                error.to_string(),
                format!("{setting} is {value}: must be {range}")
            );
        }
        let error = check_params(&params(1.0, 0, 1.0, 2.0)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--min-p is 2: must be a number in [0, 1]"
        );
        assert!(check_params(&SamplingParams::default()).is_ok());
    }

    #[test]
    fn a_top_k_beyond_the_vocabulary_keeps_every_token() {
        let logits = [1.0, 1.1, 1.2];
        assert_eq!(
            drawn(params(1.0, usize::MAX, 1.0, 0.0), &logits, 300),
            [0, 1, 2].into()
        );
    }

    #[test]
    fn nan_only_logits_are_an_error() {
        let mut s = Sampler::new(params(1.0, 0, 1.0, 0.0));
        assert!(s.sample_slice(&[f32::NAN]).is_err());
    }

    /// The filters by their definitions, on a fully sorted copy: the set each keeps.
    fn reference(params: &SamplingParams, logits: &[f32]) -> std::collections::BTreeSet<u32> {
        let mut sorted: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l as f64 / params.temperature))
            .collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if params.top_k > 0 {
            sorted.truncate(params.top_k);
        }
        let max = sorted[0].1;
        let probs: Vec<f64> = sorted.iter().map(|c| (c.1 - max).exp()).collect();
        let mut keep: Vec<usize> = (0..sorted.len())
            .filter(|&i| probs[i] >= params.min_p)
            .collect();
        if params.top_p < 1.0 {
            let total: f64 = keep.iter().map(|&i| probs[i]).sum();
            let mut cumulative = 0.0;
            let reached = keep.iter().position(|&i| {
                cumulative += probs[i] / total;
                cumulative >= params.top_p
            });
            keep.truncate(reached.map_or(keep.len(), |i| i + 1));
        }
        keep.into_iter().map(|i| sorted[i].0).collect()
    }

    #[test]
    fn partial_ranking_keeps_what_a_full_sort_keeps_on_a_real_sized_vocabulary() {
        let mut rng = StdRng::seed_from_u64(5);
        // gpt-oss's vocabulary, logits spread like a model's (a few high, a long tail).
        let logits: Vec<f32> = (0..201_088)
            .map(|_| {
                let u: f32 = rng.random();
                12.0 * u.powi(6) - 4.0
            })
            .collect();
        for (top_k, top_p, min_p) in [
            (0, 0.9, 0.0),
            (0, 0.999, 0.0),
            (40, 0.95, 0.0),
            (0, 1.0, 0.05),
            (50, 1.0, 0.0),
            (0, 0.5, 0.01),
        ] {
            let params = params(0.8, top_k, top_p, min_p);
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let weights = logits.iter().map(|l| exp_nonpositive((l - max) / 0.8));
            let ours: std::collections::BTreeSet<u32> = Sampler::new(params)
                .candidates(weights)
                .into_iter()
                .map(|c| c.0)
                .collect();
            assert_eq!(
                ours,
                reference(&params, &logits),
                "top_k {top_k} top_p {top_p} min_p {min_p}"
            );
            if top_p == 0.999 {
                // A wide nucleus: the prefilter kept all of it.
                assert!(ours.len() > 1000, "{} kept", ours.len());
            }
        }
    }

    #[test]
    fn the_fast_exp_is_close_to_exp() {
        for i in 0..=86_900 {
            let x = -(i as f32) * 0.001;
            let (ours, exact) = (exp_nonpositive(x) as f64, (x as f64).exp());
            assert!(
                (ours - exact).abs() <= 3e-7 * exact,
                "x {x}: {ours} vs {exact}"
            );
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), exp_nonpositive(-87.0));
        assert!(exp_nonpositive(-87.0) < 1e-37);
    }

    #[test]
    fn infinite_logits_do_not_poison_the_draw() {
        let mut s = Sampler::new(params(1.0, 0, 1.0, 0.0));
        assert_eq!(
            s.sample_slice(&[0.0, f32::INFINITY, 1.0]).expect("sample"),
            1
        );
        let all_masked = [f32::NEG_INFINITY; 3];
        assert_eq!(s.sample_slice(&all_masked).expect("sample"), 0);
        let mut t = Sampler::new(params(1.0, 0, 1.0, 0.0));
        let masked = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
        assert!((0..200).all(|_| [1, 3].contains(&t.sample_slice(&masked).expect("sample"))));
    }

    #[test]
    fn masked_tokens_weigh_exactly_nothing() {
        // The fast exp floors at e^-87: a masked (-inf) token used to keep that sliver of
        // weight, so "forbidden" was only "very unlikely".
        let row = Tensor::new(
            &[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.5],
            &candle_core::Device::Cpu,
        )
        .expect("tensor");
        let mut s = Sampler::new(params(1.0, 0, 1.0, 0.0));
        let token = s
            .sample_masked(&row, |r| {
                r[3] = f32::NEG_INFINITY;
                Ok(())
            })
            .expect("sample");
        assert_eq!(token, 1);
        assert_eq!(s.weights, vec![0.0, 1.0, 0.0, 0.0]);
        let error = s
            .sample_masked(&row, |_| {
                Err(crate::structured::StructuredError::Vocabulary("x".into()))
            })
            .unwrap_err();
        assert_eq!(error.to_string(), "cannot build the grammar vocabulary: x");
    }
}
