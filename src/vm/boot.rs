//! One boot from start to verdict: what `bootproof boot` and the runtime tests run.
//!
//! Resolves the profile and image against the host, launches the VM, then waits for
//! the first of: the `until` pattern, the guest powering off, the firmware refusing to
//! boot (Secure Boot "Access Denied" ends in "No bootable option": seconds, not the
//! global timeout), QEMU failing, or the timeout. On a timeout it collects evidence
//! before it kills. Everything lands in the run directory, and `result.json` says
//! how the run ended.

use regex::bytes::Regex;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::console::ConsoleError;
use crate::host::{accel, ovmf, qemu};
use crate::profile::Profile;

use super::plan::{HostFacts, Image, Plan};
use super::process::ExitReport;
use super::rundir::RunLayout;
use super::{Ending, Evidence, Vm, VmError, VmOptions};

/// What to boot and when to stop.
#[derive(Debug, Clone)]
pub struct BootRequest {
    pub profile: Profile,
    /// A path, or `reference:<name>`.
    pub image: Option<String>,
    /// Stop successfully when this appears on the console.
    pub until: Option<Regex>,
    /// Overrides the profile's boot timeout (as for KVM; scaled under TCG).
    pub timeout: Option<Duration>,
    pub run_dir: PathBuf,
    pub echo_console: bool,
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// The `until` pattern appeared.
    Reached {
        matched: String,
    },
    /// The guest powered off by itself (success when no `until` was asked for).
    PoweredOff,
    /// The firmware refused every boot option.
    FirmwareRefused {
        lines: Vec<String>,
    },
    /// The guest rebooted, which ends a run unless the profile allows reboots.
    Rebooted {
        reason: String,
    },
    /// QEMU exited on its own with a failure, or the guest stopped before `until`.
    Ended {
        detail: String,
    },
    TimedOut {
        waited_secs: f64,
    },
}

/// The verdict and where to look.
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub success: bool,
    pub profile: String,
    pub image: Option<String>,
    pub accel: &'static str,
    pub timeout_secs: f64,
    pub elapsed_secs: f64,
    pub run_dir: PathBuf,
    pub evidence: Option<Evidence>,
    pub last_console_lines: Vec<String>,
}

impl BootReport {
    /// One line for a person: what happened, how long it took.
    pub fn summary(&self) -> String {
        let what = match &self.outcome {
            Outcome::Reached { matched } => format!("reached {matched:?}"),
            Outcome::PoweredOff => "guest powered off".to_string(),
            Outcome::FirmwareRefused { lines } => {
                format!("the firmware found nothing it would boot: {}", lines.join(" / "))
            }
            Outcome::Rebooted { reason } => format!(
                "the guest rebooted ({reason}); set allow_reboot = true in the profile if that is expected"
            ),
            Outcome::Ended { detail } => detail.clone(),
            Outcome::TimedOut { waited_secs } => format!("timed out (waited {waited_secs:.1}s)"),
        };
        let verdict = if self.success { "ok" } else { "FAILED" };
        format!(
            "{verdict}: {what} after {:.1}s under {} ({})",
            self.elapsed_secs,
            self.accel,
            self.run_dir.display()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Qemu(#[from] qemu::QemuError),
    #[error(transparent)]
    Accel(#[from] accel::AccelError),
    #[error(transparent)]
    Firmware(#[from] ovmf::FirmwareError),
    #[error(transparent)]
    Disk(#[from] super::disk::DiskError),
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    #[error(transparent)]
    Plan(#[from] super::plan::PlanError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("{0}")]
    Environment(String),
    #[error("run directory {}: {source}", path.display())]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// OVMF's line for each boot option it could not load (complete lines only, so the
/// reason at the end is part of the match), e.g. `... Access Denied` under Secure Boot.
const BOOT_OPTION_FAILED: &str = r"BdsDxe: failed to load Boot[^\n]*\n";
/// OVMF has nothing left to try: it says so, or falls back to its built-in shell.
const NOTHING_BOOTABLE: &str =
    r#"No bootable option or device was found|BdsDxe: starting Boot\S+ "EFI Internal Shell""#;

/// The host's side of a plan: QEMU, acceleration, firmware, share security model.
pub fn host_facts(profile: &Profile, share_dir: &Path) -> Result<HostFacts, BootError> {
    let info = qemu::info()?;
    let verdict = accel::choose(&info.path, &info.version)?;
    Ok(HostFacts {
        qemu: info.path,
        accel: verdict.accel,
        firmware: ovmf::resolve(&profile.firmware)?,
        share_security: super::share::security_for(share_dir),
        kernel_vsock: Path::new("/dev/vhost-vsock").exists(),
        virtfs: info.virtfs,
        share_backend_override: crate::profile::ShareBackend::from_env().map_err(BootError::Environment)?,
        bootproof_program: crate::share::find_program(),
    })
}

/// `reference:<name>` → the built reference image; `blank:SIZE` → an empty disk made
/// for the run; a path → classified by content.
pub fn resolve_image(spec: &str) -> Result<Image, BootError> {
    if let Some(blank) = super::disk::blank(spec) {
        return Ok(blank?);
    }
    if let Some(name) = spec.strip_prefix("reference:") {
        let built = crate::images::ensure(name)?;
        return Ok(match built.kind {
            crate::images::ImageKind::Iso => Image::Iso { path: built.path },
            crate::images::ImageKind::Disk => Image::Disk { path: built.path, format: None },
        });
    }
    Ok(super::disk::classify(Path::new(spec))?)
}

/// Boots, waits for the verdict, stops the VM, and writes `result.json`.
pub async fn boot(req: BootRequest) -> Result<BootReport, BootError> {
    let layout = RunLayout::create(&req.run_dir)
        .map_err(|source| BootError::RunDir { path: req.run_dir.clone(), source })?;
    let image = req.image.as_deref().map(resolve_image).transpose()?;
    let host = host_facts(&req.profile, &layout.share_dir())?;
    let plan = Plan::new(&req.profile, image.as_ref(), &host, &layout)?;
    let timeout = host.accel.scale(req.timeout.unwrap_or(req.profile.timeouts.boot));
    let mut vm = Vm::launch(plan, VmOptions { echo_console: req.echo_console }).await?;
    let (outcome, evidence) = watch(&mut vm, req.until.as_ref(), timeout).await;
    let success = match &outcome {
        Outcome::Reached { .. } => true,
        Outcome::PoweredOff => req.until.is_none(),
        _ => false,
    };
    let outcome = match outcome {
        Outcome::PoweredOff if !success => Outcome::Ended {
            detail: format!(
                "the guest powered off before /{}/ appeared",
                req.until.as_ref().map_or("", |r| r.as_str())
            ),
        },
        other => other,
    };
    let report = BootReport {
        outcome,
        success,
        profile: req.profile.name.clone(),
        image: req.image.clone(),
        accel: host.accel.as_str(),
        timeout_secs: timeout.as_secs_f64(),
        elapsed_secs: vm.elapsed().as_secs_f64(),
        run_dir: layout.dir.clone(),
        evidence,
        last_console_lines: vm.console().tail(),
    };
    let json = serde_json::to_vec_pretty(&report).expect("serialisable");
    std::fs::write(layout.result_file(), json)
        .map_err(|source| BootError::RunDir { path: layout.result_file(), source })?;
    Ok(report)
}

async fn watch(vm: &mut Vm, until: Option<&Regex>, timeout: Duration) -> (Outcome, Option<Evidence>) {
    let refusal = Regex::new(BOOT_OPTION_FAILED).expect("valid");
    let nothing = Regex::new(NOTHING_BOOTABLE).expect("valid");
    let mut refused: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut patterns = vec![&refusal, &nothing];
        patterns.extend(until);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match vm.console().wait_for_any(&patterns, left).await {
            Ok((0, line)) => refused.push(line.trim_end().to_string()),
            Ok((1, line)) => {
                refused.push(line);
                let evidence = vm.collect_evidence("firmware-refused").await;
                vm.kill().await;
                return (Outcome::FirmwareRefused { lines: refused }, Some(evidence));
            }
            Ok((_, matched)) => {
                vm.quit().await;
                return (Outcome::Reached { matched }, None);
            }
            Err(ConsoleError::Closed { qemu, .. }) => {
                let ending = vm.wait_exit(Duration::from_secs(10)).await;
                return (ended(ending, qemu.as_ref()), None);
            }
            Err(ConsoleError::Timeout { waited, .. }) => {
                let evidence = vm.collect_evidence("timeout").await;
                vm.kill().await;
                return (Outcome::TimedOut { waited_secs: waited.as_secs_f64() }, Some(evidence));
            }
            Err(ConsoleError::Write(e)) => {
                vm.kill().await;
                return (Outcome::Ended { detail: e.to_string() }, None);
            }
        }
    }
}

/// The outcome of a VM that ended by itself; `qemu` quotes its log when it failed.
fn ended(ending: Option<Ending>, qemu: Option<&ExitReport>) -> Outcome {
    match ending {
        Some(Ending::Exited { status: Some(0), reason: Some(r) }) if r.contains("reset") => {
            Outcome::Rebooted { reason: r }
        }
        Some(Ending::Exited { status: Some(0), reason: Some(r) }) if r.contains("panic") => {
            Outcome::Ended { detail: format!("the guest panicked ({r})") }
        }
        Some(Ending::Exited { status: Some(0), .. }) => Outcome::PoweredOff,
        Some(Ending::Exited { status, reason }) => Outcome::Ended {
            detail: format!(
                "QEMU exited with status {} ({}); {}",
                status.map_or("unknown".into(), |s| s.to_string()),
                reason.unwrap_or_else(|| "no SHUTDOWN event".into()),
                match qemu.filter(|r| !r.tail.trim().is_empty()) {
                    Some(r) => format!("its last messages ({}):\n{}", r.log.display(), r.tail),
                    None => "see qemu.log in the run dir".to_string(),
                }
            ),
        },
        Some(Ending::Stopped { how }) => Outcome::Ended { detail: format!("QEMU was {how}") },
        None => Outcome::Ended { detail: "the console closed but QEMU did not exit within 10 s".into() },
    }
}
