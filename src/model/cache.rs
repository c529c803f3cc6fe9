//! The KV cache: full-attention layers write into buffers preallocated for the context limit;
//! sliding layers keep only the last `sliding_window` positions. Snapshots of the sliding
//! windows at marked positions let a new chat turn rewind without re-processing the chat.

use candle_core::{DType, Device, Tensor};

use super::config::{Config, LayerKind};
use super::error::ModelError;

mod persist;
pub use persist::{KvLayout, KvPayloadError, SnapshotLayout};

/// At most this many snapshots are kept (the oldest go first): one per assistant turn, so a
/// rewind up to 8 turns back stays exact; the planner budgets the same number.
pub const MAX_SNAPSHOTS: usize = 8;

/// The largest finite f16: keys and values beyond it would be cached as infinities.
const F16_MAX: f32 = 65504.0;

/// One layer's keys and values.
#[derive(Clone)]
enum LayerCache {
    /// [kv_heads, capacity, head_dim] each; positions `0..len` are valid.
    Full { k: Tensor, v: Tensor },
    /// [kv_heads, m, head_dim] each: positions `len-m..len`, m <= window.
    Sliding { kv: Option<(Tensor, Tensor)> },
}

/// Sliding windows as they were at `pos`.
struct Snapshot {
    pos: usize,
    windows: Vec<Option<(Tensor, Tensor)>>,
}

/// Keys and values of every layer for the tokens run so far.
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
    capacity: usize,
    window: usize,
    kv_heads: usize,
    head_dim: usize,
    dtype: DType,
    /// Whether full layers' whole capacity is resident from the start (GPUs).
    allocated_up_front: bool,
    snapshots: Vec<Snapshot>,
}

/// Zeros that on the CPU stay unbacked until written: candle fills a 16-bit buffer value by
/// value (every page resident at once), so 16-bit caches start as zeroed `u16` bits (calloc)
/// reinterpreted in place.
fn zeros(
    shape: (usize, usize, usize),
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    use half::vec::HalfBitsVecExt;

    let elements = shape.0 * shape.1 * shape.2;
    match (dtype, device) {
        (DType::BF16, Device::Cpu) => Tensor::from_vec(
            vec![0u16; elements].reinterpret_into::<half::bf16>(),
            shape,
            device,
        ),
        (DType::F16, Device::Cpu) => Tensor::from_vec(
            vec![0u16; elements].reinterpret_into::<half::f16>(),
            shape,
            device,
        ),
        _ => Tensor::zeros(shape, dtype, device),
    }
}

impl KvCache {
    /// A cache for up to `capacity` tokens.
    pub fn new(
        config: &Config,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if capacity == 0 {
            return Err(ModelError::Invalid(
                "the context limit must be at least 1 token".into(),
            ));
        }
        let shape = (config.num_key_value_heads, capacity, config.head_dim);
        let layers = config
            .layer_types
            .iter()
            .map(|kind| {
                Ok(match kind {
                    // On the CPU zeroed pages are only backed once written; a GPU allocates
                    // (and clears) the whole capacity at once.
                    LayerKind::FullAttention => LayerCache::Full {
                        k: zeros(shape, dtype, device)?,
                        v: zeros(shape, dtype, device)?,
                    },
                    LayerKind::SlidingAttention => LayerCache::Sliding { kv: None },
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: 0,
            capacity,
            window: config.sliding_window,
            kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            dtype,
            allocated_up_front: !device.is_cpu(),
            snapshots: Vec::new(),
        })
    }

    /// Tokens in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The context limit in tokens.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the cache holds for its current length: full layers grow with `len` on the CPU
    /// and hold their whole capacity on a GPU, sliding windows are bounded, snapshots add
    /// their windows.
    pub fn bytes(&self) -> u64 {
        let full_positions = if self.allocated_up_front {
            self.capacity
        } else {
            self.len
        };
        self.bytes_with_full_positions(full_positions)
    }

    /// Bytes holding cached tokens: as [`KvCache::bytes`], with the full layers counted only
    /// up to the tokens cached (the metrics pane's "KV in use").
    pub fn bytes_in_use(&self) -> u64 {
        self.bytes_with_full_positions(self.len)
    }

    fn bytes_with_full_positions(&self, full_positions: usize) -> u64 {
        let per_position = (2 * self.kv_heads * self.head_dim * self.dtype.size_in_bytes()) as u64;
        let mut positions = 0u64;
        for layer in &self.layers {
            positions += match layer {
                LayerCache::Full { .. } => full_positions as u64,
                LayerCache::Sliding { kv } => {
                    kv.as_ref().map_or(0, |(k, _)| k.dim(1).unwrap_or(0)) as u64
                }
            };
        }
        for snapshot in &self.snapshots {
            for window in snapshot.windows.iter().flatten() {
                positions += window.0.dim(1).unwrap_or(0) as u64;
            }
        }
        positions * per_position
    }

    /// Fails when `n` more tokens do not fit.
    pub(crate) fn check_room(&self, n: usize) -> Result<(), ModelError> {
        if self.len + n > self.capacity {
            return Err(ModelError::ContextFull {
                limit: self.capacity,
                needed: self.len + n,
            });
        }
        Ok(())
    }

    /// Adds keys/values `k`, `v` [kv_heads, n, head_dim] of `layer` at positions `len..len+n`
    /// and returns every key/value the new queries may need, with the position of the first.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, usize), ModelError> {
        let n = k.dim(1)?;
        let start = self.len;
        if self.dtype == DType::F16 {
            for (what, t) in [("key", k), ("value", v)] {
                let largest = t
                    .abs()?
                    .max_all()?
                    .to_dtype(DType::F32)?
                    .to_scalar::<f32>()?;
                // A cached NaN would poison every later token too.
                if largest.is_nan() || largest > F16_MAX {
                    return Err(ModelError::Invalid(format!(
                        "layer {layer}: a {what} of magnitude {largest} at positions {start}..{} does not fit the f16 KV cache (largest {F16_MAX}); run with --dtype f32",
                        start + n
                    )));
                }
            }
        }
        match &mut self.layers[layer] {
            LayerCache::Full { k: kb, v: vb } => {
                kb.slice_set(&k.to_dtype(self.dtype)?.contiguous()?, 1, start)?;
                vb.slice_set(&v.to_dtype(self.dtype)?.contiguous()?, 1, start)?;
                Ok((kb.narrow(1, 0, start + n)?, vb.narrow(1, 0, start + n)?, 0))
            }
            LayerCache::Sliding { kv } => {
                let (k, v) = (&k.to_dtype(self.dtype)?, &v.to_dtype(self.dtype)?);
                let (k_all, v_all) = match kv.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, k], 1)?, Tensor::cat(&[&pv, v], 1)?),
                    None => (k.clone(), v.clone()),
                };
                let total = k_all.dim(1)?;
                let first = start + n - total;
                let keep = total.min(self.window);
                *kv = Some((
                    k_all.narrow(1, total - keep, keep)?.contiguous()?,
                    v_all.narrow(1, total - keep, keep)?.contiguous()?,
                ));
                Ok((k_all, v_all, first))
            }
        }
    }

    /// Marks `n` appended tokens as cached (after every layer appended them).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// The sliding windows as they are now (cheap: shares the tensors), to put back with
    /// [`KvCache::restore_sliding_windows`] when a chunk is abandoned half-way.
    pub(crate) fn sliding_windows(&self) -> Vec<Option<(Tensor, Tensor)>> {
        self.layers
            .iter()
            .map(|layer| match layer {
                LayerCache::Sliding { kv } => kv.clone(),
                LayerCache::Full { .. } => None,
            })
            .collect()
    }

    /// Puts back windows taken by [`KvCache::sliding_windows`] at the same length.
    pub(crate) fn restore_sliding_windows(&mut self, windows: Vec<Option<(Tensor, Tensor)>>) {
        for (layer, window) in self.layers.iter_mut().zip(windows) {
            if let LayerCache::Sliding { kv } = layer {
                *kv = window;
            }
        }
    }

    /// Snapshots the sliding windows at the current length (cheap: shares the tensors).
    pub fn mark_snapshot(&mut self) {
        let pos = self.len;
        self.snapshots.retain(|s| s.pos != pos);
        let windows = self.sliding_windows();
        self.snapshots.push(Snapshot { pos, windows });
        self.snapshots.sort_by_key(|s| s.pos);
        if self.snapshots.len() > MAX_SNAPSHOTS {
            self.snapshots.remove(0);
        }
    }

    /// Positions of the snapshots kept.
    pub fn snapshot_positions(&self) -> Vec<usize> {
        self.snapshots.iter().map(|s| s.pos).collect()
    }

    /// Whether the sliding windows still hold what a query at `pos` needs.
    fn windows_cover(&self, pos: usize) -> bool {
        let needed_from = pos - pos.min(self.window.saturating_sub(1));
        self.layers.iter().all(|layer| match layer {
            LayerCache::Full { .. } => true,
            LayerCache::Sliding { kv } => {
                let held = kv.as_ref().map_or(0, |(k, _)| k.dim(1).unwrap_or(0));
                self.len - held <= needed_from
            }
        })
    }

    /// Cuts the cache to its first `pos` tokens. Fails when a sliding window already dropped
    /// positions needed there and no snapshot sits at `pos`; see [`KvCache::rewind`].
    pub fn truncate(&mut self, pos: usize) -> Result<(), ModelError> {
        if pos > self.len {
            return Err(ModelError::Invalid(format!(
                "cannot truncate the cache to {pos} tokens: it holds {}",
                self.len
            )));
        }
        if self.windows_cover(pos) {
            for layer in &mut self.layers {
                if let LayerCache::Sliding { kv } = layer
                    && let Some((k, v)) = kv.take()
                {
                    let held = k.dim(1)?;
                    let drop = self.len - pos;
                    let keep = held - drop.min(held);
                    *kv = if keep == 0 {
                        None
                    } else {
                        Some((k.narrow(1, 0, keep)?, v.narrow(1, 0, keep)?))
                    };
                }
            }
        } else if let Some(snapshot) = self.snapshots.iter().find(|s| s.pos == pos) {
            for (layer, window) in self.layers.iter_mut().zip(&snapshot.windows) {
                if let LayerCache::Sliding { kv } = layer {
                    *kv = window.clone();
                }
            }
        } else {
            return Err(ModelError::Invalid(format!(
                "cannot truncate the cache from {} to {pos} tokens: the sliding windows no longer hold those positions and no snapshot was marked there",
                self.len
            )));
        }
        self.len = pos;
        self.snapshots.retain(|s| s.pos <= pos);
        Ok(())
    }

    /// Goes back to the largest position <= `pos` it can restore exactly (`pos` itself when
    /// nothing needed was overwritten or a snapshot sits there, else the latest snapshot
    /// below, else 0) and returns it; the caller re-feeds the tokens from there.
    pub fn rewind(&mut self, pos: usize) -> usize {
        let pos = pos.min(self.len);
        if self.truncate(pos).is_ok() {
            return pos;
        }
        let best = self
            .snapshots
            .iter()
            .rev()
            .map(|s| s.pos)
            .find(|&p| p <= pos);
        if let Some(p) = best
            && self.truncate(p).is_ok()
        {
            return p;
        }
        self.clear();
        0
    }

    /// Empties the cache (keeps its allocations).
    pub fn clear(&mut self) {
        for layer in &mut self.layers {
            if let LayerCache::Sliding { kv } = layer {
                *kv = None;
            }
        }
        self.len = 0;
        self.snapshots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_cache() -> KvCache {
        let config = Config::gpt_oss_20b().with_layers(2);
        KvCache::new(&config, 8, DType::F16, &Device::Cpu).expect("cache")
    }

    #[test]
    fn an_f16_cache_refuses_values_beyond_its_range_naming_layer_and_positions() {
        let mut cache = f16_cache();
        let shape = (8, 1, 64);
        let fine = Tensor::full(60000f32, shape, &Device::Cpu).expect("tensor");
        let huge = Tensor::full(-70000f32, shape, &Device::Cpu).expect("tensor");
        cache.append(0, &fine, &fine).expect("60000 fits f16");
        let err = cache
            .append(1, &fine, &huge)
            .expect_err("70000 does not fit");
        let text = err.to_string();
        assert!(
            text.contains("layer 1: a value of magnitude 70000 at positions 0..1")
                && text.contains("does not fit the f16 KV cache")
                && text.contains("--dtype f32"),
            "{text}"
        );
        let nan = Tensor::full(f32::NAN, shape, &Device::Cpu).expect("tensor");
        let err = cache.append(0, &nan, &fine).expect_err("NaN");
        assert!(err.to_string().contains("a key of magnitude NaN"), "{err}");
    }

    #[test]
    fn a_16_bit_cache_holds_two_bytes_an_element() {
        let mut cache = f16_cache();
        let k = Tensor::ones((8, 3, 64), DType::F32, &Device::Cpu).expect("tensor");
        for layer in 0..2 {
            cache.append(layer, &k, &k).expect("append");
        }
        cache.advance(3);
        // One full and one sliding layer, 3 positions each, K and V, 8 kv heads x 64.
        assert_eq!(cache.bytes(), 2 * 3 * 2 * 8 * 64 * 2);
    }
}
