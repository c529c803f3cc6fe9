//! Getting a model folder: a local path as is, or a hub id downloaded into the standard
//! Hugging Face cache (`HF_HOME`), with progress, resume and checks on everything the hub
//! sends.
//!
//! - `HF_ENDPOINT` points at another hub (tests use a local server); `HF_TOKEN` (else the
//!   cache's token file) authorizes gated or private repos; the token goes to the hub's own
//!   origin only, never to the CDN a large file redirects to.
//! - `HF_HUB_OFFLINE=1` resolves from the cache only and never touches the network.
//! - A model whose files are all cached is used without touching the network.
//! - Every request connects within [`CONNECT_TIMEOUT`] and gives up after
//!   `OSSTERM_HUB_TIMEOUT_S` seconds (default 60) without data; redirects stop after
//!   [`MAX_REDIRECTS`].
//! - The revision is pinned to one commit (from the repo info) for all files. Commit ids,
//!   ETags and file names are validated before they name anything on disk (a hostile hub
//!   cannot write outside the cache).
//! - Interrupted downloads leave `blobs/<etag>.part`; the next run asks for the rest with a
//!   `Range` request. A file with a sha256 (`X-Linked-Etag`) is checked after download and
//!   resume; a mismatch removes the part file so the next run starts over.
//! - A resolve can be cancelled through [`HubOptions::cancel`] (the app quitting).
//! - A `--model` that reads as a path but is no folder is an error, not a hub lookup.
//!
//! hf-hub (0.4.3) provides the cache layout (`Cache`, `Repo`); the network side is ours,
//! because its client has no timeouts, follows redirect loops forever and writes to paths
//! built from unchecked headers.

mod blob;
mod client;
mod error;
mod progress;
mod validate;
mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::{Cache, Repo, RepoType};

pub use client::MAX_REDIRECTS;
pub use error::HubError;
pub use progress::DownloadProgress;
pub use watch::Cancel;

use client::Client;
use progress::Reporter;
use watch::Watched;

/// The default hub endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// How long connecting to the hub may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a request may receive nothing before it is given up (resumable).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The variable that overrides [`STALL_TIMEOUT`], in whole seconds.
pub const TIMEOUT_ENV: &str = "OSSTERM_HUB_TIMEOUT_S";
/// The largest [`TIMEOUT_ENV`] accepted.
const MAX_TIMEOUT_SECONDS: u64 = 3600;
/// Files a model folder needs besides the weights.
const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];
/// Files used when present.
const OPTIONAL_FILES: [&str; 1] = ["generation_config.json"];
const SINGLE_WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// Where and how to reach the hub; [`HubOptions::from_env`] reads the standard variables.
#[derive(Debug, Clone, PartialEq)]
pub struct HubOptions {
    /// Hub URL without a trailing slash.
    pub endpoint: String,
    /// The cache's `hub` folder (`$HF_HOME/hub`).
    pub cache_dir: PathBuf,
    /// Resolve from the cache only.
    pub offline: bool,
    /// Bearer token for gated/private repos.
    pub token: Option<String>,
    /// Every request is given up (resumably) when it receives nothing for this long.
    pub stall_timeout: Duration,
    /// Raised to stop a resolve in progress.
    pub cancel: Cancel,
}

impl HubOptions {
    /// `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_OFFLINE`, `HF_TOKEN` (else the cache's token file),
    /// `OSSTERM_HUB_TIMEOUT_S`.
    pub fn from_env() -> Result<Self, HubError> {
        let cache = Cache::from_env();
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| cache.token());
        Ok(Self {
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
                .trim_end_matches('/')
                .to_string(),
            cache_dir: cache.path().clone(),
            offline: std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            }),
            token,
            stall_timeout: match std::env::var(TIMEOUT_ENV) {
                Ok(text) => parse_timeout(&text)?,
                Err(_) => STALL_TIMEOUT,
            },
            cancel: Cancel::new(),
        })
    }
}

/// Whole seconds, 1 to [`MAX_TIMEOUT_SECONDS`].
fn parse_timeout(text: &str) -> Result<Duration, HubError> {
    match text.trim().parse::<u64>() {
        Ok(seconds @ 1..=MAX_TIMEOUT_SECONDS) => Ok(Duration::from_secs(seconds)),
        _ => Err(HubError::BadSetting {
            name: TIMEOUT_ENV,
            value: text.to_string(),
            problem: format!("expected whole seconds from 1 to {MAX_TIMEOUT_SECONDS}"),
        }),
    }
}

/// A local folder as is, or the cached snapshot folder of a hub model (downloading what is
/// missing), with the environment's hub settings. The folder has config.json, tokenizer.json
/// and the safetensors weights.
pub fn resolve(
    model: &str,
    revision: Option<&str>,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, HubError> {
    resolve_with(&HubOptions::from_env()?, model, revision, progress)
}

/// [`resolve`] with explicit hub settings.
pub fn resolve_with(
    options: &HubOptions,
    model: &str,
    revision: Option<&str>,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, HubError> {
    if Path::new(model).is_dir() {
        return Ok(PathBuf::from(model));
    }
    let hub = Hub::new(options, model, revision)?;
    if let Some(dir) = hub.cached_folder()? {
        return Ok(dir);
    }
    if options.offline {
        return Err(hub.first_missing());
    }
    hub.download_all(progress)
}

/// The complete cached snapshot folder of hub model `model`, if it was downloaded; never
/// touches the network.
pub fn cached_snapshot(model: &str, revision: Option<&str>) -> Result<Option<PathBuf>, HubError> {
    let options = HubOptions::from_env()?;
    Hub::new(&options, model, revision)?.cached_folder()
}

/// A folder with at least config.json of `model` (local, cached, or just that file fetched),
/// plus whatever safetensors are cached: enough for the planner.
pub fn resolve_headers(model: &str, revision: Option<&str>) -> Result<PathBuf, HubError> {
    if Path::new(model).is_dir() {
        return Ok(PathBuf::from(model));
    }
    let options = HubOptions::from_env()?;
    let hub = Hub::new(&options, model, revision)?;
    if let Some(path) = hub.cache_repo().get("config.json") {
        return Ok(parent_of(&path));
    }
    if options.offline {
        return Err(hub.not_cached("config.json"));
    }
    let client = hub.client()?;
    let commit = hub.pin(&client)?;
    let path = hub.fetch(&client, &commit, "config.json", 1, 1, &mut |_| {})?;
    hub.record_ref(&client, &commit)?;
    Ok(parent_of(&path))
}

/// A `--model` that is not a folder must read as a hub id (`name` or `org/name`): one that
/// reads as a path (absolute, `./`, `../`, `~`, a trailing slash, more than one `/`) is a
/// folder that is missing, not something to look up on the hub.
fn check_hub_id(model: &str) -> Result<(), HubError> {
    let path_like = model.starts_with(['/', '.', '~'])
        || model.ends_with('/')
        || model.contains('\\')
        || model.matches('/').count() > 1;
    if path_like {
        return Err(HubError::NoSuchFolder {
            path: PathBuf::from(model),
        });
    }
    for part in model.split('/') {
        validate::hub_id_part(part).map_err(|problem| HubError::BadHubId {
            model: model.to_string(),
            problem: problem.to_string(),
        })?;
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map_or_else(PathBuf::new, Path::to_path_buf)
}

struct Hub<'a> {
    options: &'a HubOptions,
    model: String,
    revision: String,
    cache: Cache,
}

impl<'a> Hub<'a> {
    fn new(options: &'a HubOptions, model: &str, revision: Option<&str>) -> Result<Self, HubError> {
        check_hub_id(model)?;
        let revision = revision.unwrap_or("main");
        validate::revision(revision).map_err(|problem| HubError::BadSetting {
            name: "revision",
            value: revision.to_string(),
            problem: problem.to_string(),
        })?;
        Ok(Self {
            options,
            model: model.to_string(),
            revision: revision.to_string(),
            cache: Cache::new(options.cache_dir.clone()),
        })
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.model.clone(), RepoType::Model, self.revision.clone())
    }

    fn cache_repo(&self) -> hf_hub::CacheRepo {
        self.cache.repo(self.repo())
    }

    /// `models--org--name` in the cache.
    fn repo_dir(&self) -> PathBuf {
        self.options.cache_dir.join(self.repo().folder_name())
    }

    fn not_cached(&self, file: &str) -> HubError {
        HubError::NotCached {
            model: self.model.clone(),
            file: file.to_string(),
            cache: self.cache.path().clone(),
        }
    }

    /// The snapshot folder when every needed file is cached.
    fn cached_folder(&self) -> Result<Option<PathBuf>, HubError> {
        let cache = self.cache_repo();
        let Some(config) = cache.get("config.json") else {
            return Ok(None);
        };
        if REQUIRED_FILES.iter().any(|f| cache.get(f).is_none()) {
            return Ok(None);
        }
        if cache.get(SINGLE_WEIGHTS).is_some() {
            return Ok(Some(parent_of(&config)));
        }
        let Some(index) = cache.get(WEIGHTS_INDEX) else {
            return Ok(None);
        };
        let shards = shards_of(&index)?;
        if shards.iter().all(|s| cache.get(s).is_some()) {
            Ok(Some(parent_of(&config)))
        } else {
            Ok(None)
        }
    }

    /// The error for the first file missing from the cache (offline mode).
    fn first_missing(&self) -> HubError {
        let cache = self.cache_repo();
        for file in REQUIRED_FILES {
            if cache.get(file).is_none() {
                return self.not_cached(file);
            }
        }
        match cache.get(WEIGHTS_INDEX) {
            Some(index) => {
                let missing = shards_of(&index)
                    .ok()
                    .and_then(|shards| shards.into_iter().find(|s| cache.get(s).is_none()));
                self.not_cached(missing.as_deref().unwrap_or(WEIGHTS_INDEX))
            }
            None => self.not_cached(SINGLE_WEIGHTS),
        }
    }

    fn client(&self) -> Result<Client, HubError> {
        Client::new(self.options, &self.model, &self.revision)
    }

    fn watched<'w>(&'w self, file: &'w str) -> Watched<'w> {
        Watched {
            model: &self.model,
            file,
            cancel: &self.options.cancel,
            read_timeout: self.options.stall_timeout,
        }
    }

    /// The commit the revision points at now; every file is fetched at that commit.
    fn pin(&self, client: &Client) -> Result<String, HubError> {
        Ok(self.info(client)?.sha)
    }

    fn info(&self, client: &Client) -> Result<client::RepoInfo, HubError> {
        let client = client.clone();
        watch::run(&self.watched("(repo info)"), None, move |_| {
            client.repo_info()
        })
    }

    /// `refs/<revision>` names `commit`, so that later runs find the snapshot offline.
    fn record_ref(&self, client: &Client, commit: &str) -> Result<(), HubError> {
        self.cache_repo()
            .create_ref(commit)
            .map_err(|e| client.download_error("(refs)", e))
    }

    fn download_all(
        &self,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<PathBuf, HubError> {
        let client = self.client()?;
        let info = self.info(&client)?;
        let commit = info.sha;
        // Recorded first, so that what an interrupted run did fetch is found offline.
        self.record_ref(&client, &commit)?;
        let listed: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let mut files: Vec<String> = REQUIRED_FILES.iter().map(|f| f.to_string()).collect();
        files.extend(
            OPTIONAL_FILES
                .iter()
                .filter(|f| listed.contains(f))
                .map(|f| f.to_string()),
        );
        let sharded = listed.contains(&WEIGHTS_INDEX);
        if sharded {
            files.push(WEIGHTS_INDEX.to_string());
        } else if listed.contains(&SINGLE_WEIGHTS) {
            files.push(SINGLE_WEIGHTS.to_string());
        } else {
            return Err(HubError::NoWeights {
                model: self.model.clone(),
            });
        }
        let count = files.len();
        let mut index_path = None;
        for (i, file) in files.iter().enumerate() {
            let path = self.fetch(&client, &commit, file, i + 1, count, progress)?;
            if file == WEIGHTS_INDEX {
                index_path = Some(path);
            }
        }
        if let Some(index) = index_path {
            let shards = shards_of(&index)?;
            let count = shards.len();
            for (i, shard) in shards.iter().enumerate() {
                self.fetch(&client, &commit, shard, i + 1, count, progress)?;
            }
        }
        Ok(self.repo_dir().join("snapshots").join(&commit))
    }

    /// One file of the snapshot at `commit`: from the cache, or downloaded on a watched
    /// thread with its size (and sha256, where the hub sends one) checked.
    fn fetch(
        &self,
        client: &Client,
        commit: &str,
        file: &str,
        index: usize,
        count: usize,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<PathBuf, HubError> {
        validate::file_name(file)
            .map_err(|problem| client.unsafe_value(file, "file name", file, problem))?;
        let cached = self.repo_dir().join("snapshots").join(commit).join(file);
        if cached.is_file() {
            return Ok(cached);
        }
        let mut reporter = Reporter::new(file, index, count, progress);
        let (client, commit, name, repo_dir, cancel) = (
            client.clone(),
            commit.to_string(),
            file.to_string(),
            self.repo_dir(),
            self.options.cancel.clone(),
        );
        watch::run(&self.watched(file), Some(&mut reporter), move |events| {
            let meta = client.file_meta(&name, &commit)?;
            blob::store(&client, &repo_dir, &name, &meta, &cancel, events)
        })
    }
}

/// The shard names listed in a cached index.
fn shards_of(index: &Path) -> Result<Vec<String>, HubError> {
    crate::memory::inventory::shard_files(index).map_err(|e| HubError::BadIndex {
        path: index.to_path_buf(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_variable_takes_whole_seconds_in_range() {
        assert_eq!(parse_timeout(" 5 ").expect("5 s"), Duration::from_secs(5));
        for bad in ["0", "-1", "1.5", "abc", "3601", ""] {
            let message = parse_timeout(bad).expect_err(bad).to_string();
            assert!(message.contains(TIMEOUT_ENV), "{message}");
            assert!(
                message.contains("whole seconds from 1 to 3600"),
                "{message}"
            );
        }
    }

    #[test]
    fn hub_ids_with_odd_characters_are_refused() {
        for bad in ["org/na me", "org/x?y=1", "org/-x"] {
            let err = check_hub_id(bad).expect_err(bad);
            assert!(matches!(err, HubError::BadHubId { .. }), "{bad}: {err:?}");
            assert!(err.to_string().contains("is not a hub id"), "{err}");
        }
        assert!(check_hub_id("openai/gpt-oss-20b").is_ok());
    }
}
