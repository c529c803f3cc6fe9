//! The demo model that ships inside the binary (`assets/demo`, made by `scripts/demo/train.py`).
//!
//! `ossterm --demo` needs no download: the model's files are compiled in (about 4.3 MB) and
//! written once to a folder named after their content, which the engine then loads like any
//! other model folder.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The files of the demo model folder, by name.
pub const FILES: [(&str, &[u8]); 5] = [
    (
        "config.json",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/demo/config.json"
        )),
    ),
    (
        "generation_config.json",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/demo/generation_config.json"
        )),
    ),
    (
        "model.safetensors",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/demo/model.safetensors"
        )),
    ),
    (
        "tokenizer.json",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/demo/tokenizer.json"
        )),
    ),
    (
        "tokenizer_config.json",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/demo/tokenizer_config.json"
        )),
    ),
];

/// Writing the demo model's folder failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file or folder under the cache root could not be written.
    #[error(
        "cannot write the demo model to {path}: {source} (check that the folder is writable, or set another cache folder)"
    )]
    Write {
        /// The file or folder that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The folder name for this build's demo files: `demo-` and a hash of their content, so a new
/// build never reuses an older model's folder.
pub fn folder_name() -> String {
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in FILES {
        for &b in name.as_bytes().iter().chain(bytes.iter()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("demo-{hash:016x}")
}

/// Writes the demo model under `cache_root` (once) and returns its folder.
///
/// The files are written to a temporary folder that is then renamed into place, so a folder
/// with the final name is always complete; an existing complete folder is reused and a
/// damaged one (a file missing or of the wrong size) is replaced.
pub fn materialize(cache_root: &Path) -> Result<PathBuf, DemoError> {
    let dir = cache_root.join(folder_name());
    if is_complete(&dir) {
        return Ok(dir);
    }
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Write { path, source }
    };
    fs::create_dir_all(cache_root).map_err(write_err(cache_root))?;
    let tmp = cache_root.join(format!("{}.tmp-{}", folder_name(), std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(write_err(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(write_err(&tmp))?;
    for (name, bytes) in FILES {
        let path = tmp.join(name);
        fs::write(&path, bytes).map_err(write_err(&path))?;
    }
    if dir.exists() {
        // only a damaged folder gets here (a complete one returned above)
        fs::remove_dir_all(&dir).map_err(write_err(&dir))?;
    }
    match fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // another ossterm finished first: its folder is as good as ours
        Err(_) if is_complete(&dir) => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(source) => Err(DemoError::Write { path: dir, source }),
    }
}

fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|(name, bytes)| {
        fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == bytes.len() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn materialize_writes_every_file_once_and_reuses_the_folder() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = materialize(root.path()).expect("writes");
        assert_eq!(dir, root.path().join(folder_name()));
        for (name, bytes) in FILES {
            assert_eq!(fs::read(dir.join(name)).expect("file"), bytes, "{name}");
        }
        let marker = dir.join("config.json");
        let written = fs::metadata(&marker)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(materialize(root.path()).expect("reuses"), dir);
        let again = fs::metadata(&marker)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(written, again, "an existing folder is not rewritten");
        let entries = fs::read_dir(root.path()).expect("root").count();
        assert_eq!(entries, 1, "no temporary folder is left behind");
    }

    #[test]
    fn an_incomplete_folder_is_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join(folder_name());
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join("model.safetensors"), b"truncated").expect("write");
        assert!(!is_complete(&dir));
        assert_eq!(materialize(root.path()).expect("rewrites"), dir);
        assert!(is_complete(&dir));
        let model = fs::read(dir.join("model.safetensors")).expect("model");
        assert_eq!(model, FILES[2].1);
    }

    #[test]
    fn an_unwritable_cache_root_is_a_clear_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("not-a-folder");
        fs::write(&file, b"x").expect("write");
        let err = materialize(&file).expect_err("a file is not a folder");
        assert!(err.to_string().contains("not-a-folder"), "{err}");
    }

    #[test]
    fn the_demo_folder_loads_in_the_engine() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = materialize(root.path()).expect("writes");
        let model = crate::model::GptOss::load(
            &dir,
            &candle_core::Device::Cpu,
            crate::model::Precision::Default,
        )
        .expect("loads");
        assert_eq!(model.config().num_hidden_layers, 4);
    }
}
