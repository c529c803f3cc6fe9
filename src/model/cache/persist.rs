//! A KV cache as bytes, for snapshots on disk: a [`KvLayout`] (how many positions each layer
//! and each sliding-window snapshot holds) says how big the payload is before a byte of it is
//! read, then the payload is every held key and value, little-endian, in layout order.
//!
//! The payload comes from disk, which is untrusted: the layout is checked against this cache
//! (dtype, heads, layers, window, capacity) before anything is allocated, and a read that
//! fails half-way leaves the cache empty, never half-restored.

use std::io::{Read, Write};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{KvCache, LayerCache, MAX_SNAPSHOTS, Snapshot};

/// How much of each layer a cache holds; a snapshot file's header records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLayout {
    /// The cache's dtype as candle names it ("f16", "bf16", "f32").
    pub dtype: String,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Tokens cached.
    pub len: usize,
    /// Positions each layer holds: `len` for full-attention layers, the last ones (at most
    /// the window) for sliding layers.
    pub layer_positions: Vec<usize>,
    /// The sliding-window snapshots, oldest first.
    pub snapshots: Vec<SnapshotLayout>,
}

/// One sliding-window snapshot: where, and how many positions each layer's window held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotLayout {
    pub pos: usize,
    /// Per layer; always 0 for full-attention layers.
    pub layer_positions: Vec<usize>,
}

/// Why a payload could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum KvPayloadError {
    /// The layout does not describe a state this cache can hold.
    #[error("it does not fit this cache: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Bytes one element of `dtype` takes in a payload; `None` for dtypes a cache never has.
fn element_bytes(dtype: &str) -> Option<u64> {
    match dtype {
        "f16" | "bf16" => Some(2),
        "f32" => Some(4),
        _ => None,
    }
}

impl KvLayout {
    /// Bytes of key and value data the layout describes; `None` when it overflows or names
    /// an unknown dtype.
    pub fn payload_bytes(&self) -> Option<u64> {
        let per_position = 2u64
            .checked_mul(self.kv_heads as u64)?
            .checked_mul(self.head_dim as u64)?
            .checked_mul(element_bytes(&self.dtype)?)?;
        let mut positions = 0u64;
        let all = self
            .layer_positions
            .iter()
            .chain(self.snapshots.iter().flat_map(|s| &s.layer_positions));
        for &held in all {
            positions = positions.checked_add(held as u64)?;
        }
        positions.checked_mul(per_position)
    }
}

impl KvCache {
    /// What the cache holds now.
    pub fn layout(&self) -> Result<KvLayout, KvPayloadError> {
        let held = |window: &Option<(Tensor, Tensor)>| -> Result<usize, KvPayloadError> {
            Ok(match window {
                Some((k, _)) => k.dim(1)?,
                None => 0,
            })
        };
        let layer_positions = self
            .layers
            .iter()
            .map(|layer| match layer {
                LayerCache::Full { .. } => Ok(self.len),
                LayerCache::Sliding { kv } => held(kv),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let snapshots = self
            .snapshots
            .iter()
            .map(|snapshot| {
                Ok(SnapshotLayout {
                    pos: snapshot.pos,
                    layer_positions: snapshot
                        .windows
                        .iter()
                        .map(held)
                        .collect::<Result<Vec<_>, KvPayloadError>>()?,
                })
            })
            .collect::<Result<Vec<_>, KvPayloadError>>()?;
        Ok(KvLayout {
            dtype: self.dtype.as_str().to_string(),
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            len: self.len,
            layer_positions,
            snapshots,
        })
    }

    /// Writes every held key and value in [`KvCache::layout`]'s order.
    pub fn write_payload(&self, out: &mut dyn Write) -> Result<(), KvPayloadError> {
        for layer in &self.layers {
            match layer {
                LayerCache::Full { k, v } => {
                    for t in [k, v] {
                        out.write_all(&le_bytes(&t.narrow(1, 0, self.len)?)?)?;
                    }
                }
                LayerCache::Sliding { kv } => write_window(kv, out)?,
            }
        }
        for snapshot in &self.snapshots {
            for window in &snapshot.windows {
                write_window(window, out)?;
            }
        }
        Ok(())
    }

    /// Whether `layout` describes a state this cache can hold: same dtype, heads, layers and
    /// window, within the capacity, snapshots in order and inside what they can hold. The
    /// error says which part differs.
    pub fn check_layout(&self, layout: &KvLayout) -> Result<(), KvPayloadError> {
        let mismatch = |what: String| Err(KvPayloadError::Mismatch(what));
        let ours = (self.dtype.as_str(), self.kv_heads, self.head_dim);
        let theirs = (layout.dtype.as_str(), layout.kv_heads, layout.head_dim);
        if ours != theirs {
            return mismatch(format!(
                "(dtype, kv heads, head dim) are {theirs:?}, this cache's {ours:?}"
            ));
        }
        if layout.len > self.capacity {
            return mismatch(format!(
                "it holds {} tokens, more than the context limit of {}",
                layout.len, self.capacity
            ));
        }
        self.check_positions("the cache", layout.len, &layout.layer_positions, true)?;
        if layout.snapshots.len() > MAX_SNAPSHOTS {
            return mismatch(format!(
                "{} snapshots, at most {MAX_SNAPSHOTS}",
                layout.snapshots.len()
            ));
        }
        let mut previous = None;
        for snapshot in &layout.snapshots {
            if snapshot.pos > layout.len || previous.is_some_and(|p| p >= snapshot.pos) {
                return mismatch(format!(
                    "a snapshot at {} is out of order or past the {} tokens cached",
                    snapshot.pos, layout.len
                ));
            }
            previous = Some(snapshot.pos);
            let what = format!("the snapshot at {}", snapshot.pos);
            self.check_positions(&what, snapshot.pos, &snapshot.layer_positions, false)?;
        }
        Ok(())
    }

    /// One state's positions per layer: full layers hold `len` (`with_full`) or nothing,
    /// sliding layers at most `min(len, window)`.
    fn check_positions(
        &self,
        what: &str,
        len: usize,
        positions: &[usize],
        with_full: bool,
    ) -> Result<(), KvPayloadError> {
        if positions.len() != self.layers.len() {
            return Err(KvPayloadError::Mismatch(format!(
                "{what} has {} layers, this model {}",
                positions.len(),
                self.layers.len()
            )));
        }
        for (index, (layer, &held)) in self.layers.iter().zip(positions).enumerate() {
            let allowed = match layer {
                LayerCache::Full { .. } if with_full => len,
                LayerCache::Full { .. } => 0,
                LayerCache::Sliding { .. } => len.min(self.window),
            };
            let exact = matches!(layer, LayerCache::Full { .. });
            if held > allowed || (exact && held != allowed) {
                return Err(KvPayloadError::Mismatch(format!(
                    "{what}: layer {index} holds {held} positions where {allowed} fit"
                )));
            }
        }
        Ok(())
    }

    /// Replaces the cache's contents with the payload `input` holds for `layout` (checked
    /// first). On any error the cache is left empty.
    pub fn read_payload(
        &mut self,
        layout: &KvLayout,
        input: &mut dyn Read,
    ) -> Result<(), KvPayloadError> {
        self.check_layout(layout)?;
        self.clear();
        let result = self.read_checked_payload(layout, input);
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn read_checked_payload(
        &mut self,
        layout: &KvLayout,
        input: &mut dyn Read,
    ) -> Result<(), KvPayloadError> {
        let (dtype, heads, dim) = (self.dtype, self.kv_heads, self.head_dim);
        let device = self.device()?;
        let mut read = |positions: usize| -> Result<Option<(Tensor, Tensor)>, KvPayloadError> {
            if positions == 0 {
                return Ok(None);
            }
            let shape = (heads, positions, dim);
            let k = read_tensor(input, dtype, shape, &device)?;
            let v = read_tensor(input, dtype, shape, &device)?;
            Ok(Some((k, v)))
        };
        for (layer, &held) in self.layers.iter_mut().zip(&layout.layer_positions) {
            match layer {
                LayerCache::Full { k, v } => {
                    if let Some((new_k, new_v)) = read(held)? {
                        k.slice_set(&new_k, 1, 0)?;
                        v.slice_set(&new_v, 1, 0)?;
                    }
                }
                LayerCache::Sliding { kv } => *kv = read(held)?,
            }
        }
        let mut snapshots = Vec::with_capacity(layout.snapshots.len());
        for snapshot in &layout.snapshots {
            let windows = snapshot
                .layer_positions
                .iter()
                .map(|&held| read(held))
                .collect::<Result<Vec<_>, _>>()?;
            snapshots.push(Snapshot {
                pos: snapshot.pos,
                windows,
            });
        }
        self.snapshots = snapshots;
        self.len = layout.len;
        Ok(())
    }

    /// The device the cache lives on (its full layers' buffers; the CPU when it has none).
    fn device(&self) -> Result<Device, KvPayloadError> {
        Ok(self
            .layers
            .iter()
            .find_map(|layer| match layer {
                LayerCache::Full { k, .. } => Some(k.device().clone()),
                LayerCache::Sliding { .. } => None,
            })
            .unwrap_or(Device::Cpu))
    }
}

fn write_window(
    window: &Option<(Tensor, Tensor)>,
    out: &mut dyn Write,
) -> Result<(), KvPayloadError> {
    if let Some((k, v)) = window {
        out.write_all(&le_bytes(k)?)?;
        out.write_all(&le_bytes(v)?)?;
    }
    Ok(())
}

/// A tensor's elements as little-endian bytes (the payload's byte order on every machine).
fn le_bytes(t: &Tensor) -> Result<Vec<u8>, KvPayloadError> {
    let flat = t.flatten_all()?;
    let mut bytes = Vec::with_capacity(flat.elem_count() * t.dtype().size_in_bytes());
    match t.dtype() {
        DType::F16 => {
            for x in flat.to_vec1::<half::f16>()? {
                bytes.extend_from_slice(&x.to_bits().to_le_bytes());
            }
        }
        DType::BF16 => {
            for x in flat.to_vec1::<half::bf16>()? {
                bytes.extend_from_slice(&x.to_bits().to_le_bytes());
            }
        }
        DType::F32 => {
            for x in flat.to_vec1::<f32>()? {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        other => {
            return Err(KvPayloadError::Mismatch(format!(
                "a {other:?} cache cannot be saved"
            )));
        }
    }
    Ok(bytes)
}

/// Reads one [heads, positions, dim] tensor of `dtype` (its size is known from the checked
/// layout, so the buffer is bounded by what the cache itself may hold).
fn read_tensor(
    input: &mut dyn Read,
    dtype: DType,
    shape: (usize, usize, usize),
    device: &Device,
) -> Result<Tensor, KvPayloadError> {
    let elements = shape.0 * shape.1 * shape.2;
    let mut bytes = vec![0u8; elements * dtype.size_in_bytes()];
    input.read_exact(&mut bytes)?;
    let tensor = match dtype {
        DType::F16 => from_le(&bytes, shape, device, |b| {
            half::f16::from_bits(u16::from_le_bytes([b[0], b[1]]))
        })?,
        DType::BF16 => from_le(&bytes, shape, device, |b| {
            half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]]))
        })?,
        DType::F32 => from_le(&bytes, shape, device, |b| {
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })?,
        other => {
            return Err(KvPayloadError::Mismatch(format!(
                "a {other:?} cache cannot be restored"
            )));
        }
    };
    Ok(tensor)
}

/// A tensor of `T`s decoded from little-endian `bytes`, `size_of::<T>()` bytes each.
fn from_le<T: candle_core::WithDType>(
    bytes: &[u8],
    shape: (usize, usize, usize),
    device: &Device,
    decode: impl Fn(&[u8]) -> T,
) -> candle_core::Result<Tensor> {
    let values = bytes
        .chunks_exact(std::mem::size_of::<T>())
        .map(decode)
        .collect::<Vec<_>>();
    Tensor::from_vec(values, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;

    /// A 2-layer cache (one full, one sliding with window 128) holding `len` tokens of
    /// distinct values, with a snapshot at 3.
    fn filled(len: usize) -> KvCache {
        let config = Config::gpt_oss_20b().with_layers(2);
        let mut cache = KvCache::new(&config, 300, DType::F16, &Device::Cpu).expect("cache");
        let step = |cache: &mut KvCache, from: usize, n: usize| {
            let values: Vec<f32> = (0..8 * n * 64).map(|i| ((i + from) % 997) as f32).collect();
            let k = Tensor::from_vec(values, (8, n, 64), &Device::Cpu).expect("tensor");
            let v = (&k * 0.5).expect("scaled");
            for layer in 0..2 {
                cache.append(layer, &k, &v).expect("append");
            }
            cache.advance(n);
        };
        step(&mut cache, 0, 3);
        cache.mark_snapshot();
        step(&mut cache, 3, len - 3);
        cache
    }

    fn payload(cache: &KvCache) -> Vec<u8> {
        let mut bytes = Vec::new();
        cache.write_payload(&mut bytes).expect("written");
        bytes
    }

    #[test]
    fn a_payload_read_back_restores_the_same_state() {
        // Past the window: the sliding layer holds only the last 128 of 200 positions.
        let cache = filled(200);
        let layout = cache.layout().expect("layout");
        assert_eq!(layout.layer_positions, vec![128, 200]);
        assert_eq!(layout.snapshots[0].layer_positions, vec![3, 0]);
        let bytes = payload(&cache);
        assert_eq!(Some(bytes.len() as u64), layout.payload_bytes());

        let config = Config::gpt_oss_20b().with_layers(2);
        let mut restored = KvCache::new(&config, 300, DType::F16, &Device::Cpu).expect("cache");
        restored
            .read_payload(&layout, &mut bytes.as_slice())
            .expect("restored");
        assert_eq!(restored.layout().expect("layout"), layout);
        assert_eq!(payload(&restored), bytes, "bit for bit");
        assert_eq!(restored.snapshot_positions(), vec![3]);
    }

    #[test]
    fn a_truncated_payload_leaves_the_cache_empty() {
        let cache = filled(20);
        let layout = cache.layout().expect("layout");
        let bytes = payload(&cache);
        let mut other = filled(10);
        let err = other
            .read_payload(&layout, &mut &bytes[..bytes.len() - 1])
            .expect_err("one byte short");
        assert!(matches!(err, KvPayloadError::Io(_)), "{err}");
        assert_eq!((other.len(), other.snapshot_positions().len()), (0, 0));
    }

    #[test]
    fn layouts_this_cache_cannot_hold_are_refused_naming_the_part() {
        let cache = filled(20);
        let good = cache.layout().expect("layout");
        let refused = |edit: &dyn Fn(&mut KvLayout)| {
            let mut layout = good.clone();
            edit(&mut layout);
            cache
                .check_layout(&layout)
                .expect_err("refused")
                .to_string()
        };
        let text = refused(&|l| l.dtype = "bf16".into());
        assert!(text.contains(r#"("bf16", 8, 64)"#), "{text}");
        let text = refused(&|l| l.len = 301);
        assert!(
            text.contains("301 tokens, more than the context limit of 300"),
            "{text}"
        );
        let text = refused(&|l| l.layer_positions[1] = 19);
        assert!(
            text.contains("layer 1 holds 19 positions where 20 fit"),
            "{text}"
        );
        let text = refused(&|l| l.layer_positions[0] = 129);
        assert!(
            text.contains("layer 0 holds 129 positions where 20 fit"),
            "{text}"
        );
        let text = refused(&|l| l.layer_positions.push(1));
        assert!(text.contains("has 3 layers, this model 2"), "{text}");
        let text = refused(&|l| l.snapshots[0].pos = 21);
        assert!(text.contains("a snapshot at 21 is out of order"), "{text}");
        let text = refused(&|l| l.snapshots[0].layer_positions[1] = 3);
        assert!(
            text.contains("the snapshot at 3: layer 1 holds 3"),
            "{text}"
        );
        let mut huge = good.clone();
        huge.kv_heads = usize::MAX;
        assert_eq!(huge.payload_bytes(), None, "overflow is caught");
    }
}
