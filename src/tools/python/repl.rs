//! One long-lived python REPL process (a chat's notebook), fed cells over its stdin.
//!
//! Why a live process rather than re-running the chat's history: the model was trained with
//! a stateful Jupyter tool, and re-running history would repeat side effects (files, time)
//! and grow slower with every call. The cost: a killed process loses the state, and the
//! result says so.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::tools::error::ToolError;

/// The REPL driver (see driver.py): cells in as `<len>\n<code>`, a sentinel line out.
pub const DRIVER: &str = include_str!("driver.py");

/// How long an interrupted cell (SIGINT at the time limit) may take to unwind before the
/// process is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// What one cell produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CellOutput {
    /// stdout and stderr, merged, capped.
    pub text: String,
    /// The cell raised (a traceback is in `text`), or was cut short.
    pub failed: bool,
    /// Why the cell did not finish normally (time limit, killed), for the result header.
    pub problem: Option<String>,
    /// False when the process is gone (killed at the limit, crashed); the next cell starts
    /// a fresh one.
    pub alive: bool,
}

/// A running REPL.
#[derive(Debug)]
pub struct Repl {
    child: Child,
    stdin: ChildStdin,
    chunks: Receiver<Vec<u8>>,
    /// `\n{sentinel}:` — the cell's end marker (the status digit and `\n` follow).
    marker: Vec<u8>,
    /// The process group (the child leads it), so helpers it started die with it.
    pub pgid: i32,
    /// Why the network is still reachable, when dropping it failed.
    pub network_note: Option<String>,
}

impl Repl {
    /// Starts `command` (which must run [`DRIVER`] with the sentinel as its first argument).
    pub fn start(mut command: Command, sentinel: &str) -> Result<Self, ToolError> {
        let program = command.get_program().to_string_lossy().into_owned();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().map_err(|source| ToolError::Spawn {
            what: format!("python ({program})"),
            source,
        })?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => (stdin, stdout),
            _ => {
                let _ = child.kill();
                return Err(ToolError::Runner(
                    "python started without its pipes".to_string(),
                ));
            }
        };
        let (sender, chunks) = mpsc::channel();
        std::thread::Builder::new()
            .name("python-output".into())
            .spawn(move || pump(stdout, sender))
            .map_err(|source| ToolError::Spawn {
                what: "the python output reader thread".into(),
                source,
            })?;
        let pgid = i32::try_from(child.id()).unwrap_or(0);
        Ok(Self {
            child,
            stdin,
            chunks,
            marker: format!("\n{sentinel}:").into_bytes(),
            pgid,
            network_note: None,
        })
    }

    /// Runs one cell: waits up to `timeout`, keeps `cap_bytes` of output.
    pub fn run(&mut self, code: &str, timeout: Duration, cap_bytes: usize) -> CellOutput {
        let mut collector = Collector::new(cap_bytes, self.marker.len() + 2);
        let frame = format!("{}\n{code}", code.len());
        if let Err(error) = self
            .stdin
            .write_all(frame.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            return self.dead(&collector, format!("python is not running ({error})"));
        }
        let deadline = Instant::now() + timeout;
        match self.wait_for_end(&mut collector, deadline) {
            Wait::Ended(failed) => collector.finish(failed, None, true),
            Wait::Gone => self.dead(&collector, "python exited during the call".into()),
            Wait::TimedOut => {
                // Interrupt like a notebook's stop button, so the state survives when it can.
                signal_group(self.pgid, libc::SIGINT);
                let seconds = timeout.as_secs_f64();
                match self.wait_for_end(&mut collector, Instant::now() + INTERRUPT_GRACE) {
                    Wait::Ended(_) => collector.finish(
                        true,
                        Some(format!(
                            "timed out after {seconds:.0} s: interrupted, the state is kept"
                        )),
                        true,
                    ),
                    _ => {
                        self.kill();
                        collector.finish(
                            true,
                            Some(format!(
                                "timed out after {seconds:.0} s: python was killed and its state is lost"
                            )),
                            false,
                        )
                    }
                }
            }
        }
    }

    fn dead(&mut self, collector: &Collector, problem: String) -> CellOutput {
        self.kill();
        let status = self
            .child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| format!(" ({status})"))
            .unwrap_or_default();
        collector.finish(
            true,
            Some(format!("{problem}{status}; its state is lost")),
            false,
        )
    }

    fn wait_for_end(&mut self, collector: &mut Collector, deadline: Instant) -> Wait {
        loop {
            if let Some(failed) = collector.ended(&self.marker) {
                return Wait::Ended(failed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wait::TimedOut;
            }
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => collector.push(&chunk),
                Err(RecvTimeoutError::Timeout) => return Wait::TimedOut,
                Err(RecvTimeoutError::Disconnected) => return Wait::Gone,
            }
        }
    }

    /// Kills the whole process group and reaps the child.
    pub fn kill(&mut self) {
        signal_group(self.pgid, libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Wait {
    Ended(bool),
    Gone,
    TimedOut,
}

/// Sends `signal` to the process group `pgid` (no-op for a bad id).
pub fn signal_group(pgid: i32, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions; a stale group id only fails.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

fn pump(mut stdout: impl Read, sender: mpsc::Sender<Vec<u8>>) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match stdout.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if sender.send(buffer[..n].to_vec()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Keeps the first `cap` bytes of a cell's output and a window on its end (for the marker).
struct Collector {
    head: Vec<u8>,
    head_limit: usize,
    cap: usize,
    tail: Vec<u8>,
    tail_len: usize,
    total: usize,
}

impl Collector {
    fn new(cap: usize, tail_len: usize) -> Self {
        Self {
            head: Vec::new(),
            head_limit: cap + tail_len,
            cap,
            tail: Vec::new(),
            tail_len,
            total: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len();
        let room = self.head_limit.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > self.tail_len {
            self.tail.drain(..self.tail.len() - self.tail_len);
        }
    }

    /// `Some(failed)` once the output ends with `marker` + status digit + `\n`.
    fn ended(&self, marker: &[u8]) -> Option<bool> {
        let n = self.tail.len();
        if n < marker.len() + 2 || self.tail[n - 1] != b'\n' {
            return None;
        }
        let start = n - marker.len() - 2;
        (self.tail[start..n - 2] == *marker).then(|| self.tail[n - 2] == b'1')
    }

    fn finish(&self, failed: bool, problem: Option<String>, alive: bool) -> CellOutput {
        // Without the marker the whole stream is output.
        let output_len = if problem.is_none() || alive {
            self.total.saturating_sub(self.tail_len)
        } else {
            self.total
        };
        let kept = output_len.min(self.cap).min(self.head.len());
        let mut text = String::from_utf8_lossy(&self.head[..kept]).into_owned();
        if output_len > self.cap {
            text.push_str(&format!(
                "\n[output cut: {} more bytes; the limit is {} bytes]",
                output_len - self.cap,
                self.cap
            ));
        }
        CellOutput {
            text,
            failed,
            problem,
            alive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_finds_the_marker_across_chunks_and_caps_the_rest() {
        let marker = b"\nEND:".to_vec();
        let mut collector = Collector::new(4, marker.len() + 2);
        collector.push(b"abcdefgh\nEN");
        assert_eq!(collector.ended(&marker), None);
        collector.push(b"D:1\n");
        assert_eq!(collector.ended(&marker), Some(true));
        let output = collector.finish(true, None, true);
        assert_eq!(
            output.text,
            "abcd\n[output cut: 4 more bytes; the limit is 4 bytes]"
        );
    }
}
