//! A hostile or broken hub on 127.0.0.1: `../` in the ETag, the commit header and the repo
//! info's commit must not write outside the cache; a redirect loop ends after a few hops; a
//! resumed file with wrong bytes fails its sha256 and is not kept; silence and cancellation
//! end a resolve promptly.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fake_hub::{self, FakeHub, options, resolve};
use ossterm::hub::{self, HubError, HubOptions};

/// Every file under `root` that is not under `root/hub` (the cache).
fn written_outside_the_cache(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                walk(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).expect("temp dir").flatten() {
        if entry.file_name() != "hub" {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, &mut found);
            }
            found.push(path);
        }
    }
    found
}

/// Serves `org/tiny` with one hostile value set by `arm`, resolves it, and checks the
/// refusal names `what` and the value, with nothing written outside the cache.
fn assert_refused(arm: impl Fn(&FakeHub), what: &str) -> FakeHub {
    let server = FakeHub::start();
    let root = tempfile::tempdir().expect("temp dir");
    arm(&server);
    let (result, _) = resolve(&options(&server.endpoint, &root), fake_hub::REPO);
    let err = result.expect_err("the value is refused");
    assert!(
        matches!(&err, HubError::UnsafeValue { what: w, .. } if *w == what),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&format!("unsafe {what}")), "{message}");
    assert!(message.contains(HOSTILE), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert_eq!(
        written_outside_the_cache(root.path()),
        Vec::<PathBuf>::new()
    );
    server
}

/// A value that would climb out of the cache were it a path part.
const HOSTILE: &str = "../../../escaped";

#[test]
fn a_dot_dot_etag_writes_nothing_outside_the_cache() {
    assert_refused(|s| s.set(|f| &f.etag, Some(HOSTILE)), "ETag");
}

#[test]
fn a_dot_dot_commit_header_writes_nothing_outside_the_cache() {
    assert_refused(|s| s.set(|f| &f.commit_header, Some(HOSTILE)), "commit");
}

#[test]
fn a_dot_dot_commit_in_the_repo_info_is_refused_before_any_file() {
    let server = assert_refused(|s| s.set(|f| &f.info_sha, Some(HOSTILE)), "commit");
    assert!(server.requests_for("config.json").is_empty());
}

#[test]
fn a_redirect_loop_ends_after_a_few_hops() {
    let server = FakeHub::start();
    let root = tempfile::tempdir().expect("temp dir");
    server.arm(|f| &f.redirect_loop, true);
    let started = Instant::now();
    let (result, _) = resolve(&options(&server.endpoint, &root), fake_hub::REPO);
    let err = result.expect_err("the loop is given up");
    assert!(
        matches!(&err, HubError::TooManyRedirects { file, .. } if file == "config.json"),
        "{err:?}"
    );
    assert!(err.to_string().contains("redirected 6 times"), "{err}");
    let requests = server.requests_for("config.json").len();
    assert_eq!(requests, hub::MAX_REDIRECTS + 1, "requests made");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_resume_with_wrong_bytes_fails_its_sha256_and_starts_over() {
    let server = FakeHub::start();
    let root = tempfile::tempdir().expect("temp dir");
    let opts = options(&server.endpoint, &root);
    server.arm(|f| &f.cut_next, true);
    let (first, _) = resolve(&opts, fake_hub::REPO);
    first.expect_err("the cut download fails");

    server.arm(|f| &f.corrupt_resume, true);
    let (second, _) = resolve(&opts, fake_hub::REPO);
    let err = second.expect_err("the resumed bytes are wrong");
    let weights = &server.files["model.safetensors"];
    let expected = fake_hub::sha256_hex(weights);
    assert!(
        matches!(&err, HubError::HashMismatch { file, expected: e, .. } if file == "model.safetensors" && *e == expected),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains("removed"), "{message}");
    let blobs = root.path().join("hub/models--org--tiny/blobs");
    assert!(!blobs.join(&expected).exists(), "the bad copy is not kept");
    assert!(
        !blobs.join(format!("{expected}.part")).exists(),
        "nor resumed"
    );

    server.arm(|f| &f.corrupt_resume, false);
    let (third, _) = resolve(&opts, fake_hub::REPO);
    let dir = third.expect("downloaded anew");
    assert_eq!(
        &std::fs::read(dir.join("model.safetensors")).expect("weights"),
        weights
    );
    let last_range = server
        .requests_for("model.safetensors")
        .last()
        .and_then(|s| s.range.clone());
    assert_eq!(last_range.as_deref(), Some("bytes=0-"), "started over");
}

#[test]
fn a_repo_info_that_stalls_after_its_headers_times_out() {
    let server = FakeHub::start();
    let root = tempfile::tempdir().expect("temp dir");
    server.arm(|f| &f.stall_info, true);
    let opts = HubOptions {
        stall_timeout: Duration::from_secs(1),
        ..options(&server.endpoint, &root)
    };
    let started = Instant::now();
    let (result, _) = resolve(&opts, fake_hub::REPO);
    let err = result.expect_err("given up");
    assert!(
        matches!(&err, HubError::Stalled { file, seconds: 1, .. } if file == "(repo info)"),
        "{err:?}"
    );
    assert!(err.to_string().contains(hub::TIMEOUT_ENV), "{err}");
    assert!(
        started.elapsed() < fake_hub::STALL / 2,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn cancelling_ends_a_resolve_at_once() {
    let server = FakeHub::start();
    let root = tempfile::tempdir().expect("temp dir");
    server.arm(|f| &f.stall_info, true);
    let opts = options(&server.endpoint, &root);
    let cancel = opts.cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let started = Instant::now();
    let (result, _) = resolve(&opts, fake_hub::REPO);
    canceller.join().expect("canceller");
    let err = result.expect_err("cancelled");
    assert!(matches!(err, HubError::Cancelled { .. }), "{err:?}");
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_token_is_not_sent_to_another_origin() {
    // A hub that redirects the weights elsewhere (as to a CDN) must not hand it the token.
    let cdn = FakeHub::start();
    let root = tempfile::tempdir().expect("temp dir");
    let gated = FakeHub::start();
    gated.set(
        |f| &f.redirect_files_to,
        Some(&format!("{}/{}/resolve/main", cdn.endpoint, fake_hub::REPO)),
    );
    let opts = HubOptions {
        token: Some(fake_hub::TOKEN.to_string()),
        ..options(&gated.endpoint, &root)
    };
    let (result, _) = resolve(&opts, fake_hub::GATED);
    result.expect("downloaded through the redirect");
    let seen = cdn.seen.lock().expect("lock").clone();
    assert!(!seen.is_empty(), "the CDN served the files");
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:?}");
}
