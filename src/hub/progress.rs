//! Download progress as the caller sees it: bytes, rate and ETA, throttled.

use std::time::{Duration, Instant};

/// Progress callbacks come at most this often (plus one at each file's end).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Progress of one file's download.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadProgress {
    /// The file being downloaded.
    pub file: String,
    /// Its index among the files that needed downloading (1-based).
    pub file_index: usize,
    /// How many files needed downloading.
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

/// Turns the download thread's events into throttled [`DownloadProgress`] reports.
pub(super) struct Reporter<'a> {
    file: String,
    file_index: usize,
    file_count: usize,
    total_bytes: u64,
    done_bytes: u64,
    resumed_from_bytes: u64,
    started: Instant,
    last_report: Option<Instant>,
    callback: &'a mut dyn FnMut(DownloadProgress),
}

impl<'a> Reporter<'a> {
    pub(super) fn new(
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
            started: Instant::now(),
            last_report: None,
            callback,
        }
    }

    /// A download of `total_bytes` begins, `resumed_from_bytes` of them already on disk.
    pub(super) fn start(&mut self, total_bytes: u64, resumed_from_bytes: u64) {
        self.total_bytes = total_bytes;
        self.done_bytes = resumed_from_bytes;
        self.resumed_from_bytes = resumed_from_bytes;
        self.started = Instant::now();
        self.report(false);
    }

    /// `bytes` more are on disk.
    pub(super) fn advance(&mut self, bytes: u64) {
        self.done_bytes += bytes;
        self.report(false);
    }

    pub(super) fn report(&mut self, finished: bool) {
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
