//! The QEMU system emulator: where it is, which version, what it supports.

use std::path::PathBuf;
use std::process::Command;

/// Facts about the QEMU binary bootproof will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuInfo {
    pub path: PathBuf,
    /// As printed by `--version`, e.g. `7.2.22`.
    pub version: String,
    pub virtfs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error(
        "qemu-system-x86_64 not found on PATH (set BOOTPROOF_QEMU to its path, or install \
         it: apt-get install qemu-system-x86 / dnf install qemu-system-x86-core)"
    )]
    NotFound,
    #[error("{}: cannot run `--version`: {detail}", path.display())]
    Broken { path: PathBuf, detail: String },
}

/// `BOOTPROOF_QEMU`, else `qemu-system-x86_64` on PATH.
pub fn find() -> Result<PathBuf, QemuError> {
    if let Some(p) = std::env::var_os("BOOTPROOF_QEMU").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    super::setup::find_command("qemu-system-x86_64").ok_or(QemuError::NotFound)
}

/// The QEMU binary's facts, asked once per process.
pub fn info() -> Result<QemuInfo, QemuError> {
    static INFO: std::sync::OnceLock<QemuInfo> = std::sync::OnceLock::new();
    if let Some(i) = INFO.get() {
        return Ok(i.clone());
    }
    let i = ask()?;
    Ok(INFO.get_or_init(|| i).clone())
}

fn ask() -> Result<QemuInfo, QemuError> {
    let path = find()?;
    let broken = |detail: String| QemuError::Broken { path: path.clone(), detail };
    let out = Command::new(&path).arg("--version").output().map_err(|e| broken(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text).ok_or_else(|| broken(format!("unexpected output {text:?}")))?;
    let devices =
        Command::new(&path).args(["-device", "help"]).output().map_err(|e| broken(e.to_string()))?;
    let virtfs = String::from_utf8_lossy(&devices.stdout).contains("\"virtio-9p-pci\"");
    Ok(QemuInfo { path, version, virtfs })
}

/// `QEMU emulator version 7.2.22 (Debian ...)` → `7.2.22`.
pub fn parse_version(text: &str) -> Option<String> {
    let rest = text.lines().next()?.split("version ").nth(1)?;
    let v = rest.split_whitespace().next()?;
    Some(v.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_from_banner() {
        let banner = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright";
        assert_eq!(super::parse_version(banner).as_deref(), Some("7.2.22"));
        assert_eq!(super::parse_version("nonsense"), None);
    }
}
