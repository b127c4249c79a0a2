//! Child processes that can never outlive bootproof.
//!
//! Each child (QEMU, swtpm, helpers) gets `PR_SET_PDEATHSIG(SIGKILL)` and its own
//! process group, and is killed (the whole group) when its handle drops. PDEATHSIG
//! fires when the *thread* that spawned the child exits, so children must be spawned
//! from long-lived threads (a runtime's worker or the main thread), never from a
//! `spawn_blocking` thread that tokio retires when idle.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::process::{Child, Command};

/// A supervised child: killed with its process group on drop.
#[derive(Debug)]
pub struct Supervised {
    pub name: &'static str,
    pub child: Child,
    pgid: i32,
    log: PathBuf,
    ended: Arc<OnceLock<ExitStatus>>,
}

impl Supervised {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> std::io::Result<Supervised> {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .process_group(0);
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run in the child.
        let parent = unsafe { libc::getpid() };
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pgid = child.id().map_or(0, |p| p as i32);
        Ok(Supervised { name, child, pgid, log: log.to_path_buf(), ended: Default::default() })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A handle that tells how this child ended, for channels that only see their
    /// connection to it close.
    pub fn exit_watch(&self) -> ExitWatch {
        let pid = self.child.id().map_or(0, |p| p as i32);
        ExitWatch { name: self.name, pid, log: self.log.clone(), ended: self.ended.clone() }
    }

    /// Waits for the child to exit (reaping it), and remembers the status for its
    /// [`ExitWatch`]es, which cannot see a reaped child any more.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        let _ = self.ended.set(status);
        Ok(status)
    }

    /// Kills the whole process group and reaps the child.
    pub async fn kill(&mut self) {
        self.signal_group();
        let _ = self.wait().await;
    }

    fn signal_group(&self) {
        if self.pgid > 0 {
            // SAFETY: killpg on a group we created; a stale group yields ESRCH, harmless.
            unsafe {
                libc::killpg(self.pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal_group();
        }
    }
}

/// Lines of a child's log quoted when it ended on its own.
pub const LOG_TAIL_LINES: usize = 15;

/// How a supervised child ended, and the last lines it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    pub name: &'static str,
    /// As [`ExitStatus`] shows it: `exit status: 1`, `signal: 9 (SIGKILL)`.
    pub status: String,
    pub log: PathBuf,
    /// The last [`LOG_TAIL_LINES`] lines of `log`.
    pub tail: String,
}

impl std::fmt::Display for ExitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} exited ({}); ", self.name, self.status)?;
        if self.tail.trim().is_empty() {
            write!(f, "{} holds no messages", self.log.display())
        } else {
            write!(f, "its last messages ({}):\n{}", self.log.display(), self.tail)
        }
    }
}

/// Tells how a supervised child ended without reaping it, so that its [`Supervised`]
/// handle can still wait for it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ExitWatch {
    name: &'static str,
    pid: i32,
    log: PathBuf,
    ended: Arc<OnceLock<ExitStatus>>,
}

/// How often [`ExitWatch::report`] looks again while the child is still exiting.
const EXIT_POLL: Duration = Duration::from_millis(20);

impl ExitWatch {
    /// How the child ended, waiting up to `grace` for it to finish exiting: a closed
    /// socket is often seen a moment before the exit status exists. `None` while it
    /// still runs.
    pub async fn report(&self, grace: Duration) -> Option<ExitReport> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if let Some(status) = self.ended.get().copied().or_else(|| peek_exit(self.pid)) {
                let tail = log_tail(&self.log, LOG_TAIL_LINES);
                return Some(ExitReport {
                    name: self.name,
                    status: status.to_string(),
                    log: self.log.clone(),
                    tail,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }
}

/// The exit status of our child `pid` once it has exited, without reaping it
/// (`WNOWAIT`): its `Child` still gets the status when it waits.
fn peek_exit(pid: i32) -> Option<ExitStatus> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: siginfo_t is plain data; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: waitid on our own child, writing into `info`.
    if unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) } != 0 {
        return None;
    }
    // SAFETY: after a successful waitid these fields are those of a SIGCHLD siginfo;
    // si_pid stays 0 when the child has not exited yet (WNOHANG).
    let (exited_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if exited_pid == 0 {
        return None;
    }
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_KILLED => status,
        libc::CLD_DUMPED => status | 0x80,
        _ => return None,
    };
    Some(ExitStatus::from_raw(raw))
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(script: &str, log: &Path) -> Supervised {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Supervised::spawn("sh", cmd, log).unwrap()
    }

    #[tokio::test]
    async fn an_exit_is_reported_without_reaping_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        let mut child = spawn("echo first; echo 'sh: gave up' >&2; exit 3", &log);
        let report = child.exit_watch().report(Duration::from_secs(10)).await.expect("sh exited");
        assert_eq!(report.status, "exit status: 3");
        assert_eq!(report.tail, "first\nsh: gave up");
        assert!(report.to_string().starts_with("sh exited (exit status: 3); its last messages"), "{report}");
        // Still waitable: the watch did not reap it.
        assert_eq!(child.wait().await.unwrap().code(), Some(3));
        assert_eq!(child.exit_watch().report(Duration::ZERO).await, Some(report));
    }

    #[tokio::test]
    async fn a_running_child_has_no_report_and_a_killed_one_names_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn("sleep 30", &dir.path().join("sh.log"));
        let watch = child.exit_watch();
        assert_eq!(watch.report(Duration::from_millis(50)).await, None);
        child.kill().await;
        let report = watch.report(Duration::ZERO).await.expect("killed");
        assert_eq!(report.status, "signal: 9 (SIGKILL)");
        assert!(report.to_string().ends_with("sh.log holds no messages"), "{report}");
    }

    #[test]
    fn a_log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("l");
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&log, 2), "b\nc");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }
}
