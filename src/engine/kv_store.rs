//! KV snapshots of saved chats on disk, so reopening a chat does not re-read it: after a turn
//! the engine writes its session (token ids, every layer's keys and values, the
//! sliding-window snapshots) to `<dir>/<chat id>.kv`, and restores it when the chat is opened
//! again. Files are written atomically and kept under a disk budget, least recently used
//! first out.
//!
//! File layout, little-endian: magic, format version (u32), header length (u32), the header
//! (JSON: [`SnapshotKey`] and [`KvLayout`]), the token ids (u32 each), the payload
//! ([`KvCache::write_payload`](crate::model::KvCache::write_payload)), then the sha256 of
//! everything before it. The file is untrusted: its size must be exactly what the header
//! says before anything is allocated, and a bad checksum empties the session again.

use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::kv_key::SnapshotKey;
use super::session::{Session, common_prefix_len};
use crate::model::cache::{KvLayout, KvPayloadError};
use crate::store::StoreError;

/// Bumped whenever the file layout changes; other versions are ignored (and deleted).
pub const FORMAT_VERSION: u32 = 1;
/// The file's first bytes.
const MAGIC: &[u8; 8] = b"OSSTMKV\n";
/// A header (key and layout) is a few hundred bytes; anything near this is not ours.
const MAX_HEADER_BYTES: u32 = 1 << 20;
/// Magic, version and header length.
const PREAMBLE_BYTES: u64 = 16;
const CHECKSUM_BYTES: u64 = 32;
/// The file extension of snapshots.
const EXTENSION: &str = "kv";
/// A temporary file this old was left by a save that never finished (the app was killed).
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Why a snapshot could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum KvStoreError {
    /// The file is not a snapshot this engine can use (truncated, corrupt, another model or
    /// format version, another chat's tokens); `fate` says it was deleted (or why not).
    #[error("ignored the saved KV cache {path}: {problem} ({fate})")]
    Unusable {
        path: PathBuf,
        problem: String,
        fate: String,
    },
    /// The snapshot is fine but cannot be used now (a smaller context limit); it is kept.
    #[error("did not restore the saved KV cache {path}: {problem}")]
    NotNow { path: PathBuf, problem: String },
    #[error("cannot read the saved KV cache {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot save the KV cache: {0}")]
    Write(#[from] StoreError),
    #[error("cannot save the KV cache: {0}")]
    Payload(#[from] KvPayloadError),
    /// One chat's snapshot alone is larger than the whole budget.
    #[error(
        "the KV cache of this chat ({bytes} bytes) is over the disk budget of {budget_bytes} bytes (kv_disk_budget_mib): not saved"
    )]
    OverBudget { bytes: u64, budget_bytes: u64 },
    #[error("'{0}' is not a chat id")]
    BadId(String),
}

/// The header: what the snapshot was made with and what it holds.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    key: SnapshotKey,
    layout: KvLayout,
}

/// A restored snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Restored {
    /// Tokens put back in the cache.
    pub tokens: usize,
    /// Of those, the ones the chat's prompt starts with.
    pub matching_tokens: usize,
    pub file_bytes: u64,
}

/// The snapshots folder, its budget and the key of the running engine.
#[derive(Debug, Clone)]
pub struct KvSnapshotStore {
    dir: PathBuf,
    budget_bytes: u64,
    key: SnapshotKey,
}

impl KvSnapshotStore {
    /// Snapshots in `dir`, at most `budget_bytes` of them, made under `key`.
    pub fn new(dir: PathBuf, budget_bytes: u64, key: SnapshotKey) -> Self {
        Self {
            dir,
            budget_bytes,
            key,
        }
    }

    /// The snapshot file of chat `chat_id` (ids as the chat store allows them).
    pub fn path(&self, chat_id: &str) -> Result<PathBuf, KvStoreError> {
        let ok = !chat_id.is_empty()
            && chat_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(KvStoreError::BadId(chat_id.to_string()));
        }
        Ok(self.dir.join(format!("{chat_id}.{EXTENSION}")))
    }

    /// Writes `session` as chat `chat_id`'s snapshot (atomically), then evicts the least
    /// recently used others until the folder fits the budget. Returns the file's size.
    pub fn save(&self, chat_id: &str, session: &Session) -> Result<u64, KvStoreError> {
        let path = self.path(chat_id)?;
        let header = Header {
            key: self.key.clone(),
            layout: session.cache_layout()?,
        };
        let header_json = serde_json::to_vec(&header).map_err(|e| {
            KvPayloadError::Io(std::io::Error::other(format!("encoding the header: {e}")))
        })?;
        let bytes = file_bytes(header_json.len() as u64, &header.layout).ok_or_else(|| {
            KvPayloadError::Mismatch("the cache's size overflows a file size".into())
        })?;
        if bytes > self.budget_bytes {
            return Err(KvStoreError::OverBudget {
                bytes,
                budget_bytes: self.budget_bytes,
            });
        }
        crate::store::write_atomic_with(&path, &mut |file| {
            let mut out = HashingWriter::new(BufWriter::new(file));
            out.write_all(MAGIC)?;
            out.write_all(&FORMAT_VERSION.to_le_bytes())?;
            out.write_all(&(header_json.len() as u32).to_le_bytes())?;
            out.write_all(&header_json)?;
            for token in session.tokens() {
                out.write_all(&token.to_le_bytes())?;
            }
            session
                .write_cache(&mut out)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let (mut file, checksum) = out.finish();
            file.write_all(checksum.as_ref())?;
            file.flush()
        })?;
        self.evict(&path);
        Ok(bytes)
    }

    /// Restores chat `chat_id`'s snapshot into `session` when one exists and `prompt` (the
    /// chat rendered as the next submit will send it) starts with its tokens up to a point
    /// the cache can resume from exactly. `Ok(None)`: no snapshot. A file that cannot be
    /// used is deleted ([`KvStoreError::Unusable`]); the session is then empty or untouched.
    pub fn restore(
        &self,
        chat_id: &str,
        session: &mut Session,
        prompt: &[u32],
        vocab_size: usize,
    ) -> Result<Option<Restored>, KvStoreError> {
        let path = self.path(chat_id)?;
        // Checked before opening: opening a FIFO would block the engine.
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(KvStoreError::NotNow {
                    path,
                    problem: "it is not a regular file".into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(KvStoreError::Read { path, source }),
        }
        let file = fs::File::open(&path).map_err(|source| KvStoreError::Read {
            path: path.clone(),
            source,
        })?;
        let unusable = |problem: String| KvStoreError::Unusable {
            path: path.clone(),
            problem,
            fate: match fs::remove_file(&path) {
                Ok(()) => "deleted".into(),
                Err(e) => format!("not deleted: {e}"),
            },
        };
        let read_error = |source| KvStoreError::Read {
            path: path.clone(),
            source,
        };
        let file_len = file.metadata().map_err(read_error)?.len();
        let mut input = HashingReader::new(BufReader::new(file));
        let header = match read_header(&mut input, file_len, &self.key, session.capacity()) {
            Ok(header) => header,
            Err(HeaderProblem::Unusable(problem)) => return Err(unusable(problem)),
            Err(HeaderProblem::NotNow(problem)) => {
                return Err(KvStoreError::NotNow { path, problem });
            }
        };
        let layout = &header.layout;
        let mut tokens = vec![0u32; layout.len];
        for token in &mut tokens {
            let mut bytes = [0u8; 4];
            input.read_exact(&mut bytes).map_err(read_error)?;
            *token = u32::from_le_bytes(bytes);
        }
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(unusable(format!(
                "token id {bad} is outside the vocabulary of {vocab_size}"
            )));
        }
        let matching = common_prefix_len(&tokens, prompt);
        let resumable = matching == tokens.len()
            || layout
                .snapshots
                .iter()
                .any(|s| s.pos > 0 && s.pos <= matching);
        if !resumable {
            return Err(unusable(format!(
                "its {} tokens are not this chat's (the first {matching} match)",
                tokens.len()
            )));
        }
        if let Err(e) = session.restore(tokens, layout, &mut input) {
            return Err(unusable(e.to_string()));
        }
        let (mut rest, checksum) = input.finish();
        let mut stored = [0u8; CHECKSUM_BYTES as usize];
        if rest.read_exact(&mut stored).is_err() || stored.as_slice() != checksum.as_ref() {
            session.reset();
            return Err(unusable("its checksum does not match its contents".into()));
        }
        // Recently used: the last to be evicted.
        if let Ok(file) = fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(SystemTime::now());
        }
        Ok(Some(Restored {
            tokens: layout.len,
            matching_tokens: matching,
            file_bytes: file_len,
        }))
    }

    /// Deletes the least recently used snapshots (never `keep`) until the folder fits the
    /// budget, and temporary files a killed save left behind.
    fn evict(&self, keep: &Path) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut snapshots = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                if modified.elapsed().is_ok_and(|age| age > STALE_TEMP_AGE) {
                    let _ = fs::remove_file(&path);
                }
            } else if path.extension().is_some_and(|e| e == EXTENSION) && meta.is_file() {
                snapshots.push((modified, meta.len(), path));
            }
        }
        let mut total: u64 = snapshots.iter().map(|(_, bytes, _)| bytes).sum();
        snapshots.sort_by_key(|(modified, _, _)| *modified);
        for (_, bytes, path) in snapshots {
            if total <= self.budget_bytes {
                break;
            }
            if path != keep && fs::remove_file(&path).is_ok() {
                total -= bytes;
            }
        }
    }
}

/// The size of a snapshot file with this header and layout; `None` on overflow.
fn file_bytes(header_bytes: u64, layout: &KvLayout) -> Option<u64> {
    PREAMBLE_BYTES
        .checked_add(header_bytes)?
        .checked_add((layout.len as u64).checked_mul(4)?)?
        .checked_add(layout.payload_bytes()?)?
        .checked_add(CHECKSUM_BYTES)
}

/// Why a header was refused: the file is no good, or just not for now.
enum HeaderProblem {
    Unusable(String),
    NotNow(String),
}

/// Reads and checks the preamble and header: magic, version, key, capacity, and that the
/// file is exactly as long as the header says (before the payload is allocated).
fn read_header(
    input: &mut dyn Read,
    file_len: u64,
    key: &SnapshotKey,
    capacity: usize,
) -> Result<Header, HeaderProblem> {
    let bad = |problem: String| HeaderProblem::Unusable(problem);
    if file_len < PREAMBLE_BYTES + CHECKSUM_BYTES {
        return Err(bad(format!("it is truncated ({file_len} bytes)")));
    }
    let mut preamble = [0u8; PREAMBLE_BYTES as usize];
    input
        .read_exact(&mut preamble)
        .map_err(|e| bad(format!("reading its start: {e}")))?;
    if &preamble[..8] != MAGIC {
        return Err(bad("it is not an ossterm KV snapshot".into()));
    }
    let word = |at: usize| {
        u32::from_le_bytes([
            preamble[at],
            preamble[at + 1],
            preamble[at + 2],
            preamble[at + 3],
        ])
    };
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "it is format version {version}, this ossterm reads version {FORMAT_VERSION}"
        )));
    }
    let header_len = word(12);
    if header_len > MAX_HEADER_BYTES || PREAMBLE_BYTES + u64::from(header_len) > file_len {
        return Err(bad(format!(
            "its header length {header_len} does not fit a {file_len}-byte file"
        )));
    }
    let mut json = vec![0u8; header_len as usize];
    input
        .read_exact(&mut json)
        .map_err(|e| bad(format!("reading its header: {e}")))?;
    let header: Header =
        serde_json::from_slice(&json).map_err(|e| bad(format!("its header is invalid: {e}")))?;
    if let Some(difference) = header.key.difference(key) {
        return Err(bad(difference));
    }
    let expected = file_bytes(u64::from(header_len), &header.layout);
    if expected != Some(file_len) {
        return Err(bad(format!(
            "it is {file_len} bytes, its header describes {}",
            expected.map_or("an impossible size".into(), |b| format!("{b} bytes"))
        )));
    }
    if header.layout.len > capacity {
        return Err(HeaderProblem::NotNow(format!(
            "it holds {} tokens, more than the context limit of {capacity} (raise it with /ctx)",
            header.layout.len
        )));
    }
    Ok(header)
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    digest: ring::digest::Context,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    fn finish(self) -> (W, ring::digest::Digest) {
        (self.inner, self.digest.finish())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    digest: ring::digest::Context,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    fn finish(self) -> (R, ring::digest::Digest) {
        (self.inner, self.digest.finish())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GptOss, Precision};
    use candle_core::Device;

    fn model() -> GptOss {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-int4");
        GptOss::load(&dir, &Device::Cpu, Precision::Default).expect("int4 fixture")
    }

    fn key() -> SnapshotKey {
        SnapshotKey {
            model_digest: "tiny".into(),
            cache_dtype: "f16".into(),
            activation_dtype: "f32".into(),
            kernels: "Auto".into(),
            device: "cpu".into(),
        }
    }

    /// A session over `prompt` then a few answer tokens, with the turn-start snapshot.
    fn chatted(model: &GptOss, prompt: &[u32]) -> Session {
        let mut session = Session::new(model.new_cache(64).expect("cache"));
        session.feed(model, prompt).expect("prefill");
        session.mark_turn_start();
        for token in [7u32, 8, 9, 10, 11, 12, 13, 14, 15, 16] {
            session.feed(model, &[token]).expect("decode");
        }
        session
    }

    fn prompt() -> Vec<u32> {
        (0..20).map(|i| (i * 13 + 5) % 400).collect()
    }

    /// The chat's next prompt: the first prompt, then something else than the answer.
    fn next_prompt() -> Vec<u32> {
        let mut next = prompt();
        next.extend([100u32, 101, 102]);
        next
    }

    struct Fixture {
        model: GptOss,
        dir: tempfile::TempDir,
        store: KvSnapshotStore,
    }

    fn fixture(budget_bytes: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KvSnapshotStore::new(dir.path().join("kv"), budget_bytes, key());
        Fixture {
            model: model(),
            dir,
            store,
        }
    }

    impl Fixture {
        fn save(&self, id: &str) -> u64 {
            let session = chatted(&self.model, &prompt());
            self.store.save(id, &session).expect("saved")
        }

        fn restore(&self, id: &str) -> (Session, Result<Option<Restored>, KvStoreError>) {
            let mut session = Session::new(self.model.new_cache(64).expect("cache"));
            let result = self.store.restore(
                id,
                &mut session,
                &next_prompt(),
                self.model.config().vocab_size,
            );
            (session, result)
        }

        /// Rewrites chat `id`'s file through `edit`.
        fn edit(&self, id: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
            let path = self.store.path(id).expect("path");
            let mut bytes = fs::read(&path).expect("read");
            edit(&mut bytes);
            fs::write(&path, bytes).expect("write");
            path
        }
    }

    #[test]
    fn a_saved_session_comes_back_with_its_tokens() {
        let f = fixture(1 << 30);
        let bytes = f.save("chat-1");
        let path = f.store.path("chat-1").expect("path");
        assert_eq!(fs::metadata(&path).expect("file").len(), bytes);
        let (session, result) = f.restore("chat-1");
        let restored = result.expect("no error").expect("a snapshot");
        assert_eq!(
            restored,
            Restored {
                tokens: 30,
                matching_tokens: 20,
                file_bytes: bytes
            }
        );
        assert_eq!(session.tokens(), chatted(&f.model, &prompt()).tokens());
        let (_, none) = f.restore("chat-2");
        assert!(matches!(none, Ok(None)), "no file, no snapshot");
        assert!(matches!(f.store.path("../x"), Err(KvStoreError::BadId(_))));
    }

    fn assert_unusable(f: &Fixture, id: &str, path: &Path, expected: &str) {
        let (session, result) = f.restore(id);
        let err = result.expect_err("unusable").to_string();
        assert!(
            err.contains(expected) && err.contains("(deleted)") && err.contains(id),
            "{err}"
        );
        assert!(!path.exists(), "{} was not deleted", path.display());
        assert!(session.is_empty());
    }

    #[test]
    fn corrupt_truncated_foreign_and_old_files_are_ignored_and_deleted() {
        let f = fixture(1 << 30);
        f.save("flipped");
        let path = f.edit("flipped", |b| {
            let last = b.len() - 40;
            b[last] ^= 1;
        });
        assert_unusable(&f, "flipped", &path, "its checksum does not match");

        let bytes = f.save("short");
        let path = f.edit("short", |b| b.truncate(b.len() - 1));
        let expected = format!(
            "it is {} bytes, its header describes {bytes} bytes",
            bytes - 1
        );
        assert_unusable(&f, "short", &path, &expected);

        f.save("tiny");
        let path = f.edit("tiny", |b| b.truncate(10));
        assert_unusable(&f, "tiny", &path, "it is truncated (10 bytes)");

        f.save("version");
        let path = f.edit("version", |b| b[8] = 2);
        assert_unusable(
            &f,
            "version",
            &path,
            "format version 2, this ossterm reads version 1",
        );

        f.save("magic");
        let path = f.edit("magic", |b| b[0] = b'X');
        assert_unusable(&f, "magic", &path, "not an ossterm KV snapshot");

        let foreign = KvSnapshotStore::new(
            f.dir.path().join("kv"),
            1 << 30,
            SnapshotKey {
                kernels: "Q8".into(),
                ..key()
            },
        );
        foreign
            .save("foreign", &chatted(&f.model, &prompt()))
            .expect("saved");
        let path = f.store.path("foreign").expect("path");
        assert_unusable(
            &f,
            "foreign",
            &path,
            "made for kernels Q8, this engine runs Auto",
        );

        // Another chat's tokens under this id.
        let other: Vec<u32> = (0..20).map(|i| (i * 3 + 1) % 400).collect();
        f.store
            .save("other", &chatted(&f.model, &other))
            .expect("saved");
        let path = f.store.path("other").expect("path");
        assert_unusable(&f, "other", &path, "its 30 tokens are not this chat's");
    }

    #[test]
    fn a_fifo_or_folder_in_place_of_a_snapshot_is_refused_without_opening_it() {
        let f = fixture(1 << 30);
        let folder = f.store.path("folder").expect("path");
        fs::create_dir_all(&folder).expect("mkdir");
        let fifo = f.store.path("fifo").expect("path");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        for (id, path) in [("folder", &folder), ("fifo", &fifo)] {
            let (_, result) = f.restore(id);
            let err = result.expect_err("refused").to_string();
            assert_eq!(
                err,
                format!(
                    "did not restore the saved KV cache {}: it is not a regular file",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn a_snapshot_over_the_context_limit_is_kept_for_later() {
        let f = fixture(1 << 30);
        f.save("big");
        let mut small = Session::new(f.model.new_cache(16).expect("cache"));
        let err = f
            .store
            .restore(
                "big",
                &mut small,
                &next_prompt(),
                f.model.config().vocab_size,
            )
            .expect_err("30 tokens do not fit 16");
        let text = err.to_string();
        assert!(
            text.contains("holds 30 tokens, more than the context limit of 16"),
            "{text}"
        );
        assert!(f.store.path("big").expect("path").exists());
    }

    #[test]
    fn the_least_recently_used_snapshots_go_first_when_over_budget() {
        let probe = fixture(1 << 30);
        let one = probe.save("probe");
        // Room for two snapshots, not three.
        let f = fixture(2 * one + one / 2);
        let age = |id: &str, seconds_ago: u64| {
            let file = fs::File::options()
                .append(true)
                .open(f.store.path(id).expect("path"))
                .expect("open");
            file.set_modified(SystemTime::now() - Duration::from_secs(seconds_ago))
                .expect("set mtime");
        };
        f.save("a");
        age("a", 300);
        f.save("b");
        age("b", 200);
        // Reading "a" makes it recent: "b" is now the least recently used.
        let (_, restored) = f.restore("a");
        assert!(restored.expect("no error").is_some());
        // A temporary file a killed save left long ago goes too; a fresh one (a save in
        // progress in another copy of the app) stays.
        let stale = f.dir.path().join("kv/.old.kv.1.tmp");
        let fresh = f.dir.path().join("kv/.new.kv.2.tmp");
        for path in [&stale, &fresh] {
            fs::write(path, "partial").expect("write");
        }
        fs::File::options()
            .append(true)
            .open(&stale)
            .and_then(|file| file.set_modified(SystemTime::now() - 2 * STALE_TEMP_AGE))
            .expect("age the temp file");
        f.save("c");
        let exists = |id: &str| f.store.path(id).expect("path").exists();
        assert_eq!((exists("a"), exists("b"), exists("c")), (true, false, true));
        assert_eq!((stale.exists(), fresh.exists()), (false, true));

        let tight = fixture(one - 1);
        let session = chatted(&tight.model, &prompt());
        let err = tight.store.save("x", &session).expect_err("over budget");
        assert!(
            err.to_string().contains(&format!(
                "({one} bytes) is over the disk budget of {} bytes",
                one - 1
            )),
            "{err}"
        );
    }
}
