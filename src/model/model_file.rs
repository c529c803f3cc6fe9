//! Opening the files of a model folder (config.json, tokenizer.json, shards, the index) only
//! when they are regular files, and keeping the index's shard names inside the folder.
//!
//! A model folder comes from outside: `open` on a FIFO blocks until a writer appears, and a
//! device or directory fails with an obscure "No such device" or "Is a directory" deep in a
//! parser. The file type is checked with `metadata` first, so those are a clear error instead.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Opens `path` for reading if it is a regular file (symlinks followed); anything else
/// (FIFO, socket, device, directory) is an `InvalidInput` error saying what it is.
pub fn open(path: &Path) -> io::Result<File> {
    ensure_regular(&std::fs::metadata(path)?)?;
    // The type is checked again on the open file: a swap between the two calls is caught
    // (though an open of a FIFO swapped in exactly then still waits for a writer).
    let file = File::open(path)?;
    ensure_regular(&file.metadata()?)?;
    Ok(file)
}

/// Reads `path` as UTF-8 text through [`open`].
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    io::Read::read_to_string(&mut open(path)?, &mut text)?;
    Ok(text)
}

fn ensure_regular(metadata: &std::fs::Metadata) -> io::Result<()> {
    if metadata.is_file() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "is {}, not a regular file",
            file_kind(&metadata.file_type())
        ),
    ))
}

/// What a non-regular file is, in words.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The path of shard `name` as `model.safetensors.index.json` names it, refused (with the
/// reason) when it could leave `dir`: absolute, with `..` or a drive prefix, or a symlink
/// whose target lies outside `dir`.
pub fn shard_in_dir(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let relative = Path::new(name);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if name.is_empty() || !plain {
        return Err(format!(
            "names shard '{name}', which is not a file name inside the model folder (absolute paths and '..' are refused)"
        ));
    }
    let path = dir.join(relative);
    // A missing shard is reported by whoever opens it; only an existing one can escape.
    if let (Ok(real_dir), Ok(real_path)) = (dir.canonicalize(), path.canonicalize())
        && !real_path.starts_with(&real_dir)
    {
        return Err(format!(
            "names shard '{name}', which resolves to {} outside the model folder",
            real_path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_named_as_such() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = open(dir.path()).expect_err("a directory is no file");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), "is a directory, not a regular file");
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_refused_without_reading_it() {
        let err = read_to_string(Path::new("/dev/zero")).expect_err("a device is no file");
        assert_eq!(err.to_string(), "is a device, not a regular file");
    }

    #[test]
    fn a_regular_file_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{}").expect("write");
        assert_eq!(read_to_string(&path).expect("reads"), "{}");
    }

    #[test]
    fn shard_names_that_leave_the_folder_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in [
            "/etc/passwd",
            "../x.safetensors",
            "a/../../x.safetensors",
            "",
        ] {
            let err = shard_in_dir(dir.path(), name).expect_err(name);
            assert!(err.contains(&format!("'{name}'")), "{err}");
            assert!(err.contains("absolute paths and '..' are refused"), "{err}");
        }
        assert_eq!(
            shard_in_dir(dir.path(), "sub/model-00001.safetensors").expect("inside"),
            dir.path().join("sub/model-00001.safetensors")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_folder_is_refused() {
        let outside = tempfile::NamedTempFile::new().expect("temp file");
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("x.safetensors"))
            .expect("symlink");
        let err = shard_in_dir(dir.path(), "x.safetensors").expect_err("escapes");
        assert!(err.contains("outside the model folder"), "{err}");
        assert!(err.contains("'x.safetensors'"), "{err}");
    }
}
