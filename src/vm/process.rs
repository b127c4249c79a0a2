//! Child processes that can never outlive bootproof.
//!
//! Each child (QEMU, swtpm, helpers) gets `PR_SET_PDEATHSIG(SIGKILL)` and its own
//! process group, and is killed (the whole group) when its handle drops. PDEATHSIG
//! fires when the *thread* that spawned the child exits, so children must be spawned
//! from long-lived threads (a runtime's worker or the main thread), never from a
//! `spawn_blocking` thread that tokio retires when idle.

use std::path::Path;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// A supervised child: killed with its process group on drop.
#[derive(Debug)]
pub struct Supervised {
    pub name: &'static str,
    pub child: Child,
    pgid: i32,
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
        Ok(Supervised { name, child, pgid })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the whole process group and reaps the child.
    pub async fn kill(&mut self) {
        self.signal_group();
        let _ = self.child.wait().await;
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
