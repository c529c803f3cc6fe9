//! Confining the python process: its own process group, an address-space limit, and its
//! own (empty) network namespace where an unprivileged user namespace is allowed.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::error::ToolError;

/// How long `docker image inspect` may take before docker counts as unusable.
const DOCKER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes `command`'s child lead its own process group, limits its address space to
/// `memory_mb` (0: no limit) and, when `drop_network`, moves it into new user and network
/// namespaces (failure to do so is detected afterwards by [`check_child_network`]).
pub fn confine(command: &mut Command, memory_mb: u64, drop_network: bool) {
    let memory_bytes = memory_mb.saturating_mul(1024 * 1024);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (setpgid, setrlimit, unshare); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            libc::setpgid(0, 0);
            if memory_bytes > 0 {
                let limit = libc::rlimit {
                    rlim_cur: memory_bytes as libc::rlim_t,
                    rlim_max: memory_bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if drop_network {
                // Best effort: a refusal leaves the network reachable, which the parent sees
                // and reports.
                libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET);
            }
            Ok(())
        });
    }
}

/// `Ok` when a child of this process can be put in its own network namespace; `Err(why)`
/// otherwise (then python results and the README say the network is reachable).
pub fn network_isolation() -> Result<(), String> {
    let mut command = Command::new("cat");
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    confine(&mut command, 0, true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start a probe process: {e}"))?;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let verdict = match check_child_network(pid, &Ok(())) {
        None => Ok(()),
        Some(why) => Err(why),
    };
    let _ = child.kill();
    let _ = child.wait();
    verdict
}

/// `None` when process `pid` is in a network namespace other than ours; otherwise why not.
pub fn check_child_network(pid: i32, isolation: &Result<(), String>) -> Option<String> {
    if let Err(why) = isolation {
        return Some(why.clone());
    }
    let ours = std::fs::read_link("/proc/self/ns/net");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net"));
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) if ours != theirs => None,
        (Ok(_), Ok(_)) => {
            Some("this system refused an unprivileged user+network namespace (unshare)".to_string())
        }
        (Err(e), _) | (_, Err(e)) => Some(format!("cannot read network namespaces: {e}")),
    }
}

/// Fails with docker's own words when `image` cannot be used (docker missing, daemon down,
/// image not pulled: there may be no network to pull it).
pub fn check_docker_image(image: &str) -> Result<(), ToolError> {
    let mut child = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::Spawn {
            what: "docker".into(),
            source,
        })?;
    let deadline = Instant::now() + DOCKER_CHECK_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut message = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut message);
                }
                return Err(ToolError::Runner(format!(
                    "docker cannot use image {image} ({status}): {}",
                    message.trim()
                )));
            }
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ToolError::Runner(format!(
                    "docker did not answer within {} s",
                    DOCKER_CHECK_TIMEOUT.as_secs()
                )));
            }
        }
    }
}
