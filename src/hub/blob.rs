//! Writing one downloaded file into the Hugging Face cache layout:
//! `blobs/<etag>` holds the bytes (`<etag>.part` while it downloads, `<etag>.lock` against a
//! second writer) and `snapshots/<commit>/<file>` links to it. Every name here was checked by
//! [`super::validate`] first. A file the hub announced a sha256 for (`X-Linked-Etag`) is
//! hashed as it arrives, resumed bytes included, and kept only when the hash matches.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};

use super::HubError;
use super::client::{Client, FileMeta};
use super::watch::{Cancel, Event};

/// Body bytes read per call.
const CHUNK_BYTES: usize = 64 * 1024;

/// The cached file `file` (downloading or resuming its blob when missing), as a link in the
/// snapshot folder of `meta.commit` under `repo_dir`.
pub(super) fn store(
    client: &Client,
    repo_dir: &Path,
    file: &str,
    meta: &FileMeta,
    cancel: &Cancel,
    events: &mut dyn FnMut(Event),
) -> Result<PathBuf, HubError> {
    let io = |e: std::io::Error| client.download_error(file, e);
    let blobs = repo_dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(io)?;
    let blob = blobs.join(&meta.etag);
    let pointer = repo_dir.join("snapshots").join(&meta.commit).join(file);
    if !blob.is_file() {
        let writer = BlobWriter {
            client,
            file,
            meta,
            part_path: blobs.join(format!("{}.part", meta.etag)),
            pointer: &pointer,
            cancel,
        };
        writer.fill(&blobs.join(format!("{}.lock", meta.etag)), &blob, events)?;
    }
    link(&pointer, file, &meta.etag).map_err(io)?;
    Ok(pointer)
}

/// `snapshots/<commit>/<file>` -> `../../blobs/<etag>` (one more `../` per folder in `file`).
fn link(pointer: &Path, file: &str, etag: &str) -> std::io::Result<()> {
    if let Some(parent) = pointer.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if pointer.symlink_metadata().is_ok() {
        std::fs::remove_file(pointer)?;
    }
    let depth = file.matches('/').count();
    let target = format!("{}blobs/{etag}", "../".repeat(2 + depth));
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(target, pointer)
    }
    #[cfg(not(unix))]
    {
        let blob = pointer
            .parent()
            .map(|p| p.join(&target))
            .unwrap_or_default();
        std::fs::copy(blob, pointer).map(|_| ())
    }
}

struct BlobWriter<'a> {
    client: &'a Client,
    file: &'a str,
    meta: &'a FileMeta,
    part_path: PathBuf,
    /// Where the file will appear, for errors.
    pointer: &'a Path,
    cancel: &'a Cancel,
}

impl BlobWriter<'_> {
    fn io(&self, e: std::io::Error) -> HubError {
        self.client.download_error(self.file, e)
    }

    /// Downloads (or resumes) the part file, checks it, and renames it to `blob`.
    fn fill(
        &self,
        lock_path: &Path,
        blob: &Path,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), HubError> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)
            .map_err(|e| self.io(e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(HubError::Busy {
                    model: self.client.model().to_string(),
                    file: self.file.to_string(),
                    lock: lock_path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(self.io(e)),
        }
        let size = self.meta.size_bytes;
        let mut part = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.part_path)
            .map_err(|e| self.io(e))?;
        let mut have = part.metadata().map_err(|e| self.io(e))?.len();
        if have > size {
            // Longer than the file: not a prefix of it, start over.
            part.set_len(0).map_err(|e| self.io(e))?;
            have = 0;
        }
        events(Event::Started {
            total_bytes: size,
            resumed_bytes: have,
        });
        let mut digest = self.meta.sha256.as_ref().map(|_| Context::new(&SHA256));
        if let Some(digest) = digest.as_mut() {
            self.hash_prefix(have, digest, events)?;
        }
        if have < size {
            let (mut body, starts_at) =
                self.client.body_from(self.file, &self.meta.commit, have)?;
            if starts_at != have {
                // The server sent the whole file instead of the rest.
                part.set_len(0).map_err(|e| self.io(e))?;
                digest = self.meta.sha256.as_ref().map(|_| Context::new(&SHA256));
                events(Event::Started {
                    total_bytes: size,
                    resumed_bytes: 0,
                });
                have = 0;
            }
            self.copy(&mut body, &mut part, size - have, digest.as_mut(), events)?;
        }
        let actual = part.metadata().map_err(|e| self.io(e))?.len();
        if actual != size {
            return Err(self.refuse(HubError::SizeMismatch {
                path: self.pointer.to_path_buf(),
                expected: size,
                actual,
            }));
        }
        if let (Some(expected), Some(digest)) = (&self.meta.sha256, digest) {
            let actual = to_hex(digest.finish().as_ref());
            if &actual != expected {
                return Err(self.refuse(HubError::HashMismatch {
                    model: self.client.model().to_string(),
                    file: self.file.to_string(),
                    expected: expected.clone(),
                    actual,
                }));
            }
        }
        part.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&self.part_path, blob).map_err(|e| self.io(e))?;
        events(Event::Finished);
        Ok(())
    }

    /// Copies at most `left` bytes of `body` to `part`; more is a size mismatch.
    fn copy(
        &self,
        body: &mut dyn Read,
        part: &mut File,
        mut left: u64,
        mut digest: Option<&mut Context>,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), HubError> {
        let mut buffer = vec![0u8; CHUNK_BYTES];
        loop {
            if self.cancel.is_cancelled() {
                return Err(HubError::Cancelled {
                    model: self.client.model().to_string(),
                    file: self.file.to_string(),
                });
            }
            let read = match body.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.client.io_error(self.file, e)),
            };
            if read as u64 > left {
                let actual = part.metadata().map_err(|e| self.io(e))?.len() + read as u64;
                return Err(self.refuse(HubError::SizeMismatch {
                    path: self.pointer.to_path_buf(),
                    expected: self.meta.size_bytes,
                    actual,
                }));
            }
            let chunk = &buffer[..read];
            part.write_all(chunk).map_err(|e| self.io(e))?;
            if let Some(digest) = digest.as_deref_mut() {
                digest.update(chunk);
            }
            left -= read as u64;
            events(Event::Advanced(read as u64));
        }
    }

    /// Feeds the first `bytes` of the part file (an earlier run's) to `digest`, with an empty
    /// progress event now and then so that the watcher does not take a long hash for silence.
    fn hash_prefix(
        &self,
        bytes: u64,
        digest: &mut Context,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), HubError> {
        let mut resumed = File::open(&self.part_path)
            .map_err(|e| self.io(e))?
            .take(bytes);
        let mut buffer = vec![0u8; CHUNK_BYTES];
        for chunk in 1u64.. {
            if chunk % 64 == 0 {
                events(Event::Advanced(0));
            }
            match resumed.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => digest.update(&buffer[..read]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    /// Removes the bad part file, so that the next run starts over, and returns `error`.
    fn refuse(&self, error: HubError) -> HubError {
        let _ = std::fs::remove_file(&self.part_path);
        error
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_a_sha256() {
        let digest = ring::digest::digest(&SHA256, b"abc");
        assert_eq!(
            to_hex(digest.as_ref()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hashing_a_long_resumed_part_tells_the_watcher_it_is_alive() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = super::super::HubOptions {
            endpoint: "http://127.0.0.1:9".into(),
            cache_dir: dir.path().to_path_buf(),
            offline: false,
            token: None,
            stall_timeout: std::time::Duration::from_secs(1),
            cancel: Cancel::new(),
        };
        let client = Client::new(&options, "org/tiny", "main").expect("client");
        let part_path = dir.path().join("e.part");
        let part_bytes = 5 * 64 * CHUNK_BYTES;
        std::fs::write(&part_path, vec![7u8; part_bytes]).expect("part");
        let meta = FileMeta {
            commit: "0".repeat(40),
            etag: "e".into(),
            sha256: None,
            size_bytes: part_bytes as u64,
        };
        let writer = BlobWriter {
            client: &client,
            file: "model.safetensors",
            meta: &meta,
            part_path,
            pointer: dir.path(),
            cancel: &options.cancel,
        };
        let mut heartbeats = 0;
        let mut digest = Context::new(&SHA256);
        writer
            .hash_prefix(part_bytes as u64, &mut digest, &mut |_| heartbeats += 1)
            .expect("hashed");
        assert_eq!(heartbeats, 5);
        let expected = ring::digest::digest(&SHA256, &vec![7u8; part_bytes]);
        assert_eq!(digest.finish().as_ref(), expected.as_ref());
    }

    #[test]
    fn snapshot_links_climb_to_the_blobs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(&blobs).expect("blobs");
        std::fs::write(blobs.join("e1"), b"x").expect("blob");
        let pointer = dir.path().join("snapshots/c/sub/f.json");
        link(&pointer, "sub/f.json", "e1").expect("link");
        assert_eq!(std::fs::read(&pointer).expect("through the link"), b"x");
        // Linking again replaces the old link.
        link(&pointer, "sub/f.json", "e1").expect("relink");
    }
}
