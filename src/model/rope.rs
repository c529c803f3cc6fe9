//! YaRN rotary position embedding (spec 3), half-split ("NeoX") rotation.
//!
//! The frequency table is computed in f32 the way transformers' `_compute_yarn_parameters`
//! does, so positions far into the context rotate exactly as in the reference.

use candle_core::{DType, Device, Tensor};

use super::config::RopeConfig;

/// Inverse frequencies and the attention factor of one model.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    attention_factor: f32,
}

impl Rope {
    /// Builds the table for heads of `head_dim`.
    pub fn new(config: &RopeConfig, head_dim: usize) -> Self {
        let d = head_dim as f64;
        let base = config.theta;
        let factor = config.factor;
        let original = config.original_max_position_embeddings as f64;
        let correction = |rotations: f64| {
            d * (original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
        };
        let (mut low, mut high) = (correction(config.beta_fast), correction(config.beta_slow));
        if config.truncate {
            low = low.floor();
            high = high.ceil();
        }
        let low = low.max(0.0) as f32;
        let mut high = high.min(d - 1.0) as f32;
        if low == high {
            high += 0.001;
        }
        let half = head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| {
                let pos_freq = (base as f32).powf((2 * i) as f32 / head_dim as f32);
                let extrapolation = 1.0 / pos_freq;
                let interpolation = 1.0 / (factor as f32 * pos_freq);
                let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                let extrapolation_weight = 1.0 - ramp;
                interpolation * (1.0 - extrapolation_weight) + extrapolation * extrapolation_weight
            })
            .collect();
        let attention_factor = config.attention_factor.unwrap_or(if factor > 1.0 {
            0.1 * factor.ln() + 1.0
        } else {
            1.0
        }) as f32;
        Self {
            inv_freq,
            attention_factor,
        }
    }

    /// The rotation tables for positions `start..start+n`, attention factor applied; the
    /// query tables also carry `query_scale`.
    pub fn tables(
        &self,
        start: usize,
        n: usize,
        query_scale: f32,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<RopeTables> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in start..start + n {
            for f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos() * self.attention_factor);
                sin.push(angle.sin() * self.attention_factor);
            }
        }
        let scaled = |v: &[f32]| v.iter().map(|x| x * query_scale).collect::<Vec<_>>();
        let (q_cos, q_sin) = (scaled(&cos), scaled(&sin));
        // Built and converted on the host: uploads only, no launches.
        let table = |v: Vec<f32>| {
            Tensor::from_vec(v, (n, half), &Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(device)
        };
        Ok(RopeTables {
            cos: table(cos)?,
            sin: table(sin)?,
            q_cos: table(q_cos)?,
            q_sin: table(q_sin)?,
        })
    }
}

/// One chunk's rotation tables, [n, head_dim / 2] each: for keys, and for queries with the
/// attention's 1/sqrt(head_dim) folded in (rotation is linear), which spares each layer a
/// scaling pass over q (one launch per layer on a GPU).
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
    pub q_cos: Tensor,
    pub q_sin: Tensor,
}

/// Rotates `x` [1, heads, n, head_dim] with tables from [`Rope::tables`].
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yarn_keeps_high_frequencies_and_interpolates_low_ones() {
        let config = crate::model::Config::gpt_oss_20b().rope;
        let rope = Rope::new(&config, 64);
        // i = 0 is pure extrapolation (1.0); the last is pure interpolation.
        assert_eq!(rope.inv_freq[0], 1.0);
        let last = 1.0 / (32.0 * 150_000f32.powf(62.0 / 64.0));
        assert!((rope.inv_freq[31] - last).abs() < 1e-12);
        assert!((rope.attention_factor - (0.1 * 32f32.ln() + 1.0)).abs() < 1e-6);
    }

    #[test]
    fn rotation_is_half_split() -> candle_core::Result<()> {
        let config = crate::model::Config::gpt_oss_20b().rope;
        let rope = Rope::new(&config, 4);
        let tables = rope.tables(3, 1, 0.5, DType::F32, &Device::Cpu)?;
        let (cos, sin) = (&tables.cos, &tables.sin);
        let x = Tensor::new(&[1f32, 2.0, 3.0, 4.0], &Device::Cpu)?.reshape((1, 1, 1, 4))?;
        let y = apply(&x, cos, sin)?.flatten_all()?.to_vec1::<f32>()?;
        let scaled = apply(&x, &tables.q_cos, &tables.q_sin)?;
        let half = (scaled * 2.0)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(half, y, "query tables are the key tables times the scale");
        let c = cos.flatten_all()?.to_vec1::<f32>()?;
        let s = sin.flatten_all()?.to_vec1::<f32>()?;
        let expect = [
            1.0 * c[0] - 3.0 * s[0],
            2.0 * c[1] - 4.0 * s[1],
            3.0 * c[0] + 1.0 * s[0],
            4.0 * c[1] + 2.0 * s[1],
        ];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{y:?} vs {expect:?}");
        }
        Ok(())
    }
}
