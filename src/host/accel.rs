//! Acceleration: KVM only when guest code really runs under it, else TCG, loudly.
//!
//! `/dev/kvm` existing proves nothing (on some hosts QEMU dies at the first vCPU with
//! "failed to set MSR" or "KVM internal error"). The probe boots a 512-byte boot sector
//! under `-accel kvm` that writes `OK` to the serial port and leaves through
//! `isa-debug-exit`; only that exact outcome counts as working KVM. The verdict is
//! cached per host (QEMU path and version, kernel release) in the cache directory.
//! `BOOTPROOF_ACCEL=kvm` makes a KVM failure an error; `=tcg` skips the probe.

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// How much longer things take than the KVM timings that profiles and scenarios
    /// are written for. `BOOTPROOF_TCG_SCALE` overrides the TCG factor.
    pub fn timeout_scale(self) -> f64 {
        match self {
            Accel::Kvm => 1.0,
            Accel::Tcg => std::env::var("BOOTPROOF_TCG_SCALE")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|f| *f >= 1.0)
                .unwrap_or(DEFAULT_TCG_SCALE),
        }
    }

    pub fn scale(self, d: Duration) -> Duration {
        d.mul_f64(self.timeout_scale())
    }
}

pub const DEFAULT_TCG_SCALE: f64 = 4.0;

/// The answer for this host, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub accel: Accel,
    /// Why KVM was rejected (or "forced by BOOTPROOF_ACCEL"); empty when KVM works.
    pub reason: String,
    /// Whether the answer came from the cache.
    #[serde(skip)]
    pub cached: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("BOOTPROOF_ACCEL=kvm, but KVM does not work here: {0}")]
    KvmRequired(String),
    #[error("BOOTPROOF_ACCEL={0:?}: allowed values are `kvm` and `tcg`")]
    BadOverride(String),
    #[error("cannot probe acceleration: {0}")]
    Probe(String),
}

/// The acceleration to use, probing (or reading the cached verdict) once per host, and
/// warning once per process when it falls back to TCG.
pub fn choose(qemu: &Path, qemu_version: &str) -> Result<Verdict, AccelError> {
    let forced = std::env::var("BOOTPROOF_ACCEL").ok().filter(|v| !v.is_empty());
    if forced.as_deref() == Some("tcg") {
        return Ok(Verdict {
            accel: Accel::Tcg,
            reason: "forced by BOOTPROOF_ACCEL=tcg".into(),
            cached: false,
        });
    }
    if let Some(other) = forced.as_deref().filter(|v| *v != "kvm") {
        return Err(AccelError::BadOverride(other.to_string()));
    }
    let verdict = cached_or_probe(qemu, qemu_version)?;
    match (verdict.accel, forced.is_some()) {
        (Accel::Tcg, true) => Err(AccelError::KvmRequired(verdict.reason)),
        (Accel::Tcg, false) => {
            warn_tcg_once(&verdict.reason);
            Ok(verdict)
        }
        (Accel::Kvm, _) => Ok(verdict),
    }
}

fn warn_tcg_once(reason: &str) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        crate::reporter::line(format!(
            "bootproof: warning: KVM is not usable here ({reason}); guests run under TCG \
             software emulation, several times slower; timeouts are scaled by {}",
            Accel::Tcg.timeout_scale()
        ));
    });
}

fn cache_file(qemu: &Path, qemu_version: &str) -> PathBuf {
    use sha2::Digest;
    let kernel = kernel_release();
    let key = format!("{}\n{qemu_version}\n{kernel}", qemu.display());
    let hash = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8]);
    crate::cache::cache_dir().join(format!("accel-{hash}.json"))
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

fn cached_or_probe(qemu: &Path, qemu_version: &str) -> Result<Verdict, AccelError> {
    let file = cache_file(qemu, qemu_version);
    if let Some(mut v) = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<Verdict>(&b).ok()) {
        v.cached = true;
        return Ok(v);
    }
    let verdict = probe_kvm(qemu)?;
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, serde_json::to_vec_pretty(&verdict).unwrap_or_default()).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }
    Ok(verdict)
}

/// Runs the probe under KVM and explains a failure.
pub fn probe_kvm(qemu: &Path) -> Result<Verdict, AccelError> {
    let tcg = |reason: String| Ok(Verdict { accel: Accel::Tcg, reason, cached: false });
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return tcg("/dev/kvm does not exist".into());
        }
        Err(e) => return tcg(format!("/dev/kvm cannot be opened read-write ({e})")),
        Ok(_) => {}
    }
    match run_probe(qemu, Accel::Kvm)? {
        ProbeOutcome::Ran(_) => Ok(Verdict { accel: Accel::Kvm, reason: String::new(), cached: false }),
        ProbeOutcome::Failed(why) => tcg(format!("/dev/kvm exists, but {why}")),
    }
}

/// What the boot-sector probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Guest code ran and exited as expected, in this time.
    Ran(Duration),
    Failed(String),
}

/// Boots the probe sector under `accel`.
pub fn run_probe(qemu: &Path, accel: Accel) -> Result<ProbeOutcome, AccelError> {
    let dir = tempfile::Builder::new()
        .prefix("bootproof-probe-")
        .tempdir()
        .map_err(|e| AccelError::Probe(format!("temporary directory: {e}")))?;
    let image = dir.path().join("probe.img");
    std::fs::write(&image, boot_sector()).map_err(|e| AccelError::Probe(e.to_string()))?;
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-accel", accel.as_str(), "-machine", "pc", "-m", "16", "-nodefaults", "-no-user-config"])
        // The CPU model real runs use under this accelerator.
        .args(["-cpu", if accel == Accel::Kvm { "host" } else { "max" }])
        .args(["-display", "none", "-serial", "stdio", "-nic", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", image.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| AccelError::Probe(format!("{}: {e}", qemu.display())))?;
    let stderr_text = drain_in_background(child.stderr.take());
    let status = wait_probe(&mut child, &stderr_text);
    let mut stdout = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut stdout));
    let stderr = stderr_text.lock().map(|s| s.clone()).unwrap_or_default();
    let Some(status) = status else {
        let said = first_lines(&stderr);
        return Ok(ProbeOutcome::Failed(format!(
            "the probe guest did not finish under {} ({})",
            accel.as_str(),
            if said.is_empty() { format!("no output within {}s", PROBE_TIMEOUT.as_secs()) } else { said }
        )));
    };
    // isa-debug-exit turns the guest's value 0x10 into exit status (0x10 << 1) | 1.
    if status.code() == Some(33) && stdout.contains("OK") {
        return Ok(ProbeOutcome::Ran(start.elapsed()));
    }
    let said = first_lines(&stderr);
    Ok(ProbeOutcome::Failed(format!(
        "QEMU -accel {} could not run guest code ({status}): {}",
        accel.as_str(),
        if said.is_empty() { "no message".to_string() } else { said }
    )))
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

fn first_lines(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("extra data"))
        .take(2)
        .collect::<Vec<_>>()
        .join(" / ")
}

type SharedText = std::sync::Arc<std::sync::Mutex<String>>;

fn drain_in_background(stderr: Option<std::process::ChildStderr>) -> SharedText {
    let text = SharedText::default();
    if let Some(mut stderr) = stderr {
        let text = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut t) = text.lock() {
                    t.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    text
}

/// Waits for the probe to exit. A KVM internal error does not make QEMU exit (it
/// pauses the guest), so its message on stderr ends the wait too.
fn wait_probe(child: &mut std::process::Child, stderr: &SharedText) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let fatal =
            stderr.lock().is_ok_and(|t| t.contains("KVM internal error") || t.contains("failed to set MSR"));
        if fatal || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(50));
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A boot sector that does what every guest does early (FPU init, CPUID), prints
/// "OK\n" on COM1, then writes 0x10 to the isa-debug-exit port. Hosts whose KVM fails
/// ordinary guests fail here ("KVM internal error ... emulation failure" at `fwait`).
fn boot_sector() -> Vec<u8> {
    let code: &[u8] = &[
        0xDB, 0xE3, 0x9B, // fninit; fwait
        0x66, 0x31, 0xC0, 0x0F, 0xA2, // xor eax, eax; cpuid
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xB0, b'O', 0xEE, // mov al, 'O'; out dx, al
        0xB0, b'K', 0xEE, // mov al, 'K'; out dx, al
        0xB0, b'\n', 0xEE, // mov al, '\n'; out dx, al
        0xBA, 0xF4, 0x00, // mov dx, 0xf4
        0xB0, 0x10, 0xEE, // mov al, 0x10; out dx, al
        0xF4, 0xEB, 0xFD, // hlt; jmp hlt
    ];
    let mut sector = vec![0u8; 512];
    sector[..code.len()].copy_from_slice(code);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}
