//! The tensor inventory of a checkpoint (names, dtypes, shapes) read from safetensors headers
//! alone — no weight bytes are touched — or generated for a synthetic model.
//!
//! A safetensors file starts with an 8-byte little-endian header length, then that many bytes
//! of JSON: `{"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ..}`.
//! Sharded checkpoints list their shards in `model.safetensors.index.json`'s `weight_map`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::model::{Config, model_file};

/// A header larger than this is not a real safetensors header (guards a huge allocation).
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// Errors reading safetensors headers.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The folder has neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error(
        "{dir} has no model.safetensors or model.safetensors.index.json: point --model at a folder with the checkpoint"
    )]
    NoWeights { dir: PathBuf },
    /// The file is not a well-formed safetensors file.
    #[error("{path} is not a valid safetensors file: {problem}")]
    Malformed { path: PathBuf, problem: String },
}

/// One tensor as the checkpoint stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Full name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// safetensors dtype spelling: `BF16`, `F16`, `F32`, `I32`, `U8`.
    pub dtype: String,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    fn new(name: String, dtype: &str, shape: &[usize]) -> Self {
        Self {
            name,
            dtype: dtype.to_string(),
            shape: shape.to_vec(),
        }
    }

    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// Bytes per element as stored (1 for unknown byte types).
    pub fn stored_element_bytes(&self) -> u64 {
        match self.dtype.as_str() {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "BF16" | "F16" | "I16" | "U16" => 2,
            _ => 1,
        }
    }
}

/// Reads the inventory of the checkpoint in `dir` (single file or sharded).
pub fn read_dir(dir: &Path) -> Result<Vec<TensorInfo>, InventoryError> {
    // `exists`, not `is_file`: a FIFO or directory here is reported as such by the read.
    let single = dir.join("model.safetensors");
    if single.exists() {
        return read_header(&single);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return Err(InventoryError::NoWeights {
            dir: dir.to_path_buf(),
        });
    }
    let mut tensors = Vec::new();
    for shard in shard_files(&index)? {
        tensors.extend(read_header(&dir.join(shard))?);
    }
    Ok(tensors)
}

/// The shard file names listed in a `model.safetensors.index.json`, sorted and unique.
pub fn shard_files(index: &Path) -> Result<Vec<String>, InventoryError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = model_file::read_to_string(index).map_err(|source| InventoryError::Read {
        path: index.to_path_buf(),
        source,
    })?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| InventoryError::Malformed {
        path: index.to_path_buf(),
        problem: format!("index JSON: {e}"),
    })?;
    let shards: BTreeSet<String> = parsed.weight_map.into_values().collect();
    let dir = index.parent().unwrap_or(Path::new("."));
    for shard in &shards {
        model_file::shard_in_dir(dir, shard).map_err(|problem| InventoryError::Malformed {
            path: index.to_path_buf(),
            problem: format!("weight_map {problem}"),
        })?;
    }
    Ok(shards.into_iter().collect())
}

/// Reads one file's header and checks that every tensor's bytes lie inside the file.
pub fn read_header(path: &Path) -> Result<Vec<TensorInfo>, InventoryError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        dtype: String,
        shape: Vec<usize>,
        data_offsets: [u64; 2],
    }
    let read_err = |source| InventoryError::Read {
        path: path.to_path_buf(),
        source,
    };
    let malformed = |problem: String| InventoryError::Malformed {
        path: path.to_path_buf(),
        problem,
    };
    let mut file = model_file::open(path).map_err(read_err)?;
    let file_bytes = file.metadata().map_err(read_err)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| malformed(format!("only {file_bytes} bytes, shorter than a header")))?;
    let header_bytes = u64::from_le_bytes(len_bytes);
    if header_bytes > MAX_HEADER_BYTES || 8 + header_bytes > file_bytes {
        return Err(malformed(format!(
            "header length {header_bytes} does not fit a file of {file_bytes} bytes (truncated?)"
        )));
    }
    let mut header = vec![0u8; header_bytes as usize];
    file.read_exact(&mut header).map_err(read_err)?;
    let entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| malformed(format!("header JSON: {e}")))?;
    let data_bytes = file_bytes - 8 - header_bytes;
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let entry: Entry =
            serde_json::from_value(value).map_err(|e| malformed(format!("tensor {name}: {e}")))?;
        let [begin, end] = entry.data_offsets;
        if end > data_bytes || begin > end {
            return Err(malformed(format!(
                "tensor {name} needs bytes {begin}..{end} but the file holds {data_bytes} data bytes (truncated download?)"
            )));
        }
        let tensor = TensorInfo {
            name,
            dtype: entry.dtype,
            shape: entry.shape,
        };
        // The planner multiplies shapes out in u64: a shape must match the bytes it claims
        // (which also keeps that product from overflowing).
        let shape_bytes = tensor
            .shape
            .iter()
            .try_fold(tensor.stored_element_bytes(), |acc, &d| {
                acc.checked_mul(d as u64)
            });
        if shape_bytes != Some(end - begin) {
            return Err(malformed(format!(
                "tensor {} of shape {:?} and dtype {} does not fit its {} data bytes",
                tensor.name,
                tensor.shape,
                tensor.dtype,
                end - begin
            )));
        }
        tensors.push(tensor);
    }
    Ok(tensors)
}

/// The tensors of the Intel int4 AutoRound build (spec 4b) for `config`'s shape: experts as
/// per-expert int4 linears, everything else bf16.
pub fn synthetic_int4(config: &Config) -> Vec<TensorInfo> {
    let h = config.hidden_size;
    let i = config.intermediate_size;
    let q_out = config.num_attention_heads * config.head_dim;
    let kv_out = config.num_key_value_heads * config.head_dim;
    let e = config.num_local_experts;
    let mut out = vec![
        TensorInfo::new(
            "model.embed_tokens.weight".into(),
            "BF16",
            &[config.vocab_size, h],
        ),
        TensorInfo::new("model.norm.weight".into(), "BF16", &[h]),
        TensorInfo::new("lm_head.weight".into(), "BF16", &[config.vocab_size, h]),
    ];
    for layer in 0..config.num_hidden_layers {
        let p = format!("model.layers.{layer}.");
        let bf16 =
            |name: &str, shape: &[usize]| TensorInfo::new(format!("{p}{name}"), "BF16", shape);
        out.extend([
            bf16("input_layernorm.weight", &[h]),
            bf16("post_attention_layernorm.weight", &[h]),
            bf16("self_attn.q_proj.weight", &[q_out, h]),
            bf16("self_attn.q_proj.bias", &[q_out]),
            bf16("self_attn.k_proj.weight", &[kv_out, h]),
            bf16("self_attn.k_proj.bias", &[kv_out]),
            bf16("self_attn.v_proj.weight", &[kv_out, h]),
            bf16("self_attn.v_proj.bias", &[kv_out]),
            bf16("self_attn.o_proj.weight", &[h, q_out]),
            bf16("self_attn.o_proj.bias", &[h]),
            bf16("self_attn.sinks", &[config.num_attention_heads]),
            bf16("mlp.router.weight", &[e, h]),
            bf16("mlp.router.bias", &[e]),
        ]);
        for expert in 0..e {
            for (proj, inputs, outputs) in
                [("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]
            {
                let q = format!("{p}mlp.experts.{expert}.{proj}.");
                out.extend([
                    TensorInfo::new(format!("{q}qweight"), "I32", &[inputs / 8, outputs]),
                    TensorInfo::new(format!("{q}qzeros"), "I32", &[inputs / 64, outputs / 8]),
                    TensorInfo::new(format!("{q}scales"), "F16", &[inputs / 64, outputs]),
                    TensorInfo::new(format!("{q}bias"), "F16", &[outputs]),
                ]);
            }
        }
    }
    out
}

/// The shape of a named synthetic preset (`gpt-oss-20b`), with an optional layer override.
pub fn synthetic_preset(name: &str, layers: Option<usize>) -> Option<Config> {
    let config = match name {
        "gpt-oss-20b" => Config::gpt_oss_20b(),
        _ => return None,
    };
    Some(match layers {
        Some(n) => config.with_layers(n),
        None => config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn synthetic_inventory_matches_the_int4_fixture() {
        let dir = fixture("tiny-a-int4");
        let config = Config::from_file(&dir.join("config.json")).expect("fixture config");
        let mut read = read_dir(&dir).expect("fixture headers");
        let mut made = synthetic_int4(&config);
        // The fixture stores sinks and 16-bit tensors the same way; compare name, dtype, shape.
        read.sort_by(|a, b| a.name.cmp(&b.name));
        made.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(read.len(), made.len());
        for (r, m) in read.iter().zip(&made) {
            assert_eq!(r, m);
        }
    }

    #[test]
    fn reads_sharded_checkpoints() {
        let src = fixture("tiny-a-bf16").join("model.safetensors");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(&src, dir.path().join("part-1.safetensors")).expect("copy shard");
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"metadata": {}, "weight_map": {"a": "part-1.safetensors", "b": "part-1.safetensors"}}"#,
        )
        .expect("write index");
        let sharded = read_dir(dir.path()).expect("sharded read");
        let single = read_header(&src).expect("single read");
        assert_eq!(sharded, single);
    }

    #[test]
    fn truncated_file_is_named() {
        let src = fixture("tiny-a-bf16").join("model.safetensors");
        let bytes = std::fs::read(&src).expect("fixture readable");
        let dir = tempfile::tempdir().expect("temp dir");
        let cut = dir.path().join("model.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 100]).expect("write truncated");
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        assert!(err.contains("truncated"), "{err}");

        std::fs::write(&cut, [1u8, 2, 3]).expect("write tiny");
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("shorter than a header"), "{err}");
    }

    #[test]
    fn a_shape_that_does_not_match_its_bytes_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.safetensors");
        let huge = u64::MAX / 2;
        for (shape, bytes) in [(format!("[{huge}, 4]"), "8"), ("[3]".to_string(), "8")] {
            let header = format!(
                r#"{{"w": {{"dtype": "F32", "shape": {shape}, "data_offsets": [0, {bytes}]}}}}"#
            );
            let mut file = (header.len() as u64).to_le_bytes().to_vec();
            file.extend(header.as_bytes());
            file.extend([0u8; 8]);
            std::fs::write(&path, file).expect("write");
            let err = read_header(&path)
                .expect_err("shape and bytes disagree")
                .to_string();
            for part in [
                path.to_str().expect("utf8"),
                "tensor w of shape",
                "does not fit its 8 data bytes",
            ] {
                assert!(err.contains(part), "{err} lacks {part}");
            }
        }
    }

    #[test]
    fn missing_weights_say_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("--model"), "{err}");
    }
}
