//! The hub's HTTP side on ureq, with the limits hf-hub 0.4.3's client lacks: a connect and a
//! read timeout on every request, a cap on redirects, the token sent to the hub's own origin
//! only, and response bodies read with a size limit.

use std::io::Read;
use std::time::Duration;

use url::Url;

use super::{CONNECT_TIMEOUT, HubError, HubOptions, validate};

/// Redirects followed for one request; a loop ends here instead of running forever.
pub const MAX_REDIRECTS: usize = 5;
/// The repo-info JSON is read up to this size (a listing of thousands of files fits).
const MAX_INFO_BYTES: u64 = 16 << 20;

/// A client for one repo at one revision; cheap to clone into a download's thread.
#[derive(Clone)]
pub(super) struct Client {
    agent: ureq::Agent,
    endpoint: Url,
    token: Option<String>,
    model: String,
    revision: String,
    read_timeout: Duration,
}

/// What the hub says about a repo at a revision.
#[derive(Debug, serde::Deserialize)]
pub(super) struct RepoInfo {
    /// The commit the revision points at (validated: 40 hex digits).
    pub sha: String,
    /// The repo's files.
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

/// One file of a repo, as listed in [`RepoInfo`].
#[derive(Debug, serde::Deserialize)]
pub(super) struct Sibling {
    /// Its path in the repo.
    pub rfilename: String,
}

/// What a file's download needs, every value checked before it names anything on disk.
#[derive(Debug, Clone)]
pub(super) struct FileMeta {
    /// The commit (40 hex digits) the file belongs to.
    pub commit: String,
    /// The blob's name in the cache (safe characters only).
    pub etag: String,
    /// The sha256 the hub announced for an LFS file (`X-Linked-Etag`), lowercase hex.
    pub sha256: Option<String>,
    /// The file's size in bytes.
    pub size_bytes: u64,
}

/// A response after redirects, with the headers of the hub's own answer (the CDN a large
/// file redirects to sends its own ETag, which is not the hub's).
struct Followed {
    response: ureq::Response,
    hub_answer: HubAnswer,
}

/// The headers of the hub's answer that say which blob a file is.
#[derive(Debug, Default)]
struct HubAnswer {
    commit: Option<String>,
    etag: Option<String>,
    linked_etag: Option<String>,
    linked_size: Option<String>,
}

impl HubAnswer {
    fn of(response: &ureq::Response) -> Self {
        let header = |name: &str| response.header(name).map(str::to_string);
        Self {
            commit: header("X-Repo-Commit"),
            etag: header("ETag"),
            linked_etag: header("X-Linked-Etag"),
            linked_size: header("X-Linked-Size"),
        }
    }
}

impl Client {
    /// A client for `model` at `revision` with `options`' endpoint, token and timeouts.
    pub(super) fn new(options: &HubOptions, model: &str, revision: &str) -> Result<Self, HubError> {
        let unreachable = |problem: String| HubError::Unreachable {
            endpoint: options.endpoint.clone(),
            problem,
        };
        let endpoint =
            Url::parse(&options.endpoint).map_err(|e| unreachable(format!("not a URL: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(unreachable(
                "HF_ENDPOINT must start with http:// or https://".into(),
            ));
        }
        let agent = ureq::AgentBuilder::new()
            .try_proxy_from_env(true)
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(options.stall_timeout)
            .timeout_write(options.stall_timeout)
            // Redirects are followed by hand: the hub's own answer carries the file's headers.
            .redirects(0)
            .user_agent(concat!("ossterm/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent,
            endpoint,
            token: options.token.clone(),
            model: model.to_string(),
            revision: revision.to_string(),
            read_timeout: options.stall_timeout,
        })
    }

    /// The repo's commit and files at the revision.
    pub(super) fn repo_info(&self) -> Result<RepoInfo, HubError> {
        const WHAT: &str = "(repo info)";
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.endpoint_text(),
            self.model,
            self.revision.replace('/', "%2F")
        );
        let followed = self.get(WHAT, &url, None)?;
        let body = followed.response.into_reader().take(MAX_INFO_BYTES);
        let info: RepoInfo =
            serde_json::from_reader(body).map_err(|e| match e.io_error_kind() {
                Some(kind) => self.io_error(WHAT, std::io::Error::new(kind, e.to_string())),
                None => {
                    self.download_error(WHAT, format!("the repo info is not the hub's JSON: {e}"))
                }
            })?;
        validate::commit(&info.sha)
            .map_err(|problem| self.unsafe_value(WHAT, "commit", &info.sha, problem))?;
        Ok(info)
    }

    /// Which blob `file` at `commit` is, and its size (a one-byte ranged request).
    pub(super) fn file_meta(&self, file: &str, commit: &str) -> Result<FileMeta, HubError> {
        let followed = self.get(file, &self.file_url(file, commit), Some("bytes=0-0"))?;
        let answer = &followed.hub_answer;
        let header_commit = answer
            .commit
            .as_deref()
            .ok_or_else(|| self.download_error(file, "the hub sent no X-Repo-Commit header"))?;
        validate::commit(header_commit)
            .map_err(|problem| self.unsafe_value(file, "commit", header_commit, problem))?;
        if header_commit != commit {
            return Err(self.download_error(
                file,
                format!("the hub answered for commit {header_commit}, not {commit}"),
            ));
        }
        let raw_etag = answer
            .linked_etag
            .as_deref()
            .or(answer.etag.as_deref())
            .ok_or_else(|| self.download_error(file, "the hub sent no ETag header"))?;
        let etag = validate::normalize_etag(raw_etag);
        validate::etag(etag)
            .map_err(|problem| self.unsafe_value(file, "ETag", raw_etag, problem))?;
        let sha256 = answer
            .linked_etag
            .as_deref()
            .map(validate::normalize_etag)
            .filter(|e| validate::is_sha256(e))
            .map(str::to_ascii_lowercase);
        let size_bytes = total_of_content_range(followed.response.header("Content-Range"))
            .or_else(|| {
                answer
                    .linked_size
                    .as_deref()
                    .and_then(|s| s.trim().parse().ok())
            })
            .ok_or_else(|| {
                self.download_error(file, "the hub announced no size (Content-Range)")
            })?;
        Ok(FileMeta {
            commit: commit.to_string(),
            etag: etag.to_string(),
            sha256,
            size_bytes,
        })
    }

    /// The body of `file` at `commit` from byte `from_bytes` on, and where it really starts
    /// (0 when the server ignored the range).
    pub(super) fn body_from(
        &self,
        file: &str,
        commit: &str,
        from_bytes: u64,
    ) -> Result<(Box<dyn Read + Send + Sync>, u64), HubError> {
        let range = format!("bytes={from_bytes}-");
        let followed = self.get(file, &self.file_url(file, commit), Some(&range))?;
        let response = followed.response;
        let starts_at = if response.status() == 206 {
            let start = start_of_content_range(response.header("Content-Range"));
            if start != Some(from_bytes) {
                return Err(self.download_error(
                    file,
                    format!("asked for bytes from {from_bytes}, the hub sent {start:?}"),
                ));
            }
            from_bytes
        } else {
            0
        };
        Ok((response.into_reader(), starts_at))
    }

    /// A read error of a body: silence past the read timeout is a stall (resumable).
    pub(super) fn io_error(&self, file: &str, error: std::io::Error) -> HubError {
        match error.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => self.stalled(file),
            _ => self.download_error(file, error),
        }
    }

    pub(super) fn stalled(&self, file: &str) -> HubError {
        HubError::Stalled {
            model: self.model.clone(),
            file: file.to_string(),
            seconds: self.read_timeout.as_secs(),
        }
    }

    pub(super) fn download_error(&self, file: &str, problem: impl std::fmt::Display) -> HubError {
        HubError::Download {
            model: self.model.clone(),
            file: file.to_string(),
            problem: printable(problem),
        }
    }

    pub(super) fn unsafe_value(
        &self,
        file: &str,
        what: &'static str,
        value: &str,
        problem: validate::Refusal,
    ) -> HubError {
        HubError::UnsafeValue {
            model: self.model.clone(),
            file: file.to_string(),
            what,
            value: value.to_string(),
            problem: problem.to_string(),
        }
    }

    /// The model id, for errors raised outside the client.
    pub(super) fn model(&self) -> &str {
        &self.model
    }

    fn endpoint_text(&self) -> &str {
        self.endpoint.as_str().trim_end_matches('/')
    }

    fn file_url(&self, file: &str, commit: &str) -> String {
        format!(
            "{}/{}/resolve/{commit}/{file}",
            self.endpoint_text(),
            self.model
        )
    }

    /// GET `url`, following at most [`MAX_REDIRECTS`] redirects; the token goes to the hub's
    /// origin only, and a redirect from https to http is refused.
    fn get(&self, file: &str, url: &str, range: Option<&str>) -> Result<Followed, HubError> {
        let mut url =
            Url::parse(url).map_err(|e| self.download_error(file, format!("{url}: {e}")))?;
        let mut hub_answer = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.agent.request_url("GET", &url);
            if let Some(range) = range {
                request = request.set("Range", range);
            }
            if let Some(token) = self
                .token
                .as_deref()
                .filter(|_| url.origin() == self.endpoint.origin())
            {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            let response = request.call().map_err(|e| self.request_error(file, e))?;
            let location = (300..400)
                .contains(&response.status())
                .then(|| response.header("Location"))
                .flatten();
            let Some(location) = location else {
                let hub_answer = hub_answer.unwrap_or_else(|| HubAnswer::of(&response));
                return Ok(Followed {
                    response,
                    hub_answer,
                });
            };
            let next = url.join(location).map_err(|e| {
                self.download_error(file, format!("bad redirect {location:?}: {e}"))
            })?;
            if url.scheme() == "https" && next.scheme() != "https" {
                return Err(
                    self.download_error(file, format!("refused a redirect from https to {next}"))
                );
            }
            // Redirects within the hub are its own; the first one away from it (a large file's
            // CDN) is the hub's answer for this file.
            if hub_answer.is_none() && next.origin() != url.origin() {
                hub_answer = Some(HubAnswer::of(&response));
            }
            url = next;
        }
        Err(HubError::TooManyRedirects {
            model: self.model.clone(),
            file: file.to_string(),
            url: url.to_string(),
            hops: MAX_REDIRECTS + 1,
        })
    }

    /// Turns ureq's error into one that says what to do.
    fn request_error(&self, file: &str, error: ureq::Error) -> HubError {
        match error {
            ureq::Error::Status(code, response) => {
                let problem = printable(format!("status code {code} {}", response.status_text()));
                match code {
                    401 | 403 => HubError::Unauthorized {
                        model: self.model.clone(),
                        problem,
                    },
                    404 => HubError::NotFound {
                        model: self.model.clone(),
                        revision: self.revision.clone(),
                        problem,
                    },
                    _ => self.download_error(file, problem),
                }
            }
            ureq::Error::Transport(transport) => {
                use std::error::Error as _;
                let io_kind = transport
                    .source()
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .map(std::io::Error::kind);
                match transport.kind() {
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                        HubError::Unreachable {
                            endpoint: self.endpoint_text().to_string(),
                            problem: printable(transport),
                        }
                    }
                    _ if matches!(
                        io_kind,
                        Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
                    ) =>
                    {
                        self.stalled(file)
                    }
                    _ => self.download_error(file, transport),
                }
            }
        }
    }
}

/// `text` with control characters (escape sequences from a hostile server's status line or
/// headers) replaced by `?`, so that errors are safe to print to a terminal.
fn printable(text: impl std::fmt::Display) -> String {
    text.to_string()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `N` of `Content-Range: bytes A-B/N`.
fn total_of_content_range(header: Option<&str>) -> Option<u64> {
    header?.rsplit_once('/')?.1.trim().parse().ok()
}

/// `A` of `Content-Range: bytes A-B/N`.
fn start_of_content_range(header: Option<&str>) -> Option<u64> {
    let range = header?.trim().strip_prefix("bytes ")?;
    range.split_once('-')?.0.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_in_errors_has_no_control_characters() {
        assert_eq!(
            printable("status code 500 \u{1b}]0;owned\u{7}\u{9b}2J"),
            "status code 500 ?]0;owned??2J"
        );
    }

    #[test]
    fn content_range_parts() {
        assert_eq!(total_of_content_range(Some("bytes 0-0/1234")), Some(1234));
        assert_eq!(
            start_of_content_range(Some("bytes 500-1233/1234")),
            Some(500)
        );
        assert_eq!(total_of_content_range(Some("bytes 0-0/*")), None);
        assert_eq!(start_of_content_range(Some("items 1-2/3")), None);
        assert_eq!(total_of_content_range(None), None);
    }
}
