//! The run directory: where everything one run produces lands, as it happens.
//!
//! Sockets live here too, unless the path is too long for a Unix socket address
//! (108 bytes); then they go to a private directory made with `mkdtemp` (never a fixed
//! `/tmp` name), which the run directory's `sockets` file points at.

use std::path::{Path, PathBuf};

/// Names of everything in a run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    pub dir: PathBuf,
    pub socket_dir: PathBuf,
}

/// Longest socket path that fits `sun_path` with its terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

impl RunLayout {
    /// A layout whose sockets are in `dir` itself (as used by golden tests).
    pub fn at(dir: impl Into<PathBuf>) -> RunLayout {
        let dir = dir.into();
        RunLayout { socket_dir: dir.clone(), dir }
    }

    /// Creates `dir` (and a private socket directory if `dir` is too deep).
    pub fn create(dir: &Path) -> std::io::Result<RunLayout> {
        std::fs::create_dir_all(dir)?;
        let dir = std::path::absolute(dir)?;
        let mut layout = RunLayout::at(&dir);
        if layout.serial_socket().as_os_str().len() > MAX_SOCKET_PATH {
            let private = tempfile::Builder::new().prefix("bootproof-").tempdir()?.keep();
            std::fs::write(dir.join("sockets"), format!("{}\n", private.display()))?;
            layout.socket_dir = private;
        }
        std::fs::create_dir_all(layout.share_dir())?;
        Ok(layout)
    }

    pub fn serial_socket(&self) -> PathBuf {
        self.socket_dir.join("serial.sock")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.socket_dir.join("qmp.sock")
    }
    pub fn tpm_socket(&self) -> PathBuf {
        self.socket_dir.join("swtpm.sock")
    }
    /// qemu-guest-agent's virtio-serial port.
    pub fn qga_socket(&self) -> PathBuf {
        self.socket_dir.join("qga.sock")
    }
    /// The agent shell's virtio console port.
    pub fn shell_socket(&self) -> PathBuf {
        self.socket_dir.join("shell.sock")
    }
    /// vhost-device-vsock's vhost-user socket, which QEMU connects to.
    pub fn vhost_vsock_socket(&self) -> PathBuf {
        self.socket_dir.join("vhost-vsock.sock")
    }
    /// vhost-device-vsock's host side: connect and send `CONNECT <port>`.
    pub fn vsock_socket(&self) -> PathBuf {
        self.socket_dir.join("vsock.sock")
    }
    /// The socket of the profile's `index`th log port.
    /// The p9 backend's server socket for the share at `index` of the plan.
    pub fn share_socket(&self, index: usize) -> PathBuf {
        self.socket_dir.join(format!("share{index}.sock"))
    }
    /// The share server's file events for a share, one JSON line each.
    pub fn share_events(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("share-{tag}.events.jsonl"))
    }
    /// What the share server said (its start line, errors).
    pub fn share_server_log(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("share-{tag}.log"))
    }
    pub fn log_port_socket(&self, index: usize) -> PathBuf {
        self.socket_dir.join(format!("log{index}.sock"))
    }
    /// Every guest agent exchange, one line each, stamped.
    pub fn agent_log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
    pub fn vsock_log(&self) -> PathBuf {
        self.dir.join("vhost-device-vsock.log")
    }
    /// Raw bytes from the serial port, exactly as they came.
    pub fn console_raw(&self) -> PathBuf {
        self.dir.join("console.raw")
    }
    /// The serial console as text: ANSI escapes removed, each line stamped with the
    /// host time since QEMU started.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// Every QMP message in both directions, one JSON object per line.
    pub fn qmp_log(&self) -> PathBuf {
        self.dir.join("qmp.log")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    pub fn swtpm_log(&self) -> PathBuf {
        self.dir.join("swtpm.log")
    }
    pub fn tpm_state(&self) -> PathBuf {
        self.dir.join("tpm")
    }
    pub fn vars(&self) -> PathBuf {
        self.dir.join("OVMF_VARS.fd")
    }
    /// The per-run read-write share, mounted by the guest as tag `bootproof`.
    pub fn share_dir(&self) -> PathBuf {
        self.dir.join("share")
    }
    pub fn overlay(&self, index: usize) -> PathBuf {
        self.dir.join(format!("disk{index}.qcow2"))
    }
    /// The exact QEMU command line, shell-quoted, to rerun by hand.
    pub fn command_file(&self) -> PathBuf {
        self.dir.join("qemu-command.sh")
    }
    pub fn screenshot(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.png"))
    }
    pub fn result_file(&self) -> PathBuf {
        self.dir.join("result.json")
    }
}

/// A fresh run id: UTC time plus the process id, sortable and unique per host.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::logs::lines::civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{}-{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        std::process::id(),
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        assert!(id.starts_with("20") && id.len() > 20, "{id}");
        assert!(id.as_str() < "2100", "{id}");
    }

    #[test]
    fn deep_directories_get_private_sockets() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("x".repeat(60)).join("y".repeat(60));
        let layout = RunLayout::create(&deep).unwrap();
        assert!(layout.serial_socket().as_os_str().len() <= MAX_SOCKET_PATH);
        assert_ne!(layout.socket_dir, layout.dir);
        let pointer = std::fs::read_to_string(deep.join("sockets")).unwrap();
        assert_eq!(pointer.trim(), layout.socket_dir.display().to_string());
        std::fs::remove_dir_all(&layout.socket_dir).unwrap();
    }
}
