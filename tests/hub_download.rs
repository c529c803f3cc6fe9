//! The hub path against a local fake hub (no network): progress, resume with a Range request,
//! size checks, tokens, offline use of the cache, and a fast clear error when unreachable.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::fake_hub::{self, FakeHub, options, resolve};
use ossterm::hub::{DownloadProgress, HubError, HubOptions};

fn of_file<'a>(reports: &'a [DownloadProgress], file: &str) -> Vec<&'a DownloadProgress> {
    reports.iter().filter(|p| p.file == file).collect()
}

#[test]
fn downloads_with_progress_into_the_cache() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let opts = options(&server.endpoint, &cache);
    let (result, reports) = resolve(&opts, fake_hub::REPO);
    let dir = result.expect("download succeeds");
    assert!(dir.starts_with(cache.path().join("hub/models--org--tiny/snapshots")));
    // Every file comes from the commit the revision pointed at when the download began.
    assert!(dir.ends_with(fake_hub::COMMIT), "{}", dir.display());
    let seen = server.seen.lock().expect("lock").clone();
    assert!(
        seen.iter()
            .filter(|s| s.path.contains("/resolve/"))
            .all(|s| s.path.contains(&format!("/resolve/{}/", fake_hub::COMMIT))),
        "{seen:?}"
    );
    for (name, data) in server.files.iter() {
        assert_eq!(
            &std::fs::read(dir.join(name)).expect("file in snapshot"),
            data,
            "{name}"
        );
    }
    let weights = of_file(&reports, "model.safetensors");
    let size = server.files["model.safetensors"].len() as u64;
    assert!(
        weights.len() >= 2,
        "progress reported during the download: {weights:?}"
    );
    assert!(
        weights
            .windows(2)
            .all(|w| w[0].done_bytes <= w[1].done_bytes)
    );
    let last = weights.last().expect("a final report");
    assert!(last.finished);
    assert_eq!((last.done_bytes, last.total_bytes), (size, size));
    assert!(last.bytes_per_second > 0.0);
    assert_eq!(last.resumed_from_bytes, 0);
    assert!(weights.iter().any(|p| p.eta_seconds.is_some()));
    assert!(last.line().contains("model.safetensors"), "{}", last.line());

    // A second resolve is served from the cache: no new downloads.
    let before = server.seen.lock().expect("lock").len();
    let (again, reports) = resolve(&opts, fake_hub::REPO);
    assert_eq!(again.expect("cached"), dir);
    assert!(reports.is_empty());
    assert_eq!(server.seen.lock().expect("lock").len(), before);
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let opts = options(&server.endpoint, &cache);
    server.arm(|f| &f.cut_next, true);
    let (first, _) = resolve(&opts, fake_hub::REPO);
    let message = first.expect_err("the cut download fails").to_string();
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("run again to resume"), "{message}");

    let (second, reports) = resolve(&opts, fake_hub::REPO);
    let dir = second.expect("the second run completes");
    let data = &server.files["model.safetensors"];
    assert_eq!(
        &std::fs::read(dir.join("model.safetensors")).expect("weights"),
        data
    );
    let half = (data.len() / 2) as u64;
    let ranges: Vec<Option<String>> = server
        .requests_for("model.safetensors")
        .into_iter()
        .map(|s| s.range)
        .collect();
    assert!(
        ranges.contains(&Some(format!("bytes={half}-"))),
        "resume asks for the rest: {ranges:?}"
    );
    let last = *of_file(&reports, "model.safetensors")
        .last()
        .expect("progress");
    assert_eq!(last.resumed_from_bytes, half);
    assert!(last.line().contains("resumed"), "{}", last.line());
}

#[test]
fn a_wrong_size_is_refused_and_not_kept() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let opts = options(&server.endpoint, &cache);
    server.arm(|f| &f.lie_about_size, true);
    let (result, _) = resolve(&opts, fake_hub::REPO);
    let err = result.expect_err("size mismatch");
    assert!(matches!(err, HubError::SizeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    server.arm(|f| &f.lie_about_size, false);
    let (result, _) = resolve(&opts, fake_hub::REPO);
    let dir = result.expect("downloads anew");
    assert_eq!(
        std::fs::read(dir.join("tokenizer.json")).expect("tokenizer"),
        server.files["tokenizer.json"]
    );
}

#[test]
fn gated_repos_need_the_token() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let mut opts = options(&server.endpoint, &cache);
    let (result, _) = resolve(&opts, fake_hub::GATED);
    let message = result.expect_err("refused").to_string();
    assert!(message.contains("HF_TOKEN"), "{message}");
    opts.token = Some(fake_hub::TOKEN.to_string());
    let (result, _) = resolve(&opts, fake_hub::GATED);
    result.expect("the token opens the repo");
}

#[test]
fn offline_uses_the_cache_and_never_the_network() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let online = options(&server.endpoint, &cache);
    let (result, _) = resolve(&online, fake_hub::REPO);
    let dir = result.expect("download");
    let offline = HubOptions {
        endpoint: fake_hub::closed_port_endpoint(),
        offline: true,
        ..online.clone()
    };
    let before = server.seen.lock().expect("lock").len();
    let (result, _) = resolve(&offline, fake_hub::REPO);
    assert_eq!(result.expect("cached copy"), dir);
    assert_eq!(server.seen.lock().expect("lock").len(), before);

    // Not cached and offline: a clear error that says how to use a local copy.
    let empty = tempfile::tempdir().expect("temp dir");
    let offline_empty = HubOptions {
        cache_dir: empty.path().join("hub"),
        ..offline
    };
    let (result, _) = resolve(&offline_empty, fake_hub::REPO);
    let message = result.expect_err("not cached").to_string();
    assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
    assert!(
        message.contains("--model /path/to/a/local/folder"),
        "{message}"
    );
    assert!(message.contains("config.json"), "{message}");
}

#[test]
fn an_unreachable_hub_fails_fast_with_a_clear_message() {
    let cache = tempfile::tempdir().expect("temp dir");
    let opts = options(&fake_hub::closed_port_endpoint(), &cache);
    let started = Instant::now();
    let (result, _) = resolve(&opts, fake_hub::REPO);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let err = result.expect_err("unreachable");
    assert!(matches!(err, HubError::Unreachable { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("HF_HUB_OFFLINE=1"), "{message}");
    assert!(message.contains("--model"), "{message}");
}

#[test]
fn a_local_folder_is_used_as_is() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-a-int4");
    let cache = tempfile::tempdir().expect("temp dir");
    let opts = options(&fake_hub::closed_port_endpoint(), &cache);
    let (result, _) = resolve(&opts, fixture);
    assert_eq!(result.expect("local folder"), PathBuf::from(fixture));
}

#[test]
fn a_download_that_goes_quiet_is_given_up_with_a_clear_error() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let opts = HubOptions {
        stall_timeout: Duration::from_secs(1),
        ..options(&server.endpoint, &cache)
    };
    server.arm(|f| &f.stall_next, true);
    let started = Instant::now();
    let (result, reports) = resolve(&opts, fake_hub::REPO);
    let err = result.expect_err("the stalled download is given up");
    assert!(
        matches!(&err, HubError::Stalled { file, seconds: 1, .. } if file == "model.safetensors"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("run again to resume"), "{message}");
    // Given up after the quiet second, not after the server's 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !of_file(&reports, "model.safetensors").is_empty(),
        "the download had started"
    );
}

#[test]
fn a_missing_folder_is_not_looked_up_on_the_hub() {
    let cache = tempfile::tempdir().expect("temp dir");
    // Nothing listens there: a lookup would fail differently.
    let opts = options(&fake_hub::closed_port_endpoint(), &cache);
    for path in [
        "./models/gpt-oss",
        "/no/such/model",
        "models/org/name",
        "org/name/",
        "~/m",
    ] {
        let (result, _) = resolve(&opts, path);
        let err = result.expect_err("no such folder");
        assert!(
            matches!(err, HubError::NoSuchFolder { .. }),
            "{path}: {err:?}"
        );
        assert!(err.to_string().contains("there is no folder"), "{err}");
    }
    // `org/name` is a hub id: this one fails on the (closed) hub instead.
    let (result, _) = resolve(&opts, "org/name");
    assert!(
        matches!(result, Err(HubError::Unreachable { .. })),
        "{result:?}"
    );
}

#[test]
fn a_file_another_process_is_downloading_is_not_written_twice() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let opts = options(&server.endpoint, &cache);
    let blobs = cache.path().join("hub/models--org--tiny/blobs");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let config_len = server.files["config.json"].len();
    let lock_path = blobs.join(format!("etag-config.json-{config_len}.lock"));
    let lock = std::fs::File::create(&lock_path).expect("lock file");
    lock.try_lock().expect("held by 'another process'");
    let (result, _) = resolve(&opts, fake_hub::REPO);
    let err = result.expect_err("busy");
    assert!(
        matches!(&err, HubError::Busy { file, .. } if file == "config.json"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&lock_path.display().to_string()),
        "{err}"
    );
    drop(lock);
    let (result, _) = resolve(&opts, fake_hub::REPO);
    result.expect("downloads once the lock is free");
}
