//! What can go wrong getting a model, each error saying what to do about it.

use std::path::PathBuf;

use super::{SINGLE_WEIGHTS, TIMEOUT_ENV, WEIGHTS_INDEX};
use crate::config::DEFAULT_MODEL;

/// Errors getting a model.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// `HF_HUB_OFFLINE=1` and the cache lacks a file.
    #[error(
        "{model}: {file} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE to download it, or pass --model /path/to/a/local/folder"
    )]
    NotCached {
        model: String,
        file: String,
        cache: PathBuf,
    },
    /// The hub could not be reached.
    #[error(
        "cannot reach the Hugging Face hub at {endpoint} ({problem}): check the network (or HF_ENDPOINT), set HF_HUB_OFFLINE=1 to use a cached copy, pass --model /path/to/a/local/folder, or try the built-in demo model with --demo"
    )]
    Unreachable { endpoint: String, problem: String },
    /// The hub refused access (gated or private repo).
    #[error(
        "the hub refused access to {model} ({problem}): accept its license on the website and set HF_TOKEN (or run `huggingface-cli login`)"
    )]
    Unauthorized { model: String, problem: String },
    /// The repo or revision does not exist.
    #[error(
        "{model} (revision {revision}) was not found on the hub ({problem}): check the id, or pass --model /path/to/a/local/folder"
    )]
    NotFound {
        model: String,
        revision: String,
        problem: String,
    },
    /// The repo has no weights ossterm can read.
    #[error(
        "{model} has no {SINGLE_WEIGHTS} or {WEIGHTS_INDEX}: it is not a safetensors checkpoint"
    )]
    NoWeights { model: String },
    /// A downloaded file has another size than the hub announced.
    #[error(
        "{path} has {actual} bytes but the hub announced {expected}: the copy was removed, run again to download it anew"
    )]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// A downloaded (or resumed) file's sha256 is not the one the hub announced.
    #[error(
        "{file} of {model} has sha256 {actual} but the hub announced {expected} (X-Linked-Etag): the bad copy was removed, run again to download it anew"
    )]
    HashMismatch {
        model: String,
        file: String,
        expected: String,
        actual: String,
    },
    /// Any other download failure; the partial file stays for resume.
    #[error("downloading {file} of {model} failed: {problem} (run again to resume)")]
    Download {
        model: String,
        file: String,
        problem: String,
    },
    /// The index of a sharded checkpoint is unreadable.
    #[error("{path}: {problem}")]
    BadIndex { path: PathBuf, problem: String },
    /// `--model` names a path (not `org/name`) where there is no folder.
    #[error(
        "there is no folder {path}: pass a folder with config.json and the safetensors, or a hub id such as {DEFAULT_MODEL}"
    )]
    NoSuchFolder { path: PathBuf },
    /// `--model` reads as a hub id but cannot be one.
    #[error("{model:?} is not a hub id ({problem}): use org/name, such as {DEFAULT_MODEL}")]
    BadHubId { model: String, problem: String },
    /// No bytes arrived for a while.
    #[error(
        "downloading {file} of {model}: no data from the hub for {seconds} s (the limit is set by {TIMEOUT_ENV}); check the connection and run again to resume"
    )]
    Stalled {
        model: String,
        file: String,
        seconds: u64,
    },
    /// The hub sent a value that would become an unsafe path (a hostile or broken hub).
    #[error(
        "the hub sent an unsafe {what} for {file} of {model}: {value:?} ({problem}); nothing was written"
    )]
    UnsafeValue {
        model: String,
        file: String,
        what: &'static str,
        value: String,
        problem: String,
    },
    /// Redirects went on past the limit (a loop, or a broken hub).
    #[error(
        "getting {file} of {model}: the hub redirected {hops} times (last to {url}); giving up"
    )]
    TooManyRedirects {
        model: String,
        file: String,
        url: String,
        hops: usize,
    },
    /// Another download of the same file holds its lock.
    #[error(
        "{file} of {model} is being downloaded by another process (lock {lock}): wait for it, or stop it and run again"
    )]
    Busy {
        model: String,
        file: String,
        lock: PathBuf,
    },
    /// The download was cancelled (the app is quitting); the partial file stays for resume.
    #[error("downloading {file} of {model} was cancelled (run again to resume)")]
    Cancelled { model: String, file: String },
    /// A hub setting from the environment is unusable.
    #[error("{name}={value:?}: {problem}")]
    BadSetting {
        name: &'static str,
        value: String,
        problem: String,
    },
}
