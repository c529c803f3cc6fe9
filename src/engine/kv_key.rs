//! What a KV snapshot on disk was made with. Keys and values depend on the weights, the
//! tokenizer, the cache dtype, the kernels and the device's arithmetic: a snapshot made with
//! any of them different would restore a cache this engine would not have computed.

use std::fs;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A safetensors header larger than this is not read for the digest (its size still counts).
const MAX_DIGESTED_HEADER_BYTES: u64 = 64 << 20;

/// The identity a snapshot is written under and must match to be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotKey {
    /// sha256 (hex) of the checkpoint's identity: see [`model_digest`].
    pub model_digest: String,
    /// The KV cache's dtype ("f16", "bf16", "f32").
    pub cache_dtype: String,
    /// The activations' dtype.
    pub activation_dtype: String,
    /// The kernels mode (`Kernels` as Debug prints it).
    pub kernels: String,
    /// "cpu", "cuda:0", "metal".
    pub device: String,
}

impl SnapshotKey {
    /// The first field that differs from `other`, as "name: theirs, ours", for the notice
    /// that says why a snapshot was not used.
    pub fn difference(&self, other: &Self) -> Option<String> {
        let fields = [
            ("model", &self.model_digest, &other.model_digest),
            ("cache dtype", &self.cache_dtype, &other.cache_dtype),
            (
                "activation dtype",
                &self.activation_dtype,
                &other.activation_dtype,
            ),
            ("kernels", &self.kernels, &other.kernels),
            ("device", &self.device, &other.device),
        ];
        fields
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(name, a, b)| format!("made for {name} {a}, this engine runs {b}"))
    }
}

/// A cheap content digest of the checkpoint in `dir`: config.json, tokenizer.json and any
/// weight index in full, and each safetensors file's name, size and header (the tensor
/// names, shapes and offsets), without reading gigabytes of weights.
pub fn model_digest(dir: &Path) -> std::io::Result<String> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name == "config.json"
                || name == "tokenizer.json"
                || name.ends_with(".safetensors")
                || name.ends_with(".safetensors.index.json")
        })
        .collect();
    names.sort();
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for name in names {
        let path = dir.join(&name);
        digest.update(name.as_bytes());
        digest.update(&[0]);
        if name.ends_with(".safetensors") {
            let mut file = fs::File::open(&path)?;
            let size = file.metadata()?.len();
            digest.update(&size.to_le_bytes());
            let mut length = [0u8; 8];
            if file.read_exact(&mut length).is_ok() {
                let header_bytes = u64::from_le_bytes(length);
                if header_bytes <= MAX_DIGESTED_HEADER_BYTES.min(size) {
                    let mut header = Vec::new();
                    file.take(header_bytes).read_to_end(&mut header)?;
                    digest.update(&header);
                }
            }
        } else {
            digest.update(&fs::read(&path)?);
        }
    }
    Ok(digest
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SnapshotKey {
        SnapshotKey {
            model_digest: "abc".into(),
            cache_dtype: "f16".into(),
            activation_dtype: "f32".into(),
            kernels: "Auto".into(),
            device: "cpu".into(),
        }
    }

    #[test]
    fn the_first_difference_is_named() {
        let other = SnapshotKey {
            cache_dtype: "bf16".into(),
            device: "cuda:0".into(),
            ..key()
        };
        assert_eq!(key().difference(&key()), None);
        assert_eq!(
            key().difference(&other).as_deref(),
            Some("made for cache dtype f16, this engine runs bf16")
        );
    }

    #[test]
    fn the_digest_follows_config_and_weight_headers_not_other_files() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-int4");
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["config.json", "tokenizer.json", "model.safetensors"] {
            fs::copy(fixture.join(name), dir.path().join(name)).expect("copy");
        }
        let first = model_digest(dir.path()).expect("digest");
        assert_eq!(first.len(), 64);
        fs::write(dir.path().join("README.md"), "notes").expect("write");
        assert_eq!(model_digest(dir.path()).expect("digest"), first);
        let config = fs::read_to_string(dir.path().join("config.json")).expect("read");
        fs::write(dir.path().join("config.json"), config.replace("\"", " \"")).expect("write");
        assert_ne!(model_digest(dir.path()).expect("digest"), first);
    }
}
