//! Getting a model folder: a local path as is, or a hub id downloaded through `hf-hub` into the
//! standard Hugging Face cache (`HF_HOME`), with progress, resume and size checks.
//!
//! - `HF_ENDPOINT` points at another hub (tests use a local server); `HF_TOKEN` (else the
//!   cache's token file) authorizes gated or private repos.
//! - `HF_HUB_OFFLINE=1` resolves from the cache only and never touches the network.
//! - A model whose files are all cached is used without touching the network.
//! - Interrupted downloads leave `<blob>.part` in the cache; the next run asks for the rest
//!   with a `Range` request (hf-hub's resume).
//! - hf-hub 0.4.3's agent has no read timeout, so before any request the endpoint is checked
//!   with a bounded TCP connect (an unreachable hub fails in seconds, not minutes), and each
//!   file downloads on a thread that is given up when nothing arrives for `stall_timeout`.
//! - A `--model` that reads as a path but is no folder is an error, not a hub lookup.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::config::DEFAULT_MODEL;

/// The default hub endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// How long the endpoint reachability check may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);
/// Files a model folder needs besides the weights.
const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];
/// Files used when present.
const OPTIONAL_FILES: [&str; 1] = ["generation_config.json"];
const SINGLE_WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// Progress callbacks come at most this often (plus one at each file's end).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

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
        "{path} has {actual} bytes but the hub announced {expected}: delete it and download again"
    )]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
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
    /// No bytes arrived for a while (hf-hub's HTTP client has no read timeout of its own).
    #[error(
        "downloading {file} of {model}: no data from the hub for {seconds} s; check the connection and run again to resume"
    )]
    Stalled {
        model: String,
        file: String,
        seconds: u64,
    },
}

/// Progress of one file's download.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadProgress {
    /// The file being downloaded.
    pub file: String,
    /// Its index among the files that needed downloading (1-based) and their count.
    pub file_index: usize,
    pub file_count: usize,
    /// Bytes of this file on disk so far (resumed bytes included).
    pub done_bytes: u64,
    /// The file's size as the hub announced it.
    pub total_bytes: u64,
    /// Bytes that were already on disk from an earlier, interrupted run.
    pub resumed_from_bytes: u64,
    /// Download rate of this run in bytes per second.
    pub bytes_per_second: f64,
    /// Estimated seconds left for this file, when the rate is known.
    pub eta_seconds: Option<f64>,
    /// True on the file's last report.
    pub finished: bool,
}

impl DownloadProgress {
    /// `config.json 1/4  12.0 MiB / 40.0 MiB  3.2 MiB/s  ETA 9s`.
    pub fn line(&self) -> String {
        use crate::memory::planner::format_bytes;
        let eta = match self.eta_seconds {
            Some(s) if !self.finished => format!("  ETA {}", format_seconds(s)),
            _ => String::new(),
        };
        let resumed = if self.resumed_from_bytes > 0 {
            format!("  (resumed at {})", format_bytes(self.resumed_from_bytes))
        } else {
            String::new()
        };
        format!(
            "{} {}/{}  {} / {}  {}/s{eta}{resumed}",
            self.file,
            self.file_index,
            self.file_count,
            format_bytes(self.done_bytes),
            format_bytes(self.total_bytes),
            format_bytes(self.bytes_per_second as u64),
        )
    }
}

fn format_seconds(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

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
    /// A download that receives nothing for this long is given up (resumable).
    pub stall_timeout: Duration,
}

/// How long a download may receive nothing before it is given up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

impl HubOptions {
    /// `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_OFFLINE`, `HF_TOKEN` (else the cache's token file).
    pub fn from_env() -> Self {
        let cache = Cache::from_env();
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| cache.token());
        Self {
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
            stall_timeout: STALL_TIMEOUT,
        }
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
    resolve_with(&HubOptions::from_env(), model, revision, progress)
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
    check_hub_id(model)?;
    let hub = Hub::new(options, model, revision);
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
    check_hub_id(model)?;
    let options = HubOptions::from_env();
    Hub::new(&options, model, revision).cached_folder()
}

/// A folder with at least config.json of `model` (local, cached, or just that file fetched),
/// plus whatever safetensors are cached: enough for the planner.
pub fn resolve_headers(model: &str, revision: Option<&str>) -> Result<PathBuf, HubError> {
    if Path::new(model).is_dir() {
        return Ok(PathBuf::from(model));
    }
    check_hub_id(model)?;
    let options = HubOptions::from_env();
    let hub = Hub::new(&options, model, revision);
    if let Some(path) = hub.cache_repo().get("config.json") {
        return Ok(parent_of(&path));
    }
    if options.offline {
        return Err(hub.not_cached("config.json"));
    }
    let path = hub.fetch(&hub.api()?, "config.json", 1, 1, &mut |_| {})?;
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
    fn new(options: &'a HubOptions, model: &str, revision: Option<&str>) -> Self {
        Self {
            options,
            model: model.to_string(),
            revision: revision.unwrap_or("main").to_string(),
            cache: Cache::new(options.cache_dir.clone()),
        }
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.model.clone(), RepoType::Model, self.revision.clone())
    }

    fn cache_repo(&self) -> hf_hub::CacheRepo {
        self.cache.repo(self.repo())
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

    /// A hub client, once the endpoint answers (cloned into each download's thread).
    fn api(&self) -> Result<Api, HubError> {
        check_reachable(&self.options.endpoint)?;
        let api = ApiBuilder::from_cache(self.cache.clone())
            .with_endpoint(self.options.endpoint.clone())
            .with_token(self.options.token.clone())
            .with_progress(false)
            .build()
            .map_err(|e| self.download_error("(connection setup)", e))?;
        Ok(api)
    }

    fn download_all(
        &self,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<PathBuf, HubError> {
        let api = self.api()?;
        let repo = api.repo(self.repo());
        let info = repo.info().map_err(|e| self.classify(e, "(repo info)"))?;
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
        let mut config_path = None;
        let mut index_path = None;
        let count = files.len();
        for (i, file) in files.iter().enumerate() {
            let path = self.fetch(&api, file, i + 1, count, progress)?;
            if file == "config.json" {
                config_path = Some(path.clone());
            }
            if file == WEIGHTS_INDEX {
                index_path = Some(path);
            }
        }
        if let Some(index) = index_path {
            let shards = shards_of(&index)?;
            let count = shards.len();
            for (i, shard) in shards.iter().enumerate() {
                self.fetch(&api, shard, i + 1, count, progress)?;
            }
        }
        let config = config_path.ok_or_else(|| self.not_cached("config.json"))?;
        Ok(parent_of(&config))
    }

    /// One file from the cache, or downloaded with progress and its size checked.
    fn fetch(
        &self,
        api: &Api,
        file: &str,
        index: usize,
        count: usize,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<PathBuf, HubError> {
        if let Some(path) = self.cache_repo().get(file) {
            return Ok(path);
        }
        let mut reporter = Reporter::new(file, index, count, progress);
        let path = self.watched_download(api, file, &mut reporter)?;
        let expected = reporter.total_bytes;
        let actual = std::fs::metadata(&path)
            .map_err(|e| self.download_error(file, e))?
            .len();
        if actual != expected {
            // Drop the bad copy so that the next run downloads it again instead of using it.
            if let Ok(blob) = std::fs::canonicalize(&path) {
                let _ = std::fs::remove_file(blob);
            }
            let _ = std::fs::remove_file(&path);
            return Err(HubError::SizeMismatch {
                path,
                expected,
                actual,
            });
        }
        Ok(path)
    }

    /// Downloads `file` on a thread of its own, relaying its progress to `reporter`, and gives
    /// up when nothing arrives for `stall_timeout`: hf-hub's client would wait forever on a
    /// connection that stopped sending. A given-up download's thread is left to its socket;
    /// the partial file stays for the next run to resume.
    fn watched_download(
        &self,
        api: &Api,
        file: &str,
        reporter: &mut Reporter<'_>,
    ) -> Result<PathBuf, HubError> {
        let (events, received) = std::sync::mpsc::channel();
        let (repo, name) = (api.clone().repo(self.repo()), file.to_string());
        std::thread::Builder::new()
            .name("hub-download".into())
            .spawn(move || {
                let result = repo.download_with_progress(&name, Relay(events.clone()));
                let _ = events.send(Relayed::Done(result));
            })
            .map_err(|e| self.download_error(file, e))?;
        loop {
            match received.recv_timeout(self.options.stall_timeout) {
                Ok(Relayed::Init(size)) => reporter.start(size),
                Ok(Relayed::Update(size)) => reporter.advance(size),
                Ok(Relayed::Finish) => reporter.report(true),
                Ok(Relayed::Done(result)) => return result.map_err(|e| self.classify(e, file)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(HubError::Stalled {
                        model: self.model.clone(),
                        file: file.to_string(),
                        seconds: self.options.stall_timeout.as_secs(),
                    });
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.download_error(file, "the download thread stopped"));
                }
            }
        }
    }

    fn download_error(&self, file: &str, e: impl std::fmt::Display) -> HubError {
        HubError::Download {
            model: self.model.clone(),
            file: file.to_string(),
            problem: e.to_string(),
        }
    }

    /// Turns hf-hub's error into one that says what to do.
    fn classify(&self, error: ApiError, file: &str) -> HubError {
        let text = error.to_string();
        let status = text
            .split("status code ")
            .nth(1)
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok());
        match status {
            Some(401 | 403) => HubError::Unauthorized {
                model: self.model.clone(),
                problem: text,
            },
            Some(404) => HubError::NotFound {
                model: self.model.clone(),
                revision: self.revision.clone(),
                problem: text,
            },
            // ureq's transport errors (hf-hub does not re-export ureq's error kinds).
            _ if matches!(&error, ApiError::RequestError(_))
                && [
                    "Connection Failed",
                    "Dns Failed",
                    "Network Error",
                    "timed out",
                ]
                .iter()
                .any(|kind| text.contains(kind)) =>
            {
                HubError::Unreachable {
                    endpoint: self.options.endpoint.clone(),
                    problem: text,
                }
            }
            _ => self.download_error(file, text),
        }
    }
}

/// The shard names listed in a cached index.
fn shards_of(index: &Path) -> Result<Vec<String>, HubError> {
    crate::memory::inventory::shard_files(index).map_err(|e| HubError::BadIndex {
        path: index.to_path_buf(),
        problem: e.to_string(),
    })
}

/// Fails fast when nothing listens at the endpoint's host and port.
fn check_reachable(endpoint: &str) -> Result<(), HubError> {
    let unreachable = |problem: String| HubError::Unreachable {
        endpoint: endpoint.to_string(),
        problem,
    };
    let (https, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(unreachable(
            "HF_ENDPOINT must start with http:// or https://".into(),
        ));
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    };
    let started = Instant::now();
    let addresses = with_port
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {authority}: {e}")))?;
    let mut last = String::from("no address");
    for address in addresses {
        let left = CONNECT_TIMEOUT.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&address, left) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{address}: {e}"),
        }
    }
    Err(unreachable(last))
}

/// Adapts hf-hub's `Progress` to our callback: measures rate and ETA, throttles reports.
struct Reporter<'a> {
    file: String,
    file_index: usize,
    file_count: usize,
    total_bytes: u64,
    done_bytes: u64,
    resumed_from_bytes: u64,
    /// hf-hub reports the resume offset as the first update after `init`.
    awaiting_offset: bool,
    started: Instant,
    last_report: Option<Instant>,
    callback: &'a mut dyn FnMut(DownloadProgress),
}

impl<'a> Reporter<'a> {
    fn new(
        file: &str,
        file_index: usize,
        file_count: usize,
        callback: &'a mut dyn FnMut(DownloadProgress),
    ) -> Self {
        Self {
            file: file.to_string(),
            file_index,
            file_count,
            total_bytes: 0,
            done_bytes: 0,
            resumed_from_bytes: 0,
            awaiting_offset: true,
            started: Instant::now(),
            last_report: None,
            callback,
        }
    }

    fn report(&mut self, finished: bool) {
        let now = Instant::now();
        if !finished
            && self
                .last_report
                .is_some_and(|last| now.duration_since(last) < PROGRESS_INTERVAL)
        {
            return;
        }
        self.last_report = Some(now);
        let seconds = now.duration_since(self.started).as_secs_f64();
        let fetched = self.done_bytes.saturating_sub(self.resumed_from_bytes);
        let rate = if seconds > 0.0 {
            fetched as f64 / seconds
        } else {
            0.0
        };
        let left = self.total_bytes.saturating_sub(self.done_bytes);
        (self.callback)(DownloadProgress {
            file: self.file.clone(),
            file_index: self.file_index,
            file_count: self.file_count,
            done_bytes: self.done_bytes,
            total_bytes: self.total_bytes,
            resumed_from_bytes: self.resumed_from_bytes,
            bytes_per_second: rate,
            eta_seconds: (rate > 0.0).then(|| left as f64 / rate),
            finished,
        });
    }
}

impl Reporter<'_> {
    /// A download of `size` bytes begins.
    fn start(&mut self, size: usize) {
        self.total_bytes = size as u64;
        self.done_bytes = 0;
        self.awaiting_offset = true;
        self.started = Instant::now();
    }

    /// `size` more bytes are on disk.
    fn advance(&mut self, size: usize) {
        if self.awaiting_offset {
            self.awaiting_offset = false;
            self.resumed_from_bytes = size as u64;
        }
        self.done_bytes += size as u64;
        self.report(false);
    }
}

/// What the download thread tells the one watching it.
enum Relayed {
    Init(usize),
    Update(usize),
    Finish,
    Done(Result<PathBuf, ApiError>),
}

/// hf-hub's progress callbacks, sent to the watching thread.
#[derive(Clone)]
struct Relay(std::sync::mpsc::Sender<Relayed>);

impl hf_hub::api::Progress for Relay {
    fn init(&mut self, size: usize, _filename: &str) {
        let _ = self.0.send(Relayed::Init(size));
    }

    fn update(&mut self, size: usize) {
        let _ = self.0.send(Relayed::Update(size));
    }

    fn finish(&mut self) {
        let _ = self.0.send(Relayed::Finish);
    }
}
