//! The TPM 2.0: swtpm as a supervised child, its socket, state and log in the run dir.
//!
//! bootproof binds the control socket itself and hands swtpm the listening fd, so
//! QEMU can connect the moment swtpm runs, with no wait for a socket file to appear
//! (as mkosi does). `--terminate` makes swtpm exit when QEMU's connection closes, even
//! if QEMU was killed; the supervisor kills it anyway.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::process::Supervised;
use super::rundir::RunLayout;

pub fn start(swtpm: &Path, layout: &RunLayout) -> std::io::Result<Supervised> {
    std::fs::create_dir_all(layout.tpm_state())?;
    let socket = layout.tpm_socket();
    let _ = std::fs::remove_file(&socket);
    let listener: OwnedFd = std::os::unix::net::UnixListener::bind(&socket)?.into();
    let fd = listener.as_raw_fd();
    let mut cmd = tokio::process::Command::new(swtpm);
    cmd.args(["socket", "--tpm2", "--terminate"])
        .arg("--tpmstate")
        .arg(format!("dir={}", layout.tpm_state().display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,fd={fd}"))
        .arg("--log")
        .arg(format!("file={},level=5", layout.swtpm_log().display()));
    // SAFETY: clearing FD_CLOEXEC on our own listener is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = Supervised::spawn("swtpm", cmd, &layout.dir.join("swtpm.out"));
    drop(listener);
    child
}
