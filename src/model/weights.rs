//! Memory-mapped safetensors checkpoints, single file or sharded through
//! `model.safetensors.index.json`, with typed, shape-checked reads that name the file and tensor
//! on every error.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, TensorInfo};

use super::error::ModelError;
use super::model_file;

/// One mapped `.safetensors` file.
struct Shard {
    path: PathBuf,
    mmap: Arc<Mmap>,
    /// Byte offset of the data section (8 + header length).
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
    /// Bytes of tensors handed out by [`Checkpoint::get`] so far (load progress).
    read_bytes: AtomicU64,
}

/// How far loading has got: the shard the last tensor came from and how much of it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardProgress {
    /// 1-based position of the shard among the checkpoint's files (sorted by name).
    pub shard: usize,
    /// How many shard files the checkpoint has.
    pub shards: usize,
    /// The shard's file name.
    pub file: String,
    /// Bytes of its tensors read so far.
    pub done_bytes: u64,
    /// Bytes of its data section.
    pub total_bytes: u64,
}

/// A tensor's bytes as stored, with where it came from.
pub struct RawTensor<'a> {
    /// The shard that holds it (for error messages).
    pub path: &'a Path,
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
    /// The mapping the bytes live in and their offset there, to keep rows on the host.
    pub mmap: &'a Arc<Mmap>,
    pub offset: usize,
}

impl RawTensor<'_> {
    fn bad(&self, problem: String) -> ModelError {
        ModelError::BadTensor {
            path: self.path.to_path_buf(),
            tensor: self.name.to_string(),
            problem,
        }
    }

    /// Fails unless the shape is `expected`.
    pub fn expect_shape(&self, expected: &[usize]) -> Result<(), ModelError> {
        if self.shape != expected {
            return Err(self.bad(format!(
                "has shape {:?}, expected {:?}",
                self.shape, expected
            )));
        }
        Ok(())
    }

    /// Fails unless the dtype is one of `allowed`.
    pub fn expect_dtype(&self, allowed: &[Dtype]) -> Result<(), ModelError> {
        if !allowed.contains(&self.dtype) {
            return Err(self.bad(format!(
                "has dtype {:?}, expected {}",
                self.dtype,
                allowed
                    .iter()
                    .map(|d| format!("{d:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        Ok(())
    }

    /// The values as f32 (from F32, F16 or BF16), shape-checked.
    pub fn to_f32(&self, expected: &[usize]) -> Result<Vec<f32>, ModelError> {
        self.expect_shape(expected)?;
        self.expect_dtype(&[Dtype::F32, Dtype::F16, Dtype::BF16])?;
        Ok(match self.dtype {
            Dtype::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => self
                .bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => self
                .bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        })
    }

    /// The values of an I32 tensor, shape-checked.
    pub fn to_i32(&self, expected: &[usize]) -> Result<Vec<i32>, ModelError> {
        self.expect_shape(expected)?;
        self.expect_dtype(&[Dtype::I32])?;
        Ok(self
            .bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The bytes of a U8 tensor, shape-checked.
    pub fn to_u8(&self, expected: &[usize]) -> Result<&[u8], ModelError> {
        self.expect_shape(expected)?;
        self.expect_dtype(&[Dtype::U8])?;
        Ok(self.bytes)
    }
}

/// Every tensor of a checkpoint folder, mapped, looked up by name.
pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> index into `shards`.
    location: HashMap<String, usize>,
    /// The shard the last [`Checkpoint::get`] read from, plus one (0: none yet). Atomic, as
    /// experts are read from several threads.
    last_shard: AtomicUsize,
}

impl Checkpoint {
    /// Opens `dir`: the shards listed in `model.safetensors.index.json`, else
    /// `model.safetensors`, else every `*.safetensors` file.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let index_path = dir.join("model.safetensors.index.json");
        let mut files: Vec<PathBuf> = Vec::new();
        let mut index_map: Option<HashMap<String, PathBuf>> = None;
        if index_path.exists() {
            let text =
                model_file::read_to_string(&index_path).map_err(|source| ModelError::Io {
                    path: index_path.clone(),
                    source,
                })?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ModelError::File {
                    path: index_path.clone(),
                    problem: format!("is not valid JSON: {e}"),
                })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::File {
                    path: index_path.clone(),
                    problem: "has no 'weight_map' object".into(),
                })?;
            let mut names = HashMap::new();
            let mut set = BTreeSet::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| ModelError::File {
                    path: index_path.clone(),
                    problem: format!("weight_map entry '{tensor}' is not a file name"),
                })?;
                let path =
                    model_file::shard_in_dir(dir, file).map_err(|problem| ModelError::File {
                        path: index_path.clone(),
                        problem: format!("weight_map entry '{tensor}' {problem}"),
                    })?;
                set.insert(path.clone());
                names.insert(tensor.clone(), path);
            }
            files = set.into_iter().collect();
            index_map = Some(names);
        } else if dir.join("model.safetensors").exists() {
            files.push(dir.join("model.safetensors"));
        } else {
            let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "safetensors") {
                    files.push(path);
                }
            }
            files.sort();
        }
        if files.is_empty() {
            return Err(ModelError::File {
                path: dir.to_path_buf(),
                problem: "holds no .safetensors files (expected model.safetensors or model.safetensors.index.json)".into(),
            });
        }
        let mut shards: Vec<Shard> = Vec::with_capacity(files.len());
        let mut location = HashMap::new();
        for path in files {
            let shard = Shard::open(&path)?;
            for name in shard.tensors.keys() {
                let earlier = location.insert(name.clone(), shards.len());
                // With an index, the index says which copy counts (checked below); without
                // one, "last file wins" would pick a copy by the order of file names.
                if let Some(earlier) = earlier
                    && index_map.is_none()
                {
                    return Err(ModelError::File {
                        path: dir.to_path_buf(),
                        problem: format!(
                            "tensor '{name}' is in both {} and {}; without model.safetensors.index.json ossterm cannot tell which copy is meant",
                            shards[earlier].path.display(),
                            path.display()
                        ),
                    });
                }
            }
            shards.push(shard);
        }
        if let Some(names) = index_map {
            for (tensor, path) in names {
                let shard = shards
                    .iter()
                    .position(|s| s.path == path && s.tensors.contains_key(&tensor));
                let Some(shard) = shard else {
                    return Err(ModelError::File {
                        path,
                        problem: format!(
                            "lacks tensor '{tensor}' that model.safetensors.index.json places there"
                        ),
                    });
                };
                location.insert(tensor, shard);
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            shards,
            location,
            last_shard: AtomicUsize::new(0),
        })
    }

    /// Where reading stands: the shard of the last tensor read, with its bytes read so far.
    pub fn progress(&self) -> Option<ShardProgress> {
        let index = self.last_shard.load(Ordering::Relaxed).checked_sub(1)?;
        let shard = &self.shards[index];
        let total_bytes = (shard.mmap.len() - shard.data_start) as u64;
        Some(ShardProgress {
            shard: index + 1,
            shards: self.shards.len(),
            file: shard
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            done_bytes: shard.read_bytes.load(Ordering::Relaxed).min(total_bytes),
            total_bytes,
        })
    }

    /// Drops the mapped pages read so far from this process's resident memory: once a tensor
    /// is copied or repacked, keeping its file pages mapped would hold a second copy of the
    /// weights (12 GB for the real model). Pages read later map back from the file.
    pub fn release_pages(&self) {
        #[cfg(unix)]
        for shard in &self.shards {
            // Safety: the mapping is a read-only MAP_SHARED file mapping (`Mmap::map`). After
            // MADV_DONTNEED the next access reads the same file bytes back, so no slice
            // borrowed from it (e.g. the embedding rows) ever sees different contents. Failing
            // only leaves the pages resident, so the result is not an error.
            let _ = unsafe {
                shard.mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    0,
                    shard.mmap.len(),
                )
            };
        }
    }

    /// The checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    /// Every tensor name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.location.keys().map(String::as_str)
    }

    /// The tensor `name`; `expected` describes it for the error when it is missing.
    pub fn get<'a>(&'a self, name: &'a str, expected: &str) -> Result<RawTensor<'a>, ModelError> {
        let index = *self
            .location
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                dir: self.dir.clone(),
                tensor: name.to_string(),
                expected: expected.to_string(),
            })?;
        let shard = &self.shards[index];
        let info = &shard.tensors[name];
        let (start, end) = info.data_offsets;
        let offset = shard.data_start + start;
        // Progress figures only: no ordering with other memory is needed.
        shard
            .read_bytes
            .fetch_add((end - start) as u64, Ordering::Relaxed);
        self.last_shard.store(index + 1, Ordering::Relaxed);
        Ok(RawTensor {
            path: &shard.path,
            name,
            dtype: info.dtype,
            shape: &info.shape,
            bytes: &shard.mmap[offset..shard.data_start + end],
            mmap: &shard.mmap,
            offset,
        })
    }
}

impl Shard {
    fn open(path: &Path) -> Result<Self, ModelError> {
        let file = model_file::open(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // Safety: the file is opened read-only; like every mmap-based loader we assume nobody
        // truncates it while ossterm runs.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| ModelError::File {
                path: path.to_path_buf(),
                problem: format!(
                    "is not a complete safetensors file ({e:?}); it may be truncated: download it again"
                ),
            })?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            mmap: Arc::new(mmap),
            data_start: 8 + header_len,
            tensors,
            read_bytes: AtomicU64::new(0),
        })
    }
}
