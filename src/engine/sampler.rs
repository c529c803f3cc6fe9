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
}

/// Draws tokens from logits; the same seed and logits give the same tokens.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded with `params.seed`.
    pub fn new(params: SamplingParams) -> Self {
        Self {
            rng: StdRng::seed_from_u64(params.seed),
            params,
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

    /// Picks the next token from a slice of logits.
    pub fn sample_slice(&mut self, logits: &[f32]) -> Result<u32, SamplerError> {
        let candidates = self.candidates(logits);
        if candidates.is_empty() {
            return Err(SamplerError::NoCandidates);
        }
        if candidates.len() == 1 {
            return Ok(candidates[0].0);
        }
        let total: f64 = candidates.iter().map(|c| c.1).sum();
        let mut draw = self.rng.random::<f64>() * total;
        for &(id, p) in &candidates {
            if draw < p {
                return Ok(id);
            }
            draw -= p;
        }
        Ok(candidates[candidates.len() - 1].0)
    }

    /// The tokens that survive the filters with their unnormalized probabilities, most
    /// likely first.
    fn candidates(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let p = &self.params;
        let finite = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(i, &l)| (i as u32, l));
        if p.temperature <= 0.0 {
            // Greedy: the first of the largest logits.
            return finite
                .fold(None::<(u32, f32)>, |best, (i, l)| match best {
                    Some((_, b)) if b >= l => best,
                    _ => Some((i, l)),
                })
                .map(|(i, _)| vec![(i, 1.0)])
                .unwrap_or_default();
        }
        let mut scored: Vec<(u32, f64)> =
            finite.map(|(i, l)| (i, l as f64 / p.temperature)).collect();
        if scored.is_empty() {
            return scored;
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            scored.truncate(p.top_k);
        }
        let max = scored[0].1;
        for c in &mut scored {
            c.1 = (c.1 - max).exp();
        }
        let total: f64 = scored.iter().map(|c| c.1).sum();
        if p.min_p > 0.0 {
            // The largest probability is exp(0) / total.
            let floor = p.min_p / total;
            scored.retain(|c| c.1 / total >= floor);
        }
        if p.top_p < 1.0 {
            let total: f64 = scored.iter().map(|c| c.1).sum();
            let mut cumulative = 0.0;
            let mut keep = 0;
            for c in &scored {
                keep += 1;
                cumulative += c.1 / total;
                if cumulative >= p.top_p {
                    break;
                }
            }
            scored.truncate(keep.max(1));
        }
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn nan_only_logits_are_an_error() {
        let mut s = Sampler::new(params(1.0, 0, 1.0, 0.0));
        assert!(s.sample_slice(&[f32::NAN]).is_err());
    }
}
