//! A full-size stand-in for `Intel/gpt-oss-20b-int4-g64-rtn-AutoRound`, to load, plan and
//! measure the real shape without the 12 GB download: the published `config.json` with
//! auto-round's `quantization_config`, `quantization_config.json`, `generation_config.json`,
//! `tokenizer.json`, and `model-0000N-of-0000M.safetensors` shards (split between tensors)
//! with `model.safetensors.index.json`, holding every tensor name, dtype and shape of the
//! real checkpoint (spec 4b).
//!
//! The data sections are sparse: zeros are holes (`set_len` past them), and only what keeps
//! the logits finite and varied is written: norms of 1, biases, router weights, the first rows
//! of the attention projections, embedding and lm_head, one packed row of each int4 `qweight`,
//! the first group of its `scales`, and every `qzeros` word (7s: symmetric zero point 8). The
//! full replica takes about 14 GB of apparent size and a few hundred MB of disk. Writing
//! streams tensor by tensor: at most one tensor's written part is in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::{Config, ConfigError};
use crate::memory::inventory::{TensorInfo, synthetic_int4};

/// `config.json` of `openai/gpt-oss-20b` as the hub serves it; the Intel build's config was
/// written by transformers from it (see tests/fixtures/published/README.md).
const PUBLISHED_CONFIG: &str =
    include_str!("../../tests/fixtures/published/openai-gpt-oss-20b.config.json");

/// Shards close before a tensor that would take them past this size (the hub's "3GB").
pub const DEFAULT_SHARD_BYTES: u64 = 3_000_000_000;

/// The tokenizer copied when none is given: the hub's o200k_harmony file, in the checkout.
pub const DEFAULT_TOKENIZER: &str = "tests/fixtures/o200k_harmony/tokenizer.json";

/// Rows of the embedding table and lm_head that get random values (the rest are zeros).
const RANDOM_VOCAB_ROWS: usize = 2048;
/// Rows of each attention projection that get random values.
const RANDOM_PROJECTION_ROWS: usize = 64;
/// A `qzeros` word of symmetric int4: eight nibbles of `zero - 1` = 7.
const SYMMETRIC_QZEROS_WORD: u32 = 0x7777_7777;

/// What to write.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// Decoder layers (1 to the published 24); the shapes stay the real ones.
    pub layers: usize,
    /// Seeds the random values.
    pub seed: u64,
    /// The tokenizer.json to copy.
    pub tokenizer: PathBuf,
    /// Largest shard data size in bytes (a shard holds at least one tensor).
    pub shard_bytes: u64,
}

/// One written shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSummary {
    /// File name inside the output folder.
    pub file: String,
    /// Tensors it holds.
    pub tensors: usize,
    /// Its data section's size in bytes (the file adds the header).
    pub data_bytes: u64,
}

/// What [`write`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSummary {
    pub shards: Vec<ShardSummary>,
    /// `metadata.total_size` of the index: every tensor's bytes.
    pub total_bytes: u64,
    /// Bytes actually written to the data sections (the rest are holes).
    pub written_bytes: u64,
}

/// Errors writing a replica; each names the file or option involved.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The layer count is outside what the published model has.
    #[error("--layers {layers}: the replica has 1 to {max} layers (the published model's count)")]
    Layers { layers: usize, max: usize },
    /// The tokenizer to copy is missing or not a regular file.
    #[error(
        "tokenizer {path}: {problem}; run from the ossterm checkout (default {DEFAULT_TOKENIZER}) or pass --tokenizer FILE"
    )]
    Tokenizer { path: PathBuf, problem: String },
    /// The output folder already holds files (a replica is never written over them).
    #[error("{path} already exists and is not an empty folder: choose a new output folder")]
    OutputNotEmpty { path: PathBuf },
    /// A file could not be created or written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config written does not parse back (a bug in the replica).
    #[error("the replica's config.json does not load: {0}")]
    Config(#[from] ConfigError),
}

/// Writes the replica into `out` (created; it must not exist or be an empty folder).
pub fn write(out: &Path, options: &ReplicaOptions) -> Result<ReplicaSummary, ReplicaError> {
    let published = published_config();
    let max_layers = published["num_hidden_layers"].as_u64().unwrap_or(24) as usize;
    if options.layers == 0 || options.layers > max_layers {
        return Err(ReplicaError::Layers {
            layers: options.layers,
            max: max_layers,
        });
    }
    check_tokenizer(&options.tokenizer)?;
    prepare_output(out)?;

    let config_text = to_json(&config_json(published, options.layers));
    let config_path = out.join("config.json");
    let config = Config::from_json(&config_text, &config_path)?;
    write_file(&config_path, config_text.as_bytes())?;
    write_file(
        &out.join("quantization_config.json"),
        to_json(&quantization_block(options.layers)).as_bytes(),
    )?;
    write_file(
        &out.join("generation_config.json"),
        to_json(&generation_config()).as_bytes(),
    )?;
    let tokenizer_path = out.join("tokenizer.json");
    std::fs::copy(&options.tokenizer, &tokenizer_path).map_err(|source| ReplicaError::Write {
        path: tokenizer_path.clone(),
        source,
    })?;

    let shards = split_into_shards(
        checkpoint_order(synthetic_int4(&config)),
        options.shard_bytes,
    );
    let mut rng = SmallRng::seed_from_u64(options.seed);
    let mut summary = ReplicaSummary {
        shards: Vec::with_capacity(shards.len()),
        total_bytes: 0,
        written_bytes: 0,
    };
    let mut weight_map = BTreeMap::new();
    for (index, tensors) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", index + 1, shards.len());
        let (data_bytes, written) = write_shard(&out.join(&file), tensors, &mut rng)?;
        for tensor in tensors {
            weight_map.insert(tensor.name.clone(), file.clone());
        }
        summary.total_bytes += data_bytes;
        summary.written_bytes += written;
        summary.shards.push(ShardSummary {
            file,
            tensors: tensors.len(),
            data_bytes,
        });
    }
    let index = serde_json::json!({
        "metadata": {"total_size": summary.total_bytes},
        "weight_map": weight_map,
    });
    write_file(
        &out.join("model.safetensors.index.json"),
        to_json(&index).as_bytes(),
    )?;
    Ok(summary)
}

fn published_config() -> serde_json::Value {
    serde_json::from_str(PUBLISHED_CONFIG)
        .expect("the published config is a JSON fixture compiled into the binary")
}

fn check_tokenizer(path: &Path) -> Result<(), ReplicaError> {
    let problem = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(_) => "is not a regular file".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read ({e})"),
    };
    Err(ReplicaError::Tokenizer {
        path: path.to_path_buf(),
        problem,
    })
}

fn prepare_output(out: &Path) -> Result<(), ReplicaError> {
    let not_empty = || ReplicaError::OutputNotEmpty {
        path: out.to_path_buf(),
    };
    match std::fs::read_dir(out) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(not_empty()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(|source| ReplicaError::Write {
                path: out.to_path_buf(),
                source,
            })
        }
        Err(_) => Err(not_empty()),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReplicaError> {
    std::fs::write(path, bytes).map_err(|source| ReplicaError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Pretty JSON as transformers writes it (two-space indent, trailing newline).
fn to_json(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value)
        .expect("a serde_json::Value always serializes to a string");
    text.push('\n');
    text
}

/// The published config with `layers` layers, `torch_dtype`, and auto-round's block; keys
/// sorted as transformers writes them.
fn config_json(published: serde_json::Value, layers: usize) -> serde_json::Value {
    let mut keys: BTreeMap<String, serde_json::Value> = match published {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    keys.insert("num_hidden_layers".into(), layers.into());
    if let Some(serde_json::Value::Array(types)) = keys.get_mut("layer_types") {
        types.truncate(layers);
    }
    keys.insert("torch_dtype".into(), "bfloat16".into());
    keys.insert("quantization_config".into(), quantization_block(layers));
    serde_json::Value::Object(keys.into_iter().collect())
}

/// auto-round 0.16's block for a symmetric int4, group-64 export with the attention
/// projections left 16-bit (as in tests/fixtures/tiny-a-int4/quantization_config.json).
fn quantization_block(layers: usize) -> serde_json::Value {
    let mut extra = serde_json::Map::new();
    for layer in 0..layers {
        for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            extra.insert(
                format!("model.layers.{layer}.self_attn.{proj}"),
                serde_json::json!({"bits": 16}),
            );
        }
    }
    serde_json::json!({
        "bits": 4,
        "data_type": "int",
        "group_size": 64,
        "sym": true,
        "amp": false,
        "enable_quanted_input": false,
        "autoround_version": "0.16.1",
        "block_name_to_quantize": "model.layers",
        "quant_method": "auto-round",
        "packing_format": "auto_round:auto_gptq",
        "extra_config": extra,
    })
}

/// openai/gpt-oss-20b's generation_config.json (eos as a list).
fn generation_config() -> serde_json::Value {
    serde_json::json!({
        "bos_token_id": 199998,
        "do_sample": true,
        "eos_token_id": [200002, 199999, 200012],
        "pad_token_id": 199999,
        "transformers_version": "4.55.0.dev0",
    })
}

/// The state-dict order transformers saves in: the embedding, the layers, then the final
/// norm and lm_head.
fn checkpoint_order(mut tensors: Vec<TensorInfo>) -> Vec<TensorInfo> {
    let (tail, rest): (Vec<TensorInfo>, Vec<TensorInfo>) = tensors
        .drain(..)
        .partition(|t| t.name == "model.norm.weight" || t.name == "lm_head.weight");
    rest.into_iter().chain(tail).collect()
}

fn tensor_bytes(tensor: &TensorInfo) -> u64 {
    tensor.elements() * tensor.stored_element_bytes()
}

/// Consecutive groups of at most `max_bytes` each (a larger tensor gets its own shard).
fn split_into_shards(tensors: Vec<TensorInfo>, max_bytes: u64) -> Vec<Vec<TensorInfo>> {
    let mut shards: Vec<Vec<TensorInfo>> = Vec::new();
    let mut current: Vec<TensorInfo> = Vec::new();
    let mut current_bytes = 0;
    for tensor in tensors {
        let bytes = tensor_bytes(&tensor);
        if !current.is_empty() && current_bytes + bytes > max_bytes {
            shards.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.push(tensor);
    }
    if !current.is_empty() {
        shards.push(current);
    }
    shards
}

/// Writes one safetensors file: header, then each tensor's non-zero parts at their offsets,
/// the rest left as holes. Returns (data bytes, bytes written).
fn write_shard(
    path: &Path,
    tensors: &[TensorInfo],
    rng: &mut SmallRng,
) -> Result<(u64, u64), ReplicaError> {
    let io_err = |source| ReplicaError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0u64;
    for tensor in tensors {
        let end = offset + tensor_bytes(tensor);
        header.insert(
            tensor.name.clone(),
            serde_json::json!({"dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let data_bytes = offset;
    let mut header_text = serde_json::to_string(&header)
        .expect("a serde_json::Map always serializes to a string")
        .into_bytes();
    // safetensors pads the header with spaces so the data starts 8-byte aligned.
    header_text.resize(header_text.len().next_multiple_of(8), b' ');
    let data_start = 8 + header_text.len() as u64;

    let mut file = File::create(path).map_err(io_err)?;
    file.write_all(&(header_text.len() as u64).to_le_bytes())
        .map_err(io_err)?;
    file.write_all(&header_text).map_err(io_err)?;
    file.set_len(data_start + data_bytes).map_err(io_err)?;
    let mut written = 0u64;
    let mut offset = data_start;
    for tensor in tensors {
        for (at, bytes) in nonzero_parts(tensor, rng) {
            file.seek(SeekFrom::Start(offset + at)).map_err(io_err)?;
            file.write_all(&bytes).map_err(io_err)?;
            written += bytes.len() as u64;
        }
        offset += tensor_bytes(tensor);
    }
    file.sync_all().map_err(io_err)?;
    Ok((data_bytes, written))
}

/// The parts of `tensor` that are not zero: (byte offset in the tensor, bytes).
fn nonzero_parts(tensor: &TensorInfo, rng: &mut SmallRng) -> Vec<(u64, Vec<u8>)> {
    let name = tensor.name.as_str();
    let elements = tensor.elements() as usize;
    // Elements per row for 2-D tensors (the whole tensor for vectors).
    let row = tensor.shape.last().copied().unwrap_or(1);
    let rows = |n: usize| (n * row).min(elements);
    let part = match tensor.dtype.as_str() {
        "I32" if name.ends_with(".qzeros") => {
            let word = SYMMETRIC_QZEROS_WORD.to_le_bytes();
            word.repeat(elements)
        }
        // One packed row: inputs 0..8 of every output get random codes.
        "I32" => (0..rows(1))
            .flat_map(|_| rng.random::<u32>().to_le_bytes())
            .collect(),
        // The first group's scales, of either sign (auto-round's scales often are negative).
        "F16" if name.ends_with(".scales") => (0..rows(1))
            .flat_map(|_| {
                let magnitude = rng.random_range(0.002f32..0.02);
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                half::f16::from_f32(sign * magnitude).to_le_bytes()
            })
            .collect(),
        // Expert biases.
        "F16" => (0..elements)
            .flat_map(|_| half::f16::from_f32(rng.random_range(-0.05f32..0.05)).to_le_bytes())
            .collect(),
        _ => bf16_values(name, elements, rows, rng),
    };
    if part.is_empty() {
        Vec::new()
    } else {
        vec![(0, part)]
    }
}

/// The written part of a bf16 tensor.
fn bf16_values(
    name: &str,
    elements: usize,
    rows: impl Fn(usize) -> usize,
    rng: &mut SmallRng,
) -> Vec<u8> {
    let bf16 = |v: f32| half::bf16::from_f32(v).to_le_bytes();
    let random = |n: usize, scale: f32, rng: &mut SmallRng| -> Vec<u8> {
        (0..n)
            .flat_map(|_| bf16(rng.random_range(-scale..scale)))
            .collect()
    };
    if name.ends_with("layernorm.weight") || name == "model.norm.weight" {
        bf16(1.0).repeat(elements)
    } else if name.ends_with("embed_tokens.weight") || name == "lm_head.weight" {
        random(rows(RANDOM_VOCAB_ROWS), 0.05, rng)
    } else if name.ends_with("_proj.weight") {
        random(rows(RANDOM_PROJECTION_ROWS), 0.05, rng)
    } else {
        // Biases, sinks and the router: small vectors and matrices, written whole.
        random(elements, 0.05, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::inventory::read_dir;

    fn tokenizer() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_TOKENIZER)
    }

    fn options(layers: usize) -> ReplicaOptions {
        ReplicaOptions {
            layers,
            seed: 3,
            tokenizer: tokenizer(),
            shard_bytes: DEFAULT_SHARD_BYTES,
        }
    }

    #[test]
    fn config_keeps_the_published_keys_and_adds_auto_round() {
        let published = published_config();
        let config = config_json(published.clone(), 2);
        for key in published
            .as_object()
            .map(|m| m.keys())
            .into_iter()
            .flatten()
        {
            assert!(config.get(key).is_some(), "{key} is kept");
        }
        assert_eq!(config["experts_per_token"], 4);
        assert_eq!(config["num_experts_per_tok"], 4);
        assert_eq!(config["torch_dtype"], "bfloat16");
        assert_eq!(config["num_hidden_layers"], 2);
        assert_eq!(
            config["layer_types"],
            serde_json::json!(["sliding_attention", "full_attention"])
        );
        let q = &config["quantization_config"];
        assert_eq!(q["quant_method"], "auto-round");
        assert_eq!(q["packing_format"], "auto_round:auto_gptq");
        assert_eq!(q["group_size"], 64);
        assert_eq!(q["extra_config"].as_object().map(|m| m.len()), Some(8));
        assert_eq!(
            q["extra_config"]["model.layers.1.self_attn.o_proj"]["bits"],
            16
        );
        // Keys stay sorted, as transformers writes them.
        let keys: Vec<&String> = config
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    }

    #[test]
    fn shards_split_between_tensors_and_keep_the_order() {
        let tensor = |name: &str, n: usize| TensorInfo {
            name: name.into(),
            dtype: "BF16".into(),
            shape: vec![n],
        };
        let shards = split_into_shards(
            vec![
                tensor("a", 10),
                tensor("b", 10),
                tensor("c", 40),
                tensor("d", 1),
            ],
            40,
        );
        let names: Vec<Vec<&str>> = shards
            .iter()
            .map(|s| s.iter().map(|t| t.name.as_str()).collect())
            .collect();
        // 2 bytes an element: a+b = 40 bytes fill the first; c (80) alone; d after it.
        assert_eq!(names, vec![vec!["a", "b"], vec!["c"], vec!["d"]]);
    }

    #[test]
    fn writes_every_real_tensor_sparse_with_an_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("replica");
        // Small shards, so one layer spreads over several files.
        let opts = ReplicaOptions {
            shard_bytes: 400_000_000,
            ..options(1)
        };
        let summary = write(&out, &opts).expect("replica written");
        assert!(summary.shards.len() >= 3, "{:?}", summary.shards);
        assert_eq!(
            summary.shards[0].file,
            format!("model-00001-of-{:05}.safetensors", summary.shards.len())
        );
        // Every tensor of the real layout, names, dtypes and shapes, read back from the headers.
        let config = Config::from_file(&out.join("config.json")).expect("config loads");
        let real_shape = Config {
            eos_token_ids: config.eos_token_ids.clone(),
            quantization: config.quantization.clone(),
            ..Config::gpt_oss_20b().with_layers(1)
        };
        assert_eq!(config, real_shape);
        let mut read = read_dir(&out).expect("headers");
        let mut expected = synthetic_int4(&config);
        read.sort_by(|a, b| a.name.cmp(&b.name));
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(read, expected);
        let index: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("model.safetensors.index.json")).expect("index"),
        )
        .expect("index JSON");
        assert_eq!(index["metadata"]["total_size"], summary.total_bytes);
        assert_eq!(
            index["weight_map"].as_object().map(|m| m.len()),
            Some(expected.len())
        );
        assert_eq!(
            index["weight_map"]["lm_head.weight"],
            summary.shards[summary.shards.len() - 1].file.as_str()
        );
        // Sparse: far less written than the data's size.
        assert!(
            summary.written_bytes * 10 < summary.total_bytes,
            "{summary:?}"
        );
        for file in [
            "quantization_config.json",
            "generation_config.json",
            "tokenizer.json",
        ] {
            assert!(out.join(file).is_file(), "{file}");
        }
    }

    #[test]
    fn refuses_bad_layers_a_missing_tokenizer_and_a_used_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = write(&dir.path().join("a"), &options(0))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--layers 0") && err.contains("1 to 24"),
            "{err}"
        );
        let err = write(&dir.path().join("a"), &options(25))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--layers 25"), "{err}");

        let missing = ReplicaOptions {
            tokenizer: dir.path().join("nope.json"),
            ..options(1)
        };
        let err = write(&dir.path().join("b"), &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.json: does not exist"), "{err}");
        assert!(err.contains("--tokenizer FILE"), "{err}");
        let folder = ReplicaOptions {
            tokenizer: dir.path().to_path_buf(),
            ..options(1)
        };
        let err = write(&dir.path().join("b"), &folder)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a regular file"), "{err}");
        assert!(
            !dir.path().join("b").exists(),
            "nothing written before the checks"
        );

        std::fs::write(dir.path().join("keep.txt"), "x").expect("write");
        let err = write(dir.path(), &options(1)).unwrap_err().to_string();
        assert!(
            err.contains("already exists and is not an empty folder"),
            "{err}"
        );
    }
}
